//! containerd runs peapod as the runc binary of its runc shim.
//!
//! Each test starts a private containerd (scripts/containerd-up) in a temporary
//! folder, and drives it with `ctr run --runtime io.containerd.runc.v2
//! --runc-binary <wrapper>`: the wrapper logs its argv and execs peapod, so the
//! test sees every runc command line containerd's Go shim ran, and proves it
//! was peapod that ran them (peapod leaves `peapod-init.json` beside its
//! `state.json`, which runc never writes). Every test then checks that nothing
//! is left: peapod state, cgroups, shims, mounts, and the host's /dev/null.
//!
//! The helpers marked `pub(crate)` are shared with `podman.rs`.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::{
    assert_dev_null_untouched, cgroup_mounts, is_alive, peapod_bin, repo, require_root, wait_until,
};

const CTR_TIMEOUT: Duration = Duration::from_secs(60);
const IMAGE: &str = "localhost/busybox:latest";

/// Runs `cmd` with stdin on /dev/null, failing the test if it takes longer than
/// `deadline` (the child is killed) or leaves its output pipes open.
pub(crate) fn run_timeout(cmd: &mut Command, deadline: Duration) -> Output {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let (tx, rx) = mpsc::channel();
    for (n, pipe) in [
        (
            0,
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        ),
        (1, Box::new(child.stderr.take().unwrap())),
    ] {
        let tx = tx.clone();
        let mut pipe = pipe;
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((n, buf));
        });
    }
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(2);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {deadline:?}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let mut outs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let (n, buf) = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{desc} exited but something holds its output open"));
        outs[n] = buf;
    }
    let [stdout, stderr] = outs;
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Output as text, for messages: status, stdout and stderr.
pub(crate) fn show(out: &Output) -> String {
    format!(
        "{}\n--- stdout:\n{}--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One shell word, single-quoted (for `script -c`).
pub(crate) fn shell_quote(args: &[&str]) -> String {
    args.iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `script -qfec <args> /dev/null`: runs `args` with a pseudo-terminal as its
/// stdin/stdout (ctr and podman need one for -t), returning the exit status of
/// `args` as script's own.
pub(crate) fn under_pty(args: &[&str], deadline: Duration) -> Output {
    run_timeout(
        Command::new("script")
            .arg("-qfec")
            .arg(shell_quote(args))
            .arg("/dev/null"),
        deadline,
    )
}

/// Writes an executable runtime wrapper that appends its argv to `log` and
/// execs peapod (with `extra` global flags first). When called for `start`, it
/// first notes whether peapod's own record `peapod-init.json` is in the
/// container's state folder (as `init-record <id>`): runc never writes one.
pub(crate) fn write_wrapper(path: &Path, log: &Path, extra: &[&str]) {
    let script = format!(
        r#"#!/bin/sh
log={log}
printf '%s\n' "$*" >>"$log"
root={default_root}
prev=
for a in {extra} "$@"; do
	case $prev in --root) root=$a ;; esac
	case $a in --root=*) root=${{a#--root=}} ;; esac
	prev=$a
	id=$a
done
case " $* " in
*" start "*) if [ -f "$root/$id/peapod-init.json" ]; then printf 'init-record %s\n' "$id" >>"$log"; fi ;;
esac
exec {peapod} {extra} "$@"
"#,
        log = shell_quote(&[log.to_str().unwrap()]),
        default_root = shell_quote(&["/run/peapod"]),
        extra = shell_quote(extra),
        peapod = shell_quote(&[peapod_bin()]),
    );
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Live (non-zombie) processes with an argument containing `needle`, with their argv.
pub(crate) fn processes_mentioning(needle: &str) -> Vec<(i32, Vec<String>)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.iter().any(|a| a.contains(needle)) && is_alive(pid) {
            found.push((pid, argv));
        }
    }
    found
}

/// Mount points at or under `dir`, from our mount namespace.
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m == dir || m.starts_with(&format!("{dir}/")))
        .collect()
}

/// Child directories (cgroups) of `dir`, if it exists.
pub(crate) fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether cgroup `rel` (relative to each hierarchy) is frozen: the v1 freezer's
/// `freezer.state`, else cgroup v2's `frozen` in `cgroup.events`; None if neither
/// exists.
pub(crate) fn frozen(rel: &str) -> Option<bool> {
    let rel = rel.trim_start_matches('/');
    let mounts = cgroup_mounts();
    if let Some(m) = mounts.iter().find(|m| m.ends_with("freezer")) {
        let state = std::fs::read_to_string(m.join(rel).join("freezer.state")).ok()?;
        return Some(state.trim() == "FROZEN");
    }
    mounts.iter().find_map(|m| {
        let events = std::fs::read_to_string(m.join(rel).join("cgroup.events")).ok()?;
        Some(events.lines().any(|l| l == "frozen 1"))
    })
}

/// `ctr --address SOCK --namespace NS args…`, within the tests' deadline.
/// `scripts/containerd-up DIR` with the variables of `env` added, a CNI bridge
/// and /24 of this test's own (`net`: bridge name prefix, first two octets;
/// other containerd-up instances may run now), then the busybox image imported
/// into namespace `ns`. Panics if either fails; returns containerd-up's output.
pub(crate) fn containerd_up(
    dir: &Path,
    ns: &str,
    net: (&str, &str),
    seq: usize,
    env: &[(&str, &std::ffi::OsStr)],
) -> Output {
    let pid = std::process::id() as usize;
    let mut up = Command::new(repo().join("scripts/containerd-up"));
    up.arg(dir)
        .envs(env.iter().copied())
        .env(
            "PEAPOD_CNI_BRIDGE",
            format!("{}{}x{seq}", net.0, pid % 100_000),
        )
        .env(
            "PEAPOD_CNI_NET",
            format!("{}.{}", net.1, (pid * 7 + seq) % 250),
        )
        .env_remove("PEAPOD_BIN");
    let out = run_timeout(&mut up, Duration::from_secs(180));
    assert!(out.status.success(), "containerd-up failed: {}", show(&out));
    let busybox = repo().join("bundles/images/busybox.tar");
    let sock = dir.join("containerd.sock");
    let import = [
        "images",
        "import",
        "--all-platforms",
        busybox.to_str().unwrap(),
    ];
    ctr_ok_in(&sock, ns, &import);
    out
}

pub(crate) fn ctr_in(sock: &Path, ns: &str, args: &[&str]) -> Output {
    run_timeout(
        Command::new("ctr")
            .arg("--address")
            .arg(sock)
            .arg("--namespace")
            .arg(ns)
            .args(args),
        CTR_TIMEOUT,
    )
}

/// `ctr_in` that must succeed; its stdout.
pub(crate) fn ctr_ok_in(sock: &Path, ns: &str, args: &[&str]) -> String {
    let out = ctr_in(sock, ns, args);
    assert!(out.status.success(), "ctr {args:?} failed: {}", show(&out));
    stdout(&out)
}

/// The argv of `ctr ...` in namespace `ns`, for `under_pty`.
pub(crate) fn ctr_argv_in<'a>(sock: &'a Path, ns: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut argv = vec![
        "ctr",
        "--address",
        sock.to_str().unwrap(),
        "--namespace",
        ns,
    ];
    argv.extend_from_slice(args);
    argv
}

/// The pid and status of task `id` in a `ctr task ls` listing.
pub(crate) fn task_status_in(listing: &str, id: &str) -> Option<(i32, String)> {
    listing.lines().skip(1).find_map(|l| {
        let f: Vec<_> = l.split_whitespace().collect();
        (f.len() == 3 && f[0] == id).then(|| (f[1].parse().unwrap(), f[2].to_string()))
    })
}

/// Execs in running task `id` through ctr: output and exit status, a
/// command that does not exist (an error naming it), and a terminal.
pub(crate) fn assert_execs(sock: &Path, ns: &str, id: &str) {
    let ctr = |args: &[&str]| ctr_in(sock, ns, args);
    // exec, its output and exit status.
    let out = ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        id,
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

    // exec of a command that does not exist: an error naming it.
    let out = ctr(&["tasks", "exec", "--exec-id", "e0", id, "no-such-command"]);
    assert!(!out.status.success(), "exec of no-such-command succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-command"),
        "the error should name the command: {}",
        show(&out)
    );

    // exec with a terminal.
    let exec_tty = [
        "tasks",
        "exec",
        "-t",
        "--exec-id",
        "e2",
        id,
        "sh",
        "-c",
        "tty; echo exec-tty-ok; exit 6",
    ];
    let out = under_pty(&ctr_argv_in(sock, ns, &exec_tty), CTR_TIMEOUT);
    assert_eq!(out.status.code(), Some(6), "exec -t: {}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("/dev/pts/"), "exec -t: {}", show(&out));
    assert!(text.contains("exec-tty-ok"), "exec -t: {}", show(&out));
}

/// Serializes tests that share host-wide things (containerd's /run/containerd,
/// podman's /var/lib/containers); a failed test must not block the others.
pub(crate) fn serial(lock: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A private containerd, torn down by `finish` or, on panic, by Drop.
struct Containerd {
    /// Holds everything: containerd's DIR (`c/`), the wrapper, its log, the
    /// runtime root and ctr's FIFOs.
    base: tempfile::TempDir,
    dir: PathBuf,
    sock: PathBuf,
    /// containerd namespace of this test (ctr puts cgroups at /<ns>/<id>).
    ns: String,
    wrapper: PathBuf,
    argv_log: PathBuf,
    runc_root: PathBuf,
    fifo_dir: PathBuf,
    down: bool,
    started: Instant,
    _serial: MutexGuard<'static, ()>,
}

impl Containerd {
    fn up(name: &str) -> Self {
        require_root();
        let serial = serial(&SERIAL);
        let started = Instant::now();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id() as usize;
        let base = tempfile::Builder::new()
            .prefix("ppctr-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = base.path().join("c");
        let ns = format!("peapod-it-{name}-{pid}-{seq}");
        let argv_log = base.path().join("runtime-argv.log");
        let wrapper = base.path().join("peapod-runtime");
        write_wrapper(&wrapper, &argv_log, &[]);
        let me = Containerd {
            sock: dir.join("containerd.sock"),
            dir,
            ns,
            wrapper,
            argv_log,
            runc_root: base.path().join("runtime-root"),
            fifo_dir: base.path().join("fifo"),
            base,
            down: false,
            started,
            _serial: serial,
        };
        let out = containerd_up(&me.dir, &me.ns, ("ppit", "10.231"), seq, &[]);
        assert_eq!(stdout(&out).trim(), me.sock.to_str().unwrap());
        let images = me.ok(&["images", "ls", "-q"]);
        assert!(
            images.lines().any(|l| l == IMAGE),
            "{IMAGE} not in namespace {}: {images}",
            me.ns
        );
        me
    }

    fn ctr(&self, args: &[&str]) -> Output {
        ctr_in(&self.sock, &self.ns, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        ctr_ok_in(&self.sock, &self.ns, args)
    }

    /// The argv of `ctr ...` in this namespace, for `under_pty`.
    fn ctr_argv<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        ctr_argv_in(&self.sock, &self.ns, args)
    }

    /// `ctr run` options that make the runc shim run peapod.
    fn run_opts(&self) -> Vec<&str> {
        vec![
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            self.wrapper.to_str().unwrap(),
            "--runc-root",
            self.runc_root.to_str().unwrap(),
            "--fifo-dir",
            self.fifo_dir.to_str().unwrap(),
        ]
    }

    /// The runtime root the shim hands peapod: `--runc-root` plus the namespace.
    fn state_root(&self) -> PathBuf {
        self.runc_root.join(&self.ns)
    }

    /// A container id unique on this host (containerd-down matches cgroups by id).
    fn id(&self, short: &str) -> String {
        format!("{short}-{}", self.ns)
    }

    /// Everything the wrapper logged (one runtime command line per line).
    fn argv_log(&self) -> String {
        std::fs::read_to_string(&self.argv_log).unwrap_or_default()
    }

    /// The runtime command lines for container `id`, by verb; fails if one of
    /// `verbs` never ran, or ran without the shim's `--root`.
    fn assert_ran(&self, id: &str, verbs: &[&str]) {
        let log = self.argv_log();
        let root = format!("--root {} ", self.state_root().display());
        for verb in verbs {
            let hit = log.lines().any(|l| {
                l.starts_with(&root)
                    && l.split_whitespace().any(|w| w == *verb)
                    && l.split_whitespace().any(|w| w == id)
            });
            assert!(
                hit,
                "the shim never ran `peapod ... {verb} ... {id}`:\n{log}"
            );
        }
        assert!(
            log.lines().any(|l| l == format!("init-record {id}")),
            "peapod-init.json was not in peapod's state folder at `start` of {id}:\n{log}"
        );
    }

    /// The cgroup folders of namespace `ns` (parents of its containers' cgroups).
    fn ns_cgroups(&self) -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.ns))
            .collect()
    }

    /// The shims of this containerd still running.
    fn shims(&self) -> Vec<(i32, Vec<String>)> {
        let sock = self.sock.to_str().unwrap();
        processes_mentioning(sock)
            .into_iter()
            .filter(|(_, argv)| argv.iter().any(|a| a == sock))
            .collect()
    }

    /// Checks that container `id` left nothing, while containerd still runs.
    fn assert_container_gone(&self, id: &str) {
        let listed = self.ok(&["containers", "ls", "-q"]);
        assert!(
            !listed.lines().any(|l| l == id),
            "container {id} still listed"
        );
        let state = self.state_root().join(id);
        assert!(
            !state.exists(),
            "peapod state {} left after delete",
            state.display()
        );
        for parent in self.ns_cgroups() {
            let leaf = parent.join(id);
            assert!(!leaf.exists(), "cgroup {} left", leaf.display());
        }
    }

    /// Normal teardown: no container, cgroup or shim left; containerd-down
    /// succeeds; then nothing of ours is left anywhere.
    fn finish(mut self) {
        let tasks = self.ok(&["tasks", "ls", "-q"]);
        assert!(tasks.trim().is_empty(), "tasks left: {tasks}");
        let containers = self.ok(&["containers", "ls", "-q"]);
        assert!(
            containers.trim().is_empty(),
            "containers left: {containers}"
        );
        let states: Vec<_> = std::fs::read_dir(self.state_root())
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(states.is_empty(), "peapod state left: {states:?}");
        for parent in self.ns_cgroups() {
            let left = subdirs(&parent);
            assert!(left.is_empty(), "cgroups left: {left:?}");
        }
        wait_until("the shims to exit", Duration::from_secs(10), || {
            self.shims().is_empty()
        });

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
        assert!(
            !self.dir.exists(),
            "containerd-down left {}",
            self.dir.display()
        );
        // containerd-down only knows namespaces that still have containers:
        // the (empty) /<ns> cgroup parents made for ours are ours to remove.
        for parent in self.ns_cgroups() {
            if parent.exists() {
                eprintln!("containerd-down left {}: removing it", parent.display());
                std::fs::remove_dir(&parent)
                    .unwrap_or_else(|e| panic!("remove {}: {e}", parent.display()));
            }
        }
        let procs = processes_mentioning(self.base.path().to_str().unwrap());
        assert!(procs.is_empty(), "processes left: {procs:?}");
        let mounts = mounts_under(self.base.path());
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        assert_dev_null_untouched();
        eprintln!(
            "containerd test in namespace {} took {:?}",
            self.ns,
            self.started.elapsed()
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if !self.down {
            self.containerd_down_quietly();
        }
        for parent in self.ns_cgroups() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

impl Containerd {
    fn containerd_down_quietly(&self) {
        match Command::new(repo().join("scripts/containerd-down"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if !out.status.success() => {
                eprintln!("containerd-down (cleanup after failure): {}", show(&out))
            }
            Err(e) => eprintln!("cannot run containerd-down: {e}"),
            Ok(_) => {}
        }
    }
}

/// `ctr run --rm`: output and exit status of the container reach ctr.
#[test]
fn containerd_runc_shim_run_rm_exit_code() {
    let c = Containerd::up("rm");
    let id = c.id("rm");
    let mut args = vec!["run", "--rm"];
    args.extend(c.run_opts());
    args.extend([IMAGE, &id, "sh", "-c", "echo hello; exit 3"]);
    let out = c.ctr(&args);
    assert_eq!(out.status.code(), Some(3), "ctr {args:?}: {}", show(&out));
    assert!(
        stdout(&out).lines().any(|l| l == "hello"),
        "no hello: {}",
        show(&out)
    );
    c.assert_ran(&id, &["create", "start", "delete"]);
    c.assert_container_gone(&id);

    // A command that does not exist: create fails with the name in the error
    // (the shim reads it from peapod's --log), and a failed create leaves nothing.
    let bad = c.id("bad");
    let mut args = vec!["run", "--rm"];
    args.extend(c.run_opts());
    args.extend([IMAGE, &bad, "no-such-command"]);
    let out = c.ctr(&args);
    assert!(!out.status.success(), "ctr {args:?} succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-command"),
        "the error should name the command: {}",
        show(&out)
    );
    if c.ok(&["containers", "ls", "-q"]).lines().any(|l| l == bad) {
        c.ok(&["containers", "delete", &bad]);
    }
    c.assert_container_gone(&bad);
    c.finish();
}

/// `ctr run --rm -t`: the container gets a pseudo-terminal from peapod's
/// --console-socket, and its exit status still reaches ctr.
#[test]
fn containerd_runc_shim_tty() {
    let c = Containerd::up("tty");
    let id = c.id("tty");
    let mut args = vec!["run", "--rm", "-t"];
    args.extend(c.run_opts());
    args.extend([IMAGE, &id, "sh", "-c", "tty; echo tty-ok; exit 7"]);
    let out = under_pty(&c.ctr_argv(&args), CTR_TIMEOUT);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(7), "ctr {args:?}: {}", show(&out));
    assert!(
        text.contains("/dev/pts/"),
        "no pty in the container: {}",
        show(&out)
    );
    assert!(text.contains("tty-ok"), "no tty-ok: {}", show(&out));
    c.assert_ran(&id, &["create", "--console-socket", "start", "delete"]);
    c.assert_container_gone(&id);
    c.finish();
}

/// The status and pid of task `id` in `ctr task ls`.
fn task_status(c: &Containerd, id: &str) -> Option<(i32, String)> {
    task_status_in(&c.ok(&["tasks", "ls"]), id)
}

/// A detached task: exec (plain and tty), ps, pause/resume, kill, delete.
#[test]
fn containerd_runc_shim_detached_lifecycle() {
    let c = Containerd::up("det");
    let id = c.id("det");
    let mut args = vec!["run", "-d"];
    args.extend(c.run_opts());
    args.extend([IMAGE, &id, "sleep", "1000"]);
    c.ok(&args);

    let (pid, status) = task_status(&c, &id).expect("task listed");
    assert_eq!(status, "RUNNING");
    assert!(pid > 0 && is_alive(pid), "task pid {pid} not alive");

    // peapod's own state, in the root the shim gave it, names the same init.
    let state_dir = c.state_root().join(&id);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state_dir.join("peapod-init.json"))
            .unwrap_or_else(|e| panic!("peapod-init.json in {}: {e}", state_dir.display())),
    )
    .unwrap();
    assert_eq!(record["pid"], pid, "peapod-init.json: {record}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["pid"], pid, "state.json: {state}");

    // The cgroup ctr asked for holds the init.
    let bundle = c
        .dir
        .join("state/io.containerd.runtime.v2.task")
        .join(&c.ns)
        .join(&id);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let cgroups_path = config["linux"]["cgroupsPath"].as_str().unwrap().to_string();
    assert_eq!(cgroups_path, format!("/{}/{id}", c.ns));
    let mut checked = 0;
    for m in cgroup_mounts() {
        let procs = m.join(&cgroups_path[1..]).join("cgroup.procs");
        let name = m.file_name().unwrap().to_str().unwrap().to_string();
        // Hybrid hosts: the named systemd hierarchy and the near-empty unified
        // one are not controllers a runtime must join.
        if !["systemd", "unified"].contains(&name.as_str()) {
            let text = std::fs::read_to_string(&procs)
                .unwrap_or_else(|e| panic!("{}: {e}", procs.display()));
            assert!(
                text.lines().any(|l| l == pid.to_string()),
                "{pid} not in {}",
                procs.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no cgroup hierarchy checked");

    assert_execs(&c.sock, &c.ns, &id);

    // ps (the shim runs `peapod ps --format json`).
    let ps = c.ok(&["tasks", "ps", &id]);
    assert!(
        ps.lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "ctr task ps lacks {pid}: {ps}"
    );

    // pause and resume.
    c.ok(&["tasks", "pause", &id]);
    assert_eq!(task_status(&c, &id).unwrap().1, "PAUSED");
    assert_eq!(frozen(&cgroups_path), Some(true), "cgroup not frozen");
    c.ok(&["tasks", "resume", &id]);
    assert_eq!(task_status(&c, &id).unwrap().1, "RUNNING");
    assert_eq!(frozen(&cgroups_path), Some(false), "cgroup still frozen");

    // kill, wait for STOPPED, delete.
    c.ok(&["tasks", "kill", "-s", "SIGKILL", &id]);
    wait_until("the task to stop", Duration::from_secs(10), || {
        task_status(&c, &id).map(|s| s.1) == Some("STOPPED".into())
    });
    assert!(!is_alive(pid), "init {pid} still alive after SIGKILL");
    let out = c.ctr(&["tasks", "delete", &id]);
    assert!(out.status.success(), "task delete: {}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("137"),
        "task delete should report exit code 137: {}",
        show(&out)
    );
    c.ok(&["containers", "delete", &id]);

    c.assert_ran(
        &id,
        &[
            "create",
            "start",
            "exec",
            "--console-socket",
            "ps",
            "pause",
            "resume",
            "kill",
            "delete",
        ],
    );
    c.assert_container_gone(&id);
    c.finish();
}
