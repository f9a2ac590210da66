//! The QoS classes under memory pressure: the kernel's OOM killer picks the
//! BestEffort pod's container, not the Guaranteed one, because of the
//! `oom_score_adj` the kubelet's rules give them (1000 vs -997). On v1 here
//! and on v2 in scripts/in-v2vm.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::pod::PodEnv;
use crate::qos::{manifest, read, unified, with_file};

const MI: u64 = 1 << 20;
/// What the BestEffort container holds: the memory its death gives back.
const BEST_EFFORT_HOLDS: u64 = 48 * MI;
/// What the Guaranteed container holds, well under its own limit.
const GUARANTEED_HOLDS: u64 = 8 * MI;
/// Room left under the parent's limit once both pods hold their memory.
const HEADROOM: u64 = 16 * MI;
/// What the pressure brings: busybox sh holds a string of this size, and
/// twice that while building it (measured), so it overshoots the headroom by
/// 2 × 24 - 16 = 32 MiB: one victim holding 48 MiB is enough, never two.
const PRESSURE: u64 = 24 * MI;

/// A container that builds a string of `bytes` in its shell, says so on its
/// log, and keeps it until stopped (the shell stays: `sleep & wait`).
fn holder(name: &str, bytes: u64, resources: &str) -> String {
    format!(
        "  - name: {name}\n    image: busybox\n    resources: {{{resources}}}\n    command:\n    - sh\n    - -c\n    - |\n      x=$(head -c {bytes} /dev/zero | tr '\\0' a)\n      echo held ${{#x}}\n      trap 'exit 0' TERM; sleep 3600 & wait\n"
    )
}

/// The parent cgroup of both pods (`<prefix>/kubepods`) in the memory
/// hierarchy, and its usage and limit files.
fn kubepods_memory(env: &PodEnv) -> (std::path::PathBuf, &'static str, &'static str) {
    let kubepods = format!("/{}/kubepods", env.prefix);
    let (usage, limit) = if unified() {
        ("memory.current", "memory.max")
    } else {
        ("memory.usage_in_bytes", "memory.limit_in_bytes")
    };
    let dir = with_file(&kubepods, limit).expect("kubepods in the memory hierarchy");
    (dir, usage, limit)
}

/// A Guaranteed and a BestEffort pod both hold memory under `kubepods`; the
/// test then limits `kubepods` (as the kubelet limits it to the node's
/// allocatable memory) to a little more than they use, and a process of its
/// own in a leaf there, made unkillable (oom_score_adj -1000), asks for more.
/// The kernel's OOM killer must take the BestEffort container (kubelet:
/// GetContainerOOMScoreAdjust, 1000 for BestEffort, -997 for Guaranteed):
/// its status says OOMKilled, exit code 137, and the Guaranteed container
/// runs on untouched.
#[test]
fn under_memory_pressure_the_best_effort_container_is_oom_killed_first() {
    let env = PodEnv::new();
    let gold = manifest(
        "gold",
        &format!(
            "  containers:\n{}",
            holder("a", GUARANTEED_HOLDS, "limits: {cpu: 200m, memory: 64Mi}")
        ),
    );
    let bronze = manifest(
        "bronze",
        &format!(
            "  restartPolicy: Never\n  containers:\n{}",
            holder("a", BEST_EFFORT_HOLDS, "")
        ),
    );
    env.run("gold", &gold);
    env.run("bronze", &bronze);
    for (name, bytes, class) in [
        ("gold", GUARANTEED_HOLDS, "Guaranteed"),
        ("bronze", BEST_EFFORT_HOLDS, "BestEffort"),
    ] {
        let pod = env.wait_phase(name, "Running", false);
        assert_eq!(pod["status"]["qosClass"], class, "{name}");
        let want = format!("held {bytes}");
        wait_until(
            &format!("{name} to hold its memory"),
            Duration::from_secs(30),
            || env.logs(name, "a").contains(&want),
        );
    }
    let gold_uid = env.inspect("gold")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let gold_pid = env.pids(&gold_uid)["a"].as_i64().unwrap() as i32;

    let (kubepods, usage, limit) = kubepods_memory(&env);
    let used: u64 = read(&kubepods.join(usage)).parse().unwrap();
    let max = used + HEADROOM;
    std::fs::write(kubepods.join(limit), max.to_string())
        .unwrap_or_else(|e| panic!("{}: {e}", kubepods.join(limit).display()));
    let leaf = kubepods.join("oom-pressure");
    std::fs::create_dir(&leaf).unwrap_or_else(|e| panic!("{}: {e}", leaf.display()));
    let procs = leaf.join("cgroup.procs");
    // The shell moves itself into the leaf before it allocates, and makes
    // itself unkillable where it may (CAP_SYS_RESOURCE; without it it keeps
    // the test's score, and its 48 MiB weigh less than BestEffort's 1000,
    // worth the whole limit).
    let script = format!(
        "echo $$ > {procs} || exit 9
         echo -1000 2>/dev/null > /proc/$$/oom_score_adj
         x=$(head -c {PRESSURE} /dev/zero | tr '\\0' a)
         echo ${{#x}}",
        procs = procs.display()
    );
    let mut pressure = Command::new("busybox")
        .args(["sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ended = None;
    wait_until("the pressure to be met", Duration::from_secs(30), || {
        ended = pressure.try_wait().unwrap();
        ended.is_some()
    });
    let out = pressure.wait_with_output().unwrap();
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let _ = std::fs::remove_dir(&leaf);
    assert!(
        out.status.success(),
        "the pressure failed ({ended:?}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(got, PRESSURE.to_string(), "the pressure got its memory");

    // The BestEffort container is the victim.
    let status = env.wait_phase("bronze", "Failed", true);
    let victim = &PodEnv::container(&status, "a")["state"]["terminated"];
    assert_eq!(victim["reason"], "OOMKilled", "{status}");
    assert_eq!(victim["exitCode"], 137, "{status}");
    // The Guaranteed one runs on: same process, no restart, not OOM-killed.
    let status = env.inspect("gold");
    assert_eq!(status["status"]["phase"], "Running", "{status}");
    let survivor = PodEnv::container(&status, "a");
    assert!(survivor["state"]["running"].is_object(), "{status}");
    assert_eq!(survivor["restartCount"], 0, "{status}");
    assert!(
        is_alive(gold_pid),
        "gold's container process {gold_pid} died"
    );
    let adj = read(Path::new(&format!("/proc/{gold_pid}/oom_score_adj")));
    assert!(
        adj.parse::<i32>().unwrap() < 1000,
        "gold's oom_score_adj {adj}"
    );
    // One kill, and it came from this limit: on v2 kubepods' memory.events
    // counts its descendants' kills (v1's oom_control counts only its own).
    if unified() {
        let events = read(&kubepods.join("memory.events"));
        assert!(
            events.lines().any(|l| l == "oom_kill 1"),
            "kubepods memory.events: {events}"
        );
    }
    env.ok(&["pod", "rm", "--force", "bronze"]);
    env.ok(&["pod", "rm", "--force", "gold"]);
    env.finish();
}
