//! containerd runs peapod through peapod's own shim, `containerd-shim-peapod-v1`
//! (`runtime_type = "io.containerd.peapod.v1"`): `ctr` for the task API, a
//! Rust CRI client for pods, a restart of containerd, and bad input. Each test
//! starts a private containerd (scripts/containerd-up) whose PATH holds the
//! shim built by cargo, and checks at the end that nothing is left: shims,
//! peapod state, cgroups, mounts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::common::{assert_dev_null_untouched, cgroup_mounts, repo, require_root, wait_until};
use crate::containerd::{
    assert_execs, containerd_up, ctr_argv_in, ctr_in, ctr_ok_in, mounts_under,
    processes_mentioning, run_timeout, serial, shell_quote, show, stdout, subdirs, task_status_in,
    SERIAL,
};

const CTR_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const IMAGE: &str = "localhost/busybox:latest";
pub(crate) const RUNTIME: &str = "io.containerd.peapod.v1";
const SHIM: &str = "containerd-shim-peapod-v1";

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn shim_bin() -> &'static str {
    env!("CARGO_BIN_EXE_containerd-shim-peapod-v1")
}

/// A private containerd whose `peapod` handler runs our shim.
pub(crate) struct Ctrd {
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
    pub(crate) fn up(name: &str) -> Self {
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
        let env = [
            ("PEAPOD_SHIM_DIR", shim_dir.as_os_str()),
            ("PEAPOD_SHIM_ROOT", me.shim_root.as_os_str()),
        ];
        containerd_up(&me.dir, &me.ns, ("ppsh", "10.232"), seq, &env);
        me
    }

    fn ctr(&self, args: &[&str]) -> Output {
        ctr_in(&self.sock, &self.ns, args)
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        ctr_ok_in(&self.sock, &self.ns, args)
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
        ctr_argv_in(&self.sock, &self.ns, args)
    }

    pub(crate) fn id(&self, short: &str) -> String {
        format!("{short}-{}", self.ns)
    }

    /// Our shims serving this containerd: (pid, argv).
    /// The serving shim processes of this containerd; not the short-lived
    /// runs of the binary's `start` and `delete` actions, which containerd
    /// starts for every container (and which may still be exiting).
    fn shims(&self) -> Vec<(i32, Vec<String>)> {
        let sock = self.sock.to_str().unwrap();
        let all = processes_mentioning(sock)
            .into_iter()
            .filter(|(_, argv)| argv[0].ends_with(SHIM) && argv.iter().any(|a| a == sock))
            .filter(|(_, argv)| {
                !matches!(argv.last().map(String::as_str), Some("start" | "delete"))
            })
            .collect::<Vec<_>>();
        // A shim's child between fork and exec (the peapod CLI it runs) still
        // shows the shim's command line: it is not another shim.
        let pids: Vec<i32> = all.iter().map(|(pid, _)| *pid).collect();
        all.into_iter()
            .filter(|(pid, _)| !parent_of(*pid).is_some_and(|p| pids.contains(&p)))
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

    /// The socket of the shim serving group `id` in namespace `ns` (as
    /// containerd computes it).
    fn shim_socket(&self, ns: &str, id: &str) -> PathBuf {
        use sha2::Digest;
        let key = format!("{}/{ns}/{id}", self.sock.display());
        PathBuf::from(format!(
            "/run/containerd/s/{}",
            hex::encode(sha2::Sha256::digest(key))
        ))
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
    pub(crate) fn finish(mut self) {
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
        // Rootfs overlays, the pod's netns and shm: all gone while containerd runs.
        let mounts = mounts_under(&self.dir);
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
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
pub(crate) fn task_status(c: &Ctrd, id: &str) -> Option<(i32, String)> {
    task_status_in(&c.ok(&["tasks", "ls"]), id)
}

/// Lines piped into a slow reader (the shell's `read`, a byte at a time):
/// more than the FIFO, the pipe and both copies hold (~340 KB), so CloseIO
/// comes while the stdin copy is still busy. (`ctr` sends CloseIO only for
/// an EOF it reads after Create has returned; like runc's shim, the shim
/// then keeps stdin open.)
const LINES: usize = 60_000;
const SLOW_CAT: &str = "while read l; do echo \"$l\"; done; echo eof";

/// Pipes LINES numbered lines into `ctr args…` and checks that all of them,
/// then EOF, came back.
fn assert_lines_through(c: &Ctrd, args: &[&str]) {
    let ctr = shell_quote(&c.ctr_argv(args));
    let out = run_timeout(
        Command::new("sh")
            .arg("-c")
            .arg(format!("seq 1 {LINES} | {ctr}")),
        CTR_TIMEOUT,
    );
    assert!(out.status.success(), "{args:?}: {}", show(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let want: Vec<String> = (1..=LINES).map(|i| i.to_string()).collect();
    assert_eq!(lines.len(), LINES + 1, "{args:?}: lines lost");
    assert!(
        lines[..LINES].iter().zip(&want).all(|(a, b)| a == b) && lines[LINES] == "eof",
        "{args:?}: lines out of order or changed"
    );
}

/// Live (not zombie) processes in pid namespace `ns` (an `ns_link`).
fn live_in_pid_namespace(ns: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
                && std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                    .is_ok_and(|l| l.to_string_lossy() == ns)
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `ctr run -d --log-uri URI` of a container writing a line to stdout and one
/// to stderr; `seen` tells when the output has arrived; then it is removed.
fn log_uri_run(c: &Ctrd, short: &str, uri: &str, seen: impl FnMut() -> bool) {
    let id = c.id(short);
    let script = "echo to-file; echo err-to-file >&2";
    c.ok(&[
        "run",
        "-d",
        "--log-uri",
        uri,
        "--runtime",
        RUNTIME,
        IMAGE,
        &id,
        "sh",
        "-c",
        script,
    ]);
    wait_until(
        &format!("the output through {uri}"),
        Duration::from_secs(10),
        seen,
    );
    wait_until("the task to stop", Duration::from_secs(10), || {
        task_status(c, &id).map(|s| s.1) == Some("STOPPED".into())
    });
    c.ok(&["tasks", "delete", &id]);
    c.ok(&["containers", "delete", &id]);
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

    // With a terminal, resized (ResizePty) to ctr's own terminal size: the
    // container waits until it sees 40 rows and 120 columns.
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
        "tty; until stty size 2>/dev/null | grep -qx '40 120'; do :; done; echo tty-ok; exit 7",
    ];
    let sized = format!("stty rows 40 cols 120; {}", shell_quote(&c.ctr_argv(&args)));
    let out = run_timeout(
        Command::new("script")
            .arg("-qfec")
            .arg(sized)
            .arg("/dev/null"),
        CTR_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("/dev/pts/") && text.contains("tty-ok"),
        "{}",
        show(&out)
    );

    // Stdin: what ctr reads reaches the container, and CloseIO ends it (EOF)
    // without losing what is still in the stdin FIFO: every line reaches a
    // slow reader, then EOF.
    for round in 0..2 {
        let id = c.id(&format!("lines{round}"));
        assert_lines_through(
            &c,
            &[
                "run",
                "--rm",
                "--runtime",
                RUNTIME,
                IMAGE,
                &id,
                "sh",
                "-c",
                SLOW_CAT,
            ],
        );
    }

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
        "--null-io",
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

    // --null-io: the container's streams are /dev/null (containerd's NullIO).
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd} of --null-io");
    }

    // An exec id in use: AlreadyExists, as containerd's runc shim answers.
    let dup = [
        "tasks",
        "exec",
        "--detach",
        "--exec-id",
        "dup",
        &id,
        "sleep",
        "1000",
    ];
    c.ok(&dup);
    c.fails(&dup, "already exists");

    // Stdin through an exec loses nothing either.
    assert_lines_through(
        &c,
        &[
            "tasks",
            "exec",
            "--exec-id",
            "lines",
            &id,
            "sh",
            "-c",
            SLOW_CAT,
        ],
    );

    // A container in det's pid namespace: when its init exits, what it
    // left behind is killed before the task is reported stopped.
    let pid_ns = ns_link(pid, "pid");
    let before = live_in_pid_namespace(&pid_ns);
    let joined = c.id("joined");
    let with_ns = format!("pid:/proc/{pid}/ns/pid");
    c.ok(&[
        "run",
        "-d",
        "--null-io",
        "--with-ns",
        &with_ns,
        "--runtime",
        RUNTIME,
        IMAGE,
        &joined,
        "sh",
        "-c",
        "sleep 999 & sleep 0.2; exit 3",
    ]);
    wait_until("joined to stop", Duration::from_secs(10), || {
        task_status(&c, &joined).map(|s| s.1) == Some("STOPPED".into())
    });
    wait_until(
        "the left-behind sleep to die",
        Duration::from_secs(3),
        || live_in_pid_namespace(&pid_ns) == before,
    );
    c.ok(&["tasks", "delete", &joined]);
    c.ok(&["containers", "delete", &joined]);

    assert_execs(&c.sock, &c.ns, &id);

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

    // The init dies with an exec running: the exec's exit is reported first.
    let events_file = c.base.path().join("events");
    let mut events = Command::new("ctr")
        .arg("--address")
        .arg(&c.sock)
        .arg("events")
        .stdout(std::fs::File::create(&events_file).unwrap())
        .spawn()
        .unwrap();
    c.ok(&[
        "tasks",
        "exec",
        "--detach",
        "--exec-id",
        "e3",
        &id,
        "sleep",
        "1000",
    ]);
    // SIGTERM to the init alone: sleep as pid 1 ignores it.
    c.ok(&["tasks", "kill", &id]);
    assert_eq!(task_status(&c, &id).unwrap().1, "RUNNING");
    // --all: every process of the container.
    c.ok(&["tasks", "kill", "-a", "-s", "SIGKILL", &id]);
    wait_until("the task to stop", Duration::from_secs(10), || {
        task_status(&c, &id).map(|s| s.1) == Some("STOPPED".into())
    });
    let exit_of = |who: &str| {
        let text = std::fs::read_to_string(&events_file).unwrap_or_default();
        text.lines()
            .position(|l| l.contains("/tasks/exit") && l.contains(&format!("\"id\":\"{who}\"")))
    };
    wait_until("both exits in ctr events", Duration::from_secs(10), || {
        exit_of("e3").is_some() && exit_of(&id).is_some()
    });
    assert!(
        exit_of("e3") < exit_of(&id),
        "the exec's exit must come first"
    );
    let _ = events.kill();
    let _ = events.wait();
    c.ok(&["tasks", "delete", &id]);
    c.ok(&["containers", "delete", &id]);
    wait_until("the shim of det to exit", Duration::from_secs(10), || {
        c.shims_of(&id).is_empty()
    });
    assert!(!c.states(&c.ns).contains(&id), "state of {id} left");
    let socket = c.shim_socket(&c.ns, &id);
    assert!(!socket.exists(), "the shim left {}", socket.display());

    // Log URIs: file:// and binary:// (a logging program gets the output).
    let log_file = c.base.path().join("file.log");
    log_uri_run(
        &c,
        "file",
        &format!("file://{}", log_file.display()),
        || {
            std::fs::read_to_string(&log_file)
                .is_ok_and(|t| t.contains("to-file\n") && t.contains("err-to-file\n"))
        },
    );
    let logger = c.base.path().join("logger.sh");
    let out_dir = c.base.path().join("binary-logs");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(
        &logger,
        "#!/bin/sh\n# fd 3: stdout, fd 4: stderr; closing fd 5 says ready\nexec 5>&-\n\
         cat <&3 >\"$2/out\" &\ncat <&4 >\"$2/err\" &\nwait\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?dir={}", logger.display(), out_dir.display());
    log_uri_run(&c, "binary", &uri, || {
        let read = |f: &str| std::fs::read_to_string(out_dir.join(f)).unwrap_or_default();
        read("out") == "to-file\n" && read("err") == "err-to-file\n"
    });
    eprintln!("containerd_shim_ctr: {:?}", started.elapsed());
    c.finish();
}

mod cri {
    //! A small CRI client over containerd's socket, the way a kubelet drives it.

    use std::collections::HashMap;
    use std::path::Path;

    use hyper_util::rt::TokioIo;
    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    pub use k8s_cri::v1::*;
    use tokio::net::UnixStream;
    use tonic::transport::{Channel, Endpoint, Uri};

    pub type Client = RuntimeServiceClient<Channel>;

    pub async fn connect(socket: &Path) -> Client {
        let path = socket.to_path_buf();
        let channel =
            Endpoint::try_from("http://[::1]:50051")
                .unwrap()
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .expect("connect to containerd's CRI socket");
        RuntimeServiceClient::new(channel)
    }

    pub fn namespaces() -> NamespaceOption {
        NamespaceOption {
            network: NamespaceMode::Pod as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    /// The `pid` of the verbose `info` JSON of a status response.
    pub fn pid_of(info: &HashMap<String, String>) -> i32 {
        let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
        v["pid"].as_i64().unwrap_or_else(|| panic!("no pid in {v}")) as i32
    }
}

/// CreateContainer + StartContainer in `pod`; returns the container's id.
async fn create_and_start(
    client: &mut cri::Client,
    pod: &str,
    config: cri::ContainerConfig,
    sandbox: &cri::PodSandboxConfig,
    name: &str,
) -> String {
    let id = client
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"))
        .into_inner()
        .container_id;
    client
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
    id
}

/// What ContainerStatus says of `id`: state, exit code, reason, pid.
async fn container_status(
    client: &mut cri::Client,
    id: &str,
) -> (cri::ContainerState, i32, String, i32) {
    let resp = client
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
        .into_inner();
    let s = resp.status.unwrap();
    let state = cri::ContainerState::try_from(s.state).unwrap();
    let pid = if state == cri::ContainerState::ContainerRunning {
        cri::pid_of(&resp.info)
    } else {
        0
    };
    (state, s.exit_code, s.reason, pid)
}

/// Waits (with a deadline) until container `id` has exited; returns its
/// exit code and reason.
async fn exited(client: &mut cri::Client, id: &str) -> (i32, String) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (state, code, reason, _) = container_status(client, id).await;
        if state == cri::ContainerState::ContainerExited {
            return (code, reason);
        }
        assert!(Instant::now() < end, "{id} still {state:?} after 30s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ns_link(pid: i32, ns: &str) -> String {
    crate::common::ns_inode(pid, ns)
}

/// A pod through containerd's CRI with `runtime_handler: peapod`: a sandbox
/// and containers on one shim; namespaces as CRI asks; logs; ExecSync; exit
/// codes, reasons and an OOM kill reaching CRI; containerd restarted while
/// the pod runs; stop and removal leaving nothing.
#[test]
fn containerd_shim_cri_pod() {
    let c = Ctrd::up("cri");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cg_parent = format!("peapod-shim-it-{}", std::process::id());
    rt.block_on(cri_pod(&c, &cg_parent));
    // The pod's cgroups went with it; the parent folders are the caller's.
    for m in cgroup_mounts() {
        let parent = m.join(&cg_parent);
        for pod in subdirs(&parent) {
            let left = subdirs(&pod);
            assert!(left.is_empty(), "cgroups left: {left:?}");
            std::fs::remove_dir(&pod).unwrap();
        }
        let _ = std::fs::remove_dir(&parent);
    }
    c.finish();
}

async fn cri_pod(c: &Ctrd, cg_parent: &str) {
    let mut client = cri::connect(&c.sock).await;
    let uid = format!("pod-{}", c.ns);
    let logs = c.base.path().join("logs").join(&uid);
    std::fs::create_dir_all(&logs).unwrap();
    let sandbox = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "shim-pod".into(),
            uid: uid.clone(),
            namespace: "peapod-it".into(),
            attempt: 0,
        }),
        hostname: "shim-pod".into(),
        log_directory: logs.to_string_lossy().into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("/{cg_parent}/{uid}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = client
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: "peapod".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"))
        .into_inner()
        .pod_sandbox_id;
    let status = client
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let pause = cri::pid_of(&status.info);

    let container = |name: &str, command: &[&str], memory: i64| cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        linux: Some(cri::LinuxContainerConfig {
            resources: (memory > 0).then(|| cri::LinuxContainerResources {
                memory_limit_in_bytes: memory,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::namespaces()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let mut ids = HashMap::new();
    for (name, command, memory) in [
        ("one", &["sh", "-c", "echo one; exec sleep 1000"][..], 0),
        ("two", &["sh", "-c", "echo two >&2; exec sleep 1000"][..], 0),
        ("fail", &["sh", "-c", "echo bye; exit 2"][..], 0),
        (
            "oom",
            &["sh", "-c", "a=xxxxxxxx; while true; do a=$a$a; done"][..],
            16 << 20,
        ),
    ] {
        let config = container(name, command, memory);
        let id = create_and_start(&mut client, &pod, config, &sandbox, name).await;
        ids.insert(name, id);
    }

    // An image that does not exist: a clear error, and no container.
    let missing = cri::ContainerConfig {
        image: Some(cri::ImageSpec {
            image: "localhost/no-such-image:latest".into(),
            ..Default::default()
        }),
        ..container("missing", &["true"], 0)
    };
    let err = client
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(missing),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .expect_err("CreateContainer of a missing image succeeded");
    assert!(err.message().contains("no-such-image"), "{err}");

    // One shim for the whole pod.
    let shims = c.shims();
    assert_eq!(shims.len(), 1, "shims: {shims:?}");
    assert_eq!(c.shims_of(&pod).len(), 1, "shims: {shims:?}");

    // Namespaces: the sandbox's net, ipc and uts; a pid namespace each.
    let mut pids = Vec::new();
    for name in ["one", "two"] {
        let (state, _, _, pid) = container_status(&mut client, &ids[name]).await;
        assert_eq!(state, cri::ContainerState::ContainerRunning, "{name}");
        for ns in ["net", "ipc", "uts"] {
            assert_eq!(
                ns_link(pid, ns),
                ns_link(pause, ns),
                "{name}: {ns} namespace"
            );
        }
        assert_ne!(
            ns_link(pid, "pid"),
            ns_link(pause, "pid"),
            "{name}: pid namespace"
        );
        pids.push(pid);
    }
    assert_ne!(ns_link(pids[0], "pid"), ns_link(pids[1], "pid"));

    // UpdateContainerResources reaches the container's cgroup (Update).
    client
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: ids["one"].clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}"));
    let memory_cgroup = |file: &str| {
        cgroup_mounts().into_iter().find_map(|m| {
            let f = m.join(cg_parent).join(&uid).join(&ids["one"]).join(file);
            std::fs::read_to_string(f).ok()
        })
    };
    let limit = memory_cgroup("memory.limit_in_bytes")
        .or_else(|| memory_cgroup("memory.max"))
        .expect("the memory cgroup of container one");
    assert_eq!(limit.trim(), (64u64 << 20).to_string());

    // ContainerStats: containerd decodes the shim's cgroup metrics.
    let stats = client
        .container_stats(cri::ContainerStatsRequest {
            container_id: ids["one"].clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("ContainerStats: {e}"))
        .into_inner()
        .stats
        .expect("stats of container one");
    let usage = stats.memory.and_then(|m| m.usage_bytes).map(|v| v.value);
    assert!(usage.is_some_and(|u| u > 0), "memory usage: {usage:?}");
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value);
    assert!(cpu.is_some_and(|n| n > 0), "cpu usage: {cpu:?}");

    // Exit codes and reasons.
    assert_eq!(exited(&mut client, &ids["fail"]).await, (2, "Error".into()));
    let (code, reason) = exited(&mut client, &ids["oom"]).await;
    assert_eq!(
        (code, reason.as_str()),
        (137, "OOMKilled"),
        "the oom container"
    );

    // ExecSync: output and exit code.
    let exec = client
        .exec_sync(cri::ExecSyncRequest {
            container_id: ids["one"].clone(),
            cmd: ["sh", "-c", "echo exec-out; echo exec-err >&2; exit 3"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exec.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "exec-out\n");
    assert_eq!(String::from_utf8_lossy(&exec.stderr), "exec-err\n");

    // ExecSync (and so every exec probe) is confined by the container's seccomp
    // profile: containerd's RuntimeDefault, and a Localhost one that forbids mkdir.
    let profile = c.base.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }]
        })
        .to_string(),
    )
    .unwrap();
    let probe = "grep Seccomp: /proc/self/status; \
                 unshare -U true 2>/dev/null && echo unshare-ok || echo unshare-denied; \
                 mkdir /tmp/d 2>/dev/null && echo mkdir-ok || echo mkdir-denied";
    for (name, profile_type, localhost_ref, expected) in [
        (
            "rtdefault",
            cri::security_profile::ProfileType::RuntimeDefault,
            String::new(),
            "Seccomp:\t2\nunshare-denied\nmkdir-ok\n",
        ),
        (
            "localhost",
            cri::security_profile::ProfileType::Localhost,
            profile.to_string_lossy().into_owned(),
            "Seccomp:\t2\nunshare-ok\nmkdir-denied\n",
        ),
    ] {
        let mut config = container(name, &["sleep", "1000"], 0);
        let security = config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .unwrap();
        security.seccomp = Some(cri::SecurityProfile {
            profile_type: profile_type as i32,
            localhost_ref,
        });
        let id = create_and_start(&mut client, &pod, config, &sandbox, name).await;
        let exec = client
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.clone(),
                cmd: ["sh", "-c", probe].iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            String::from_utf8_lossy(&exec.stdout),
            expected,
            "ExecSync in {name}: {}",
            String::from_utf8_lossy(&exec.stderr)
        );
        ids.insert(name, id);
    }

    // The CRI log files.
    for (name, line) in [
        ("one", " stdout F one"),
        ("two", " stderr F two"),
        ("fail", " stdout F bye"),
    ] {
        let file = logs.join(name).join("0.log");
        wait_until(
            &format!("{} to hold {line:?}", file.display()),
            Duration::from_secs(10),
            || std::fs::read_to_string(&file).is_ok_and(|t| t.lines().any(|l| l.ends_with(line))),
        );
    }

    // containerd restarts; the pod keeps running and is still managed.
    let shim = c.shims()[0].0;
    c.restart();
    let mut client = cri::connect(&c.sock).await;
    // The socket answers before CRI has recovered its containers.
    let end = Instant::now() + Duration::from_secs(30);
    while let Err(e) = client.status(cri::StatusRequest { verbose: false }).await {
        assert!(Instant::now() < end, "CRI not ready after a restart: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (name, pid) in [("one", pids[0]), ("two", pids[1])] {
        let (state, _, _, now) = container_status(&mut client, &ids[name]).await;
        assert_eq!(
            (state, now),
            (cri::ContainerState::ContainerRunning, pid),
            "{name} after restart"
        );
    }
    assert_eq!(
        c.shims().iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![shim]
    );

    client
        .stop_container(cri::StopContainerRequest {
            container_id: ids["one"].clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    let (code, _) = exited(&mut client, &ids["one"]).await;
    assert_eq!(
        code, 137,
        "sleep as pid 1 ignores SIGTERM: killed at the deadline"
    );

    client
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}"));
    client
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}"));
    wait_until("the pod's shim to exit", Duration::from_secs(10), || {
        c.shims().is_empty()
    });
    let socket = c.shim_socket("k8s.io", &pod);
    assert!(!socket.exists(), "the pod's shim left {}", socket.display());
    let left = c.states("k8s.io");
    assert!(left.is_empty(), "peapod state left: {left:?}");
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs the shim binary as containerd does (`… start` / `… delete`, working
/// directory = bundle); returns its output.
fn shim_action(c: &Ctrd, bundle: &Path, id: &str, action: &str) -> Output {
    let sock = c.sock.to_str().unwrap();
    run_timeout(
        Command::new(shim_bin())
            .args(["-namespace", &c.ns, "-id", id, "-address", sock])
            .args(["-publish-binary", "containerd", action])
            .current_dir(bundle)
            .env("TTRPC_ADDRESS", format!("{sock}.ttrpc"))
            .env("PEAPOD_SHIM_ROOT", &c.shim_root),
        CTR_TIMEOUT,
    )
}

/// The shim protocol itself, and bad input: `start` prints the pod's one
/// address (for a second container of the pod too) and writes the bundle's
/// `address` file; Create of a bundle with a broken config.json fails with an
/// error naming the file and leaves nothing; unknown ids are NotFound;
/// Shutdown ends the shim; `delete` is idempotent.
#[test]
fn containerd_shim_protocol_and_bad_input() {
    use containerd_shim_protos::api::{
        CreateTaskRequest, KillRequest, ShutdownRequest, StateRequest,
    };
    use containerd_shim_protos::shim_async::TaskClient;
    use containerd_shim_protos::ttrpc;

    let c = Ctrd::up("bad");
    let id = c.id("broken");
    let bundle = c.base.path().join("bundle-broken");
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    std::fs::write(bundle.join("config.json"), "{ \"ociVersion\": ").unwrap();
    // containerd makes `log` a FIFO; the shim only opens it for writing.
    std::fs::write(bundle.join("log"), "").unwrap();
    let out = shim_action(&c, &bundle, &id, "start");
    assert!(out.status.success(), "start: {}", show(&out));
    let address = stdout(&out);
    assert!(
        address.starts_with("unix:///run/containerd/s/"),
        "start printed {address:?}"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("address")).unwrap(),
        address
    );
    assert_eq!(c.shims_of(&id).len(), 1, "shims: {:?}", c.shims());

    // A member of the same pod gets the same shim.
    let member = c.id("member");
    let member_bundle = c.base.path().join("bundle-member");
    std::fs::create_dir_all(&member_bundle).unwrap();
    let config = serde_json::json!({
        "annotations": { "io.kubernetes.cri.sandbox-id": id, "io.kubernetes.cri.container-type": "container" }
    });
    std::fs::write(member_bundle.join("config.json"), config.to_string()).unwrap();
    let out = shim_action(&c, &member_bundle, &member, "start");
    assert!(out.status.success(), "start: {}", show(&out));
    assert_eq!(stdout(&out), address, "a second shim for the pod");
    assert_eq!(c.shims().len(), 1, "shims: {:?}", c.shims());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = ttrpc::asynchronous::Client::connect(&address)
            .await
            .unwrap();
        let task = TaskClient::new(client);
        let ctx = || ttrpc::context::with_timeout(30_000_000_000);
        let err = task
            .create(
                ctx(),
                &CreateTaskRequest {
                    id: id.clone(),
                    bundle: bundle.to_string_lossy().into_owned(),
                    ..Default::default()
                },
            )
            .await
            .expect_err("create of a broken config.json succeeded");
        let text = err.to_string();
        eprintln!("Create of a broken config.json: {text}");
        assert!(
            text.contains(&format!("{}/config.json", bundle.display())),
            "the error should name the file: {text}"
        );
        let err = task
            .state(
                ctx(),
                &StateRequest {
                    id: id.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect_err("state of a container that was never created");
        assert!(err.to_string().contains("not found"), "{err}");
        let err = task
            .kill(
                ctx(),
                &KillRequest {
                    id: id.clone(),
                    exec_id: "nope".into(),
                    signal: 9,
                    ..Default::default()
                },
            )
            .await
            .expect_err("kill of an unknown container");
        assert!(err.to_string().contains("not found"), "{err}");
        task.shutdown(
            ctx(),
            &ShutdownRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    });
    wait_until(
        "the shim to exit after Shutdown",
        Duration::from_secs(10),
        || c.shims().is_empty(),
    );
    let socket = address.trim_start_matches("unix://");
    assert!(!Path::new(socket).exists(), "socket {socket} left");
    assert!(
        c.states(&c.ns).is_empty(),
        "state left: {:?}",
        c.states(&c.ns)
    );

    // delete cleans up after a dead container, twice without complaint,
    // and answers with the init's pid from the bundle.
    std::fs::write(bundle.join("init.pid"), "4242").unwrap();
    for _ in 0..2 {
        let out = shim_action(&c, &bundle, &id, "delete");
        assert!(out.status.success(), "delete: {}", show(&out));
        use containerd_shim_protos::protobuf::Message;
        let resp = containerd_shim_protos::api::DeleteResponse::parse_from_bytes(&out.stdout)
            .unwrap_or_else(|e| panic!("delete printed no DeleteResponse: {e}"));
        assert_eq!((resp.pid, resp.exit_status), (4242, 137));
    }
    assert!(c.shims().is_empty());
    c.finish();
}

/// Found by scripts/soak: a pod's shim killed with SIGKILL left its socket
/// in /run/containerd/s for ever; containerd's clean-up after a dead shim
/// (the binary's `delete` action) removes it, as nobody listens there.
#[test]
fn containerd_shim_killed_leaves_no_socket() {
    let c = Ctrd::up("killed");
    let id = c.id("killed");
    c.ok(&[
        "run",
        "--detach",
        "--runtime",
        RUNTIME,
        IMAGE,
        &id,
        "sleep",
        "1000",
    ]);
    let shims = c.shims_of(&id);
    assert_eq!(shims.len(), 1, "one shim expected: {shims:?}");
    let socket = c.shim_socket(&c.ns, &id);
    assert!(socket.exists(), "no socket at {}", socket.display());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        "containerd to clean up after its dead shim",
        Duration::from_secs(20),
        || task_status(&c, &id).is_none_or(|s| s.1 != "RUNNING"),
    );
    wait_until(
        "the dead shim's socket to be removed",
        Duration::from_secs(20),
        || !socket.exists(),
    );
    let _ = c.ctr(&["tasks", "delete", "--force", &id]);
    c.ok(&["containers", "delete", &id]);
    c.finish();
}
