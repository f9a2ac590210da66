//! `peapod static`, the daemon: one thread, one poll() over a signalfd, an
//! inotify descriptor on the manifest folder and the ready pipes of the pods
//! it is starting. Every event leads to the same step, `reconcile`: read the
//! folder, list the static pods, `plan`, act. Nothing it does blocks for long:
//! pods start without waiting for them, and old pods are stopped and removed
//! by `peapod pod rm --force` child processes it reaps.
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
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::PollTimeout;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::Serialize;

use super::config::Config;
use super::plan::{self, Action, Declared, FileReport, FileState, FileView, PodState, PodView};
use super::source::{self, FILE_ANNOTATION, SOURCE_ANNOTATION};
use crate::pod::api;
use crate::pod::run::{self, Launch, RunOptions};
use crate::pod::status::Phase;
use crate::pod::store::{write_json_atomic, PodDir, PodStore};

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
pub fn run(config: Config, opts: RunOptions) -> Result<(), String> {
    let dir = state_dir(&opts.root);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let lock_path = dir.join("daemon.lock");
    let lock =
        File::create(&lock_path).map_err(|e| format!("create {}: {e}", lock_path.display()))?;
    let _lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        if e == Errno::EWOULDBLOCK {
            format!(
                "another peapod static daemon runs with --root {}",
                opts.root.display()
            )
        } else {
            format!("lock {}: {e}", lock_path.display())
        }
    })?;
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
        .map_err(|e| format!("block signals: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    let mut daemon = Daemon::new(config, opts)?;
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
        let ready = crate::pod::poll::readable(&fds, timeout)?;
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
    opts: RunOptions,
    store: PodStore,
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
    /// `peapod pod rm` children: pid to (uid, pod name).
    removers: HashMap<Pid, (String, String)>,
    /// Pods whose start or removal failed: the error, and when to try again.
    held: HashMap<String, (String, Instant)>,
    reconcile_at: Option<Instant>,
    next_rescan: Instant,
    scans: u64,
    reconciles: u64,
    folder_error: Option<String>,
    files: BTreeMap<PathBuf, FileReport>,
}

impl Daemon {
    fn new(config: Config, opts: RunOptions) -> Result<Self, String> {
        let inotify = Inotify::init().map_err(|e| format!("inotify: {e}"))?;
        Ok(Self {
            store: PodStore::new(&opts.root),
            config,
            opts,
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
            .fold(self.next_rescan, Instant::min)
    }

    fn watch_folder(&mut self) {
        if self.watch.is_some() {
            return;
        }
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MODIFY
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR;
        match self.inotify.watches().add(&self.config.manifest_dir, mask) {
            Ok(wd) => self.watch = Some(wd),
            Err(e) => {
                let error = format!("{}: {e}", self.config.manifest_dir.display());
                if self.folder_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!("cannot watch {error}; reading it every rescan");
                }
                self.folder_error = Some(error);
            }
        }
    }

    fn read_events(&mut self) {
        let mut buffer = [0u8; 8192];
        loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("inotify: {e}");
                    return;
                }
            };
            let mut count = 0;
            let mut changed: Option<Duration> = None;
            let mut lost_watch = false;
            for event in events {
                count += 1;
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    // Events were lost: read everything again.
                    self.writing.clear();
                    self.closed.clear();
                    changed = Some(Duration::ZERO);
                    continue;
                }
                if event
                    .mask
                    .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                {
                    lost_watch = true;
                    continue;
                }
                let Some(name) = event.name else { continue };
                if !name.to_str().is_some_and(source::is_manifest_name) {
                    continue;
                }
                if event.mask.contains(EventMask::MODIFY) {
                    self.writing.insert(name.to_os_string(), Instant::now());
                    self.closed.remove(name);
                    continue;
                }
                if event.mask.contains(EventMask::CREATE) {
                    self.closed.remove(name);
                } else {
                    self.writing.remove(name);
                    if event
                        .mask
                        .intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO)
                    {
                        self.closed.insert(name.to_os_string());
                    } else {
                        self.closed.remove(name);
                    }
                }
                let atomic = EventMask::MOVED_TO | EventMask::MOVED_FROM | EventMask::DELETE;
                let settle = if event.mask.intersects(atomic) {
                    SETTLE_ATOMIC
                } else {
                    SETTLE
                };
                changed = Some(changed.map_or(settle, |d| d.min(settle)));
            }
            if lost_watch {
                self.watch = None;
                self.soon(Duration::ZERO);
            }
            if let Some(settle) = changed {
                self.soon(settle);
            }
            if count == 0 {
                return;
            }
        }
    }

    /// What each manifest declares now. `None` when the folder cannot be read:
    /// then nothing is changed (a folder gone missing is no order to stop pods).
    fn read_files(&mut self) -> Option<Vec<FileView>> {
        let paths = match source::manifest_files(&self.config.manifest_dir) {
            Ok(paths) => paths,
            Err(e) => {
                let error = format!("{}: {e}", self.config.manifest_dir.display());
                if self.folder_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!("cannot read {error}; the pods are left as they are");
                }
                self.folder_error = Some(error);
                return None;
            }
        };
        if self.watch.is_some() {
            self.folder_error = None;
        }
        let now = Instant::now();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let name = path.file_name().unwrap_or_default();
            let being_written = self
                .writing
                .get(name)
                .is_some_and(|since| now.duration_since(*since) < WRITING_LIMIT);
            // Modified a moment ago and not closed since (as at start, before
            // any event, or between a writer's open and its first write): it
            // may be being written; read it once it is quiet.
            let just_modified = !self.closed.contains(name)
                && std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age < SETTLE);
            if just_modified && !being_written {
                self.soon(SETTLE);
            }
            let declared = if being_written || just_modified {
                self.seen
                    .get(&path)
                    .map_or(Declared::Unread, |(_, declared)| declared.clone())
            } else {
                self.writing.remove(name);
                self.declared(&path)
            };
            files.push(FileView { path, declared });
        }
        let present: Vec<&PathBuf> = files.iter().map(|f| &f.path).collect();
        self.seen.retain(|path, _| present.contains(&path));
        Some(files)
    }

    /// Reads and admits one file, once per distinct content.
    fn declared(&mut self, path: &Path) -> Declared {
        let text = match source::read_manifest(path) {
            Ok(text) => text,
            Err(e) => return Declared::Invalid(e),
        };
        if let Some((seen, declared)) = self.seen.get(path) {
            if *seen == text {
                return declared.clone();
            }
        }
        let declared = match source::admit(&text, path, &self.config.node_name) {
            Ok(admitted) => {
                for warning in &admitted.warnings {
                    tracing::warn!("{warning}");
                }
                Declared::Pod(Box::new(admitted.pod))
            }
            Err(e) => {
                tracing::error!("invalid manifest (its last good pod, if any, keeps running): {e}");
                Declared::Invalid(e)
            }
        };
        self.seen
            .insert(path.to_path_buf(), (text, declared.clone()));
        declared
    }

    /// The static pods in the store, and what state each is in.
    fn pods(&self) -> Vec<PodView> {
        self.store
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
                match run::launch(*pod, &self.opts) {
                    Ok(launch) => {
                        tracing::info!("{}: starting pod {name} (uid {uid})", path.display());
                        self.launches.push(launch);
                    }
                    Err(e) => {
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
                let dir = self.store.pod_dir(&uid);
                let name = pods
                    .iter()
                    .find(|p| p.uid == uid)
                    .map_or_else(String::new, |p| format!("{}/{}", p.namespace, p.name));
                tracing::warn!(
                    "the supervisor of pod {name} (uid {uid}) is gone: adopting the pod"
                );
                match run::adopt(&dir, &self.opts) {
                    Ok(()) => tracing::info!("pod {name} (uid {uid}) adopted"),
                    Err(e) => {
                        tracing::warn!(
                            "pod {name} (uid {uid}) cannot be adopted ({e}): removing it to start it anew"
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

    /// Stops (with the pod's grace period) and removes the pod in a child
    /// process: `peapod pod rm --force`, the path people use.
    fn remove(&mut self, uid: &str, name: &str) {
        let child = Command::new("/proc/self/exe")
            .arg("--root")
            .arg(&self.opts.root)
            .args(["pod", "rm", "--force", uid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                self.removers.insert(
                    Pid::from_raw(child.id() as i32),
                    (uid.to_string(), name.to_string()),
                );
            }
            Err(e) => {
                tracing::error!("pod {name} (uid {uid}): cannot run peapod pod rm: {e}");
                self.hold(uid, format!("cannot run peapod pod rm: {e}"));
            }
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
            if let Some((uid, name)) = self.removers.remove(&pid) {
                if matches!(status, WaitStatus::Exited(_, 0)) {
                    tracing::info!("pod {name} (uid {uid}) removed");
                } else {
                    tracing::error!(
                        "removing pod {name} (uid {uid}) failed ({status:?}); trying again at the next rescan"
                    );
                    self.hold(&uid, format!("peapod pod rm failed: {status:?}"));
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
        if let Err(e) = write_json_atomic(&status_path(&self.opts.root), &status) {
            tracing::error!("write status: {e}");
        }
    }
}

/// A pod not being started or removed by us: supervised, finished, or orphaned.
fn supervised_state(dir: &PodDir) -> PodState {
    let status = dir.status();
    if let Some(status) = &status {
        if status.finished {
            return PodState::Finished(status.phase);
        }
    }
    let phase = status.as_ref().map_or(Phase::Pending, |s| s.phase);
    if api::supervisor_alive(dir) {
        return PodState::Running(phase);
    }
    // A supervisor too busy to answer is not dead: its process still runs
    // `pod supervise` on this folder (a zombie's command line is empty).
    let alive = status.is_some_and(|s| {
        std::fs::read(format!("/proc/{}/cmdline", s.supervisor_pid)).is_ok_and(|cmdline| {
            let dir = dir.dir().as_os_str().as_encoded_bytes();
            cmdline.split(|b| *b == 0).any(|arg| arg == dir)
        })
    });
    if alive {
        PodState::Running(phase)
    } else {
        PodState::Unsupervised
    }
}
