//! Pods for real: sandbox, shared namespaces, init order, volumes, restarts,
//! stop, and cleanup, on a real kernel.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::*;

/// One test's pods: their own state root and image store.
pub(crate) struct PodEnv {
    /// This test's cgroup parent, so that removing it races with no other test.
    pub(crate) prefix: String,
    pub(crate) root: tempfile::TempDir,
    pub(crate) store: tempfile::TempDir,
    pub(crate) work: tempfile::TempDir,
}

impl PodEnv {
    pub(crate) fn new() -> Self {
        require_root();
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let env = PodEnv {
            prefix: format!("peapod-it-pods-{}-{seq}", std::process::id()),
            root: tempfile::Builder::new()
                .prefix("peapod-pods-")
                .tempdir()
                .unwrap(),
            store: tempfile::Builder::new()
                .prefix("peapod-images-")
                .tempdir()
                .unwrap(),
            work: tempfile::Builder::new()
                .prefix("peapod-podwork-")
                .tempdir()
                .unwrap(),
        };
        for image in ["busybox", "pause"] {
            let tar = repo().join(format!("bundles/images/{image}.tar"));
            assert!(
                tar.is_file(),
                "{} missing: run scripts/setup",
                tar.display()
            );
            env.ok(&["image", "import", tar.to_str().unwrap()]);
        }
        env
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(peapod_bin());
        cmd.arg("--root")
            .arg(self.root.path())
            .args(args)
            .env("PEAPOD_IMAGE_STORE", self.store.path())
            .env("PEAPOD_BACKOFF_BASE", "500ms")
            .env("PEAPOD_CGROUP_PREFIX", &self.prefix)
            // Loopback-only pods unless a test gives them a network: never
            // the host's /etc/cni/net.d (podman's network may be there).
            .env("PEAPOD_CNI_CONF_DIR", self.work.path().join("no-cni"))
            .env("PEAPOD_CNI_CACHE_DIR", self.work.path().join("cni-cache"))
            .stdin(Stdio::null());
        cmd
    }

    pub(crate) fn peapod(&self, args: &[&str]) -> Output {
        output_of(&mut self.cmd(args))
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.peapod(args);
        assert!(
            out.status.success(),
            "peapod {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `pod exec POD -c CONTAINER -- ARGS…`, success or not.
    pub(crate) fn exec(&self, pod: &str, container: &str, args: &[&str]) -> Output {
        let mut all = vec!["pod", "exec", pod, "-c", container, "--"];
        all.extend_from_slice(args);
        self.peapod(&all)
    }

    /// `exec`, which must succeed: its stdout.
    pub(crate) fn exec_ok(&self, pod: &str, container: &str, args: &[&str]) -> String {
        let out = self.exec(pod, container, args);
        assert!(
            out.status.success(),
            "exec {args:?} in {pod}/{container}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn manifest(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.work.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        path
    }

    pub(crate) fn run(&self, name: &str, yaml: &str) -> Value {
        let path = self.manifest(name, yaml);
        self.ok(&["pod", "run", "-d", "-f", path.to_str().unwrap()]);
        self.inspect(name)
    }

    pub(crate) fn inspect(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["pod", "inspect", name, "-o", "json"])).unwrap()
    }

    pub(crate) fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.path().join("pods").join(uid)
    }

    pub(crate) fn status_file(&self, uid: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.pod_dir(uid).join("status.json")).unwrap())
            .unwrap()
    }

    pub(crate) fn wait_phase(&self, name: &str, phase: &str, finished: bool) -> Value {
        let mut last = Value::Null;
        wait_until(
            &format!("pod {name} to be {phase}"),
            Duration::from_secs(30),
            || {
                last = self.inspect(name);
                let uid = last["metadata"]["uid"].as_str().unwrap().to_string();
                last["status"]["phase"] == phase
                    && (!finished || self.status_file(&uid)["finished"] == true)
            },
        );
        last
    }

    pub(crate) fn container<'a>(status: &'a Value, name: &str) -> &'a Value {
        status["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .chain(status["status"]["initContainerStatuses"].as_array())
            .flatten()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no status for {name}: {status}"))
    }

    pub(crate) fn pids(&self, uid: &str) -> Value {
        self.status_file(uid)["pids"].clone()
    }

    pub(crate) fn logs(&self, pod: &str, container: &str) -> String {
        self.ok(&["pod", "logs", pod, "-c", container])
    }

    /// Removes every pod and checks nothing of them is left on the host.
    pub(crate) fn finish(self) {
        let listed = self.ok(&["pod", "ps"]);
        for line in listed.lines().skip(1) {
            let name = line.split_whitespace().next().unwrap();
            self.ok(&["pod", "rm", "--force", name]);
        }
        let left: Vec<_> = std::fs::read_dir(self.root.path().join("pods"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "pod folders left: {left:?}");
        // With its last pod gone, the cgroup parent goes too.
        let parents: Vec<_> = cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.prefix))
            .filter(|p| p.exists())
            .collect();
        assert!(parents.is_empty(), "cgroup parents left: {parents:?}");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for dir in [self.root.path(), self.store.path()] {
            let d = dir.to_str().unwrap();
            assert!(!mountinfo.contains(d), "mounts left under {d}");
        }
        assert_dev_null_untouched();
    }
}

impl Drop for PodEnv {
    fn drop(&mut self) {
        if let Ok(out) = self.cmd(&["pod", "ps"]).stderr(Stdio::null()).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
                if let Some(name) = line.split_whitespace().next() {
                    let _ = self
                        .cmd(&["pod", "rm", "--force", name])
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        for mount in cgroup_mounts() {
            let parent = mount.join(&self.prefix);
            for dir in ["kubepods/burstable", "kubepods/besteffort", "kubepods", ""] {
                let _ = std::fs::remove_dir(parent.join(dir));
            }
        }
    }
}

fn cgroup_of(env: &PodEnv, uid: &str, leaf: &str) -> Vec<PathBuf> {
    pod_cgroup_dirs(env, uid)
        .into_iter()
        .map(|d| d.join(leaf))
        .filter(|p| p.exists())
        .collect()
}

/// The pod's cgroup in every hierarchy where it exists: the kubelet's
/// `<prefix>/kubepods[/burstable|/besteffort]/pod<uid>`.
pub(crate) fn pod_cgroup_dirs(env: &PodEnv, uid: &str) -> Vec<PathBuf> {
    let mut found = vec![];
    for mount in cgroup_mounts() {
        for qos in ["kubepods", "kubepods/burstable", "kubepods/besteffort"] {
            let dir = mount.join(&env.prefix).join(qos).join(format!("pod{uid}"));
            if dir.exists() {
                found.push(dir);
            }
        }
    }
    found
}

fn nspid_is_one(pid: i64) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .and_then(|l| l.split_whitespace().last())
        == Some("1")
}

#[test]
fn pod_shares_net_ipc_uts_and_runs_init_containers_in_order() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: shared }
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{ name: marks, emptyDir: {} }]
  initContainers:
    - name: first
      image: busybox
      command: ["sh", "-c", "sleep 0.2; s=$(ls /marks); echo $s > /marks/seen-by-first; echo first-done > /marks/first"]
      volumeMounts: [{ name: marks, mountPath: /marks }]
    - name: second
      image: busybox
      command: ["sh", "-c", "s=$(ls /marks); echo $s > /marks/seen-by-second; echo second-done > /marks/second"]
      volumeMounts: [{ name: marks, mountPath: /marks }]
  containers:
    - name: server
      image: busybox
      command: ["sh", "-c", "s=$(ls /marks); echo $s > /marks/seen-by-server; echo shm-data > /dev/shm/from-server; exec httpd -f -p 127.0.0.1:8080 -h /marks"]
      volumeMounts: [{ name: marks, mountPath: /marks }]
    - name: client
      image: busybox
      command: ["sh", "-c", "s=$(ls /marks); echo $s > /marks/seen-by-client; while true; do sleep 1; done"]
      volumeMounts: [{ name: marks, mountPath: /marks }]
"#;
    let pod = env.run("shared", yaml);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    env.wait_phase("shared", "Running", false);
    wait_until(
        "both app containers running",
        Duration::from_secs(10),
        || {
            let p = env.pids(&uid);
            p["server"].is_i64() && p["client"].is_i64()
        },
    );
    let pids = env.pids(&uid);
    let sandbox = env.status_file(&uid)["sandbox_pid"].as_i64().unwrap() as i32;
    for name in ["server", "client"] {
        let pid = pids[name].as_i64().unwrap() as i32;
        for ns in ["net", "ipc", "uts"] {
            assert_eq!(
                ns_inode(pid, ns),
                ns_inode(sandbox, ns),
                "{name} {ns} shared with sandbox"
            );
        }
        for ns in ["pid", "mnt"] {
            assert_ne!(ns_inode(pid, ns), ns_inode(sandbox, ns), "{name} {ns} own");
        }
        assert!(nspid_is_one(pid as i64), "{name} is PID 1 in its namespace");
        assert!(
            !cgroup_of(&env, &uid, name).is_empty(),
            "{name} has a cgroup under the pod's"
        );
    }
    let (server, client) = (
        pids["server"].as_i64().unwrap() as i32,
        pids["client"].as_i64().unwrap() as i32,
    );
    assert_ne!(ns_inode(server, "pid"), ns_inode(client, "pid"));
    // Same hostname, loopback between containers, shared /dev/shm.
    let host_a = env.ok(&["pod", "exec", "shared", "-c", "server", "--", "hostname"]);
    let host_b = env.ok(&["pod", "exec", "shared", "-c", "client", "--", "hostname"]);
    assert_eq!(host_a.trim(), "shared");
    assert_eq!(host_a, host_b);
    let mut page = String::new();
    wait_until(
        "server to answer on 127.0.0.1",
        Duration::from_secs(10),
        || {
            let out = env.peapod(&[
                "pod",
                "exec",
                "shared",
                "-c",
                "client",
                "--",
                "wget",
                "-q",
                "-O",
                "-",
                "http://127.0.0.1:8080/first",
            ]);
            page = String::from_utf8_lossy(&out.stdout).to_string();
            out.status.success()
        },
    );
    assert_eq!(page.trim(), "first-done");
    let shm = env.ok(&[
        "pod",
        "exec",
        "shared",
        "-c",
        "client",
        "--",
        "cat",
        "/dev/shm/from-server",
    ]);
    assert_eq!(shm.trim(), "shm-data");
    // Order: each step saw exactly what the steps before it left in the volume.
    let marks = env.pod_dir(&uid).join("volumes/marks");
    let seen = |f: &str| {
        let text = std::fs::read_to_string(marks.join(f)).unwrap();
        text.split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(
        seen("seen-by-first").is_empty(),
        "first ran before anything"
    );
    assert_eq!(seen("seen-by-second"), ["first", "seen-by-first"]);
    for app in ["seen-by-server", "seen-by-client"] {
        let s = seen(app);
        assert!(
            s.contains(&"first".to_string()) && s.contains(&"second".to_string()),
            "{app}: {s:?}"
        );
    }
    env.ok(&["pod", "stop", "shared"]);
    let done = env.wait_phase("shared", "Failed", true);
    assert_eq!(
        PodEnv::container(&done, "first")["state"]["terminated"]["exitCode"],
        0
    );
    for name in ["server", "client"] {
        assert!(
            cgroup_of(&env, &uid, name).is_empty(),
            "{name} cgroup removed at stop"
        );
    }
    env.ok(&["pod", "rm", "shared"]);
    assert!(pod_cgroup_dirs(&env, &uid).is_empty());
    env.finish();
}

#[test]
fn failing_init_container_with_never_fails_the_pod() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: badinit }
spec:
  restartPolicy: Never
  initContainers:
    - { name: ok, image: busybox, command: ["true"] }
    - { name: broken, image: busybox, command: ["sh", "-c", "echo failing >&2; exit 3"] }
  containers:
    - { name: app, image: busybox, command: ["sh", "-c", "echo app ran"] }
"#;
    let pod = env.run("badinit", yaml);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let done = env.wait_phase("badinit", "Failed", true);
    let broken = PodEnv::container(&done, "broken");
    assert_eq!(broken["state"]["terminated"]["exitCode"], 3);
    assert_eq!(broken["state"]["terminated"]["reason"], "Error");
    assert_eq!(env.logs("badinit", "broken"), "failing\n");
    assert!(
        PodEnv::container(&done, "app")["state"]["waiting"].is_object(),
        "{done}"
    );
    assert!(
        !env.pod_dir(&uid).join("logs/app").exists(),
        "app container never started"
    );
    env.finish();
}

#[test]
fn restart_policy_back_off_and_empty_dir_survive_restarts() {
    let env = PodEnv::new();
    // Fails twice, then succeeds; the count lives in an emptyDir.
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: flaky }
spec:
  restartPolicy: OnFailure
  volumes: [{ name: state, emptyDir: {} }]
  containers:
    - name: app
      image: busybox
      command: ["sh", "-c", "n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n; echo run $n; [ $n -ge 3 ]"]
      volumeMounts: [{ name: state, mountPath: /state }]
"#;
    let started = Instant::now();
    env.run("flaky", yaml);
    let done = env.wait_phase("flaky", "Succeeded", true);
    let elapsed = started.elapsed();
    let app = PodEnv::container(&done, "app");
    assert_eq!(app["restartCount"], 2);
    assert_eq!(app["state"]["terminated"]["exitCode"], 0);
    assert_eq!(app["lastState"]["terminated"]["exitCode"], 1);
    // As with the kubelet: the first restart at once, the second after the
    // 500 ms base back-off.
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert_eq!(env.logs("flaky", "app"), "run 3\n");
    assert_eq!(
        env.ok(&["pod", "logs", "flaky", "-c", "app", "--previous"]),
        "run 2\n"
    );
    env.finish();
}

#[test]
fn stop_honours_the_grace_period() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: graceful }
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: polite
      image: busybox
      command: ["sh", "-c", "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]
    - name: stubborn
      image: busybox
      command: ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
"#;
    env.run("graceful", yaml);
    env.wait_phase("graceful", "Running", false);
    let started = Instant::now();
    env.ok(&["pod", "stop", "graceful"]);
    let elapsed = started.elapsed();
    let done = env.inspect("graceful");
    let polite = PodEnv::container(&done, "polite");
    let stubborn = PodEnv::container(&done, "stubborn");
    assert_eq!(polite["state"]["terminated"]["exitCode"], 0);
    assert_eq!(
        stubborn["state"]["terminated"]["exitCode"], 137,
        "killed after the grace period"
    );
    // As the kubelet's: never less than 2 s between SIGTERM and SIGKILL.
    assert!(
        elapsed >= Duration::from_secs(2),
        "SIGKILL came less than 2 s after SIGTERM: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(env.logs("graceful", "polite").contains("bye"));
    env.finish();
}

#[test]
fn a_pod_stopped_without_its_supervisor_while_a_sidecar_drains_succeeded() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: drain }
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 4
  initContainers:
    - { name: side, image: busybox, restartPolicy: Always, command: ["sh", "-c", "trap 'sleep 30' TERM; while true; do sleep 0.1; done"] }
  containers:
    - { name: app, image: busybox, command: ["true"] }
"#;
    let pod = env.run("drain", yaml);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    // The app is done and the sidecar is stopping: the pod is still Running.
    wait_until("the app to end", Duration::from_secs(10), || {
        let status = env.inspect("drain");
        PodEnv::container(&status, "app")["state"]["terminated"]["exitCode"] == 0
            && status["status"]["phase"] == "Running"
    });
    let supervisor = env.status_file(&uid)["supervisor_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(Pid::from_raw(supervisor), Signal::SIGKILL).unwrap();
    wait_until("supervisor gone", Duration::from_secs(5), || {
        !is_alive(supervisor)
    });
    env.ok(&["pod", "stop", "drain"]);
    let done = env.inspect("drain");
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    env.ok(&["pod", "rm", "drain"]);
    env.finish();
}

#[test]
fn killed_supervisor_leaves_containers_running_and_stop_rm_still_work() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: orphan }
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - { name: app, image: busybox, command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"] }
"#;
    let pod = env.run("orphan", yaml);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    env.wait_phase("orphan", "Running", false);
    let status = env.status_file(&uid);
    let supervisor = status["supervisor_pid"].as_i64().unwrap() as i32;
    let app = env.pids(&uid)["app"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("supervisor gone", Duration::from_secs(5), || {
        !is_alive(supervisor)
    });
    assert!(is_alive(app), "container died with its supervisor");
    let ps = env.ok(&["pod", "ps"]);
    assert!(ps.contains("orphan"), "{ps}");
    env.ok(&["pod", "stop", "orphan"]);
    wait_until("container stopped", Duration::from_secs(5), || {
        !is_alive(app)
    });
    env.ok(&["pod", "rm", "orphan"]);
    assert!(pod_cgroup_dirs(&env, &uid).is_empty());
    env.finish();
}

#[test]
fn adopted_pod_keeps_its_containers_restarts_lost_ones_and_stops_gracefully() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: adoptee }
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: app
      image: busybox
      command: ["sh", "-c", "trap 'echo bye; exit 0' TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"]
    - { name: other, image: busybox, command: ["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"] }
    - { name: gone, image: busybox, command: ["sleep", "3600"] }
"#;
    let pod = env.run("adoptee", yaml);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    env.wait_phase("adoptee", "Running", false);
    let old = env.status_file(&uid)["supervisor_pid"].as_i64().unwrap() as i32;
    let app = env.pids(&uid)["app"].as_i64().unwrap() as i32;
    let other = env.pids(&uid)["other"].as_i64().unwrap() as i32;
    let gone = env.pids(&uid)["gone"].as_i64().unwrap() as i32;
    let started_at =
        PodEnv::container(&env.inspect("adoptee"), "app")["state"]["running"]["startedAt"].clone();
    nix::sys::signal::kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    wait_until("supervisor gone", Duration::from_secs(5), || !is_alive(old));
    // A container that ends while no supervisor runs: nobody saw its exit.
    nix::sys::signal::kill(Pid::from_raw(gone), Signal::SIGKILL).unwrap();
    wait_until("gone ended", Duration::from_secs(5), || !is_alive(gone));

    let out = env.ok(&["pod", "adopt", "adoptee"]);
    assert!(out.contains("pod/adoptee adopted"), "{out}");
    let new = env.status_file(&uid)["supervisor_pid"].as_i64().unwrap() as i32;
    assert!(new != old && is_alive(new), "supervisor {old} -> {new}");
    // Only one supervisor per pod.
    let again = env.peapod(&["pod", "adopt", "adoptee"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is running"));
    // The containers were kept, not restarted, and their output still reaches the same log.
    let status = env.inspect("adoptee");
    assert_eq!(
        PodEnv::container(&status, "app")["state"]["running"]["startedAt"],
        started_at
    );
    assert_eq!(PodEnv::container(&status, "app")["restartCount"], 0);
    assert_eq!(env.pids(&uid)["app"].as_i64().unwrap() as i32, app);
    let ticks = |text: &str| text.lines().filter(|l| l.starts_with("tick ")).count();
    let seen = ticks(&env.logs("adoptee", "app"));
    wait_until(
        "more app output after adoption",
        Duration::from_secs(10),
        || ticks(&env.logs("adoptee", "app")) > seen + 5,
    );
    let runs = std::fs::read_dir(env.pod_dir(&uid).join("logs").join("app"))
        .unwrap()
        .count();
    assert_eq!(runs, 1, "adoption must not start a new run of app");

    let mut status = Value::Null;
    let restarted = |status: &mut Value, name: &str| {
        *status = env.inspect("adoptee");
        let c = PodEnv::container(status, name);
        c["restartCount"] == 1 && c["state"]["running"].is_object()
    };
    // The container that ended unseen is restarted; its exit status is unknown.
    wait_until("gone restarted", Duration::from_secs(10), || {
        restarted(&mut status, "gone")
    });
    let last = &PodEnv::container(&status, "gone")["lastState"]["terminated"];
    assert_eq!(last["reason"], "ContainerStatusUnknown", "{status}");
    assert_eq!(last["exitCode"], 137);
    // A kept container that ends under the new supervisor is restarted with
    // its own exit code, though it is not the supervisor's child.
    nix::sys::signal::kill(Pid::from_raw(other), Signal::SIGTERM).unwrap();
    wait_until("other restarted", Duration::from_secs(10), || {
        restarted(&mut status, "other")
    });
    let last = &PodEnv::container(&status, "other")["lastState"]["terminated"];
    assert_eq!(last["reason"], "Error", "{status}");
    assert_eq!(last["exitCode"], 7, "{status}");

    // The new supervisor stops the pod: TERM reaches the kept container.
    env.ok(&["pod", "stop", "adoptee"]);
    env.wait_phase("adoptee", "Failed", true);
    assert!(!is_alive(app) && !is_alive(new));
    assert!(env.logs("adoptee", "app").lines().any(|l| l == "bye"));
    env.ok(&["pod", "rm", "adoptee"]);
    env.finish();
}

#[test]
fn bad_manifests_are_named_and_create_nothing() {
    let env = PodEnv::new();
    let cases = [
        ("malformed", "apiVersion: v1\nkind: Pod\nmetadata: { name: x\n", "malformed.yaml"),
        ("noimage", "apiVersion: v1\nkind: Pod\nmetadata: { name: x }\nspec:\n  containers: [{ name: a }]\n", "spec.containers[0].image"),
        // An image not in the store is pulled by the pod (integration/pod_pull.rs).
        ("badpolicy", "apiVersion: v1\nkind: Pod\nmetadata: { name: x }\nspec:\n  containers: [{ name: a, image: busybox, imagePullPolicy: Sometimes }]\n", "spec.containers[0].imagePullPolicy"),
        ("dup", "apiVersion: v1\nkind: Pod\nmetadata: { name: x }\nspec:\n  initContainers: [{ name: a, image: busybox }]\n  containers: [{ name: a, image: busybox }]\n", "duplicate"),
        ("badname", "apiVersion: v1\nkind: Pod\nmetadata: { name: Bad_Name }\nspec:\n  containers: [{ name: a, image: busybox }]\n", "metadata.name"),
        ("grace", "apiVersion: v1\nkind: Pod\nmetadata: { name: x }\nspec:\n  terminationGracePeriodSeconds: -1\n  containers: [{ name: a, image: busybox }]\n", "terminationGracePeriodSeconds"),
        ("volume", "apiVersion: v1\nkind: Pod\nmetadata: { name: x }\nspec:\n  volumes: [{ name: v, configMap: { name: c } }]\n  containers: [{ name: a, image: busybox }]\n", "spec.volumes[0]"),
    ];
    for (file, yaml, expected) in cases {
        let path = env.manifest(file, yaml);
        let out = env.peapod(&["pod", "run", "-d", "-f", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{file}: {stderr:?} lacks {expected:?}"
        );
        assert!(
            !env.root.path().join("pods").exists()
                || std::fs::read_dir(env.root.path().join("pods"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{file} left a pod folder"
        );
    }
    env.finish();
}
