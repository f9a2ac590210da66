//! QoS classes and pod cgroups as the kubelet makes them, on the real kernel
//! (v1 here, v2 in scripts/in-v2vm): the cgroup tree
//! `<prefix>/kubepods[/burstable|/besteffort]/pod<uid>/<container>`, the pod
//! cgroup's shares and limits (ResourceConfigForPod), each container's shares
//! (MilliCPUToShares, 2 without a request), quota (MilliCPUToQuota) and
//! memory limit, `oom_score_adj` (GetContainerOOMScoreAdjust), qosClass, and
//! nothing left after `pod rm`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use crate::pod::{pod_cgroup_dirs, PodEnv};

/// Sleeps until told to stop, without waking (the v2 guest is slow).
pub(crate) const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

pub(crate) fn manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 2\n{spec}"
    )
}

fn container(name: &str, resources: &str) -> String {
    format!("  - {{name: {name}, image: busybox, command: [sh, -c, \"{SLEEP}\"], resources: {{{resources}}}}}\n")
}

/// A container's cgroup path as its process sees it (the cpu hierarchy on
/// v1, the unified one on v2).
fn cgroup_of_pid(pid: i64) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v1 = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == "cpu")
            .then(|| path.to_string())
    });
    v1.or_else(|| {
        text.lines()
            .find_map(|l| l.strip_prefix("0::").map(String::from))
    })
    .unwrap_or_else(|| panic!("no cpu cgroup for {pid}: {text}"))
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The folder of `rel` that has `file` (v1: in its controller's hierarchy).
pub(crate) fn with_file(rel: &str, file: &str) -> Option<PathBuf> {
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(rel.trim_start_matches('/')))
        .find(|d| d.join(file).exists())
}

/// Whether the cgroup tree here is v2 for cpu and memory.
pub(crate) fn unified() -> bool {
    !cgroup_mounts()
        .iter()
        .any(|m| m.join("cpu.shares").exists())
}

/// What this host lets a container get: negative scores need
/// CAP_SYS_RESOURCE, else the floor is the supervisor's (our own) score.
fn expected_oom(kubelet: i32) -> i32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    const CAP_SYS_RESOURCE: u32 = 24;
    if eff & (1 << CAP_SYS_RESOURCE) != 0 {
        return kubelet;
    }
    let own: i32 = read(Path::new("/proc/self/oom_score_adj")).parse().unwrap();
    kubelet.max(own)
}

fn memory_capacity() -> i64 {
    let text = read(Path::new("/proc/meminfo"));
    let kib: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// runc 1.3.2's shares → cpu.weight (what libcgroups and peapod write).
fn weight(shares: u64) -> u64 {
    peapod::sys::cgroup::shares_to_weight(shares)
}

struct Expect<'a> {
    /// Under the prefix: "kubepods", "kubepods/burstable"…
    qos_dir: &'a str,
    pod_shares: u64,
    /// cfs quota per 100 ms, None: unlimited.
    pod_quota: Option<i64>,
    pod_memory: Option<i64>,
    /// container, its shares, its quota, its oom_score_adj as the kubelet says.
    containers: Vec<(&'a str, u64, Option<i64>, i32)>,
}

fn check_pod(env: &PodEnv, name: &str, class: &str, expect: &Expect) -> String {
    let pod = env.wait_phase(name, "Running", false);
    assert_eq!(
        pod["status"]["qosClass"], class,
        "{name}: {}",
        pod["status"]
    );
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let pod_cgroup = format!("/{}/{}/pod{uid}", env.prefix, expect.qos_dir);
    let v2 = unified();
    // The pod cgroup's shares and limits (ResourceConfigForPod).
    if v2 {
        let dir = with_file(&pod_cgroup, "cpu.weight").expect("pod cgroup with cpu.weight");
        assert_eq!(
            read(&dir.join("cpu.weight")),
            weight(expect.pod_shares).to_string()
        );
        let quota = expect.pod_quota.map_or("max".into(), |q| q.to_string());
        assert_eq!(read(&dir.join("cpu.max")), format!("{quota} 100000"));
        let memory = expect.pod_memory.map_or("max".into(), |m| m.to_string());
        assert_eq!(read(&dir.join("memory.max")), memory);
    } else {
        let cpu = with_file(&pod_cgroup, "cpu.shares").expect("pod cgroup in the cpu hierarchy");
        assert_eq!(read(&cpu.join("cpu.shares")), expect.pod_shares.to_string());
        let quota = expect.pod_quota.unwrap_or(-1);
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), quota.to_string());
        let memory = with_file(&pod_cgroup, "memory.limit_in_bytes").expect("memory hierarchy");
        let limit: i64 = read(&memory.join("memory.limit_in_bytes")).parse().unwrap();
        match expect.pod_memory {
            Some(bytes) => assert_eq!(limit, bytes),
            None => assert!(limit > 1 << 50, "unlimited: {limit}"),
        }
    }
    for (container, shares, quota, oom) in &expect.containers {
        wait_until(
            &format!("{container} running"),
            Duration::from_secs(30),
            || env.pids(&uid)[container].is_i64(),
        );
        let pid = env.pids(&uid)[container].as_i64().unwrap();
        let leaf = format!("{pod_cgroup}/{container}");
        assert_eq!(cgroup_of_pid(pid), leaf, "{name}/{container}");
        if v2 {
            let dir = with_file(&leaf, "cpu.weight").unwrap();
            assert_eq!(read(&dir.join("cpu.weight")), weight(*shares).to_string());
            let q = quota.map_or("max".into(), |q| q.to_string());
            assert_eq!(read(&dir.join("cpu.max")), format!("{q} 100000"));
        } else {
            let dir = with_file(&leaf, "cpu.shares").unwrap();
            assert_eq!(read(&dir.join("cpu.shares")), shares.to_string());
            assert_eq!(
                read(&dir.join("cpu.cfs_quota_us")),
                quota.unwrap_or(-1).to_string()
            );
        }
        let adj: i32 = read(Path::new(&format!("/proc/{pid}/oom_score_adj")))
            .parse()
            .unwrap();
        assert_eq!(adj, expected_oom(*oom), "{name}/{container} oom_score_adj");
    }
    // The sandbox: containerd's -998, below every container.
    let sandbox = env.status_file(&uid)["sandbox_pid"].as_i64().unwrap();
    assert_eq!(cgroup_of_pid(sandbox), format!("{pod_cgroup}/_sandbox"));
    let adj: i32 = read(Path::new(&format!("/proc/{sandbox}/oom_score_adj")))
        .parse()
        .unwrap();
    assert_eq!(adj, expected_oom(-998), "{name} sandbox oom_score_adj");
    uid
}

/// One pod of each class side by side, each checked against the kubelet's
/// rules; then removed, leaving no cgroup (the QoS parents go with their
/// last pod, `kubepods` and the prefix with the last of all).
#[test]
fn qos_classes_shape_the_cgroup_tree_shares_limits_and_oom_scores() {
    let env = PodEnv::new();
    let capacity = memory_capacity();
    // Guaranteed: every container limits cpu and memory, requests = limits.
    let guaranteed = manifest(
        "gold",
        &format!(
            "  containers:\n{}{}",
            container("a", "limits: {cpu: 250m, memory: 64Mi}"),
            container(
                "b",
                "limits: {cpu: 500m, memory: 32Mi}, requests: {cpu: 500m, memory: 32Mi}"
            )
        ),
    );
    // Burstable: a request, a limit only on cpu, a sidecar without either.
    let burstable = manifest(
        "silver",
        &format!(
            "  initContainers:\n  - {{name: side, image: busybox, restartPolicy: Always, command: [sh, -c, \"{SLEEP}\"]}}\n  containers:\n{}{}",
            container("a", "requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 200m}"),
            container("b", "")
        ),
    );
    let best_effort = manifest("bronze", &format!("  containers:\n{}", container("a", "")));
    for (name, yaml) in [
        ("gold", &guaranteed),
        ("silver", &burstable),
        ("bronze", &best_effort),
    ] {
        env.ok(&[
            "pod",
            "run",
            "-d",
            "-f",
            env.manifest(name, yaml).to_str().unwrap(),
        ]);
    }
    let mi = 1i64 << 20;
    let gold = check_pod(
        &env,
        "gold",
        "Guaranteed",
        &Expect {
            qos_dir: "kubepods",
            pod_shares: 768,
            pod_quota: Some(75_000),
            pod_memory: Some(96 * mi),
            containers: vec![
                ("a", 256, Some(25_000), -997),
                ("b", 512, Some(50_000), -997),
            ],
        },
    );
    // Burstable: 1000 - 1000 × 64Mi / capacity for a; 999 without a request;
    // the sidecar no higher than the app container with the least request (b: 0).
    let burstable_a = (1000 - 1000 * 64 * mi / capacity).clamp(3, 999) as i32;
    let silver = check_pod(
        &env,
        "silver",
        "Burstable",
        &Expect {
            qos_dir: "kubepods/burstable",
            pod_shares: 102,
            // Not every container limits cpu or memory: the pod is unlimited.
            pod_quota: None,
            pod_memory: None,
            containers: vec![
                ("a", 102, Some(20_000), burstable_a),
                ("b", 2, None, 999),
                ("side", 2, None, 999),
            ],
        },
    );
    let bronze = check_pod(
        &env,
        "bronze",
        "BestEffort",
        &Expect {
            qos_dir: "kubepods/besteffort",
            pod_shares: 2,
            pod_quota: None,
            pod_memory: None,
            containers: vec![("a", 2, None, 1000)],
        },
    );
    // The BestEffort parent weighs the minimum, as the kubelet's QoS manager sets it.
    let besteffort = format!("/{}/kubepods/besteffort", env.prefix);
    if unified() {
        let dir = with_file(&besteffort, "cpu.weight").unwrap();
        assert_eq!(read(&dir.join("cpu.weight")), "1");
    } else {
        let dir = with_file(&besteffort, "cpu.shares").unwrap();
        assert_eq!(read(&dir.join("cpu.shares")), "2");
    }
    // Each pod's cgroups go with it; a QoS parent with its last pod.
    env.ok(&["pod", "rm", "--force", "bronze"]);
    assert!(pod_cgroup_dirs(&env, &bronze).is_empty());
    assert!(
        with_file(&besteffort, "cgroup.procs").is_none(),
        "besteffort left"
    );
    env.ok(&["pod", "rm", "--force", "silver"]);
    assert!(pod_cgroup_dirs(&env, &silver).is_empty());
    let kubepods = format!("/{}/kubepods", env.prefix);
    assert!(
        with_file(&kubepods, "cgroup.procs").is_some(),
        "gold still needs kubepods"
    );
    env.ok(&["pod", "rm", "--force", "gold"]);
    assert!(pod_cgroup_dirs(&env, &gold).is_empty());
    assert!(
        with_file(&kubepods, "cgroup.procs").is_none(),
        "kubepods left"
    );
    env.finish();
}

/// Pods started and removed at the same time share the QoS parents: none
/// may fail to make its cgroup because another removed a parent under it,
/// and none is left once all are gone.
#[test]
fn pods_starting_and_stopping_together_share_the_qos_parents_safely() {
    let env = PodEnv::new();
    let names: Vec<String> = (0..3).map(|i| format!("p{i}")).collect();
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| {
            env.manifest(
                n,
                &manifest(n, &format!("  containers:\n{}", container("a", ""))),
            )
        })
        .collect();
    std::thread::scope(|s| {
        for path in &paths {
            s.spawn(|| env.ok(&["pod", "run", "-d", "-f", path.to_str().unwrap()]));
        }
    });
    for name in &names {
        let pod = env.wait_phase(name, "Running", false);
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }
    std::thread::scope(|s| {
        for name in &names {
            s.spawn(|| env.ok(&["pod", "rm", "--force", name]));
        }
    });
    let kubepods = format!("/{}/kubepods", env.prefix);
    assert!(
        with_file(&kubepods, "cgroup.procs").is_none(),
        "kubepods left"
    );
    env.finish();
}

/// Whether containers' hugetlb limits can be set here, as peapod decides
/// (`Layout::hugetlb_limits`): a pure cgroup v2 tree offering hugetlb (the
/// v2 guest), or a v1 hugetlb hierarchy. This host has neither.
fn hugetlb_limited() -> bool {
    let controllers = |dir: &Path| read(&dir.join("cgroup.controllers"));
    if unified() {
        return cgroup_mounts().iter().any(|m| {
            m.join("cgroup.controllers").exists()
                && controllers(m).split(' ').any(|c| c == "hugetlb")
        });
    }
    cgroup_mounts()
        .iter()
        .any(|m| m.join("hugetlb.2MB.limit_in_bytes").exists())
}

/// hugepages as the kubelet limits them where hugetlb is: the container's
/// cgroup gets its `hugepages-2Mi` limit and 0 for every other size of the
/// host (GetHugepageLimitsFromResources), the pod cgroup the pod's sum
/// (ResourceConfigForPod's HugePageLimit). Where they cannot be set (this
/// host), the pod still runs and its events say so.
#[test]
fn hugepages_limit_the_pod_and_container_cgroups_where_hugetlb_is() {
    let env = PodEnv::new();
    let yaml = manifest(
        "huge",
        &format!(
            "  containers:\n{}{}",
            container("a", "limits: {cpu: 100m, memory: 32Mi, hugepages-2Mi: 4Mi}"),
            container("b", "limits: {cpu: 100m, memory: 32Mi, hugepages-2Mi: 2Mi}")
        ),
    );
    env.run("huge", &yaml);
    let pod = env.wait_phase("huge", "Running", false);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    wait_until("both containers running", Duration::from_secs(30), || {
        let pids = env.pids(&uid);
        pids["a"].is_i64() && pids["b"].is_i64()
    });
    let events = env.ok(&["pod", "describe", "huge"]);
    if !hugetlb_limited() {
        assert!(
            events.contains("HugePagesNotLimited"),
            "no warning that hugepages are not limited: {events}"
        );
        env.finish();
        return;
    }
    assert!(!events.contains("HugePagesNotLimited"), "{events}");
    let pod_cgroup = format!("/{}/kubepods/pod{uid}", env.prefix);
    let gigantic = Path::new("/sys/kernel/mm/hugepages/hugepages-1048576kB").exists();
    for (dir, bytes) in [
        (pod_cgroup.clone(), 6u64 << 20),
        (format!("{pod_cgroup}/a"), 4 << 20),
        (format!("{pod_cgroup}/b"), 2 << 20),
    ] {
        let d = with_file(&dir, "hugetlb.2MB.max")
            .or_else(|| with_file(&dir, "hugetlb.2MB.limit_in_bytes"))
            .unwrap_or_else(|| panic!("{dir}: no hugetlb files"));
        let limit = |size: &str| {
            let v2 = d.join(format!("hugetlb.{size}.max"));
            read(&if v2.exists() {
                v2
            } else {
                d.join(format!("hugetlb.{size}.limit_in_bytes"))
            })
        };
        assert_eq!(limit("2MB"), bytes.to_string(), "{dir}");
        if gigantic {
            assert_eq!(limit("1GB"), "0", "{dir}: a size not asked for");
        }
    }
    env.finish();
}
