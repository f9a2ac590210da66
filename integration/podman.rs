//! podman with --runtime peapod.
//!
//! Each test gets a podman world of its own in a temporary folder: a
//! containers.conf (cgroupfs, file events, no ulimit defaults, file locks
//! instead of the host-wide /dev/shm/libpod_lock), storage (--root/--runroot),
//! libpod's tmp dir and TMPDIR, and a unique --cgroup-parent. The runtime is a
//! wrapper that logs podman's (conmon's) runtime command lines, and execs
//! peapod with a private --root (podman passes none as root, and its cleanup
//! process drops --runtime-flag). podman still writes a few host-wide things
//! (/var/lib/containers/cache, /run/containers/networks): each test removes
//! those it created. Tests run one at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::{
    assert_dev_null_untouched, cgroup_mounts, is_alive, repo, require_root, wait_until,
};
use crate::containerd::{
    frozen, mounts_under, processes_mentioning, run_timeout, serial, show, stdout, subdirs,
    under_pty, write_wrapper,
};

const IMAGE: &str = "localhost/busybox:latest";
const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// Host-wide folders podman 4.3 writes even with private storage and config
/// (rootful: the blob info cache of containers/image, netavark's run folder),
/// with what it puts there: removed after the test if the test made them.
const HOST_PATHS: &[(&str, &[&str])] = &[
    (
        "/var/lib/containers",
        &["cache/blob-info-cache-v1.boltdb", "cache"],
    ),
    ("/run/containers", &["networks"]),
    ("/run/libpod", &[]),
];

static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicUsize = AtomicUsize::new(0);

struct Podman {
    base: tempfile::TempDir,
    conf: PathBuf,
    wrapper: PathBuf,
    argv_log: PathBuf,
    /// peapod's --root, set by the wrapper.
    runtime_root: PathBuf,
    /// --cgroup-parent of our containers (podman puts conmon in <parent>/conmon).
    cgroup_parent: String,
    /// HOST_PATHS that did not exist before the test.
    host_missing: Vec<PathBuf>,
    /// Top-level entries of /sys/fs/cgroup before the test.
    cgroup_top: Vec<String>,
    done: bool,
    started: Instant,
    _serial: MutexGuard<'static, ()>,
}

fn cgroup_top() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

impl Podman {
    fn new(name: &str) -> Self {
        require_root();
        let serial = serial(&SERIAL);
        let started = Instant::now();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let base = tempfile::Builder::new()
            .prefix("pppodman-")
            .tempdir_in("/tmp")
            .unwrap();
        let b = base.path();
        for d in ["tmp", "libpod-tmp", "networks", "runtime-root"] {
            std::fs::create_dir(b.join(d)).unwrap();
        }
        let conf = b.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                r#"[containers]
default_ulimits = []
log_driver = "k8s-file"
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{b}/events.log"
tmp_dir = "{b}/libpod-tmp"
lock_type = "file"

[network]
network_config_dir = "{b}/networks"
"#,
                b = b.display()
            ),
        )
        .unwrap();
        std::fs::write(
            b.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\nrunroot = \"{b}/runroot\"\ngraphroot = \"{b}/root\"\n",
                b = b.display()
            ),
        )
        .unwrap();
        let argv_log = b.join("runtime-argv.log");
        let runtime_root = b.join("runtime-root");
        let wrapper = b.join("peapod-runtime");
        write_wrapper(
            &wrapper,
            &argv_log,
            &["--root", runtime_root.to_str().unwrap()],
        );
        let me = Podman {
            conf,
            wrapper,
            argv_log,
            runtime_root,
            cgroup_parent: format!("peapod-it-podman-{name}-{}-{seq}", std::process::id()),
            host_missing: HOST_PATHS
                .iter()
                .map(|(p, _)| PathBuf::from(p))
                .filter(|p| !p.exists())
                .collect(),
            cgroup_top: cgroup_top(),
            base,
            done: false,
            started,
            _serial: serial,
        };
        let tar = repo().join("bundles/images/busybox.tar");
        let out = me.ok(&["load", "-i", tar.to_str().unwrap()]);
        assert!(out.contains(IMAGE), "podman load: {out}");
        let images = me.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(images.lines().any(|l| l == IMAGE), "images: {images}");
        me
    }

    /// `podman` with this test's storage, config and runtime.
    fn argv(&self) -> Vec<String> {
        let b = self.base.path().display();
        vec![
            "podman".into(),
            "--root".into(),
            format!("{b}/root"),
            "--runroot".into(),
            format!("{b}/runroot"),
            "--storage-driver".into(),
            "overlay".into(),
            "--tmpdir".into(),
            format!("{b}/libpod-tmp"),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--runtime".into(),
            self.wrapper.display().to_string(),
        ]
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("CONTAINERS_CONF", &self.conf)
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.base.path().join("storage.conf"),
            )
            .env("TMPDIR", self.base.path().join("tmp"));
    }

    fn podman(&self, args: &[&str]) -> Output {
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).args(args);
        self.env(&mut cmd);
        run_timeout(&mut cmd, PODMAN_TIMEOUT)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}",
            show(&out)
        );
        stdout(&out)
    }

    /// `podman args...` with a pseudo-terminal (for -t).
    fn with_pty(&self, args: &[&str]) -> Output {
        let argv = self.argv();
        let mut full: Vec<&str> = vec!["env"];
        let conf = format!("CONTAINERS_CONF={}", self.conf.display());
        let storage = format!(
            "CONTAINERS_STORAGE_CONF={}",
            self.base.path().join("storage.conf").display()
        );
        let tmp = format!("TMPDIR={}", self.base.path().join("tmp").display());
        full.extend([conf.as_str(), storage.as_str(), tmp.as_str()]);
        full.extend(argv.iter().map(String::as_str));
        full.extend_from_slice(args);
        under_pty(&full, PODMAN_TIMEOUT)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
            .trim()
            .to_string()
    }

    fn argv_log(&self) -> String {
        std::fs::read_to_string(&self.argv_log).unwrap_or_default()
    }

    /// The runtime ran each of `verbs` for container `id`, and peapod's own
    /// record was in its state folder at `start`.
    fn assert_ran(&self, id: &str, verbs: &[&str]) {
        let log = self.argv_log();
        for verb in verbs {
            let hit = log.lines().any(|l| {
                let words: Vec<_> = l.split_whitespace().collect();
                words.contains(verb) && words.contains(&id)
            });
            assert!(hit, "podman never ran `peapod ... {verb} ... {id}`:\n{log}");
        }
        assert!(
            log.lines().any(|l| l == format!("init-record {id}")),
            "peapod-init.json was not in peapod's state folder at `start` of {id}:\n{log}"
        );
    }

    /// The container ids podman created through the runtime, in order.
    fn created_ids(&self) -> Vec<String> {
        self.argv_log()
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == "create"))
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .collect()
    }

    fn parent_cgroups(&self) -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.cgroup_parent))
            .collect()
    }

    /// Container `id` was deleted from the runtime: no state, no cgroup.
    fn assert_runtime_gone(&self, id: &str) {
        let state = self.runtime_root.join(id);
        assert!(!state.exists(), "peapod state {} left", state.display());
        for parent in self.parent_cgroups() {
            let leaf = parent.join(format!("libpod-{id}"));
            assert!(!leaf.exists(), "cgroup {} left", leaf.display());
        }
    }

    /// Normal teardown, with checks.
    fn finish(mut self) {
        let left = self.ok(&["ps", "-a", "-q"]);
        assert!(left.trim().is_empty(), "podman containers left: {left}");
        let states: Vec<_> = std::fs::read_dir(&self.runtime_root)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert!(states.is_empty(), "peapod state left: {states:?}");
        for parent in self.parent_cgroups() {
            let left: Vec<_> = subdirs(&parent)
                .into_iter()
                .filter(|d| !d.ends_with("conmon"))
                .collect();
            assert!(left.is_empty(), "container cgroups left: {left:?}");
        }
        self.ok(&["system", "reset", "--force"]);
        let base = self.base.path().to_str().unwrap().to_string();
        wait_until(
            "podman's processes to exit",
            Duration::from_secs(10),
            || processes_mentioning(&base).is_empty(),
        );
        let mounts = mounts_under(self.base.path());
        assert!(
            mounts.is_empty(),
            "mounts left after system reset: {mounts:?}"
        );
        for parent in self.parent_cgroups() {
            for procs in [
                parent.join("conmon/cgroup.procs"),
                parent.join("cgroup.procs"),
            ] {
                if let Ok(text) = std::fs::read_to_string(&procs) {
                    assert!(text.trim().is_empty(), "{}: {text}", procs.display());
                }
            }
        }
        let strays = self.cleanup();
        assert!(
            strays.is_empty(),
            "podman made cgroup folders outside the mounted hierarchies: {strays:?}"
        );
        self.done = true;
        for path in &self.host_missing {
            assert!(!path.exists(), "podman left {} behind", path.display());
        }
        assert_dev_null_untouched();
        eprintln!(
            "podman test {} took {:?}",
            self.cgroup_parent,
            self.started.elapsed()
        );
    }

    /// Removes what this test made outside its temporary folder (also after a
    /// failure): processes, mounts, cgroups and podman's host-wide folders.
    /// Returns the new top-level folders found in /sys/fs/cgroup (podman 4.3 was
    /// seen leaving folders there for controllers this host does not mount).
    fn cleanup(&self) -> Vec<PathBuf> {
        let base = self.base.path().to_str().unwrap().to_string();
        for (pid, _) in processes_mentioning(&base) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Whatever is left in our cgroups was started by this test.
        for parent in self.parent_cgroups() {
            for dir in subdirs(&parent).into_iter().chain([parent.clone()]) {
                if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    for pid in text.lines().filter_map(|l| l.parse().ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        let mut mounts = mounts_under(self.base.path());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for parent in self.parent_cgroups() {
            remove_cgroup_tree(&parent);
        }
        let mut strays = Vec::new();
        for name in cgroup_top() {
            let dir = Path::new("/sys/fs/cgroup").join(&name);
            let ours = dir.join(&self.cgroup_parent);
            if self.cgroup_top.contains(&name) || cgroup_mounts().contains(&dir) || !ours.exists() {
                continue;
            }
            // A plain folder on the cgroup tmpfs, holding our cgroup parent.
            let _ = std::fs::remove_dir_all(&ours);
            let _ = std::fs::remove_dir(&dir);
            strays.push(ours);
        }
        for (path, inside) in HOST_PATHS {
            let path = Path::new(path);
            if !self.host_missing.iter().any(|p| p == path) || !path.exists() {
                continue;
            }
            for entry in inside.iter().map(|e| path.join(e)) {
                let _ = std::fs::remove_file(&entry).or_else(|_| std::fs::remove_dir(&entry));
            }
            eprintln!("podman test: removing {} (podman made it)", path.display());
            if let Err(e) = std::fs::remove_dir(path) {
                eprintln!(
                    "podman test: cannot remove {} (made by podman): {e}",
                    path.display()
                );
            }
        }
        strays
    }
}

/// rmdir a cgroup and its children, deepest first (processes must be gone).
fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for child in subdirs(dir) {
        remove_cgroup_tree(&child);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = std::fs::remove_dir(dir) {
        if Instant::now() > deadline {
            eprintln!("cannot remove cgroup {}: {e}", dir.display());
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .args(["system", "reset", "--force"])
            .stdin(Stdio::null());
        self.env(&mut cmd);
        match cmd.output() {
            Ok(out) if !out.status.success() => {
                eprintln!(
                    "podman system reset (cleanup after failure): {}",
                    show(&out)
                )
            }
            Err(e) => eprintln!("cannot run podman system reset: {e}"),
            Ok(_) => {}
        }
        self.cleanup();
    }
}

/// The brief's case: `podman run --rm` with peapod, output and exit status.
#[test]
fn podman_run_rm_exit_code() {
    let p = Podman::new("rm");
    let out = p.podman(&[
        "run",
        "--rm",
        "--cgroup-parent",
        &format!("/{}", p.cgroup_parent),
        IMAGE,
        "sh",
        "-c",
        "echo podman-ok; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "podman run: {}", show(&out));
    assert!(
        stdout(&out).lines().any(|l| l == "podman-ok"),
        "podman run: {}",
        show(&out)
    );
    let ids = p.created_ids();
    assert_eq!(ids.len(), 1, "runtime log:\n{}", p.argv_log());
    p.assert_ran(&ids[0], &["create", "start", "delete"]);
    p.assert_runtime_gone(&ids[0]);
    p.finish();
}

/// `podman run --rm -t`: a terminal from peapod's --console-socket (conmon's).
#[test]
fn podman_tty() {
    let p = Podman::new("tty");
    let out = p.with_pty(&[
        "run",
        "--rm",
        "-t",
        "--cgroup-parent",
        &format!("/{}", p.cgroup_parent),
        IMAGE,
        "sh",
        "-c",
        "tty; echo tty-ok; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "podman run -t: {}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("/dev/pts/"), "podman run -t: {}", show(&out));
    assert!(text.contains("tty-ok"), "podman run -t: {}", show(&out));
    let ids = p.created_ids();
    assert_eq!(ids.len(), 1, "runtime log:\n{}", p.argv_log());
    p.assert_ran(&ids[0], &["create", "--console-socket", "start", "delete"]);
    p.assert_runtime_gone(&ids[0]);
    p.finish();
}

/// A detached container: exec (plain and tty), pause/unpause, stop (SIGTERM),
/// start again, kill, rm; and `create` + `start --attach`.
#[test]
fn podman_detached_lifecycle() {
    let p = Podman::new("life");
    let parent = format!("/{}", p.cgroup_parent);
    let id = p
        .ok(&[
            "run",
            "-d",
            "--name",
            "life",
            "--cgroup-parent",
            &parent,
            IMAGE,
            "sh",
            "-c",
            "echo started; trap 'exit 0' TERM; sleep 1000 & wait",
        ])
        .trim()
        .to_string();
    assert_eq!(p.created_ids(), vec![id.clone()]);
    let running = |p: &Podman| -> i32 {
        let got = p.inspect("life", "{{.State.Status}} {{.State.Pid}}");
        let (status, pid) = got.split_once(' ').unwrap();
        assert_eq!(status, "running", "inspect: {got}");
        pid.parse().unwrap()
    };
    let pid = running(&p);
    assert!(is_alive(pid), "container pid {pid} not alive");

    // peapod's record in its state folder, and the cgroup podman asked for.
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.runtime_root.join(&id).join("peapod-init.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["pid"], pid, "peapod-init.json: {record}");
    let leaf = format!("{}/libpod-{id}", p.cgroup_parent);
    for m in cgroup_mounts() {
        let name = m.file_name().unwrap().to_str().unwrap();
        if ["systemd", "unified"].contains(&name) {
            continue;
        }
        let procs = m.join(&leaf).join("cgroup.procs");
        let text =
            std::fs::read_to_string(&procs).unwrap_or_else(|e| panic!("{}: {e}", procs.display()));
        assert!(
            text.lines().any(|l| l == pid.to_string()),
            "{pid} not in {}",
            procs.display()
        );
    }
    wait_until(
        "the container's first line",
        Duration::from_secs(10),
        || p.ok(&["logs", "life"]).contains("started"),
    );

    // exec, plain and with a terminal.
    let out = p.podman(&["exec", "life", "sh", "-c", "echo exec-ok; exit 4"]);
    assert_eq!(out.status.code(), Some(4), "exec: {}", show(&out));
    assert!(
        stdout(&out).lines().any(|l| l == "exec-ok"),
        "exec: {}",
        show(&out)
    );
    let out = p.with_pty(&[
        "exec",
        "-t",
        "life",
        "sh",
        "-c",
        "tty; echo exec-tty-ok; exit 6",
    ]);
    assert_eq!(out.status.code(), Some(6), "exec -t: {}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("/dev/pts/"), "exec -t: {}", show(&out));
    assert!(text.contains("exec-tty-ok"), "exec -t: {}", show(&out));

    // pause / unpause.
    p.ok(&["pause", "life"]);
    assert_eq!(p.inspect("life", "{{.State.Status}}"), "paused");
    assert_eq!(frozen(&leaf), Some(true), "cgroup not frozen");
    p.ok(&["unpause", "life"]);
    assert_eq!(running(&p), pid);
    assert_eq!(frozen(&leaf), Some(false), "cgroup still frozen");

    // stop: SIGTERM reaches the trap, exit status 0; runtime state deleted.
    p.ok(&["stop", "--time", "20", "life"]);
    assert_eq!(
        p.inspect("life", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    assert!(!is_alive(pid), "container pid {pid} alive after stop");
    wait_until(
        "podman's cleanup to delete the container",
        Duration::from_secs(10),
        || !p.runtime_root.join(&id).exists(),
    );
    p.assert_runtime_gone(&id);

    // start again (a fresh create + start of the same id), then kill.
    p.ok(&["start", "life"]);
    let pid2 = running(&p);
    assert_ne!(pid2, pid);
    p.ok(&["kill", "life"]);
    wait_until(
        "the container to exit after kill",
        Duration::from_secs(10),
        || p.inspect("life", "{{.State.Status}}") == "exited",
    );
    assert_eq!(p.inspect("life", "{{.State.ExitCode}}"), "137");
    p.ok(&["rm", "life"]);
    p.assert_ran(
        &id,
        &[
            "create", "start", "exec", "--tty", "pause", "resume", "kill", "delete",
        ],
    );
    let log = p.argv_log();
    assert!(
        log.lines().any(|l| l
            .split_whitespace()
            .collect::<Vec<_>>()
            .ends_with(&[&id, "15"])),
        "no SIGTERM sent through the runtime:\n{log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.split_whitespace().any(|w| w == "create")
                && l.split_whitespace().last() == Some(&id))
            .count(),
        2,
        "one create per start:\n{log}"
    );
    p.assert_runtime_gone(&id);

    // create, then start --attach.
    let id2 = p
        .ok(&[
            "create",
            "--name",
            "created",
            "--cgroup-parent",
            &parent,
            IMAGE,
            "sh",
            "-c",
            "echo created-ok; exit 2",
        ])
        .trim()
        .to_string();
    assert!(
        !p.runtime_root.join(&id2).exists(),
        "podman create should not reach the runtime"
    );
    let out = p.podman(&["start", "--attach", "created"]);
    assert_eq!(out.status.code(), Some(2), "start --attach: {}", show(&out));
    assert!(
        stdout(&out).contains("created-ok"),
        "start --attach: {}",
        show(&out)
    );
    assert_eq!(p.inspect("created", "{{.State.ExitCode}}"), "2");
    p.ok(&["rm", "created"]);
    p.assert_ran(&id2, &["create", "start", "delete"]);
    p.assert_runtime_gone(&id2);
    p.finish();
}

/// podman's tmpfs mounts (`--tmpfs`, and /run, /tmp, /var/tmp of a
/// `--read-only` container) carry runc's `tmpcopyup` option: the tmpfs starts
/// with a copy of what the image has there. peapod does not support it yet
/// (libcontainer passes it to mount(2) as tmpfs data: EINVAL, "failed to
/// prepare rootfs"), so this documents the gap.
#[test]
fn podman_tmpfs_tmpcopyup() {
    let p = Podman::new("tmpfs");
    let parent = format!("/{}", p.cgroup_parent);
    let out = p.podman(&[
        "run",
        "--rm",
        "--cgroup-parent",
        &parent,
        "--tmpfs",
        "/home",
        IMAGE,
        "sh",
        "-c",
        "grep -q ' /home tmpfs ' /proc/mounts && ls -d /home/app && echo tmpcopyup-ok",
    ]);
    assert!(
        out.status.success() && stdout(&out).contains("tmpcopyup-ok"),
        "podman run --tmpfs /home: {}",
        show(&out)
    );
    let out = p.podman(&[
        "run",
        "--rm",
        "--cgroup-parent",
        &parent,
        "--read-only",
        IMAGE,
        "sh",
        "-c",
        "touch /tmp/x /run/x /var/tmp/x && ! touch /x 2>/dev/null && echo read-only-ok",
    ]);
    assert!(
        out.status.success() && stdout(&out).contains("read-only-ok"),
        "podman run --read-only: {}",
        show(&out)
    );
    p.finish();
}
