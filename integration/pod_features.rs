//! Pod features on a real kernel: sidecars, a shared pid namespace, security
//! contexts, resource limits in cgroups, volumes, restarts and logs, exec with a
//! tty, and the errors of `pod rm` and `pod inspect`.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::pod::PodEnv;

const BUSYBOX_SLEEP: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

fn uid_of(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap().to_string()
}

/// The folders `<hierarchy>/<prefix>/<uid>[/<leaf>]` that exist now, in every hierarchy.
fn pod_cgroups(env: &PodEnv, uid: &str, leaf: Option<&str>) -> Vec<PathBuf> {
    crate::pod::pod_cgroup_dirs(env, uid)
        .into_iter()
        .map(|dir| leaf.map_or(dir.clone(), |l| dir.join(l)))
        .filter(|p| p.exists())
        .collect()
}

/// `pod rm` (forced if asked), then nothing of the pod's cgroups may be left.
fn remove_pod(env: &PodEnv, name: &str, uid: &str, force: bool) {
    if force {
        env.ok(&["pod", "rm", "--force", name]);
    } else {
        env.ok(&["pod", "rm", name]);
    }
    let left = pod_cgroups(env, uid, None);
    assert!(left.is_empty(), "cgroups of pod {name} left: {left:?}");
}

/// The value of a `Key:\tvalue` line of a /proc/<pid>/status text.
fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

fn hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim(), 16).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// A child process of the test, killed (by its own pid) if the test gives up on
/// it. Its stdin is a pipe held open until it ends: at end of input, `script`
/// would type an EOF character into the terminal.
struct Spawned {
    child: Child,
    _stdin: Option<ChildStdin>,
    out: std::fs::File,
    err: std::fs::File,
}

impl Spawned {
    fn new(cmd: &mut Command) -> Self {
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .spawn()
            .expect("spawn");
        Spawned {
            _stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }

    /// Waits for the exit, failing the test after `deadline`.
    fn wait(mut self, what: &str, deadline: Duration) -> Output {
        let mut status = None;
        wait_until(what, deadline, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        let read = |f: &mut std::fs::File| {
            use std::io::{Read, Seek};
            let mut buf = Vec::new();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.read_to_end(&mut buf).unwrap();
            buf
        };
        Output {
            status: status.unwrap(),
            stdout: read(&mut self.out),
            stderr: read(&mut self.err),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn sidecar_starts_first_restarts_with_back_off_and_stops_after_the_app() {
    let env = PodEnv::new();
    // The app takes its time in its TERM trap: if the sidecar got TERM together
    // with the app, "sidecar-stopped" would come first.
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: sidecar }
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{ name: shared, emptyDir: {} }]
  initContainers:
    - name: side
      image: busybox
      restartPolicy: Always
      command: ["sh", "-c", "echo sidecar-started >> /shared/order; trap 'echo sidecar-stopped >> /shared/order; exit 0' TERM; while [ ! -e /shared/side-exit ]; do sleep 0.05; done; rm /shared/side-exit; echo sidecar-exited >> /shared/order; exit 0"]
      volumeMounts: [{ name: shared, mountPath: /shared }]
  containers:
    - name: app
      image: busybox
      command: ["sh", "-c", "echo app-started >> /shared/order; trap 'sleep 0.5; echo app-stopped >> /shared/order; exit 0' TERM; while true; do sleep 0.05; done"]
      volumeMounts: [{ name: shared, mountPath: /shared }]
"#;
    let pod = env.run("sidecar", yaml);
    let uid = uid_of(&pod);
    let volume = env.pod_dir(&uid).join("volumes/shared");
    let order = || -> Vec<String> {
        std::fs::read_to_string(volume.join("order"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    };
    env.wait_phase("sidecar", "Running", false);
    wait_until("app started", Duration::from_secs(10), || {
        order().contains(&"app-started".to_string())
    });
    assert_eq!(order(), ["sidecar-started", "app-started"], "start order");
    let running = |status: &Value, name: &str| {
        let c = PodEnv::container(status, name);
        c["state"]["running"].is_object() && c["ready"] == true
    };
    let mut status = Value::Null;
    wait_until(
        "sidecar and app running and ready",
        Duration::from_secs(10),
        || {
            status = env.inspect("sidecar");
            running(&status, "side") && running(&status, "app")
        },
    );
    let side = PodEnv::container(&status, "side");
    assert_eq!(side["started"], true, "{side}");
    assert_eq!(side["restartCount"], 0, "{side}");
    assert!(
        status["status"]["initContainerStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "side"),
        "the sidecar is reported with the init containers: {status}"
    );
    assert!(!pod_cgroups(&env, &uid, Some("side")).is_empty());

    // The sidecar exits (0) twice: restarted each time, the app and pod untouched.
    for round in 1..=2u64 {
        let asked = Instant::now();
        std::fs::write(volume.join("side-exit"), "").unwrap();
        wait_until(
            &format!("sidecar restart {round}"),
            Duration::from_secs(20),
            || {
                status = env.inspect("sidecar");
                assert_eq!(status["status"]["phase"], "Running", "{status}");
                let side = PodEnv::container(&status, "side");
                side["restartCount"].as_u64() == Some(round) && running(&status, "side")
            },
        );
        if round == 2 {
            // 500 ms back-off base: the second restart at least waits that long.
            assert!(
                asked.elapsed() >= Duration::from_millis(500),
                "no back-off before restart {round}: {:?}",
                asked.elapsed()
            );
        }
        let side = PodEnv::container(&status, "side");
        assert_eq!(side["lastState"]["terminated"]["exitCode"], 0, "{side}");
        let app = PodEnv::container(&status, "app");
        assert_eq!(app["restartCount"], 0, "{app}");
        assert!(app["state"]["running"].is_object(), "{app}");
    }
    let starts = order().iter().filter(|l| *l == "sidecar-started").count();
    assert_eq!(starts, 3, "{:?}", order());

    env.ok(&["pod", "stop", "sidecar"]);
    let done = env.inspect("sidecar");
    for name in ["side", "app"] {
        let c = PodEnv::container(&done, name);
        assert_eq!(c["state"]["terminated"]["exitCode"], 0, "{name}: {c}");
    }
    let lines = order();
    let at = |what: &str| {
        lines
            .iter()
            .position(|l| l == what)
            .unwrap_or_else(|| panic!("no {what} in {lines:?}"))
    };
    assert!(
        at("app-stopped") < at("sidecar-stopped"),
        "the sidecar was stopped before the app had exited: {lines:?}"
    );
    remove_pod(&env, "sidecar", &uid, false);
    env.finish();
}

#[test]
fn share_process_namespace_shows_other_containers_and_pause_is_pid_one() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: sharepid }
spec:
  shareProcessNamespace: true
  terminationGracePeriodSeconds: 2
  containers:
    - { name: one, image: busybox, command: ["sleep", "3001"] }
    - { name: two, image: busybox, command: ["sleep", "3002"] }
"#;
    let pod = env.run("sharepid", yaml);
    let uid = uid_of(&pod);
    env.wait_phase("sharepid", "Running", false);
    wait_until("both containers running", Duration::from_secs(10), || {
        let p = env.pids(&uid);
        p["one"].is_i64() && p["two"].is_i64()
    });
    let sandbox = env.status_file(&uid)["sandbox_pid"].as_i64().unwrap() as i32;
    let pids = env.pids(&uid);
    for name in ["one", "two"] {
        let pid = pids[name].as_i64().unwrap() as i32;
        assert_eq!(
            ns_inode(pid, "pid"),
            ns_inode(sandbox, "pid"),
            "{name} is in the sandbox's pid namespace"
        );
        assert_ne!(ns_inode(pid, "mnt"), ns_inode(sandbox, "mnt"));
    }
    let ps = env.exec_ok("sharepid", "one", &["ps", "-o", "pid,args"]);
    assert!(ps.contains("sleep 3002"), "one does not see two: {ps}");
    assert!(ps.contains("/pause"), "one does not see the pause: {ps}");
    let ps = env.exec_ok("sharepid", "two", &["ps", "-o", "pid,args"]);
    assert!(ps.contains("sleep 3001"), "two does not see one: {ps}");
    for name in ["one", "two"] {
        let cmdline = env.exec_ok("sharepid", name, &["cat", "/proc/1/cmdline"]);
        assert_eq!(
            cmdline.trim_end_matches('\0'),
            "/pause",
            "PID 1 seen from {name}"
        );
    }
    env.ok(&["pod", "stop", "sharepid"]);
    remove_pod(&env, "sharepid", &uid, false);
    env.finish();
}

#[test]
fn security_context_user_capabilities_read_only_root_and_no_new_privs() {
    let env = PodEnv::new();
    let report = "id -u; id -g; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; if touch /probe 2>/dev/null; then echo root-writable; else echo root-read-only; fi";
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: secure }}
spec:
  restartPolicy: Never
  containers:
    - name: plain
      image: busybox
      command: ["sh", "-c", "{report}"]
    - name: user
      image: busybox
      command: ["sh", "-c", "{report}"]
      securityContext: {{ runAsUser: 1234, runAsGroup: 2345 }}
    - name: caps
      image: busybox
      command: ["sh", "-c", "{report}"]
      securityContext:
        capabilities: {{ drop: ["ALL"], add: ["NET_BIND_SERVICE"] }}
    - name: readonly
      image: busybox
      command: ["sh", "-c", "{report}"]
      securityContext: {{ readOnlyRootFilesystem: true }}
    - name: nonewprivs
      image: busybox
      command: ["sh", "-c", "{report}"]
      securityContext: {{ allowPrivilegeEscalation: false }}
    - name: devices
      image: busybox
      command: ["sh", "-c", "grep SigIgn /proc/self/status; mknod /tmp/loop b 7 0; if (exec 3</tmp/loop) 2>/dev/null; then echo loop-opened; else echo loop-denied; fi; echo x > /dev/null && echo null-writable"]
"#
    );
    let pod = env.run("secure", &yaml);
    let uid = uid_of(&pod);
    let done = env.wait_phase("secure", "Succeeded", true);
    let report_of = |name: &str| -> (String, String, u64, String, String) {
        let c = PodEnv::container(&done, name);
        assert_eq!(c["state"]["terminated"]["exitCode"], 0, "{name}: {c}");
        let logs = env.logs("secure", name);
        let lines: Vec<&str> = logs.lines().collect();
        assert_eq!(lines.len(), 5, "{name}: {logs}");
        (
            lines[0].to_string(),
            lines[1].to_string(),
            hex(&status_field(lines[2], "CapEff")),
            status_field(lines[3], "NoNewPrivs"),
            lines[4].to_string(),
        )
    };
    let default_bits: u64 = [0u32, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]
        .iter()
        .map(|b| 1u64 << b)
        .sum();

    let (u, g, caps, nnp, root) = report_of("plain");
    assert_eq!((u.as_str(), g.as_str()), ("0", "0"));
    assert_eq!(caps, default_bits, "default capabilities: {caps:#x}");
    assert_eq!(nnp, "0", "allowPrivilegeEscalation defaults to true");
    assert_eq!(root, "root-writable");

    let (u, g, caps, _, _) = report_of("user");
    assert_eq!((u.as_str(), g.as_str()), ("1234", "2345"));
    assert_eq!(caps, 0, "a non-root user has no effective capabilities");

    let (_, _, caps, _, _) = report_of("caps");
    assert_eq!(caps, 1 << 10, "drop ALL + add NET_BIND_SERVICE: {caps:#x}");

    let (_, _, _, _, root) = report_of("readonly");
    assert_eq!(root, "root-read-only");

    let (_, _, caps, nnp, _) = report_of("nonewprivs");
    assert_eq!(nnp, "1");
    assert_eq!(caps, default_bits);

    // Devices: only the default ones (a device node made with CAP_MKNOD
    // cannot be opened), and SIGPIPE is not inherited ignored from peapod.
    let c = PodEnv::container(&done, "devices");
    assert_eq!(c["state"]["terminated"]["exitCode"], 0, "devices: {c}");
    let logs = env.logs("secure", "devices");
    let ignored = hex(&status_field(&logs, "SigIgn"));
    assert_eq!(ignored & (1 << 12), 0, "SIGPIPE ignored: {ignored:#x}");
    assert!(logs.contains("loop-denied"), "{logs}");
    assert!(logs.contains("null-writable"), "{logs}");

    remove_pod(&env, "secure", &uid, false);
    env.finish();
}

#[test]
fn run_as_non_root_refuses_an_image_that_runs_as_root() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: nonroot }
spec:
  restartPolicy: Never
  securityContext: { runAsNonRoot: true }
  containers:
    - { name: root, image: busybox, command: ["sh", "-c", "echo ran-as-$(id -u)"] }
    - name: user
      image: busybox
      command: ["sh", "-c", "echo ran-as-$(id -u)"]
      securityContext: { runAsUser: 1000 }
"#;
    let pod = env.run("nonroot", yaml);
    let uid = uid_of(&pod);
    // busybox has no USER: it would run as root, so it is not created. It
    // waits, as with the kubelet, and the pod stays Pending.
    let mut status = Value::Null;
    wait_until(
        "user to end and root to wait",
        Duration::from_secs(20),
        || {
            status = env.inspect("nonroot");
            PodEnv::container(&status, "user")["state"]["terminated"]["exitCode"] == 0
                && PodEnv::container(&status, "root")["state"]["waiting"]["reason"]
                    == "CreateContainerConfigError"
        },
    );
    let root = PodEnv::container(&status, "root");
    let message = root["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("runAsNonRoot and image will run as root"),
        "{message}"
    );
    assert_eq!(root["restartCount"], 0, "{status}");
    assert_eq!(status["status"]["phase"], "Pending", "{status}");
    // It never ran: it has no log.
    let logs = env.peapod(&["pod", "logs", "nonroot", "-c", "root"]);
    assert!(!logs.status.success());
    assert!(String::from_utf8_lossy(&logs.stderr).contains("has not run yet"));
    assert!(env.logs("nonroot", "user").contains("ran-as-1000"));
    env.ok(&["pod", "stop", "nonroot"]);
    remove_pod(&env, "nonroot", &uid, false);
    env.finish();
}

#[test]
fn privileged_container_gets_every_capability_the_host_can_grant() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: privileged }
spec:
  restartPolicy: Never
  containers:
    - name: app
      image: busybox
      command: ["sh", "-c", "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; touch /probe && echo root-writable; grep ' /sys ' /proc/mounts; if [ -c /dev/kmsg ] && (exec 3</dev/kmsg) 2>/dev/null; then echo host-devices; fi"]
      securityContext: { privileged: true }
"#;
    let pod = env.run("privileged", yaml);
    let uid = uid_of(&pod);
    wait_until("the pod to finish", Duration::from_secs(30), || {
        env.status_file(&uid)["finished"] == true
    });
    let done = env.inspect("privileged");
    let app = PodEnv::container(&done, "app");
    assert_eq!(app["state"]["terminated"]["exitCode"], 0, "{app}");
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let logs = env.logs("privileged", "app");
    let caps = hex(&status_field(&logs, "CapEff"));
    // Every capability this host can grant (its bounding set lacks SYS_RESOURCE).
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = hex(&status_field(&host, "CapBnd"));
    assert_eq!(
        caps, bounding,
        "privileged: {caps:#x} vs host {bounding:#x}"
    );
    assert_ne!(caps & (1 << 21), 0, "CAP_SYS_ADMIN");
    assert_eq!(status_field(&logs, "NoNewPrivs"), "0");
    assert!(logs.contains("root-writable"), "{logs}");
    // As with containerd: the host's devices, and a writable /sys.
    assert!(logs.contains("host-devices"), "{logs}");
    assert!(logs.contains("sysfs /sys sysfs rw,"), "{logs}");
    remove_pod(&env, "privileged", &uid, false);
    env.finish();
}

#[test]
fn resource_limits_reach_the_container_cgroup() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: limited }}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: app
      image: busybox
      command: ["sh", "-c", "{BUSYBOX_SLEEP}"]
      resources:
        limits: {{ cpu: 250m, memory: 64Mi }}
"#
    );
    let pod = env.run("limited", &yaml);
    let uid = uid_of(&pod);
    env.wait_phase("limited", "Running", false);
    wait_until("app running", Duration::from_secs(10), || {
        env.pids(&uid)["app"].is_i64()
    });
    let pid = env.pids(&uid)["app"].as_i64().unwrap();
    let dirs = pod_cgroups(&env, &uid, Some("app"));
    assert!(!dirs.is_empty(), "no cgroup for app");
    let read = |dir: &Path, file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
            .trim()
            .to_string()
    };
    let with = |file: &str| dirs.iter().find(|d| d.join(file).exists()).cloned();
    // Guaranteed (limits only: the requests are the limits): kubepods/pod<uid>.
    let leaf = format!("/{}/kubepods/pod{uid}/app", env.prefix);
    let procs = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    if let Some(memory) = with("memory.limit_in_bytes") {
        // cgroup v1
        assert_eq!(read(&memory, "memory.limit_in_bytes"), "67108864");
        let cpu = with("cpu.cfs_quota_us").expect("a v1 cpu hierarchy");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "25000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
        // Requests default to the limits: 250m is 256 shares.
        assert_eq!(read(&cpu, "cpu.shares"), "256");
        for controller in ["memory", "cpu"] {
            assert!(
                procs.lines().any(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_, ctrls, path) = (f.next(), f.next().unwrap(), f.next().unwrap());
                    ctrls.split(',').any(|c| c == controller) && path == leaf
                }),
                "app is not in {leaf} for {controller}: {procs}"
            );
        }
    } else {
        let dir = with("memory.max").expect("a v1 or v2 memory cgroup");
        assert_eq!(read(&dir, "memory.max"), "67108864");
        assert_eq!(read(&dir, "cpu.max"), "25000 100000");
        assert!(procs.contains(&format!("0::{leaf}")), "{procs}");
    }
    env.ok(&["pod", "stop", "limited"]);
    remove_pod(&env, "limited", &uid, false);
    env.finish();
}

#[test]
fn volumes_memory_empty_dir_read_only_host_path_and_directory_or_create() {
    let env = PodEnv::new();
    let host = env.work.path().join("host");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("data.txt"), "from-the-host\n").unwrap();
    std::fs::write(host.join("sub/inner.txt"), "inner-file\n").unwrap();
    let created = env.work.path().join("made/by/peapod");
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: vols }}
spec:
  terminationGracePeriodSeconds: 2
  volumes:
    - {{ name: cache, emptyDir: {{ medium: Memory }} }}
    - {{ name: host, hostPath: {{ path: "{host}", type: Directory }} }}
    - {{ name: made, hostPath: {{ path: "{created}", type: DirectoryOrCreate }} }}
  containers:
    - name: a
      image: busybox
      command: ["sh", "-c", "echo hello-from-a > /cache/hello; {BUSYBOX_SLEEP}"]
      volumeMounts:
        - {{ name: cache, mountPath: /cache }}
        - {{ name: host, mountPath: /host, readOnly: true }}
        - {{ name: host, mountPath: /inner, subPath: sub, readOnly: true }}
        - {{ name: made, mountPath: /made }}
    - name: b
      image: busybox
      command: ["sh", "-c", "{BUSYBOX_SLEEP}"]
      volumeMounts: [{{ name: cache, mountPath: /cache }}]
"#,
        host = host.display(),
        created = created.display(),
    );
    let pod = env.run("vols", &yaml);
    let uid = uid_of(&pod);
    env.wait_phase("vols", "Running", false);
    assert!(created.is_dir(), "DirectoryOrCreate made no host folder");
    wait_until("a wrote to the cache", Duration::from_secs(10), || {
        env.exec("vols", "b", &["cat", "/cache/hello"]).stdout == b"hello-from-a\n"
    });
    for name in ["a", "b"] {
        let mounts = env.exec_ok("vols", name, &["cat", "/proc/mounts"]);
        let cache = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("/cache"))
            .unwrap_or_else(|| panic!("{name}: no /cache mount: {mounts}"));
        assert_eq!(
            cache.split_whitespace().nth(2),
            Some("tmpfs"),
            "{name}: {cache}"
        );
    }
    // The memory emptyDir is one tmpfs for the pod, written by b and read by a too.
    env.exec_ok("vols", "b", &["sh", "-c", "echo from-b > /cache/back"]);
    assert_eq!(
        env.exec_ok("vols", "a", &["cat", "/cache/back"]),
        "from-b\n"
    );

    // hostPath, read-only: reads work, writes fail and reach nothing.
    assert_eq!(
        env.exec_ok("vols", "a", &["cat", "/host/data.txt"]),
        "from-the-host\n"
    );
    let write = env.exec("vols", "a", &["touch", "/host/new"]);
    assert!(!write.status.success(), "wrote to a read-only hostPath");
    assert!(!host.join("new").exists());
    // subPath of a hostPath: only the subfolder, read-only too.
    assert_eq!(
        env.exec_ok("vols", "a", &["cat", "/inner/inner.txt"]),
        "inner-file\n"
    );
    let listing = env.exec_ok("vols", "a", &["ls", "/inner"]);
    assert_eq!(listing.trim(), "inner.txt");
    assert!(!env
        .exec("vols", "a", &["touch", "/inner/new"])
        .status
        .success());

    // DirectoryOrCreate: the folder made on the host is the one mounted, read-write.
    env.exec_ok("vols", "a", &["sh", "-c", "echo made > /made/file"]);
    assert_eq!(
        std::fs::read_to_string(created.join("file")).unwrap(),
        "made\n"
    );

    env.ok(&["pod", "stop", "vols"]);
    remove_pod(&env, "vols", &uid, false);
    assert_eq!(
        std::fs::read_to_string(host.join("data.txt")).unwrap(),
        "from-the-host\n",
        "the host's files survive the pod"
    );
    assert!(created.join("file").is_file());
    env.finish();
}

#[test]
fn sub_path_of_an_empty_dir_is_created_and_shared() {
    let env = PodEnv::new();
    // As with the kubelet, a subPath that does not exist yet is created.
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: subpath }}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{{ name: data, emptyDir: {{}} }}]
  containers:
    - name: writer
      image: busybox
      command: ["sh", "-c", "echo through-sub-path > /sub/file; {BUSYBOX_SLEEP}"]
      volumeMounts: [{{ name: data, mountPath: /sub, subPath: deep/dir }}]
    - name: reader
      image: busybox
      command: ["sh", "-c", "{BUSYBOX_SLEEP}"]
      volumeMounts: [{{ name: data, mountPath: /data }}]
"#
    );
    let pod = env.run("subpath", &yaml);
    let uid = uid_of(&pod);
    env.wait_phase("subpath", "Running", false);
    let mut last = Value::Null;
    wait_until(
        "writer wrote through its subPath",
        Duration::from_secs(10),
        || {
            last = env.inspect("subpath");
            let w = PodEnv::container(&last, "writer");
            assert!(
                w["state"]["terminated"].is_null() && w["restartCount"] == 0,
                "writer failed: {w}"
            );
            env.exec("subpath", "reader", &["cat", "/data/deep/dir/file"])
                .stdout
                == b"through-sub-path\n"
        },
    );
    let listing = env.exec_ok("subpath", "writer", &["ls", "/sub"]);
    assert_eq!(listing.trim(), "file", "only the subfolder is mounted");
    env.ok(&["pod", "stop", "subpath"]);
    remove_pod(&env, "subpath", &uid, false);
    env.finish();
}

#[test]
fn restart_always_restarts_exit_zero_keeps_previous_logs_and_follow_returns() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: always }
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 2
  volumes: [{ name: state, emptyDir: {} }]
  containers:
    - name: app
      image: busybox
      command: ["sh", "-c", "n=$(cat /state/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /state/n; echo run $n"]
      volumeMounts: [{ name: state, mountPath: /state }]
"#;
    let pod = env.run("always", yaml);
    let uid = uid_of(&pod);
    let mut status = Value::Null;
    wait_until("two restarts", Duration::from_secs(30), || {
        status = env.inspect("always");
        PodEnv::container(&status, "app")["restartCount"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    });
    assert_eq!(status["status"]["phase"], "Running", "{status}");
    let app = PodEnv::container(&status, "app");
    assert_eq!(app["lastState"]["terminated"]["exitCode"], 0, "{app}");
    assert_eq!(
        app["lastState"]["terminated"]["reason"], "Completed",
        "{app}"
    );
    // The current and the previous run, read without a restart in between.
    let run_number = |text: &str| -> u64 {
        text.trim()
            .strip_prefix("run ")
            .unwrap_or_else(|| panic!("{text:?}"))
            .parse()
            .unwrap()
    };
    wait_until(
        "a consistent read of current and previous logs",
        Duration::from_secs(30),
        || {
            let current = env.logs("always", "app");
            let previous = env.ok(&["pod", "logs", "always", "-c", "app", "--previous"]);
            if current.is_empty() || env.logs("always", "app") != current {
                return false;
            }
            let n = run_number(&current);
            assert!(n >= 3, "{current}");
            assert_eq!(run_number(&previous), n - 1, "{previous} then {current}");
            true
        },
    );

    // `logs -f` follows a running container and returns when it has exited.
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: follow }
spec:
  restartPolicy: Never
  volumes: [{ name: gate, emptyDir: {} }]
  containers:
    - name: talker
      image: busybox
      command: ["sh", "-c", "echo first-line; while [ ! -e /gate/go ]; do sleep 0.05; done; echo last-line"]
      volumeMounts: [{ name: gate, mountPath: /gate }]
"#;
    let follow = env.run("follow", yaml);
    let follow_uid = uid_of(&follow);
    wait_until("talker's first line", Duration::from_secs(10), || {
        env.peapod(&["pod", "logs", "follow", "-c", "talker"])
            .stdout
            == b"first-line\n"
    });
    let tail = Spawned::new(&mut env.cmd(&["pod", "logs", "follow", "-c", "talker", "-f"]));
    let still = env.inspect("follow");
    assert!(
        PodEnv::container(&still, "talker")["state"]["running"].is_object(),
        "{still}"
    );
    std::fs::write(env.pod_dir(&follow_uid).join("volumes/gate/go"), "").unwrap();
    let out = tail.wait("logs -f to return", Duration::from_secs(15));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first-line\nlast-line\n"
    );
    let done = env.inspect("follow");
    assert_eq!(
        PodEnv::container(&done, "talker")["state"]["terminated"]["exitCode"],
        0,
        "{done}"
    );

    remove_pod(&env, "always", &uid, true);
    remove_pod(&env, "follow", &follow_uid, false);
    env.finish();
}

#[test]
fn exec_with_tty_gets_a_pseudo_terminal() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: term }}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - {{ name: shell, image: busybox, command: ["sh", "-c", "{BUSYBOX_SLEEP}"] }}
    - {{ name: console, image: busybox, tty: true, stdin: true, command: ["sh", "-c", "tty; echo on-the-console; exec sh"] }}
"#
    );
    let pod = env.run("term", &yaml);
    let uid = uid_of(&pod);
    env.wait_phase("term", "Running", false);
    // tty: true gives the container a terminal; its output is logged as
    // stdout, and a shell reading it keeps running.
    wait_until("the console's output", Duration::from_secs(10), || {
        env.logs("term", "console").contains("on-the-console")
    });
    let logs = env.logs("term", "console");
    assert!(logs.trim_start().starts_with("/dev/pts/"), "{logs:?}");
    let status = env.inspect("term");
    let console = PodEnv::container(&status, "console");
    assert!(console["state"]["running"].is_object(), "{console}");
    assert_eq!(console["restartCount"], 0, "{console}");
    let inner = format!(
        "{} --root {} pod exec term -c shell -t -- tty",
        peapod_bin(),
        env.root.path().display()
    );
    let mut script = Command::new("script");
    script
        .args(["-qfec", &inner, "/dev/null"])
        .env("PEAPOD_IMAGE_STORE", env.store.path());
    let out = Spawned::new(&mut script).wait("exec -t under script", Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.trim().starts_with("/dev/pts/"),
        "tty in the container: {text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without -t, no terminal.
    let plain = env.exec("term", "shell", &["tty"]);
    assert!(!plain.status.success());
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), "not a tty");
    env.ok(&["pod", "stop", "term"]);
    remove_pod(&env, "term", &uid, false);
    env.finish();
}

#[test]
fn rm_of_a_running_pod_and_inspect_of_an_unknown_pod_fail_clearly() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: busy }}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - {{ name: app, image: busybox, command: ["sh", "-c", "{BUSYBOX_SLEEP}"] }}
"#
    );
    let pod = env.run("busy", &yaml);
    let uid = uid_of(&pod);
    env.wait_phase("busy", "Running", false);
    let one_line_error = |args: &[&str], expected: &[&str]| {
        let out = env.peapod(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        for word in expected {
            assert!(stderr.contains(word), "{args:?}: {stderr:?} lacks {word:?}");
        }
    };
    one_line_error(&["pod", "rm", "busy"], &["busy", "running", "--force"]);
    let still = env.inspect("busy");
    assert_eq!(still["status"]["phase"], "Running", "rm touched the pod");
    assert!(env.pod_dir(&uid).is_dir());
    assert!(!pod_cgroups(&env, &uid, Some("app")).is_empty());
    one_line_error(&["pod", "inspect", "nosuchpod"], &["nosuchpod"]);
    remove_pod(&env, "busy", &uid, true);
    one_line_error(&["pod", "inspect", "busy"], &["busy"]);
    env.finish();
}

#[test]
fn a_container_killed_for_memory_is_oom_killed_and_a_clean_exit_is_not() {
    let env = PodEnv::new();
    // dd's 64 MiB buffer cannot fit in 16 MiB: the OOM killer ends it (no swap here).
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: hungry }
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
    - name: eater
      image: busybox
      command: ["sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=4"]
      resources:
        limits: { memory: 16Mi }
    - name: modest
      image: busybox
      command: ["sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=1M count=4"]
      resources:
        limits: { memory: 16Mi }
"#;
    env.run("hungry", yaml);
    let status = env.wait_phase("hungry", "Failed", true);
    let eater = &PodEnv::container(&status, "eater")["state"]["terminated"];
    assert_eq!(eater["reason"], "OOMKilled", "{status}");
    assert_eq!(eater["exitCode"], 137, "{status}");
    let modest = &PodEnv::container(&status, "modest")["state"]["terminated"];
    assert_eq!(modest["reason"], "Completed", "{status}");
    assert_eq!(modest["exitCode"], 0, "{status}");
    env.ok(&["pod", "rm", "hungry"]);
    env.finish();
}

/// The busybox image again, as `localhost/NAME:latest`, with `config` merged
/// into its image config: an OCI layout folder whose config and manifest
/// blobs are rewritten (and their digests with them).
fn busybox_variant(env: &PodEnv, name: &str, config: Value) -> String {
    use sha2::Digest as _;
    let dir = env.work.path().join(format!("image-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let tar = repo().join("bundles/images/busybox.tar");
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "untar busybox: {out:?}");
    let blobs = dir.join("blobs/sha256");
    let read = |digest: &str| read_json(&blobs.join(digest.trim_start_matches("sha256:")));
    let write = |doc: &Value| -> (String, usize) {
        let bytes = serde_json::to_vec(doc).unwrap();
        let hex = hex::encode(sha2::Sha256::digest(&bytes));
        std::fs::write(blobs.join(&hex), &bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut index = read_json(&dir.join("index.json"));
    let mut manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    let mut image = read(manifest["config"]["digest"].as_str().unwrap());
    for (key, value) in config.as_object().unwrap() {
        image["config"][key] = value.clone();
    }
    let (digest, size) = write(&image);
    manifest["config"]["digest"] = json!(digest);
    manifest["config"]["size"] = json!(size);
    let (digest, size) = write(&manifest);
    index["manifests"][0]["digest"] = json!(digest);
    index["manifests"][0]["size"] = json!(size);
    index["manifests"][0]["annotations"] =
        json!({ "org.opencontainers.image.ref.name": format!("localhost/{name}:latest") });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let reference = format!("localhost/{name}:latest");
    env.ok(&[
        "image",
        "import",
        dir.to_str().unwrap(),
        "--name",
        &reference,
    ]);
    reference
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A container starts with every signal at its default action, whatever the
/// process that ran `pod run` ignored (a shell's background job ignores SIGINT
/// and SIGQUIT): else a trap on the stop signal is a no-op and the stop ends
/// in SIGKILL. Found as a test that failed only under CI's shell.
#[test]
fn containers_do_not_inherit_ignored_signals_from_the_launcher() {
    use std::os::unix::process::CommandExt;
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: sigs }
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: busybox
      command: ["sh", "-c", "grep SigIgn /proc/self/status; sleep 1000"]
"#;
    let path = env.manifest("sigs", yaml);
    let mut cmd = env.cmd(&["pod", "run", "-d", "-f", path.to_str().unwrap()]);
    // SAFETY: signal(2) with SIG_IGN in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = output_of(&mut cmd);
    assert!(out.status.success(), "{out:?}");
    let uid = uid_of(&env.inspect("sigs"));
    // grep's own mask: busybox sh as PID 1 ignores SIGQUIT for itself, not
    // for its children; what it was given ignored it passes on.
    wait_until(
        "the container's signal mask",
        Duration::from_secs(10),
        || env.logs("sigs", "app").contains("SigIgn"),
    );
    let line = env.logs("sigs", "app");
    assert_eq!(line.trim(), "SigIgn:\t0000000000000000", "{line:?}");
    remove_pod(&env, "sigs", &uid, true);
    env.finish();
}

#[test]
fn the_image_stop_signal_stops_the_container() {
    let env = PodEnv::new();
    let image = busybox_variant(&env, "quitter", json!({ "StopSignal": "SIGQUIT" }));
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: quitter }}
spec:
  terminationGracePeriodSeconds: 10
  containers:
    - name: app
      image: {image}
      command: ["sh", "-c", "trap 'echo got-quit; exit 0' QUIT; trap 'echo got-term; exit 1' TERM; echo ready; while true; do sleep 0.1; done"]
"#
    );
    let pod = env.run("quitter", &yaml);
    let uid = uid_of(&pod);
    env.wait_phase("quitter", "Running", false);
    wait_until("the traps to be set", Duration::from_secs(10), || {
        env.logs("quitter", "app").contains("ready")
    });
    env.ok(&["pod", "stop", "quitter"]);
    wait_until("quitter to finish", Duration::from_secs(30), || {
        env.status_file(&uid)["finished"] == true
    });
    let done = env.inspect("quitter");
    assert_eq!(
        done["status"]["phase"],
        "Succeeded",
        "{done}\nlogs: {}\nevents: {}",
        env.logs("quitter", "app"),
        String::from_utf8_lossy(&env.peapod(&["pod", "describe", "quitter"]).stdout)
    );
    let app = PodEnv::container(&done, "app");
    assert_eq!(app["state"]["terminated"]["exitCode"], 0, "{app}");
    let logs = env.logs("quitter", "app");
    assert!(
        logs.contains("got-quit") && !logs.contains("got-term"),
        "{logs}"
    );
    remove_pod(&env, "quitter", &uid, false);
    env.finish();
}

#[test]
fn termination_messages_come_from_the_file_or_the_log_tail() {
    let env = PodEnv::new();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: { name: messages }
spec:
  restartPolicy: Never
  containers:
    - name: file
      image: busybox
      command: ["sh", "-c", "echo boom > /dev/termination-log; exit 2"]
    - name: tail
      image: busybox
      terminationMessagePolicy: FallbackToLogsOnError
      command: ["sh", "-c", "echo first; echo last words; exit 3"]
    - name: custom
      image: busybox
      terminationMessagePath: /tmp/why
      terminationMessagePolicy: FallbackToLogsOnError
      command: ["sh", "-c", "echo not this; printf 'file wins' > /tmp/why; exit 4"]
    - name: user
      image: busybox
      securityContext: { runAsUser: 1000 }
      command: ["sh", "-c", "echo from-uid-$(id -u) > /dev/termination-log"]
    - name: quiet
      image: busybox
      command: ["sh", "-c", "echo only a log line; exit 5"]
"#;
    let pod = env.run("messages", yaml);
    let uid = uid_of(&pod);
    let done = env.wait_phase("messages", "Failed", true);
    let message =
        |name: &str| PodEnv::container(&done, name)["state"]["terminated"]["message"].clone();
    assert_eq!(message("file"), "boom\n", "{done}");
    assert_eq!(message("tail"), "first\nlast words\n", "{done}");
    assert_eq!(message("custom"), "file wins", "{done}");
    assert_eq!(message("user"), "from-uid-1000\n", "{done}");
    // The default policy (File) never falls back to the log.
    assert!(message("quiet").is_null(), "{done}");
    remove_pod(&env, "messages", &uid, false);
    env.finish();
}
