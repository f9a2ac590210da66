//! The pod supervisor: one long-lived, single-threaded process per pod.
//!
//! It is the parent (and subreaper) of the pod's processes, so it calls
//! libcontainer (safely: no other thread exists, and every call runs in a
//! forked helper, `helper.rs`), reaps exits (`processes.rs`), feeds the
//! lifecycle state machine and carries out its actions (`containers.rs`),
//! copies the containers' output into CRI log files (`output.rs`), publishes
//! status.json, and answers `stop` on a Unix socket. It runs the containers'
//! probes and lifecycle hooks (`health.rs`), records the pod's events
//! (`events.rs`), and replaces a sandbox that died. Everything it waits for
//! is a file descriptor in one poll(): a signalfd, a timerfd for the
//! lifecycle's and the probes' next deadline, the API socket, pidfds, the
//! containers' output FIFOs, and the sockets and pipes of checks under way.

mod containers;
mod events;
mod health;
mod helper;
mod images;
mod network;
mod output;
mod processes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::Instant;

use nix::poll::{PollFlags, PollTimeout};
use nix::sys::signal::{SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use self::containers::{create_failed, StartFailure};
use self::health::HealthWork;
use self::helper::handled_signals;
use self::output::Output;
use super::error::{Error, Result};
use super::events::{EventLog, EventType};
use super::exits::ExitEvents;
use super::folder::{PodFolder, ResolvedImage, StatusFile, SANDBOX};
use super::lifecycle::{Action, Input, Lifecycle, Now, StopSignal};
use super::logs::{LogWriter, Stream};
use super::model::{Container, Pod};
use super::settings::{CgroupDriver, Settings};
use super::status::Phase;
use super::teardown;
use crate::error::{one_line, Context};
use crate::image::ImageStore;
use crate::oci::Runtime;

pub struct Supervisor {
    pod: Pod,
    folder: PodFolder,
    images: BTreeMap<String, ResolvedImage>,
    settings: Settings,
    store: ImageStore,
    runtime: Runtime,
    lifecycle: Lifecycle,
    sandbox_pid: Option<i32>,
    /// Running container processes: host pid -> container name.
    running: HashMap<i32, String>,
    /// Under the systemd driver: the pod cgroup's OOM kills already put down
    /// to a container (`processes.rs`).
    pod_oom_kills: u64,
    /// The host's huge page sizes where hugetlb limits are set.
    hugepage_sizes: Option<Vec<u64>>,
    outputs: Vec<Output>,
    /// Each container's current log file (the run being written).
    logs: HashMap<String, LogWriter>,
    /// Probes and hooks under way.
    health: HealthWork,
    /// The pod's events (events.jsonl).
    events: EventLog,
    /// Why a container is being stopped, for its Killing event.
    kill_reasons: HashMap<String, String>,
    /// Containers whose run's Killing event is recorded.
    killing_recorded: HashSet<String>,
    /// Containers waiting in CrashLoopBackOff (their BackOff event is recorded).
    backing_off: Vec<String>,
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
    /// The pod's network and addresses, or why its sandbox could not be made.
    net: network::NetworkState,
    /// Image pulls under way, and the pull back-off.
    pulls: images::ImagePulls,
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

/// What woke the poll loop: each descriptor in one poll() and its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Signals,
    Timer,
    Api,
    ExitEvents,
    Watched(usize),
    Output(usize),
    Check(usize),
    Pull(usize),
}

fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall: chrono::Utc::now(),
    }
}

impl Supervisor {
    pub fn new(
        folder: PodFolder,
        settings: Settings,
        ready: Option<File>,
        mode: Mode,
    ) -> Result<Self> {
        // Read once here: every libcontainer call runs in a forked child
        // (`in_child`), which then finds the cgroup layout cached instead of
        // reading mountinfo again.
        let _ = crate::sys::cgroup::Layout::host();
        let pod = folder.pod()?;
        let images = folder.images()?;
        let store = ImageStore::open(&settings.image_store)?;
        // Containers are made as systemd scopes under the systemd driver; a
        // container records which, so other verbs need not be told.
        let systemd = settings.cgroup_driver == CgroupDriver::Systemd;
        let runtime = Runtime::new(&folder.oci_root(), systemd)?;
        let lifecycle = Lifecycle::new(&pod, settings.backoff());
        let hugepage_sizes = crate::pod::cgroups::hugetlb_page_sizes(&settings);
        // An adopted pod's past kills were someone else's to count.
        let pod_oom_kills = crate::sys::cgroup::Layout::host()
            .cgroup(crate::pod::cgroups::pod_cgroup(&settings, &pod))
            .oom_kills();
        let health = HealthWork::new(&pod);
        let events = EventLog::open(&folder.events_file());
        let settings_backoff = settings.pull_backoff();
        Ok(Self {
            pod,
            folder,
            images,
            settings,
            store,
            runtime,
            lifecycle,
            sandbox_pid: None,
            running: HashMap::new(),
            pod_oom_kills,
            hugepage_sizes,
            outputs: vec![],
            logs: HashMap::new(),
            health,
            events,
            kill_reasons: HashMap::new(),
            killing_recorded: HashSet::new(),
            backing_off: Vec::new(),
            ready,
            done: false,
            idle_trim_due: true,
            mode,
            watched: Vec::new(),
            exits: None,
            net: network::NetworkState::default(),
            pulls: images::ImagePulls::new(settings_backoff),
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
    pub fn run(mut self) -> Result<()> {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let mask = handled_signals();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .context(|| "block signals".into())?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context(|| "signalfd".into())?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
        )
        .context(|| "timerfd".into())?;
        let api_path = self.folder.api_socket();
        let _ = std::fs::remove_file(&api_path);
        let api =
            UnixListener::bind(&api_path).context(|| format!("bind {}", api_path.display()))?;
        std::fs::set_permissions(&api_path, std::fs::Permissions::from_mode(0o600))
            .context(|| format!("chmod {}", api_path.display()))?;
        api.set_nonblocking(true).context(|| "api socket".into())?;

        let begun = match self.mode {
            Mode::Start => self.start_pod(),
            Mode::Adopt => self.resume_pod(),
        };
        if let Err(e) = begun {
            if self.mode == Mode::Start {
                self.fail_setup(&e);
            } else if let Some(mut ready) = self.ready.take() {
                let _ = ready.write_all(format!("error {}\n", one_line(&e)).as_bytes());
            }
            return Err(e);
        }
        while !self.done {
            self.arm_timer(&timer)?;
            if std::mem::take(&mut self.idle_trim_due) {
                super::idle::release_code_pages();
            }
            let woke = {
                let input = PollFlags::POLLIN;
                let mut set: Vec<(BorrowedFd, PollFlags, Source)> = vec![
                    (sigfd.as_fd(), input, Source::Signals),
                    (timer.as_fd(), input, Source::Timer),
                    (api.as_fd(), input, Source::Api),
                ];
                if let Some(exits) = &self.exits {
                    set.push((exits.as_fd(), input, Source::ExitEvents));
                }
                set.extend(
                    (self.watched.iter().enumerate())
                        .map(|(i, (_, fd))| (fd.as_fd(), input, Source::Watched(i))),
                );
                set.extend(
                    (self.outputs.iter().enumerate())
                        .map(|(i, o)| (o.fifo.as_fd(), input, Source::Output(i))),
                );
                set.extend(
                    (self.pulls.fds().into_iter()).map(|(i, fd)| (fd, input, Source::Pull(i))),
                );
                set.extend(
                    (self.health.fds().into_iter().enumerate())
                        .map(|(i, (fd, events))| (fd, events, Source::Check(i))),
                );
                let fds: Vec<(BorrowedFd, PollFlags)> =
                    set.iter().map(|(fd, events, _)| (*fd, *events)).collect();
                let ready = super::poll::wait(&fds, PollTimeout::NONE)
                    .map_err(|e| Error::Supervisor(format!("poll: {e}")))?;
                set.iter()
                    .zip(ready)
                    .filter(|(_, ready)| *ready)
                    .map(|((_, _, source), _)| *source)
                    .collect::<Vec<Source>>()
            };
            self.dispatch(&woke, &sigfd, &timer, &api);
        }
        let _ = std::fs::remove_file(&api_path);
        Ok(())
    }

    /// Handles what woke the poll: checks first (their indexes hold only
    /// until something else changes them), output (a container's last words
    /// come before its exit), then exits, the API, the timer, signals.
    fn dispatch(&mut self, woke: &[Source], sigfd: &SignalFd, timer: &TimerFd, api: &UnixListener) {
        let checks = self.health.checks.fds().len();
        let fired: Vec<bool> = (0..checks)
            .map(|i| woke.contains(&Source::Check(i)))
            .collect();
        if fired.contains(&true) || woke.contains(&Source::Timer) {
            self.health_step(&fired);
        }
        for source in woke {
            match source {
                Source::Output(i) => self.pump_output(*i),
                // Before any reaping: pulls are removed from the list when reaped.
                Source::Pull(i) => self.pull_output(*i),
                _ => {}
            }
        }
        // Indexes into the outputs are not used after this.
        self.outputs.retain(|o| !o.closed);
        let watched: Vec<usize> = woke
            .iter()
            .filter_map(|s| match s {
                Source::Watched(i) => Some(*i),
                _ => None,
            })
            .collect();
        if !watched.is_empty() || woke.contains(&Source::ExitEvents) {
            self.watched_ended(|i| watched.contains(&i), woke.contains(&Source::ExitEvents));
        }
        if woke.contains(&Source::Api) {
            self.serve_api(api);
        }
        if woke.contains(&Source::Timer) {
            let _ = timer.wait();
            self.retry_sandbox_if_due();
            self.feed(Input::Tick);
        }
        if woke.contains(&Source::Signals) {
            while let Ok(Some(info)) = sigfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => self.reap(),
                    Ok(_) => self.feed(Input::Stop),
                    Err(_) => {}
                }
            }
        }
    }

    fn arm_timer(&self, timer: &TimerFd) -> Result<()> {
        let next = [
            self.lifecycle.next_deadline(),
            self.health_deadline(),
            self.sandbox_retry_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            None => timer.unset().context(|| "timerfd".into())?,
            Some(deadline) => {
                let wait = deadline
                    .saturating_duration_since(Instant::now())
                    .max(std::time::Duration::from_millis(1));
                timer
                    .set(
                        Expiration::OneShot(TimeSpec::from_duration(wait)),
                        TimerSetTimeFlags::empty(),
                    )
                    .context(|| "timerfd".into())?
            }
        }
        Ok(())
    }

    fn feed(&mut self, input: Input) {
        self.apply(input);
        self.publish();
    }

    /// Feeds an input and carries out what follows (without publishing).
    fn apply(&mut self, input: Input) {
        self.idle_trim_due = true;
        let actions = self.lifecycle.handle(input, now());
        self.health_after_input();
        for action in actions {
            self.act(action);
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Start { container } => {
                if !self.ensure_image(&container) {
                    return;
                }
                let input = match self.start_container(&container) {
                    Ok(pid) => {
                        self.running.insert(pid, container.clone());
                        self.record_started(&container);
                        Input::Started { container }
                    }
                    Err(StartFailure::Start(message)) => {
                        self.log_line(&container, Stream::Stderr, &format!("peapod: {message}"));
                        let event = format!("Error: {message}");
                        self.record(EventType::Warning, "Failed", Some(&container), &event);
                        Input::StartFailed {
                            container,
                            reason: "StartError".into(),
                            message,
                        }
                    }
                    Err(StartFailure::Config(message)) => {
                        let event = format!("Error: {message}");
                        self.record(EventType::Warning, "Failed", Some(&container), &event);
                        create_failed(container, "CreateContainerConfigError", message)
                    }
                    Err(StartFailure::Create(message)) => {
                        let event = format!("Error: {message}");
                        self.record(EventType::Warning, "Failed", Some(&container), &event);
                        create_failed(container, "CreateContainerError", message)
                    }
                };
                self.apply(input);
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
                if signal == StopSignal::Term {
                    self.stop_signal_sent(&container);
                }
                if let Err(e) = self.signal(&container, sig, all) {
                    tracing::warn!("signal {container}: {}", one_line(&e));
                }
            }
            Action::StopSandbox => {
                if self.sandbox_pid.is_none() {
                    // It died already: nothing to wait for.
                    self.delete_container(SANDBOX);
                    self.finish();
                } else if let Err(e) = self.signal(SANDBOX, Signal::SIGKILL, true) {
                    tracing::warn!("stop sandbox: {}", one_line(&e));
                    // No sandbox to wait for: finish now.
                    self.finish();
                }
            }
            Action::RunHook {
                container,
                hook,
                deadline,
            } => self.run_hook(&container, hook, deadline),
            Action::ProbesStart { container } => self.probes_start(&container, 0.0),
            Action::RecreateSandbox => self.recreate_sandbox(),
            Action::Record { reason, message } => {
                self.record(EventType::Normal, reason, None, &message)
            }
        }
    }

    fn serve_api(&mut self, api: &UnixListener) {
        while let Ok((mut stream, _)) = api.accept() {
            let _ = stream.set_nonblocking(false);
            // A client that connects and says nothing must not stop the pod's loop.
            let _ = stream.set_read_timeout(Some(API_READ_TIMEOUT));
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while line.len() < API_LINE_LIMIT {
                match stream.read(&mut byte) {
                    Ok(1) if byte[0] != b'\n' => line.push(byte[0]),
                    _ => break,
                }
            }
            let reply = match parse_api_request(&line) {
                Some(ApiRequest::Stop) => {
                    self.feed(Input::Stop);
                    "ok\n"
                }
                Some(ApiRequest::Ping) => "ok\n",
                None => "error unknown request\n",
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    }

    /// Writes status.json and tells `pod run` once the pod has started.
    fn publish(&mut self) {
        let phase = self.lifecycle.phase();
        let mut pod_status = self.lifecycle.status();
        self.network_status(&mut pod_status);
        pod_status.qos_class = Some(crate::pod::qos::qos_class(&self.pod));
        let status = StatusFile {
            supervisor_pid: std::process::id() as i32,
            sandbox_pid: self.sandbox_pid,
            pids: self
                .running
                .iter()
                .map(|(pid, name)| (name.clone(), *pid))
                .collect(),
            finished: self.done,
            status: pod_status,
            lifecycle: Some(self.lifecycle.snapshot(now())),
            starts: self
                .running
                .keys()
                .chain(&self.sandbox_pid)
                .filter_map(|&pid| Some((pid, crate::oci::process_start_time(pid)?)))
                .collect(),
        };
        if let Err(e) = self.folder.write_status(&status) {
            tracing::error!("write status: {}", one_line(&e));
        }
        let states: Vec<_> = (status.status.containers())
            .map(|c| (c.name.clone(), c.state.clone()))
            .collect();
        self.record_backoffs(&states);
        // Pending lasts until every app container has been started, or for
        // as long as a container cannot be created or crash-loops: `pod run
        // -d` returns then too, and the status tells why.
        let started = phase != Phase::Pending
            || self.lifecycle.is_finished()
            || self.lifecycle.is_waiting_on_a_failure()
            || self.sandbox_failing();
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
        self.pulls.kill_all(&self.store);
        if let Err(e) = teardown::release(&self.folder, &self.pod) {
            tracing::error!("release pod resources: {}", one_line(&e));
        }
        self.publish();
    }

    fn fail_setup(&mut self, error: &Error) {
        let message = one_line(error);
        tracing::error!("pod setup failed: {message}");
        let _ = teardown::release(&self.folder, &self.pod);
        if let Some(mut ready) = self.ready.take() {
            let _ = ready.write_all(format!("error {message}\n").as_bytes());
        }
    }
}

/// The longest request line read from the api socket.
const API_LINE_LIMIT: usize = 256;
/// How long a client of the api socket may take to send its request.
const API_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A request on the supervisor's api socket: one line.
#[derive(Debug, PartialEq, Eq)]
pub enum ApiRequest {
    Stop,
    Ping,
}

/// The request a line (without its newline) asks for; None for anything else.
pub fn parse_api_request(line: &[u8]) -> Option<ApiRequest> {
    match std::str::from_utf8(line).ok()?.trim() {
        "stop" => Some(ApiRequest::Stop),
        "ping" => Some(ApiRequest::Ping),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_requests_are_stop_and_ping_only() {
        assert_eq!(parse_api_request(b"stop"), Some(ApiRequest::Stop));
        assert_eq!(parse_api_request(b" ping\r"), Some(ApiRequest::Ping));
        for line in [&b""[..], b"stopp", b"\xffstop", b"st op"] {
            assert_eq!(parse_api_request(line), None, "{line:?}");
        }
    }
}
