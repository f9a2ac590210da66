//! Shared harness for the root-only integration tests: a private state folder,
//! bundles over the busybox rootfs that scripts/setup builds, and leftover checks.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The binary under test: this build's, or `PEAPOD_TEST_BIN` (to run today's
/// tests against an older build and see which of them it fails).
pub fn peapod_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("PEAPOD_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_peapod").into())
    })
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// These tests drive real namespaces and cgroups: without root they must fail, not pass.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "integration tests need root (real namespaces, cgroups and mounts); run scripts/test as root"
    );
}

pub fn busybox_rootfs() -> PathBuf {
    let path = repo().join("bundles/rootfs/busybox");
    assert!(
        path.join("bin/busybox").is_file(),
        "{} is missing: run scripts/setup first",
        path.display()
    );
    path
}

/// How much longer than on a host the deadlines are: `PEAPOD_TEST_DEADLINE_SCALE`
/// (a whole number, default 1), set by the scripts that run the tests in an
/// emulated guest (scripts/in-v2vm), where everything is 10-25x slower.
pub fn deadline_scale() -> u32 {
    static SCALE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SCALE.get_or_init(|| {
        std::env::var("PEAPOD_TEST_DEADLINE_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n >= 1)
            .unwrap_or(1)
    })
}

/// Polls `cond` until it holds, failing the test after `deadline` (times
/// `deadline_scale()`).
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = deadline * deadline_scale();
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(2);
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The mount points of every cgroup hierarchy that is really mounted here.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    peapod::sys::cgroup::Layout::host()
        .mount_points()
        .map(|m| m.to_path_buf())
        .collect()
}

/// Runs `cmd` to its exit and returns its output. Output goes through files,
/// not pipes: a detached container inherits peapod's stdio (as with runc), so a
/// pipe would stay open for the container's lifetime.
pub fn output_of(cmd: &mut Command) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .expect("run peapod");
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut buf = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut buf).unwrap();
        buf
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// One test's world: its own state folder, bundle folder and cgroup parent.
pub struct TestEnv {
    pub name: String,
    pub root: tempfile::TempDir,
    pub work: tempfile::TempDir,
    /// The cgroup parent for this test's containers (relative to each hierarchy).
    pub cgroup_parent: String,
}

impl TestEnv {
    pub fn new(name: &str) -> Self {
        require_root();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let unique = format!("{name}-{}-{seq}", std::process::id());
        TestEnv {
            name: unique.clone(),
            root: tempfile::Builder::new()
                .prefix("peapod-root-")
                .tempdir()
                .unwrap(),
            work: tempfile::Builder::new()
                .prefix("peapod-work-")
                .tempdir()
                .unwrap(),
            cgroup_parent: format!("peapod-it-{unique}"),
        }
    }

    /// A container id unique to this test.
    pub fn id(&self, short: &str) -> String {
        format!("{short}-{}", self.name)
    }

    pub fn cgroups_path(&self, id: &str) -> String {
        format!("/{}/{id}", self.cgroup_parent)
    }

    /// runc's default config over the busybox rootfs, with `args` as the process.
    pub fn config(&self, id: &str, args: &[&str]) -> Value {
        json!({
            "ociVersion": "1.0.2",
            "root": { "path": busybox_rootfs(), "readonly": true },
            "hostname": "peapod-test",
            "process": {
                "terminal": false,
                "user": { "uid": 0, "gid": 0 },
                "args": args,
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {
                    "bounding": default_caps(), "effective": default_caps(),
                    "permitted": default_caps()
                },
                "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
                "noNewPrivileges": true
            },
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
                { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                  "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
                { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                  "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
                { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                  "options": ["nosuid", "noexec", "nodev"] },
                { "destination": "/sys", "type": "sysfs", "source": "sysfs",
                  "options": ["nosuid", "noexec", "nodev", "ro"] },
                { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "nodev", "mode=1777"] }
            ],
            "linux": {
                "cgroupsPath": self.cgroups_path(id),
                "namespaces": [
                    { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                    { "type": "uts" }, { "type": "mount" }
                ],
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
                ],
                "readonlyPaths": [
                    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
                ]
            }
        })
    }

    /// Writes a bundle folder with `config` and returns its path.
    pub fn bundle(&self, id: &str, config: &Value) -> PathBuf {
        let dir = self.work.path().join(format!("bundle-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(config).unwrap(),
        )
        .unwrap();
        dir
    }

    /// peapod's state folder for this test; peapod itself creates it.
    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(peapod_bin());
        cmd.arg("--root").arg(self.state_dir()).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `peapod --root <ours> args...` and returns its output.
    pub fn peapod(&self, args: &[&str]) -> Output {
        output_of(&mut self.cmd(args))
    }

    /// Like `peapod`, but the command must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.peapod(args);
        assert!(
            out.status.success(),
            "peapod {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The command must fail with one clear line on stderr containing `expected`.
    pub fn fails(&self, args: &[&str], expected: &str) -> String {
        let out = self.peapod(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "peapod {args:?} succeeded, expected an error"
        );
        assert_eq!(out.status.code(), Some(1), "exit code of peapod {args:?}");
        assert!(
            stderr.contains(expected),
            "stderr of peapod {args:?} lacks {expected:?}: {stderr}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "error should be one line: {stderr}"
        );
        stderr
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    pub fn wait_status(&self, id: &str, status: &str) {
        wait_until(
            &format!("{id} to be {status}"),
            Duration::from_secs(10),
            || self.status(id) == status,
        );
    }

    /// Creates and starts a long-running container, returning its init pid.
    pub fn start_sleeper(&self, short: &str) -> (String, i32) {
        let id = self.id(short);
        let bundle = self.bundle(&id, &self.config(&id, &["sleep", "1000"]));
        self.ok(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
        let pid = self.state(&id)["pid"].as_i64().unwrap() as i32;
        (id, pid)
    }

    /// Runs `args` in container `id` with `exec --detach`; returns its pid.
    pub fn exec_detached(&self, id: &str, args: &[&str]) -> i32 {
        self.exec_detached_with(id, &[], args)
    }

    /// `exec_detached` with more exec flags.
    pub fn exec_detached_with(&self, id: &str, flags: &[&str], args: &[&str]) -> i32 {
        let pid_file = self
            .work
            .path()
            .join(format!("exec-{}.pid", SEQ.fetch_add(1, Ordering::SeqCst)));
        let mut argv = vec!["exec", "--detach", "--pid-file", pid_file.to_str().unwrap()];
        argv.extend_from_slice(flags);
        argv.push(id);
        argv.extend_from_slice(args);
        self.ok(&argv);
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The cgroup folders a container `id` of this test would have, that exist now.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.cgroup_parent).join(id))
            .filter(|p| p.exists())
            .collect()
    }

    /// Asserts nothing of this test is left: no container state, no cgroup, no
    /// process in our cgroups, no mount, and the host's /dev/null untouched. Then
    /// removes the (empty) cgroup parents.
    pub fn finish(self) {
        let listed = self.ok(&["list", "--quiet"]);
        assert!(listed.trim().is_empty(), "containers left: {listed}");
        let entries: Vec<_> = std::fs::read_dir(self.state_dir())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(entries.is_empty(), "state folder not empty: {entries:?}");
        for mount in cgroup_mounts() {
            let parent = mount.join(&self.cgroup_parent);
            if parent.exists() {
                let children: Vec<_> = std::fs::read_dir(&parent)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path())
                    .collect();
                assert!(children.is_empty(), "cgroups left: {children:?}");
                std::fs::remove_dir(&parent)
                    .unwrap_or_else(|e| panic!("remove {}: {e}", parent.display()));
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for dir in [self.root.path(), self.work.path()] {
            let d = dir.to_str().unwrap();
            assert!(!mountinfo.contains(d), "mounts left under {d}");
        }
        let (live, zombies) = processes_in_cgroups(&self.cgroup_parent);
        assert!(live.is_empty(), "processes {live:?} still in our cgroups");
        if !zombies.is_empty() {
            // Killed processes whose parent is the machine's init, which reaps
            // them in its own time: they hold nothing but their pid.
            let end = Instant::now() + Duration::from_secs(10);
            while !processes_in_cgroups(&self.cgroup_parent).1.is_empty() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        assert_dev_null_untouched();
    }
}

impl Drop for TestEnv {
    /// After a failed test: take down whatever it left, so one failure does not
    /// leak containers into the machine or into other tests.
    fn drop(&mut self) {
        if let Ok(out) = self
            .cmd(&["list", "--quiet"])
            .stderr(Stdio::null())
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self
                    .cmd(&["delete", "--force", id])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for mount in cgroup_mounts() {
            let parent = mount.join(&self.cgroup_parent);
            if let Ok(children) = std::fs::read_dir(&parent) {
                for child in children.filter_map(|e| e.ok()) {
                    let _ = std::fs::remove_dir(child.path());
                }
                let _ = std::fs::remove_dir(&parent);
            }
        }
    }
}

/// The processes whose /proc/PID/cgroup names `needle`: (alive, zombies).
pub fn processes_in_cgroups(needle: &str) -> (Vec<i32>, Vec<i32>) {
    let mut live = Vec::new();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if std::fs::read_to_string(entry.path().join("cgroup")).is_ok_and(|cg| cg.contains(needle))
        {
            if is_alive(pid) {
                live.push(pid);
            } else {
                zombies.push(pid);
            }
        }
    }
    (live, zombies)
}

pub fn assert_dev_null_untouched() {
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "host /dev/null owner changed"
    );
    assert_eq!(meta.mode() & 0o777, 0o666, "host /dev/null mode changed");
}

pub fn default_caps() -> Vec<&'static str> {
    vec![
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
}

/// `cmd`, run in the network namespace pinned at `ns`.
pub fn in_netns<'a>(ns: &Path, cmd: &'a mut Command) -> &'a mut Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let file = std::fs::File::open(ns).unwrap();
    // SAFETY: setns is a system call; the descriptor stays open in the child
    // until exec (the closure owns the File).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The namespace inode of `pid` for `ns` (net, ipc, uts, pid, mnt).
pub fn ns_inode(pid: i32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
        .to_string_lossy()
        .into_owned()
}

pub fn is_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}
