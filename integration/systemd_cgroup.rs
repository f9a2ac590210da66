//! The systemd cgroup driver: the runtime's `--systemd-cgroup` (runc's
//! `slice:prefix:name` cgroupsPath: the container is a transient scope under
//! a slice that systemd makes, with its limits as the scope's properties and
//! in the cgroup files), the shim's, and the pod engine's `--cgroup-driver
//! systemd` (pods as slices, containers as scopes). It needs systemd as PID
//! 1: scripts/test and scripts/test-v2-full run these in a cgroup v2 guest
//! booted with systemd (`in-v2vm --systemd`). Where systemd is not running
//! (these hosts), both flags must be refused with a clear error before
//! anything is made, and that is all that is checked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{is_alive, output_of, wait_until, TestEnv};
use crate::containerd_shim::{task_status, Ctrd, IMAGE, RUNTIME};
use crate::pod::PodEnv;
use crate::qos::{manifest, read, SLEEP};

fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `systemctl show -p PROP --value UNIT`.
fn unit_property(unit: &str, prop: &str) -> String {
    let out = output_of(Command::new("systemctl").args(["show", "-p", prop, "--value", unit]));
    assert!(
        out.status.success(),
        "systemctl show {unit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stop_unit(unit: &str) {
    let _ = output_of(Command::new("systemctl").args(["stop", unit]));
}

/// A slice of this test's own, one level under `peapodit.slice`: systemd
/// names nest by dashes (`a-b.slice` is in `a.slice`), so the rest has none.
struct TestSlice {
    name: String,
}

impl TestSlice {
    fn new(env: &TestEnv) -> Self {
        let unique: String = env
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        TestSlice {
            name: format!("peapodit-{unique}.slice"),
        }
    }

    /// Its cgroup (cgroup v2: systemd's tree is the unified hierarchy).
    fn cgroup(&self) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup/peapodit.slice").join(&self.name)
    }
}

impl Drop for TestSlice {
    fn drop(&mut self) {
        // The parent too: only this test makes slices under it.
        stop_unit(&self.name);
        stop_unit("peapodit.slice");
    }
}

#[test]
fn the_pod_engines_systemd_driver_is_refused_without_systemd() {
    if systemd_runs() {
        return;
    }
    let env = PodEnv::new();
    let path = env.manifest(
        "sd",
        &manifest(
            "sd",
            &format!(
        "  containers:\n  - {{name: app, image: busybox, command: [sh, -c, \"{SLEEP}\"]}}\n"
    ),
        ),
    );
    let out = env.peapod(&systemd_pod_run(&path));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pod run succeeded without systemd");
    assert!(
        err.contains("--cgroup-driver systemd: systemd is not running on this host"),
        "{err}"
    );
    // A driver that is not one is named too.
    let out = env.peapod(&[
        "pod",
        "run",
        "-d",
        "--cgroup-driver",
        "sytemd",
        "-f",
        path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("invalid cgroup driver \"sytemd\""),
        "{err}"
    );
    // Refused before anything was made: no pod, no cgroup (finish checks).
    assert_eq!(env.ok(&["pod", "ps"]).lines().count(), 1, "a pod was made");
    env.finish();
}

/// `pod run -d --cgroup-driver systemd -f PATH`.
fn systemd_pod_run(path: &Path) -> [&str; 7] {
    let path = path.to_str().unwrap();
    ["pod", "run", "-d", "--cgroup-driver", "systemd", "-f", path]
}

/// Whether systemd has unloaded the unit: `list-units` shows only loaded
/// units and, unlike `systemctl show`, loads none (a slice needs no unit
/// file, so `show` would make an inactive one of any slice name).
fn unit_gone(unit: &str) -> bool {
    let out = output_of(Command::new("systemctl").args([
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        unit,
    ]));
    assert!(out.status.success(), "systemctl list-units {unit}");
    String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// The pod engine's systemd driver (`--cgroup-driver systemd`, the kubelet's
/// `cgroupDriver: systemd` with containerd's `SystemdCgroup = true`): the
/// kubelet's cgroup tree as slices (`<prefix>-kubepods[-<qos>]-pod<uid>.slice`,
/// ConvertCgroupNameToSystemd), the pod's summed limits as the slice's unit
/// properties and in its files (ResourceConfigForPod), each container a scope
/// in the pod's slice, a restarted container in a new scope of the same name,
/// an OOM kill reported as OOMKilled although systemd removes the scope's
/// cgroup with its last process, and after `pod rm` no unit and no cgroup.
#[test]
#[ignore = "needs systemd as PID 1: scripts/test runs it in a systemd guest"]
fn pods_under_the_systemd_driver_are_slices_and_scopes_and_leave_nothing() {
    assert!(
        systemd_runs(),
        "systemd is not PID 1 here: scripts/test runs this in its systemd guest"
    );
    let env = PodEnv::new();
    let top = env.prefix.replace('-', "_");
    let kubepods = format!("{top}-kubepods.slice");
    // Whatever happens, the test's whole tree goes (stopping a slice stops all in it).
    let _stop = StopOnDrop(format!("{top}.slice"));
    let tree = PathBuf::from("/sys/fs/cgroup")
        .join(format!("{top}.slice"))
        .join(&kubepods);
    let run = |name: &str, yaml: &str| {
        let path = env.manifest(name, yaml);
        env.ok(&systemd_pod_run(&path));
        env.wait_phase(name, "Running", false)
    };
    // Guaranteed: `app` sleeps, `hog` outgrows its 16 MiB and is OOM-killed, again and again.
    let gold = run("gold", &manifest("gold", &format!(
        "  containers:\n  - {{name: app, image: busybox, command: [sh, -c, \"{SLEEP}\"], \
         resources: {{limits: {{cpu: 500m, memory: 64Mi}}}}}}\n  - name: hog\n    image: busybox\n    \
         resources: {{limits: {{cpu: 100m, memory: 16Mi}}}}\n    command: [sh, -c, \"x=$(head -c 64m /dev/zero | tr '\\\\0' a)\"]\n"
    )));
    let uid = gold["metadata"]["uid"].as_str().unwrap().to_string();
    let pod_slice = format!("{top}-kubepods-pod{}.slice", uid.replace('-', "_"));
    let pod_dir = tree.join(&pod_slice);
    assert_eq!(unit_property(&pod_slice, "ActiveState"), "active");
    // The pod's summed limits: 80 MiB, 600m (60 ms per 100 ms), shares 614.
    assert_eq!(unit_property(&pod_slice, "MemoryMax"), "83886080");
    assert_eq!(unit_property(&pod_slice, "CPUQuotaPerSecUSec"), "600ms");
    assert_eq!(read(&pod_dir.join("memory.max")), "83886080");
    assert_eq!(read(&pod_dir.join("cpu.max")), "60000 100000");
    assert_eq!(
        read(&pod_dir.join("cpu.weight")),
        peapod::sys::cgroup::shares_to_weight(614).to_string()
    );
    wait_until("app running", Duration::from_secs(30), || {
        env.pids(&uid)["app"].is_i64()
    });
    // Each container a scope in the pod's slice, its init in it.
    for leaf in ["_sandbox", "app"] {
        let scope = format!("peapod-{uid}-{leaf}.scope");
        assert_eq!(unit_property(&scope, "ActiveState"), "active", "{scope}");
        assert_eq!(unit_property(&scope, "Slice"), pod_slice, "{scope}");
        let pid = match leaf {
            "_sandbox" => env.status_file(&uid)["sandbox_pid"].as_i64().unwrap(),
            _ => env.pids(&uid)[leaf].as_i64().unwrap(),
        };
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let want = pod_dir.join(&scope);
        assert_eq!(
            own.trim(),
            format!(
                "0::/{}",
                want.strip_prefix("/sys/fs/cgroup").unwrap().display()
            ),
            "{leaf}'s cgroup"
        );
    }
    assert_eq!(
        read(
            &pod_dir
                .join(format!("peapod-{uid}-app.scope"))
                .join("memory.max")
        ),
        "67108864"
    );
    // hog: OOM-killed, restarted in a scope of the same name, killed again.
    let mut hog = serde_json::Value::Null;
    wait_until("hog OOM-killed twice", Duration::from_secs(120), || {
        hog = PodEnv::container(&env.inspect("gold"), "hog").clone();
        hog["restartCount"].as_i64().unwrap_or(0) >= 2
    });
    assert_eq!(
        hog["lastState"]["terminated"]["reason"], "OOMKilled",
        "hog: {hog}"
    );
    assert_eq!(
        hog["lastState"]["terminated"]["exitCode"], 137,
        "hog: {hog}"
    );

    // BestEffort: its QoS slice weighs the minimum (2 shares: cpu.weight 1).
    let bronze = run(
        "bronze",
        &manifest(
            "bronze",
            &format!(
        "  containers:\n  - {{name: app, image: busybox, command: [sh, -c, \"{SLEEP}\"]}}\n"
    ),
        ),
    );
    let buid = bronze["metadata"]["uid"].as_str().unwrap().to_string();
    let besteffort = format!("{top}-kubepods-besteffort.slice");
    assert_eq!(read(&tree.join(&besteffort).join("cpu.weight")), "1");
    let bronze_slice = format!(
        "{top}-kubepods-besteffort-pod{}.slice",
        buid.replace('-', "_")
    );
    assert_eq!(unit_property(&bronze_slice, "Slice"), besteffort);

    let units = [
        format!("{top}.slice"),
        kubepods.clone(),
        besteffort.clone(),
        pod_slice.clone(),
        bronze_slice.clone(),
        format!("peapod-{uid}-app.scope"),
        format!("peapod-{uid}-hog.scope"),
        format!("peapod-{uid}-_sandbox.scope"),
        format!("peapod-{buid}-app.scope"),
    ];
    env.ok(&["pod", "rm", "--force", "gold"]);
    assert!(unit_gone(&pod_slice), "{pod_slice} is left");
    assert_eq!(
        unit_property(&bronze_slice, "ActiveState"),
        "active",
        "the other pod's slice"
    );
    env.ok(&["pod", "rm", "--force", "bronze"]);
    for unit in &units {
        assert!(unit_gone(unit), "{unit} is left");
    }
    let top_dir = PathBuf::from("/sys/fs/cgroup").join(format!("{top}.slice"));
    assert!(!top_dir.exists(), "{} is left", top_dir.display());
    env.finish();
}

#[test]
fn systemd_cgroup_is_refused_without_systemd() {
    if systemd_runs() {
        return;
    }
    let env = TestEnv::new("systemd-refused");
    let id = env.id("c");
    let bundle = env.bundle(&id, &env.config(&id, &["true"]));
    env.fails(
        &[
            "--systemd-cgroup",
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            &id,
        ],
        "systemd is not running on this host",
    );
    env.finish();
}

/// runc's systemd form as containerd's CRI sends it for a kubelet with the
/// systemd driver (`<pod slice>:cri-containerd:<id>`): the scope
/// `<prefix>-<id>.scope` in the slice, limits as unit properties and in
/// cpu.max/memory.max, `update`, `pause`/`resume` on the scope's cgroup, and
/// nothing left (scope, cgroup) after `delete`.
#[test]
#[ignore = "needs systemd as PID 1: scripts/test runs it in a systemd guest"]
fn systemd_cgroup_makes_a_scope_in_the_slice_with_its_limits_and_removes_it() {
    assert!(
        systemd_runs(),
        "systemd is not PID 1 here: scripts/test runs this in its systemd guest"
    );
    let env = TestEnv::new("systemd-scope");
    let slice = TestSlice::new(&env);
    let id = env.id("c");
    let mut config = env.config(&id, &["sleep", "1000"]);
    config["linux"]["cgroupsPath"] = format!("{}:cri-containerd:{id}", slice.name).into();
    config["linux"]["resources"] = serde_json::json!({
        "memory": { "limit": 64 * 1024 * 1024 },
        "cpu": { "quota": 50000, "period": 100000 },
        "pids": { "limit": 100 }
    });
    let bundle = env.bundle(&id, &config);
    let run = |args: &[&str]| {
        let mut all = vec!["--systemd-cgroup"];
        all.extend_from_slice(args);
        env.ok(&all)
    };
    run(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    let scope = format!("cri-containerd-{id}.scope");
    let dir = slice.cgroup().join(&scope);
    let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;

    // The scope is systemd's unit, in our slice, holding the container's init.
    assert_eq!(unit_property(&scope, "ActiveState"), "active");
    assert_eq!(unit_property(&scope, "Slice"), slice.name);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(
        own.trim(),
        format!("0::/peapodit.slice/{}/{scope}", slice.name),
        "the init's cgroup"
    );
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "init {pid} not in {}: {procs}",
        dir.display()
    );
    // Limits: as systemd's properties and in the kernel's files.
    assert_eq!(unit_property(&scope, "MemoryMax"), "67108864");
    assert_eq!(unit_property(&scope, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(unit_property(&scope, "TasksMax"), "100");
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.max"), "67108864");
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("pids.max"), "100");

    run(&["start", &id]);
    assert_eq!(env.status(&id), "running");
    run(&["update", "--memory", "32m", &id]);
    assert_eq!(read("memory.max"), "33554432");
    assert_eq!(unit_property(&scope, "MemoryMax"), "33554432");
    run(&["pause", &id]);
    assert_eq!(env.status(&id), "paused");
    assert_eq!(read("cgroup.freeze"), "1");
    run(&["resume", &id]);
    assert_eq!(read("cgroup.freeze"), "0");
    assert_eq!(env.status(&id), "running");

    run(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    run(&["delete", &id]);
    assert!(!is_alive(pid));
    // The scope goes with the container; systemd removes its cgroup.
    wait_until("the scope to be gone", Duration::from_secs(5), || {
        unit_property(&scope, "ActiveState") == "inactive" && !dir.exists()
    });
    let slice_dir = slice.cgroup();
    drop(slice);
    assert!(!slice_dir.exists(), "{} is left", slice_dir.display());
    env.finish();
}

/// The shim under containerd: a cgroupsPath in runc's systemd form (as
/// containerd's CRI writes it for a kubelet with the systemd driver; here
/// `ctr run --cgroup`) makes the shim create the container with
/// `--systemd-cgroup`: its init is in the scope, and the scope goes with it.
#[test]
#[ignore = "needs systemd as PID 1: scripts/test runs it in a systemd guest"]
fn the_shim_runs_a_systemd_cgroups_path_as_a_scope() {
    assert!(
        systemd_runs(),
        "systemd is not PID 1 here: scripts/test runs this in its systemd guest"
    );
    let c = Ctrd::up("systemd");
    let id = c.id("sd");
    let slice = format!(
        "peapodshim-{}.slice",
        id.replace(|ch: char| !ch.is_ascii_alphanumeric(), "_")
    );
    let stop_slice = SliceGuard(slice.clone());
    let cgroups_path = format!("{slice}:ctr:{id}");
    c.ok(&[
        "run",
        "-d",
        "--null-io",
        "--runtime",
        RUNTIME,
        "--cgroup",
        &cgroups_path,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ]);
    let (pid, status) = task_status(&c, &id).expect("the task in ctr tasks ls");
    assert_eq!(status, "RUNNING");
    let scope = format!("ctr-{id}.scope");
    assert_eq!(unit_property(&scope, "ActiveState"), "active");
    assert_eq!(unit_property(&scope, "Slice"), slice);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(own.trim(), format!("0::/peapodshim.slice/{slice}/{scope}"));
    c.ok(&["tasks", "kill", "-s", "SIGKILL", &id]);
    wait_until("the task to stop", Duration::from_secs(10), || {
        task_status(&c, &id).map(|s| s.1) == Some("STOPPED".into())
    });
    c.ok(&["tasks", "delete", &id]);
    c.ok(&["containers", "delete", &id]);
    wait_until("the scope to be gone", Duration::from_secs(5), || {
        unit_property(&scope, "ActiveState") == "inactive"
    });
    drop(stop_slice);
    assert!(!Path::new("/sys/fs/cgroup/peapodshim.slice")
        .join(&slice)
        .exists());
    c.finish();
}

/// Stops a slice (and its parent, `peapodshim.slice`) at the end, failed or not.
struct SliceGuard(String);

impl Drop for SliceGuard {
    fn drop(&mut self) {
        stop_unit(&self.0);
        stop_unit("peapodshim.slice");
    }
}

/// Stops a unit at the end, failed or not.
struct StopOnDrop(String);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        stop_unit(&self.0);
    }
}
