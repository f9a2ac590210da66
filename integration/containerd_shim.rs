//! containerd runs peapod through peapod's own shim, `containerd-shim-peapod-v1`
//! (`runtime_type = "io.containerd.peapod.v1"`): `ctr` for the task API, a
//! Rust CRI client for pods, a restart of containerd, and bad input. Each test
//! starts a private containerd (scripts/containerd-up) whose PATH holds the
//! shim built by cargo, and checks at the end that nothing is left: shims,
//! peapod state, cgroups, mounts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::common::{assert_dev_null_untouched, cgroup_mounts, repo, require_root, wait_until};
use crate::containerd::{
    mounts_under, processes_mentioning, run_timeout, serial, show, stdout, subdirs, under_pty,
    SERIAL,
};

const CTR_TIMEOUT: Duration = Duration::from_secs(60);
const IMAGE: &str = "localhost/busybox:latest";
const RUNTIME: &str = "io.containerd.peapod.v1";
const SHIM: &str = "containerd-shim-peapod-v1";

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn shim_bin() -> &'static str {
    env!("CARGO_BIN_EXE_containerd-shim-peapod-v1")
}

/// A private containerd whose `peapod` handler runs our shim.
struct Ctrd {
    base: tempfile::TempDir,
    dir: PathBuf,
    sock: PathBuf,
    /// containerd namespace for `ctr` (CRI uses k8s.io).
    ns: String,
    shim_root: PathBuf,
    down: bool,
    _serial: MutexGuard<'static, ()>,
}

impl Ctrd {
    fn up(name: &str) -> Self {
        require_root();
        let serial = serial(&SERIAL);
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id() as usize;
        let base = tempfile::Builder::new()
            .prefix("ppshim-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = base.path().join("c");
        let shim_root = base.path().join("shim-root");
        let me = Ctrd {
            sock: dir.join("containerd.sock"),
            dir,
            ns: format!("peapod-shim-{name}-{pid}-{seq}"),
            shim_root,
            base,
            down: false,
            _serial: serial,
        };
        let shim_dir = Path::new(shim_bin()).parent().unwrap();
        let out = run_timeout(
            Command::new(repo().join("scripts/containerd-up"))
                .arg(&me.dir)
                .env("PEAPOD_SHIM_DIR", shim_dir)
                .env("PEAPOD_SHIM_ROOT", &me.shim_root)
                .env("PEAPOD_CNI_BRIDGE", format!("ppsh{}x{seq}", pid % 100_000))
                .env(
                    "PEAPOD_CNI_NET",
                    format!("10.232.{}", (pid * 7 + seq) % 250),
                )
                .env_remove("PEAPOD_BIN"),
            Duration::from_secs(180),
        );
        assert!(out.status.success(), "containerd-up failed: {}", show(&out));
        let busybox = repo().join("bundles/images/busybox.tar");
        me.ok(&[
            "images",
            "import",
            "--all-platforms",
            busybox.to_str().unwrap(),
        ]);
        me
    }

    fn ctr(&self, args: &[&str]) -> Output {
        run_timeout(
            Command::new("ctr")
                .arg("--address")
                .arg(&self.sock)
                .arg("--namespace")
                .arg(&self.ns)
                .args(args),
            CTR_TIMEOUT,
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(out.status.success(), "ctr {args:?} failed: {}", show(&out));
        stdout(&out)
    }

    /// `ctr args…` that must fail with `expected` in its error.
    fn fails(&self, args: &[&str], expected: &str) {
        let out = self.ctr(args);
        assert!(!out.status.success(), "ctr {args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(expected),
            "ctr {args:?}: no {expected:?} in: {}",
            show(&out)
        );
    }

    fn ctr_argv<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut argv = vec![
            "ctr",
            "--address",
            self.sock.to_str().unwrap(),
            "--namespace",
            &self.ns,
        ];
        argv.extend_from_slice(args);
        argv
    }

    fn id(&self, short: &str) -> String {
        format!("{short}-{}", self.ns)
    }

    /// Our shims serving this containerd: (pid, argv).
    fn shims(&self) -> Vec<(i32, Vec<String>)> {
        let sock = self.sock.to_str().unwrap();
        processes_mentioning(sock)
            .into_iter()
            .filter(|(_, argv)| argv[0].ends_with(SHIM) && argv.iter().any(|a| a == sock))
            .collect()
    }

    /// The shims whose command line names container or sandbox `id`.
    fn shims_of(&self, id: &str) -> Vec<i32> {
        self.shims()
            .into_iter()
            .filter(|(_, argv)| argv.windows(2).any(|w| w[0] == "-id" && w[1] == id))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// peapod state folders the shims left for namespace `ns`.
    fn states(&self, ns: &str) -> Vec<String> {
        std::fs::read_dir(self.shim_root.join(ns))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn restart(&self) {
        let out = run_timeout(
            Command::new(repo().join("scripts/containerd-restart")).arg(&self.dir),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "containerd-restart: {}", show(&out));
    }

    /// Nothing of ours left, then containerd-down, then nothing anywhere.
    fn finish(mut self) {
        wait_until("the shims to exit", Duration::from_secs(10), || {
            self.shims().is_empty()
        });
        for ns in [self.ns.as_str(), "k8s.io"] {
            let left = self.states(ns);
            assert!(left.is_empty(), "peapod state left in {ns}: {left:?}");
        }
        for m in cgroup_mounts() {
            let left = subdirs(&m.join(&self.ns));
            assert!(left.is_empty(), "cgroups left: {left:?}");
        }
        self.down = true;
        let out = run_timeout(
            Command::new(repo().join("scripts/containerd-down")).arg(&self.dir),
            Duration::from_secs(120),
        );
        assert!(
            out.status.success(),
            "containerd-down failed: {}",
            show(&out)
        );
        for m in cgroup_mounts() {
            let _ = std::fs::remove_dir(m.join(&self.ns));
        }
        let procs = processes_mentioning(self.base.path().to_str().unwrap());
        assert!(procs.is_empty(), "processes left: {procs:?}");
        let mounts = mounts_under(self.base.path());
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        assert_dev_null_untouched();
    }
}

impl Drop for Ctrd {
    fn drop(&mut self) {
        if !self.down {
            let _ = Command::new(repo().join("scripts/containerd-down"))
                .arg(&self.dir)
                .output();
            for m in cgroup_mounts() {
                let _ = std::fs::remove_dir(m.join(&self.ns));
            }
        }
    }
}

/// The status and pid of task `id` in `ctr task ls`.
fn task_status(c: &Ctrd, id: &str) -> Option<(i32, String)> {
    c.ok(&["tasks", "ls"]).lines().skip(1).find_map(|l| {
        let f: Vec<_> = l.split_whitespace().collect();
        (f.len() == 3 && f[0] == id).then(|| (f[1].parse().unwrap(), f[2].to_string()))
    })
}

/// `ctr run` with our runtime: plain, with a terminal, detached with execs
/// (plain and tty), ps, metrics, pause/resume, kill and delete; and errors
/// for a command missing from the image and a kill of an unknown exec.
#[test]
fn containerd_shim_ctr() {
    let c = Ctrd::up("ctr");
    let started = Instant::now();

    // Plain: output and exit status reach ctr; the task and shim go away.
    let id = c.id("plain");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        &id,
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stdout(&out).lines().any(|l| l == "hello"), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "{}",
        show(&out)
    );
    wait_until("the shim of plain to exit", Duration::from_secs(10), || {
        c.shims_of(&id).is_empty()
    });

    // With a terminal.
    let id = c.id("tty");
    let args = [
        "run",
        "--rm",
        "-t",
        "--runtime",
        RUNTIME,
        IMAGE,
        &id,
        "sh",
        "-c",
        "tty; echo tty-ok; exit 7",
    ];
    let out = under_pty(&c.ctr_argv(&args), CTR_TIMEOUT);
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("/dev/pts/") && text.contains("tty-ok"),
        "{}",
        show(&out)
    );

    // A command that is not in the image: the error names it, nothing is left.
    let bad = c.id("bad");
    c.fails(
        &[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            IMAGE,
            &bad,
            "no-such-command",
        ],
        "no-such-command",
    );
    if c.ok(&["containers", "ls", "-q"]).lines().any(|l| l == bad) {
        c.ok(&["containers", "delete", &bad]);
    }
    assert!(!c.states(&c.ns).contains(&bad), "state of {bad} left");

    // Detached, with one shim for the container.
    let id = c.id("det");
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ]);
    let (pid, status) = task_status(&c, &id).expect("task listed");
    assert_eq!(status, "RUNNING");
    assert_eq!(c.shims_of(&id).len(), 1, "shims: {:?}", c.shims());
    assert!(c.states(&c.ns).contains(&id), "no peapod state for {id}");

    let out = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo exec-ok; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "exec: {}", show(&out));
    assert!(
        stdout(&out).lines().any(|l| l == "exec-ok"),
        "exec: {}",
        show(&out)
    );
    let exec_tty = [
        "tasks",
        "exec",
        "-t",
        "--exec-id",
        "e2",
        &id,
        "sh",
        "-c",
        "tty; echo exec-tty-ok; exit 6",
    ];
    let out = under_pty(&c.ctr_argv(&exec_tty), CTR_TIMEOUT);
    assert_eq!(out.status.code(), Some(6), "exec -t: {}", show(&out));
    assert!(
        stdout(&out).contains("exec-tty-ok"),
        "exec -t: {}",
        show(&out)
    );
    c.fails(
        &["tasks", "exec", "--exec-id", "e0", &id, "no-such-command"],
        "no-such-command",
    );

    let ps = c.ok(&["tasks", "ps", &id]);
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "ps: {ps}"
    );
    let metrics = c.ok(&["tasks", "metrics", &id]);
    assert!(
        metrics.contains("pids.current") && metrics.contains("memory"),
        "metrics: {metrics}"
    );

    c.ok(&["tasks", "pause", &id]);
    assert_eq!(task_status(&c, &id).unwrap().1, "PAUSED");
    c.ok(&["tasks", "resume", &id]);
    assert_eq!(task_status(&c, &id).unwrap().1, "RUNNING");

    // A kill of an exec id the task does not have: a clear error.
    c.fails(&["tasks", "kill", "--exec-id", "nope", &id], "nope");

    c.ok(&["tasks", "kill", "-s", "SIGKILL", &id]);
    wait_until("the task to stop", Duration::from_secs(10), || {
        task_status(&c, &id).map(|s| s.1) == Some("STOPPED".into())
    });
    c.ok(&["tasks", "delete", &id]);
    c.ok(&["containers", "delete", &id]);
    wait_until("the shim of det to exit", Duration::from_secs(10), || {
        c.shims_of(&id).is_empty()
    });
    assert!(!c.states(&c.ns).contains(&id), "state of {id} left");
    eprintln!("containerd_shim_ctr: {:?}", started.elapsed());
    c.finish();
}
