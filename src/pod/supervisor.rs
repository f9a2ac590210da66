//! The pod supervisor: one long-lived, single-threaded process per pod.
//!
//! It is the parent (and subreaper) of the pod's processes, so it calls
//! libcontainer (safely: no other thread exists), reaps exits, feeds the
//! lifecycle state machine and carries out its actions, copies the containers'
//! output into CRI log files, publishes status.json, and answers `stop` on a
//! Unix socket. Everything it waits for is a file descriptor in one poll():
//! a signalfd, a timerfd for the lifecycle's next deadline, the API socket and
//! the containers' output FIFOs.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollTimeout;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode as FileMode;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use oci_spec::runtime::Spec;

use super::exits::{Exit, ExitEvents};
use super::lifecycle::{Action, Backoff, Input, Lifecycle, Now, StopSignal};
use super::logs::{format_record, log_path, open_log, LineSplitter, Stream};
use super::model::{Container, Pod};
use super::spec::{cgroup_path, member_spec, sandbox_spec, SANDBOX_CGROUP};
use super::status::Phase;
use super::store::{PodDir, ResolvedImage, StatusFile};
use super::teardown;
use super::volumes;
use crate::image::{ImageStore, Rootfs};
use crate::oci::console::ConsoleListener;
use crate::oci::{CreateOptions, Runtime, Stdio};

/// The most of a terminationMessagePath file, and of a log's tail, that
/// becomes a container's termination message (the kubelet's limits).
const MAX_TERMINATION_MESSAGE: u64 = 4096;
const MAX_LOG_MESSAGE: usize = 2048;

/// How long an adopted process's exit event may come after its pidfd woke.
const EXIT_EVENT_PATIENCE: Duration = Duration::from_millis(200);

/// The OCI id of the sandbox in the pod's runtime state (`_` is not allowed in
/// container names, so it cannot clash).
pub const SANDBOX_ID: &str = "_sandbox";
/// The sandbox runs this image's /pause.
pub const PAUSE_IMAGE: &str = "localhost/pause:latest";

/// How the supervisor was configured by `pod run`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub image_store: PathBuf,
    pub cgroup_prefix: String,
    pub backoff: Backoff,
}

type Fallible<T> = Result<T, String>;

/// The signals the supervisor handles through its signalfd.
fn handled_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask
}

/// Runs `work` in a forked child of the supervisor and returns its answer.
///
/// Every libcontainer call goes through here. Its side effects on the calling
/// process (chdir, non-dumpable, its own oom_score_adj, a signal mask inherited
/// by the container) stay in the short-lived child, and the code and heap it
/// touches never count against the long-lived supervisor's memory. Container
/// processes the child creates are reparented to the supervisor (a subreaper)
/// when the child exits, so the supervisor still reaps them.
fn in_child(work: impl FnOnce() -> Fallible<i32>) -> Fallible<i32> {
    let (read, write) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the supervisor is single-threaded, so the child may run Rust code.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(read);
            // Containers inherit this mask: none of our signals may stay blocked.
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_UNBLOCK,
                Some(&handled_signals()),
                None,
            );
            let answer = match work() {
                Ok(n) => format!("ok {n}"),
                Err(message) => format!("error {message}"),
            };
            let mut out = File::from(write);
            let _ = out.write_all(answer.as_bytes());
            drop(out);
            // SAFETY: leave at once, without running the supervisor's exit code.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(write);
            let mut answer = String::new();
            let read_result = File::from(read).read_to_string(&mut answer);
            let status = loop {
                match waitpid(child, None) {
                    Err(Errno::EINTR) => continue,
                    other => break other,
                }
            };
            read_result.map_err(|e| format!("read from helper process: {e}"))?;
            match answer.split_once(' ') {
                Some(("ok", n)) => n
                    .parse()
                    .map_err(|_| format!("helper process said {answer:?}")),
                Some(("error", message)) => Err(message.to_string()),
                _ => Err(format!(
                    "helper process ended without an answer ({status:?})"
                )),
            }
        }
    }
}

/// One output stream of one container: a FIFO the container writes, we
/// read; or, for a container with `tty: true`, its terminal's master side
/// (one per run, all output as stdout, as CRI logs it).
struct Output {
    container: String,
    stream: Stream,
    fifo: File,
    splitter: LineSplitter,
    tty: bool,
    /// A terminal whose every slave is closed: dropped after this round.
    closed: bool,
}

pub struct Supervisor {
    pod: Pod,
    dir: PodDir,
    images: BTreeMap<String, ResolvedImage>,
    settings: Settings,
    store: ImageStore,
    runtime: Runtime,
    lifecycle: Lifecycle,
    sandbox_pid: Option<i32>,
    /// Running container processes: host pid -> container name.
    running: HashMap<i32, String>,
    outputs: Vec<Output>,
    /// Each container's current log file (the run being written).
    logs: HashMap<String, File>,
    ready: Option<File>,
    done: bool,
    /// Work ran since the last poll: give its code pages back before sleeping.
    idle_trim_due: bool,
    /// Start a new pod, or take over one whose supervisor died.
    mode: Mode,
    /// Processes of the pod that are not our children (they were started by a
    /// supervisor that died): a pidfd each, readable once the process is gone.
    watched: Vec<(i32, OwnedFd)>,
    /// While processes are watched: their exit statuses from the kernel.
    exits: Option<ExitEvents>,
}

/// Which run's log file `open_run_log` opens.
#[derive(Debug, Clone, Copy)]
enum LogRun {
    /// A new run: the file after the last one.
    Next,
    /// The run going on (a container kept by an adopting supervisor).
    Current,
}

/// What a supervisor starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new pod: make its sandbox and start its containers.
    Start,
    /// A pod whose supervisor died: carry on from its status.json, keeping the
    /// containers that still run.
    Adopt,
}

fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall: chrono::Utc::now(),
    }
}

impl Supervisor {
    pub fn new(dir: PodDir, settings: Settings, ready: Option<File>, mode: Mode) -> Fallible<Self> {
        let pod = dir.pod().map_err(|e| e.to_string())?;
        let images = dir.images().map_err(|e| e.to_string())?;
        let store = ImageStore::open(&settings.image_store).map_err(|e| e.to_string())?;
        let runtime = Runtime::new(&dir.paths.oci_root(), false).map_err(|e| e.to_string())?;
        let lifecycle = Lifecycle::new(&pod, settings.backoff);
        Ok(Self {
            pod,
            dir,
            images,
            settings,
            store,
            runtime,
            lifecycle,
            sandbox_pid: None,
            running: HashMap::new(),
            outputs: vec![],
            logs: HashMap::new(),
            ready,
            done: false,
            idle_trim_due: true,
            mode,
            watched: Vec::new(),
            exits: None,
        })
    }

    fn containers(&self) -> impl Iterator<Item = &Container> {
        self.pod.init_containers.iter().chain(&self.pod.containers)
    }

    fn container(&self, name: &str) -> Option<Container> {
        self.containers().find(|c| c.name == name).cloned()
    }

    /// Runs the pod to its end. Returns once the sandbox is gone and the pod's
    /// resources are released.
    pub fn run(mut self) -> Fallible<()> {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let mask = handled_signals();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(|e| format!("block signals: {e}"))?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| format!("signalfd: {e}"))?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
        )
        .map_err(|e| format!("timerfd: {e}"))?;
        let api_path = self.dir.api_socket();
        let _ = std::fs::remove_file(&api_path);
        let api = UnixListener::bind(&api_path)
            .map_err(|e| format!("bind {}: {e}", api_path.display()))?;
        std::fs::set_permissions(&api_path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", api_path.display()))?;
        api.set_nonblocking(true)
            .map_err(|e| format!("api socket: {e}"))?;

        let begun = match self.mode {
            Mode::Start => self.start_pod(),
            Mode::Adopt => self.resume_pod(),
        };
        if let Err(e) = begun {
            if self.mode == Mode::Start {
                self.fail_setup(&e);
            } else if let Some(mut ready) = self.ready.take() {
                let _ = ready.write_all(format!("error {e}\n").as_bytes());
            }
            return Err(e);
        }
        while !self.done {
            self.arm_timer(&timer)?;
            if std::mem::take(&mut self.idle_trim_due) {
                super::idle::release_code_pages();
            }
            let fds: Vec<_> = [sigfd.as_fd(), timer.as_fd(), api.as_fd()]
                .into_iter()
                .chain(self.exits.as_ref().map(|e| e.as_fd()))
                .chain(self.watched.iter().map(|(_, pidfd)| pidfd.as_fd()))
                .chain(self.outputs.iter().map(|out| out.fifo.as_fd()))
                .collect();
            let ready = super::poll::readable(&fds, PollTimeout::NONE)?;
            drop(fds);
            let first_watched = 3 + usize::from(self.exits.is_some());
            let first_output = first_watched + self.watched.len();
            for (i, is_ready) in ready.iter().enumerate().skip(first_output) {
                if *is_ready {
                    self.pump_output(i - first_output);
                }
            }
            // Indexes into `ready` are not used after this.
            self.outputs.retain(|o| !o.closed);
            if first_watched > 3 && ready[3] {
                let watched = &self.watched;
                if let Some(exits) = self.exits.as_mut() {
                    exits.read(|pid| watched.iter().any(|(p, _)| *p == pid));
                }
            }
            let gone: Vec<i32> = (0..self.watched.len())
                .filter(|i| ready[first_watched + i])
                .map(|i| self.watched[i].0)
                .collect();
            for pid in gone {
                self.watched.retain(|(p, _)| *p != pid);
                let exit = self
                    .exits
                    .as_mut()
                    .and_then(|e| e.take(pid, EXIT_EVENT_PATIENCE))
                    .map(|exit| match exit {
                        Exit::Code(code) => (code, None),
                        Exit::Signal(sig) => (128 + sig, Some(sig)),
                    });
                if self.watched.is_empty() {
                    self.exits = None;
                }
                if self.process_ended(pid, exit) {
                    break;
                }
            }
            if ready[2] {
                self.serve_api(&api);
            }
            if ready[1] {
                let _ = timer.wait();
                self.feed(Input::Tick);
            }
            if ready[0] {
                while let Ok(Some(info)) = sigfd.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGCHLD) => self.reap(),
                        Ok(_) => self.feed(Input::Stop),
                        Err(_) => {}
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&api_path);
        Ok(())
    }

    fn arm_timer(&self, timer: &TimerFd) -> Fallible<()> {
        match self.lifecycle.next_deadline() {
            None => timer.unset().map_err(|e| format!("timerfd: {e}")),
            Some(deadline) => {
                let wait = deadline
                    .saturating_duration_since(Instant::now())
                    .max(std::time::Duration::from_millis(1));
                timer
                    .set(
                        Expiration::OneShot(TimeSpec::from_duration(wait)),
                        TimerSetTimeFlags::empty(),
                    )
                    .map_err(|e| format!("timerfd: {e}"))
            }
        }
    }

    /// Volumes, /etc files, /dev/shm, the sandbox; then the lifecycle begins.
    fn start_pod(&mut self) -> Fallible<()> {
        volumes::prepare(&self.pod, &self.dir.paths).map_err(|e| e.to_string())?;
        self.open_outputs()?;
        let pause = self.store.resolve(PAUSE_IMAGE).map_err(|e| e.to_string())?;
        let bundle = self.dir.paths.bundle(SANDBOX_ID);
        let rootfs = Rootfs::mount(&self.store, &pause, &bundle).map_err(|e| e.to_string())?;
        let cgroup = cgroup_path(&self.settings.cgroup_prefix, &self.pod, SANDBOX_CGROUP);
        let spec = sandbox_spec(&self.pod, &self.dir.paths, &rootfs.path(), &cgroup)
            .map_err(|e| e.to_string())?;
        let stdio = null_stdio()?;
        let pid =
            in_child(|| create_and_start(&self.runtime, SANDBOX_ID, &bundle, spec, stdio, None))
                .map_err(|e| format!("sandbox: {e}"))?;
        self.sandbox_pid = Some(pid);
        self.feed(Input::Begin);
        Ok(())
    }

    /// Takes over a pod whose supervisor died: its lifecycle from status.json,
    /// its output FIFOs, and a pidfd on each of its processes that still runs.
    /// They are no longer our children: their exit statuses come from the
    /// kernel's process events (see exits.rs), or are unknown without them.
    fn resume_pod(&mut self) -> Fallible<()> {
        let status = self.dir.status().ok_or("the pod has no status.json")?;
        if status.finished {
            return Err("the pod has finished: there is nothing to adopt".into());
        }
        let snapshot = status
            .lifecycle
            .as_ref()
            .ok_or("the pod's status.json has no lifecycle record to carry on from")?;
        self.lifecycle = Lifecycle::restore(&self.pod, self.settings.backoff, snapshot, now())
            .map_err(|e| e.to_string())?;
        self.open_outputs()?;
        // Subscribed before the look at which processes still run, so that
        // no exit falls between.
        self.exits = match ExitEvents::subscribe() {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::warn!(
                    "process exit events: {e}; adopted containers' exit codes will be unknown"
                );
                None
            }
        };
        let same = |pid: &i32| {
            let recorded = status.starts.get(pid).copied();
            recorded.is_some() && crate::oci::process_start_time(*pid) == recorded
        };
        if let Some(pid) = status.sandbox_pid.filter(same) {
            self.watch(pid)?;
            self.sandbox_pid = Some(pid);
        }
        let mut lost = Vec::new();
        for name in self.lifecycle.alive_containers() {
            match status.pids.get(&name).filter(|pid| same(pid)) {
                Some(&pid) => {
                    self.watch(pid)?;
                    self.running.insert(pid, name.clone());
                    // Its output goes on into the run's log file.
                    self.open_run_log(&name, LogRun::Current)?;
                }
                None => lost.push(name),
            }
        }
        if self.watched.is_empty() {
            self.exits = None;
        }
        if self.sandbox_pid.is_none() {
            // Nothing can run without the sandbox: stop what is left.
            self.feed(Input::Stop);
        }
        for name in lost {
            self.delete_container(&name);
            self.feed(Input::Lost { container: name });
        }
        self.feed(Input::Tick);
        // Taken over, whatever the phase: `pod adopt` may return.
        if let Some(mut ready) = self.ready.take() {
            let _ = ready.write_all(b"ok\n");
        }
        Ok(())
    }

    /// Watches a process that is not our child, through a pidfd.
    fn watch(&mut self, pid: i32) -> Fallible<()> {
        let fd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid)
                .ok_or_else(|| format!("pidfd_open {pid}: not a pid"))?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| format!("pidfd_open {pid}: {e}"))?;
        self.watched.push((pid, fd));
        Ok(())
    }

    /// One FIFO per output stream of every container, kept open for the pod's life.
    fn open_outputs(&mut self) -> Fallible<()> {
        std::fs::create_dir_all(self.dir.io_dir()).map_err(|e| format!("create io dir: {e}"))?;
        let names: Vec<String> = self.containers().map(|c| c.name.clone()).collect();
        for name in names {
            for stream in [Stream::Stdout, Stream::Stderr] {
                let fifo = self.open_fifo(&name, stream)?;
                self.outputs.push(Output {
                    container: name.clone(),
                    stream,
                    fifo,
                    splitter: LineSplitter::default(),
                    tty: false,
                    closed: false,
                });
            }
        }
        Ok(())
    }

    fn fifo_path(&self, name: &str, stream: Stream) -> PathBuf {
        self.dir.io_dir().join(format!("{name}.{}", stream.name()))
    }

    /// Opened read-write: we are then always a writer too, so the FIFO never
    /// reports end-of-file between runs of the container.
    fn open_fifo(&self, name: &str, stream: Stream) -> Fallible<File> {
        let path = self.fifo_path(name, stream);
        if !path.exists() {
            nix::unistd::mkfifo(&path, FileMode::from_bits_truncate(0o600))
                .map_err(|e| format!("mkfifo {}: {e}", path.display()))?;
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))
    }

    /// The container's end of its FIFOs, read-write so that the container never
    /// gets SIGPIPE even if the supervisor is gone.
    fn container_stdio(&self, name: &str) -> Fallible<Stdio> {
        let open = |stream| -> Fallible<OwnedFd> {
            let path = self.fifo_path(name, stream);
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map(OwnedFd::from)
                .map_err(|e| format!("open {}: {e}", path.display()))
        };
        Ok(Stdio {
            stdin: File::open("/dev/null")
                .map_err(|e| format!("open /dev/null: {e}"))?
                .into(),
            stdout: open(Stream::Stdout)?,
            stderr: open(Stream::Stderr)?,
        })
    }

    fn feed(&mut self, input: Input) {
        self.idle_trim_due = true;
        let actions = self.lifecycle.handle(input, now());
        for action in actions {
            self.act(action);
        }
        self.publish();
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Start { container } => {
                let input = match self.start_container(&container) {
                    Ok(pid) => {
                        self.running.insert(pid, container.clone());
                        Input::Started { container }
                    }
                    Err(StartFailure::Start(message)) => {
                        self.log_line(&container, Stream::Stderr, &format!("peapod: {message}"));
                        Input::StartFailed {
                            container,
                            reason: "StartError".into(),
                            message,
                        }
                    }
                    Err(StartFailure::Config(message)) => {
                        create_failed(container, "CreateContainerConfigError", message)
                    }
                    Err(StartFailure::Create(message)) => {
                        create_failed(container, "CreateContainerError", message)
                    }
                };
                let more = self.lifecycle.handle(input, now());
                for action in more {
                    self.act(action);
                }
            }
            Action::Signal { container, signal } => {
                let (sig, all) = match signal {
                    StopSignal::Term => (
                        self.images
                            .get(&container)
                            .map_or(Signal::SIGTERM, |image| image.config.stop_signal),
                        false,
                    ),
                    StopSignal::Kill => (Signal::SIGKILL, true),
                };
                if let Err(e) = self.signal(&container, sig, all) {
                    tracing::warn!("signal {container}: {e}");
                }
            }
            Action::StopSandbox => {
                if let Err(e) = self.signal(SANDBOX_ID, Signal::SIGKILL, true) {
                    tracing::warn!("stop sandbox: {e}");
                    // No sandbox to wait for: finish now.
                    self.finish();
                }
            }
        }
    }

    /// A fresh run of `name`: new rootfs, new OCI container, same volumes and logs folder.
    fn start_container(&mut self, name: &str) -> Result<i32, StartFailure> {
        use StartFailure::{Config, Create, Start};
        let c = self
            .container(name)
            .ok_or_else(|| Create(format!("no container {name}")))?;
        let image = self
            .images
            .get(name)
            .cloned()
            .ok_or_else(|| Create(format!("no resolved image for {name}")))?;
        self.delete_container(name);
        let bundle = self.dir.paths.bundle(name);
        Rootfs::unmount(&bundle).map_err(|e| Create(e.to_string()))?;
        let resolved = self
            .store
            .resolve(&image.id)
            .map_err(|e| Create(e.to_string()))?;
        let rootfs =
            Rootfs::mount(&self.store, &resolved, &bundle).map_err(|e| Create(e.to_string()))?;
        let sandbox_pid = self
            .sandbox_pid
            .ok_or_else(|| Create("the sandbox is not running".into()))?;
        volumes::make_sub_paths(&self.pod, &c, &self.dir.paths)
            .map_err(|e| Config(e.to_string()))?;
        self.reset_termination_log(name).map_err(Create)?;
        let cgroup = cgroup_path(&self.settings.cgroup_prefix, &self.pod, name);
        let spec = member_spec(
            &self.pod,
            &c,
            &image.config,
            &self.dir.paths,
            &rootfs.path(),
            sandbox_pid,
            &cgroup,
        )
        .map_err(|e| Config(e.to_string()))?;
        self.open_run_log(name, LogRun::Next).map_err(Create)?;
        let stdio = self.container_stdio(name).map_err(Create)?;
        // A terminal's master comes back over a console socket while the
        // container is created; the supervisor holds it for the run.
        let console = match c.tty {
            true => Some(
                ConsoleListener::bind(&self.dir.io_dir().join("tty.sock"))
                    .map_err(|e| Create(e.to_string()))?,
            ),
            false => None,
        };
        let socket = console.as_ref().map(|c| c.path());
        let pid = in_child(|| create_and_start(&self.runtime, name, &bundle, spec, stdio, socket))
            .map_err(Start)?;
        if let Some(console) = console {
            let master = console.receive_master().map_err(|e| Start(e.to_string()))?;
            crate::oci::console::set_nonblocking(master.as_fd())
                .map_err(|e| Start(format!("terminal: fcntl: {e}")))?;
            self.outputs.retain(|o| !(o.tty && o.container == name));
            self.outputs.push(Output {
                container: name.to_string(),
                stream: Stream::Stdout,
                fifo: File::from(master),
                splitter: LineSplitter::default(),
                tty: true,
                closed: false,
            });
        }
        Ok(pid)
    }

    /// Sends `signal` to a container's init (or, with `all`, to every process
    /// in its cgroup).
    fn signal(&self, id: &str, signal: Signal, all: bool) -> Fallible<()> {
        in_child(|| {
            self.runtime
                .kill(id, signal, all)
                .map(|()| 0)
                .map_err(|e| crate::error::one_line(&e))
        })
        .map(drop)
    }

    /// Removes a container's OCI state and cgroup (its logs stay).
    fn delete_container(&self, id: &str) {
        let _ = in_child(|| {
            self.runtime
                .delete(id, true)
                .map(|()| 0)
                .map_err(|e| e.to_string())
        });
    }

    /// Each run of a container logs to its own file, numbered by restarts.
    fn open_run_log(&mut self, name: &str, which: LogRun) -> Fallible<()> {
        // The folder is the record of runs, so numbering survives a new supervisor.
        let last = super::logs::runs(&self.dir.logs_dir(), name)
            .last()
            .copied();
        let run = match which {
            LogRun::Next => last.map_or(0, |r| r + 1),
            LogRun::Current => last.unwrap_or(0),
        };
        let path = log_path(&self.dir.logs_dir(), name, run);
        let file = open_log(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
        self.logs.insert(name.to_string(), file);
        Ok(())
    }

    fn log_line(&mut self, name: &str, stream: Stream, text: &str) {
        if !self.logs.contains_key(name) && self.open_run_log(name, LogRun::Next).is_err() {
            return;
        }
        if let Some(file) = self.logs.get_mut(name) {
            let _ = file.write_all(&format_record(
                chrono::Utc::now(),
                stream,
                true,
                text.as_bytes(),
            ));
        }
    }

    fn pump_output(&mut self, index: usize) {
        let mut buf = [0u8; 16384];
        loop {
            let out = &mut self.outputs[index];
            let n = match out.fifo.read(&mut buf) {
                Ok(0) => {
                    out.closed = out.tty;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A terminal whose slave side is closed reads EIO.
                    out.closed = out.tty && e.kind() != std::io::ErrorKind::WouldBlock;
                    return;
                }
            };
            let records = out.splitter.feed(&buf[..n]);
            let (name, stream) = (out.container.clone(), out.stream);
            if let Some(file) = self.logs.get_mut(&name) {
                let time = chrono::Utc::now();
                for (full, text) in records {
                    let _ = file.write_all(&format_record(time, stream, full, &text));
                }
            }
        }
    }

    /// Flushes a container's pending output (after it exited).
    fn drain_outputs(&mut self, name: &str) {
        for i in 0..self.outputs.len() {
            if self.outputs[i].container == name {
                self.pump_output(i);
                let stream = self.outputs[i].stream;
                if let Some((full, text)) = self.outputs[i].splitter.finish() {
                    if let Some(file) = self.logs.get_mut(name) {
                        let _ =
                            file.write_all(&format_record(chrono::Utc::now(), stream, full, &text));
                    }
                }
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let ended = match status {
                WaitStatus::Exited(pid, code) => (pid.as_raw(), code, None),
                WaitStatus::Signaled(pid, sig, _) => {
                    (pid.as_raw(), 128 + sig as i32, Some(sig as i32))
                }
                _ => continue,
            };
            let (pid, code, signal) = ended;
            if self.process_ended(pid, Some((code, signal))) {
                return;
            }
        }
    }

    /// A process of the pod ended, with its exit code and signal if it was our
    /// child. Returns true once the pod is done (the sandbox is gone).
    fn process_ended(&mut self, pid: i32, exit: Option<(i32, Option<i32>)>) -> bool {
        if Some(pid) == self.sandbox_pid {
            self.sandbox_pid = None;
            if !self.lifecycle.is_finished() {
                // The sandbox died under the pod: nothing can run without it.
                self.feed(Input::Stop);
            }
            self.finish();
            return true;
        }
        if let Some(name) = self.running.remove(&pid) {
            self.drain_outputs(&name);
            // Its terminal ends with the run.
            self.outputs.retain(|o| !(o.tty && o.container == name));
            // Each run has a fresh cgroup, so any OOM kill in it was in this run.
            let cgroup = cgroup_path(&self.settings.cgroup_prefix, &self.pod, &name);
            let oom_killed = crate::sys::cgroup::Layout::host()
                .cgroup(&cgroup)
                .oom_kills()
                > 0;
            // The exited container's cgroup and state go now; its logs stay.
            self.delete_container(&name);
            let input = match exit {
                Some((exit_code, signal)) => Input::Exited {
                    message: self.termination_message(&name, exit_code),
                    container: name,
                    exit_code,
                    signal,
                    oom_killed,
                },
                None => Input::Lost { container: name },
            };
            self.feed(input);
        }
        false
    }

    /// What a container that ended left in its terminationMessagePath (at most
    /// 4 KiB, as the kubelet reads), or with FallbackToLogsOnError after a
    /// failure, the last 80 lines (at most 2 KiB) of its run's log.
    fn termination_message(&self, name: &str, exit_code: i32) -> Option<String> {
        let mut text = Vec::new();
        if let Ok(file) = File::open(self.dir.paths.termination_log(name)) {
            let _ = file.take(MAX_TERMINATION_MESSAGE).read_to_end(&mut text);
        }
        let from_logs = self
            .containers()
            .any(|c| c.name == name && c.termination_message_from_logs);
        if text.is_empty() && from_logs && exit_code != 0 {
            let run = super::logs::runs(&self.dir.logs_dir(), name)
                .last()
                .copied();
            if let Some(run) = run {
                let path = log_path(&self.dir.logs_dir(), name, run);
                let mut log = Vec::new();
                let _ = super::logs::print_log(&path, 0, &mut log);
                let lines: Vec<&[u8]> = log.split_inclusive(|b| *b == b'\n').collect();
                text = lines[lines.len().saturating_sub(80)..].concat();
                let cut = text.len().saturating_sub(MAX_LOG_MESSAGE);
                text.drain(..cut);
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        (!text.is_empty()).then_some(text)
    }

    /// A fresh, empty terminationMessagePath file for a container's next run,
    /// writable by whatever user the container runs as.
    fn reset_termination_log(&self, name: &str) -> Fallible<()> {
        let path = self.dir.paths.termination_log(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("chmod {}: {e}", path.display()))
    }

    fn serve_api(&mut self, api: &UnixListener) {
        while let Ok((mut stream, _)) = api.accept() {
            let _ = stream.set_nonblocking(false);
            let mut line = String::new();
            let mut byte = [0u8; 1];
            while line.len() < 256 {
                match stream.read(&mut byte) {
                    Ok(1) if byte[0] != b'\n' => line.push(byte[0] as char),
                    _ => break,
                }
            }
            let reply = match line.trim() {
                "stop" => {
                    self.feed(Input::Stop);
                    "ok\n"
                }
                "ping" => "ok\n",
                _ => "error unknown request\n",
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    }

    /// Writes status.json and tells `pod run` once the pod has started.
    fn publish(&mut self) {
        let phase = self.lifecycle.phase();
        let status = StatusFile {
            phase,
            supervisor_pid: std::process::id() as i32,
            sandbox_pid: self.sandbox_pid,
            pids: self
                .running
                .iter()
                .map(|(pid, name)| (name.clone(), *pid))
                .collect(),
            finished: self.done,
            status: self.lifecycle.status(),
            lifecycle: Some(self.lifecycle.snapshot(now())),
            starts: self
                .running
                .keys()
                .chain(&self.sandbox_pid)
                .filter_map(|&pid| Some((pid, crate::oci::process_start_time(pid)?)))
                .collect(),
        };
        if let Err(e) = self.dir.write_status(&status) {
            tracing::error!("write status: {e}");
        }
        // Pending lasts until every app container has been started, or for
        // as long as a container cannot be created or crash-loops: `pod run
        // -d` returns then too, and the status tells why.
        let started = phase != Phase::Pending
            || self.lifecycle.is_finished()
            || self.lifecycle.is_waiting_on_a_failure();
        if started {
            if let Some(mut ready) = self.ready.take() {
                let _ = ready.write_all(b"ok\n");
            }
        }
    }

    /// The sandbox is gone: release everything but the pod's folder (logs and
    /// emptyDir contents stay until `pod rm`).
    fn finish(&mut self) {
        self.done = true;
        if let Err(e) = teardown::release(&self.dir, &self.pod, &self.settings.cgroup_prefix) {
            tracing::error!("release pod resources: {e}");
        }
        self.publish();
    }

    fn fail_setup(&mut self, message: &str) {
        tracing::error!("pod setup failed: {message}");
        let _ = teardown::release(&self.dir, &self.pod, &self.settings.cgroup_prefix);
        if let Some(mut ready) = self.ready.take() {
            let _ = ready.write_all(format!("error {message}\n").as_bytes());
        }
    }
}

/// Why a container did not start, in the kubelet's terms: its config could
/// not be made (`CreateContainerConfigError`), its container could not be
/// set up (`CreateContainerError`), or the runtime failed to create or start
/// it (`StartError`, a run that ended at once).
enum StartFailure {
    Config(String),
    Create(String),
    Start(String),
}

/// A container that was never created: no run and no log; it is tried again.
fn create_failed(container: String, reason: &str, message: String) -> Input {
    tracing::warn!("{container}: {reason}: {message}");
    Input::CreateFailed {
        container,
        reason: reason.into(),
        message,
    }
}

fn options<'a>(id: &'a str, bundle: &'a Path, console: Option<&'a Path>) -> CreateOptions<'a> {
    CreateOptions {
        id,
        bundle,
        pid_file: None,
        console_socket: console,
        preserve_fds: 0,
        no_pivot: false,
    }
}

/// Creates and starts one OCI container from its spec (in a helper process, see
/// `in_child`); returns the pid of its process.
fn create_and_start(
    runtime: &Runtime,
    id: &str,
    bundle: &Path,
    spec: Spec,
    stdio: Stdio,
    console: Option<&Path>,
) -> Fallible<i32> {
    let one_line = |e| crate::error::one_line(&e);
    let container = runtime
        .create_with_spec(&options(id, bundle, console), spec, stdio)
        .map_err(one_line)?;
    runtime.start(id).map_err(one_line)?;
    container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| format!("container {id} has no process"))
}

fn null_stdio() -> Fallible<Stdio> {
    let open = || -> Fallible<OwnedFd> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| format!("open /dev/null: {e}"))
    };
    Ok(Stdio {
        stdin: open()?,
        stdout: open()?,
        stderr: open()?,
    })
}
