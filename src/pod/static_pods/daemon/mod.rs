//! `peapod static`, the daemon: one thread, one poll() over a signalfd, an
//! inotify descriptor on the manifest folder and the ready pipes of the pods
//! it is starting. Every event leads to the same step, `reconcile`: read the
//! folder, list the static pods, `plan`, act. Nothing it does blocks for long:
//! pods start without waiting for them, and old pods are stopped and removed
//! by forked children (running the engine's removal) that it reaps.
//!
//! When a file counts as written: 100 ms after IN_CLOSE_WRITE (a writer may
//! reopen it to append) or 10 ms after IN_MOVED_TO (so that a burst is read
//! once); never while it is open for writing (IN_MODIFY seen, no close yet);
//! and, with no such event since it was last modified (at start, or between a
//! writer's open and first write), not within 100 ms of its modification time.
//! The periodic rescan catches what inotify cannot see (a symbolic link's
//! target changing, a lost event).
//!
//! The daemon's pods outlive it: on SIGTERM or SIGINT it exits and leaves them
//! running; started again, it finds them by their uid and adopts them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{Inotify, WatchDescriptor};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::PollTimeout;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Serialize;

mod files;

use super::config::Config;
use super::error::{Result, StaticError};
use super::plan::{self, Action, Declared, FileReport, FileState, FileView, PodState, PodView};
use super::source::{FILE_ANNOTATION, SOURCE_ANNOTATION};
use crate::error::{one_line, Context};
use crate::pod::engine::{self, Engine};
use crate::pod::folder::{write_json_atomic, PodFolder};
use crate::pod::image_gc;
use crate::pod::launch::{self, Launch};
use crate::pod::status::Phase;
use crate::pod::store::PodStore;

/// Quiet time after a file is closed (a writer may reopen it to append)
/// before the folder is read; one read for a burst.
const SETTLE: Duration = Duration::from_millis(100);
/// The same after a rename or removal, which are whole at once.
const SETTLE_ATOMIC: Duration = Duration::from_millis(10);
/// A file modified and not closed for this long is read anyway.
const WRITING_LIMIT: Duration = Duration::from_secs(30);

/// The daemon's own folder under the state root: its lock and status.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join("static")
}

/// The status file: per manifest, its pod and state.
pub fn status_path(root: &Path) -> PathBuf {
    state_dir(root).join("status.json")
}

/// Runs until SIGTERM or SIGINT.
pub fn run(config: Config, root: &Path, engine: Engine) -> Result<()> {
    let dir = state_dir(root);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .context(|| format!("create {}", dir.display()))?;
    let lock_path = dir.join("daemon.lock");
    let lock = File::create(&lock_path).context(|| format!("create {}", lock_path.display()))?;
    let _lock = match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, Errno::EWOULDBLOCK)) => return Err(StaticError::Running(root.to_path_buf())),
        Err((_, e)) => return Err(e).context(|| format!("lock {}", lock_path.display()))?,
    };
    let mut mask = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        mask.add(signal);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .context(|| "block signals".into())?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context(|| "signalfd".into())?;
    let mut daemon = Daemon::new(config, root, engine)?;
    tracing::info!(
        "peapod static: pods of node {} from {} (rescan every {}s)",
        daemon.config.node_name,
        daemon.config.manifest_dir.display(),
        daemon.config.rescan.as_secs()
    );
    daemon.reconcile();
    loop {
        let wait = daemon.next_wake().saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(wait.as_millis().min(60_000) as u64 + 1)
            .unwrap_or(PollTimeout::MAX);
        let fds: Vec<_> = [signals.as_fd(), daemon.inotify.as_fd()]
            .into_iter()
            .chain(daemon.launches.iter().map(|launch| launch.ready.as_fd()))
            .collect();
        let ready = crate::pod::poll::readable(&fds, timeout).context(|| "poll".into())?;
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => daemon.reap(),
                    Ok(Signal::SIGHUP) => daemon.soon(Duration::ZERO),
                    Ok(signal) => {
                        tracing::info!("peapod static: {signal}: exiting; the pods keep running");
                        daemon.write_status(false);
                        return Ok(());
                    }
                    Err(_) => {}
                }
            }
        }
        if ready[1] {
            daemon.read_events();
        }
        // Highest index first, so the lower ones stay valid.
        for i in (2..ready.len()).rev().filter(|&i| ready[i]) {
            let launch = daemon.launches.remove(i - 2);
            daemon.launched(launch);
        }
        if daemon.reconcile_at.is_some_and(|at| at <= Instant::now())
            || Instant::now() >= daemon.next_rescan
        {
            daemon.reconcile();
        }
        if Instant::now() >= daemon.next_image_gc {
            daemon.collect_images();
        }
    }
}

/// The daemon's status file.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    pid: u32,
    running: bool,
    manifest_dir: &'a Path,
    node_name: &'a str,
    /// Full rescans so far (the first read of the folder is 1).
    scans: u64,
    /// Reconciliations so far (rescans and file events).
    reconciles: u64,
    updated: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    files: &'a BTreeMap<PathBuf, FileReport>,
    /// Uids of pods being stopped and removed.
    removing: Vec<&'a str>,
}

struct Daemon {
    config: Config,
    root: PathBuf,
    engine: Engine,
    inotify: Inotify,
    watch: Option<WatchDescriptor>,
    /// Manifest names modified and not closed yet, with the last modification.
    writing: HashMap<OsString, Instant>,
    /// Manifest names closed after writing, or renamed in, since their last
    /// modification: complete, whatever their modification time.
    closed: HashSet<OsString>,
    /// The last text read from each file, and what it declared.
    seen: HashMap<PathBuf, (String, Declared)>,
    launches: Vec<Launch>,
    /// Children removing a pod: pid to (uid, pod name).
    removers: HashMap<Pid, (String, String)>,
    /// Pods whose start or removal failed: the error, and when to try again.
    held: HashMap<String, (String, Instant)>,
    reconcile_at: Option<Instant>,
    next_rescan: Instant,
    scans: u64,
    reconciles: u64,
    folder_error: Option<String>,
    files: BTreeMap<PathBuf, FileReport>,
    /// The image collection under way (a forked child), and when the next is due.
    image_gc: Option<Pid>,
    next_image_gc: Instant,
}

impl Daemon {
    fn new(config: Config, root: &Path, engine: Engine) -> Result<Self> {
        let inotify = Inotify::init().context(|| "inotify".into())?;
        Ok(Self {
            config,
            root: root.to_path_buf(),
            engine,
            inotify,
            watch: None,
            writing: HashMap::new(),
            closed: HashSet::new(),
            seen: HashMap::new(),
            launches: Vec::new(),
            removers: HashMap::new(),
            held: HashMap::new(),
            reconcile_at: None,
            next_rescan: Instant::now(),
            scans: 0,
            reconciles: 0,
            folder_error: None,
            files: BTreeMap::new(),
            image_gc: None,
            next_image_gc: Instant::now(),
        })
    }

    fn soon(&mut self, delay: Duration) {
        let at = Instant::now() + delay;
        self.reconcile_at = Some(self.reconcile_at.map_or(at, |t| t.min(at)));
    }

    fn next_wake(&self) -> Instant {
        let held = self.held.values().map(|(_, until)| *until);
        let writing = self.writing.values().map(|since| *since + WRITING_LIMIT);
        held.chain(writing)
            .chain(self.reconcile_at)
            .chain(Some(self.next_image_gc))
            .fold(self.next_rescan, Instant::min)
    }

    /// The static pods in the store, and what state each is in.
    fn pods(&self) -> Vec<PodView> {
        self.store()
            .list()
            .into_iter()
            .filter(|(_, pod)| {
                pod.annotations.get(SOURCE_ANNOTATION).map(String::as_str) == Some("file")
            })
            .map(|(dir, pod)| {
                let state = if self.launches.iter().any(|l| l.pod.uid == pod.uid) {
                    PodState::Starting
                } else if self.removers.values().any(|(uid, _)| *uid == pod.uid) {
                    PodState::Removing
                } else {
                    supervised_state(&dir)
                };
                PodView {
                    source: pod.annotations.get(FILE_ANNOTATION).map(PathBuf::from),
                    uid: pod.uid,
                    namespace: pod.namespace,
                    name: pod.name,
                    state,
                }
            })
            .collect()
    }

    fn reconcile(&mut self) {
        let now = Instant::now();
        self.reconcile_at = None;
        self.reconciles += 1;
        if now >= self.next_rescan {
            self.next_rescan = now + self.config.rescan;
            self.scans += 1;
        }
        self.held.retain(|_, (_, until)| *until > now);
        self.watch_folder();
        let Some(files) = self.read_files() else {
            self.write_status(true);
            return;
        };
        let pods = self.pods();
        let held = self
            .held
            .iter()
            .map(|(uid, (error, _))| (uid.clone(), error.clone()))
            .collect();
        let plan = plan::plan(&files, &pods, &held);
        self.files = plan.files;
        for action in plan.actions {
            self.act(action, &pods, &files);
        }
        self.write_status(true);
    }

    fn act(&mut self, action: Action, pods: &[PodView], files: &[FileView]) {
        match action {
            Action::Start { path, pod } => {
                let (uid, name) = (pod.uid.clone(), format!("{}/{}", pod.namespace, pod.name));
                match self.engine.launch(*pod) {
                    Ok(launch) => {
                        tracing::info!("{}: starting pod {name} (uid {uid})", path.display());
                        self.launches.push(launch);
                    }
                    Err(e) => {
                        let e = one_line(&e);
                        tracing::error!("{}: pod {name} cannot start: {e}", path.display());
                        if let Some(report) = self.files.get_mut(&path) {
                            report.state = FileState::Failed;
                            report.error = Some(e.clone());
                        }
                        self.hold(&uid, e);
                    }
                }
            }
            Action::Remove { uid } => {
                let Some(pod) = pods.iter().find(|p| p.uid == uid) else {
                    return;
                };
                let why = match &pod.source {
                    Some(path) if files.iter().any(|f| f.path == *path) => {
                        format!("{} changed", path.display())
                    }
                    Some(path) => format!("{} is gone", path.display()),
                    None => "it has no manifest".into(),
                };
                tracing::info!(
                    "stopping and removing pod {}/{} (uid {uid}): {why}",
                    pod.namespace,
                    pod.name
                );
                self.remove(&uid, &format!("{}/{}", pod.namespace, pod.name));
            }
            Action::Revive { uid } => {
                let folder = self.store().folder(&uid);
                let name = pods
                    .iter()
                    .find(|p| p.uid == uid)
                    .map_or_else(String::new, |p| format!("{}/{}", p.namespace, p.name));
                tracing::warn!(
                    "the supervisor of pod {name} (uid {uid}) is gone: adopting the pod"
                );
                match launch::adopt(&folder) {
                    Ok(()) => tracing::info!("pod {name} (uid {uid}) adopted"),
                    Err(e) => {
                        tracing::warn!(
                            "pod {name} (uid {uid}) cannot be adopted ({}): removing it to start it anew",
                            one_line(&e)
                        );
                        self.remove(&uid, &name);
                    }
                }
            }
        }
    }

    fn hold(&mut self, uid: &str, error: String) {
        let until = Instant::now() + self.config.rescan;
        self.held.insert(uid.to_string(), (error, until));
    }

    fn store(&self) -> &PodStore {
        self.engine.store()
    }

    /// Stops (with the pod's grace period) and removes the pod in a forked
    /// child, so that a long grace period holds up nothing else.
    fn remove(&mut self, uid: &str, name: &str) {
        let store = self.store().clone();
        // SAFETY: the daemon is single-threaded, so the child may run Rust code.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let _ = nix::sys::signal::sigprocmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&SigSet::empty()),
                    None,
                );
                let code = match store.find(uid) {
                    Ok((folder, pod)) => match engine::remove(&store, &folder, &pod, true) {
                        Ok(()) => 0,
                        Err(e) => {
                            tracing::error!("pod {name} (uid {uid}): {}", one_line(&e));
                            1
                        }
                    },
                    // Gone already.
                    Err(_) => 0,
                };
                // SAFETY: leave the child without the daemon's exit handlers.
                unsafe { libc::_exit(code) }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                self.removers
                    .insert(child, (uid.to_string(), name.to_string()));
            }
            Err(e) => {
                tracing::error!("pod {name} (uid {uid}): cannot fork to remove it: {e}");
                self.hold(uid, format!("cannot fork to remove it: {e}"));
            }
        }
    }

    /// The kubelet's image GC (`pod::image_gc`) in a forked child: removing
    /// layers may take long, and holds up nothing here.
    fn collect_images(&mut self) {
        self.next_image_gc = Instant::now() + image_gc::PERIOD;
        if self.image_gc.is_some() {
            return;
        }
        let store = self.store().clone();
        let settings = self.engine.settings().clone();
        // SAFETY: the daemon is single-threaded, so the child may run Rust code.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let _ = nix::sys::signal::sigprocmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&SigSet::empty()),
                    None,
                );
                let code = match image_gc::collect(&store, &settings) {
                    Ok(collected) => {
                        if !collected.removed.is_empty() {
                            tracing::info!(
                                "image GC: removed {} ({} bytes freed)",
                                collected.removed.join(", "),
                                collected.freed
                            );
                        }
                        0
                    }
                    Err(e) => {
                        tracing::error!("image GC: {}", one_line(&e));
                        1
                    }
                };
                // SAFETY: leave the child without the daemon's exit handlers.
                unsafe { libc::_exit(code) }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => self.image_gc = Some(child),
            Err(e) => tracing::error!("image GC: cannot fork: {e}"),
        }
    }

    /// Collects exited children: removers, and supervisors we started.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let Some(pid) = status.pid() else { return };
            if self.image_gc == Some(pid) {
                self.image_gc = None;
                continue;
            }
            if let Some((uid, name)) = self.removers.remove(&pid) {
                if matches!(status, WaitStatus::Exited(_, 0)) {
                    tracing::info!("pod {name} (uid {uid}) removed");
                    // Its images may be unused now.
                    self.next_image_gc = Instant::now();
                } else {
                    tracing::error!(
                        "removing pod {name} (uid {uid}) failed ({status:?}); trying again at the next rescan"
                    );
                    self.hold(&uid, format!("removal failed: {status:?}"));
                }
            }
            // A supervisor that ended may leave a pod to revive.
            self.soon(Duration::ZERO);
        }
    }

    fn launched(&mut self, launch: Launch) {
        let uid = launch.pod.uid.clone();
        let name = format!("{}/{}", launch.pod.namespace, launch.pod.name);
        match launch.wait() {
            Ok(_) => tracing::info!("pod {name} (uid {uid}) started"),
            Err(e) => {
                let e = one_line(&e);
                tracing::error!("pod {name} (uid {uid}) failed to start: {e}");
                self.hold(&uid, e);
            }
        }
        self.soon(Duration::ZERO);
    }

    fn write_status(&self, running: bool) {
        let status = Status {
            pid: std::process::id(),
            running,
            manifest_dir: &self.config.manifest_dir,
            node_name: &self.config.node_name,
            scans: self.scans,
            reconciles: self.reconciles,
            updated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            error: self.folder_error.as_deref(),
            files: &self.files,
            removing: self
                .removers
                .values()
                .map(|(uid, _)| uid.as_str())
                .collect(),
        };
        if let Err(e) = write_json_atomic(&status_path(&self.root), &status) {
            tracing::error!("write status: {e}");
        }
    }
}

/// A pod not being started or removed by us: supervised, finished, or orphaned.
fn supervised_state(folder: &PodFolder) -> PodState {
    let status = folder.status();
    if let Some(status) = &status {
        if status.finished {
            return PodState::Finished(status.phase());
        }
    }
    let phase = status.as_ref().map_or(Phase::Pending, |s| s.phase());
    // A supervisor too busy to answer is not dead: it still holds its lock.
    if folder.supervised() {
        PodState::Running(phase)
    } else {
        PodState::Unsupervised
    }
}
