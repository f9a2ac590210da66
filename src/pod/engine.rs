//! The pod engine's operations, for every front end (the CLI, the static-pod
//! daemon): start, stop, remove, adopt, wait, exec, and what `ps` shows.
//!
//! A pod is stopped by its supervisor, whose lifecycle machine knows the
//! kubelet's termination rules (stop signals, sidecars last in reverse order,
//! the grace period and its 2 s minimum). A pod whose supervisor died gets a
//! new one first (`adopt`), so it is stopped the same way.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use inotify::{Inotify, WatchMask};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;

use super::admission::{self, Admitted};
use super::error::{Error, Result};
use super::folder::PodFolder;
use super::launch::{self, Launch};
use super::model::Pod;
use super::settings::Settings;
use super::status::{ContainerState, Phase};
use super::store::PodStore;
use super::teardown;
use crate::error::Context;
use crate::oci::{ExecOptions, ExecOutcome, ExitStatus, Runtime};

/// How long past its grace period a pod's stop may take before we give up.
const STOP_SLACK: Duration = Duration::from_secs(30);

pub struct Engine {
    store: PodStore,
    settings: Settings,
}

/// One line of `pod ps`.
#[derive(Debug, Clone)]
pub struct PodSummary {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Containers ready / app containers, as kubectl's READY.
    pub ready: (usize, usize),
    /// The phase; `(unsupervised)` after it when no supervisor looks after
    /// the pod; `Unknown` before its first status.
    pub status: String,
    pub restarts: u32,
    pub started: Option<chrono::DateTime<chrono::Utc>>,
    /// The manifest a static pod comes from.
    pub source: Option<String>,
}

impl Engine {
    pub fn new(root: &Path, settings: Settings) -> Self {
        Self {
            store: PodStore::new(root),
            settings,
        }
    }

    pub fn store(&self) -> &PodStore {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reads and checks a manifest, for this node.
    pub fn admit(&self, manifest: &Path) -> Result<Admitted> {
        Ok(admission::load(manifest, &self.settings.node_name)?)
    }

    /// Starts the pod's supervisor without waiting for the pod to start.
    pub fn launch(&self, pod: Pod) -> Result<Launch> {
        launch::launch(&self.store, pod, &self.settings)
    }

    /// Starts the pod; returns once its supervisor says it started (or failed
    /// to set up, which removes everything again).
    pub fn start(&self, pod: Pod) -> Result<(PodFolder, Pod)> {
        self.launch(pod)?.wait()
    }

    pub fn find(&self, key: &str) -> Result<(PodFolder, Pod)> {
        Ok(self.store.find(key)?)
    }

    /// Gives a pod whose supervisor died a new one.
    pub fn adopt(&self, key: &str) -> Result<Pod> {
        let (folder, pod) = self.find(key)?;
        launch::adopt(&folder).map_err(|e| Error::pod(&pod.name, crate::error::one_line(&e)))?;
        Ok(pod)
    }

    /// Stops a pod with its grace period, and waits until it has stopped.
    pub fn stop(&self, key: &str) -> Result<Pod> {
        let (folder, pod) = self.find(key)?;
        stop(&folder, &pod)?;
        Ok(pod)
    }

    /// Removes a finished pod (with `force`, stops it first) and all it holds.
    pub fn remove(&self, key: &str, force: bool) -> Result<Pod> {
        let (folder, pod) = self.find(key)?;
        remove(&self.store, &folder, &pod, force)?;
        Ok(pod)
    }

    /// Runs a command in one of the pod's containers, in the foreground (or
    /// detached with its pid); `container` defaults to the first app container.
    pub fn exec(
        &self,
        key: &str,
        container: Option<&str>,
        args: Vec<String>,
        tty: bool,
    ) -> Result<ExitStatus> {
        let (folder, pod) = self.find(key)?;
        let container = pick_container(&pod, container)?;
        let runtime = Runtime::new(&folder.oci_root(), false)?;
        let opts = ExecOptions {
            id: &container,
            args,
            tty,
            ..Default::default()
        };
        match runtime.exec(&opts)? {
            ExecOutcome::Exited(status) => Ok(status),
            ExecOutcome::Detached(_) => Ok(ExitStatus(0)),
        }
    }

    /// What `pod ps` lists, by namespace and name.
    pub fn summaries(&self) -> Vec<PodSummary> {
        self.store
            .list()
            .into_iter()
            .map(|(folder, pod)| summary(&folder, &pod))
            .collect()
    }
}

/// A container of the pod by name, or its first app container.
pub fn pick_container(pod: &Pod, wanted: Option<&str>) -> Result<String> {
    match wanted {
        Some(name) => {
            if pod
                .init_containers
                .iter()
                .chain(&pod.containers)
                .any(|c| c.name == name)
            {
                Ok(name.to_string())
            } else {
                Err(Error::pod(&pod.name, format!("no container {name:?}")))
            }
        }
        None => Ok(pod.containers[0].name.clone()),
    }
}

fn summary(folder: &PodFolder, pod: &Pod) -> PodSummary {
    let status = folder.status();
    // kubectl's READY: app containers and sidecars (restartable init
    // containers), a sidecar counting once started and ready.
    let sidecars: Vec<&str> = pod
        .init_containers
        .iter()
        .filter(|c| c.is_sidecar())
        .map(|c| c.name.as_str())
        .collect();
    let total = pod.containers.len() + sidecars.len();
    let (phase, ready, restarts, started) = match &status {
        Some(s) => {
            let ready = s
                .status
                .container_statuses
                .iter()
                .filter(|c| c.ready)
                .count()
                + (s.status.init_container_statuses.iter())
                    .filter(|c| sidecars.contains(&c.name.as_str()) && c.started && c.ready)
                    .count();
            let restarts: u32 = s.status.containers().map(|c| c.restart_count).sum();
            (
                format!("{:?}", s.phase()),
                ready,
                restarts,
                s.status.start_time,
            )
        }
        None => ("Unknown".into(), 0, 0, None),
    };
    let status_text = if status.as_ref().is_some_and(|s| !s.finished) && !folder.supervised() {
        format!("{phase}(unsupervised)")
    } else {
        phase
    };
    PodSummary {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        ready: (ready, total),
        status: status_text,
        restarts,
        started,
        source: pod
            .annotations
            .get(super::static_pods::FILE_ANNOTATION)
            .cloned(),
    }
}

/// Stops the pod (through its supervisor, or a new one if it died) and waits
/// until it has finished.
pub fn stop(folder: &PodFolder, pod: &Pod) -> Result<()> {
    stop_once(folder, pod, true)
}

/// `again`: whether a supervisor that vanishes under our request may be
/// replaced (once) and asked anew.
fn stop_once(folder: &PodFolder, pod: &Pod, again: bool) -> Result<()> {
    if folder.status().is_some_and(|s| s.finished) {
        return Ok(());
    }
    if !folder.supervised() {
        if let Err(e) = launch::adopt(folder) {
            // A pod that never recorded its state cannot be carried on: what
            // runs is killed, and the pod ends failed.
            tracing::warn!(
                "pod {}: no supervisor, and none can take over ({}): killing what runs",
                pod.name,
                crate::error::one_line(&e)
            );
            return teardown::kill_unsupervised(folder, pod);
        }
    }
    let gone = match folder.request("stop") {
        Ok(_) => false,
        // It exited (or died) between our look and our request.
        Err(e) if supervisor_gone(&e) => true,
        Err(e) => {
            return Err(e)
                .context(|| format!("ask the supervisor of pod {} to stop it", pod.name))?
        }
    };
    let deadline = Instant::now() + pod.termination_grace + STOP_SLACK;
    match wait_finished(folder, Some(deadline), None)? {
        // A supervisor that died without finishing the pod left it running:
        // a new one (or the kill of what runs) must stop it.
        Some(_) if gone && again && !folder.status().is_some_and(|s| s.finished) => {
            stop_once(folder, pod, false)
        }
        Some(_) => Ok(()),
        None => Err(Error::pod(&pod.name, "timed out waiting for it to stop")),
    }
}

/// Whether a request failed because the supervisor's socket went away with
/// it: refused, removed, or closed under the request (reset, broken pipe).
fn supervisor_gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset
            | ConnectionRefused
            | ConnectionAborted
            | NotFound
            | BrokenPipe
            | UnexpectedEof
    )
}

/// Removes the pod's folder and all it holds on the host; a pod that has not
/// finished is refused unless `force` (then it is stopped first).
pub fn remove(store: &PodStore, folder: &PodFolder, pod: &Pod, force: bool) -> Result<()> {
    let finished = folder.status().is_some_and(|s| s.finished);
    if !finished {
        if !force {
            return Err(Error::pod(
                &pod.name,
                "is running: stop it first, or use --force",
            ));
        }
        stop(folder, pod)?;
    }
    teardown::release(folder, pod)?;
    // Never remove through a mount: that would reach into images or host paths.
    if let Some(mount) = crate::image::mount_points()?
        .into_iter()
        .find(|m| m.starts_with(folder.dir()))
    {
        return Err(Error::pod(
            &pod.name,
            format!("still mounted: {}", mount.display()),
        ));
    }
    let settings = folder.settings()?;
    store.remove(folder, pod)?;
    teardown::remove_cgroup_parents(folder, &settings);
    Ok(())
}

/// Waits until the supervisor has published the pod as finished, or has died
/// (then the phase it last published), or `deadline` (None). With `interrupt`,
/// a signal read there asks the supervisor to stop the pod.
pub fn wait_finished(
    folder: &PodFolder,
    deadline: Option<Instant>,
    interrupt: Option<&SignalFd>,
) -> Result<Option<Phase>> {
    // status.json is replaced by a rename: each new one wakes us.
    let mut inotify = Inotify::init().context(|| "inotify".into())?;
    inotify
        .watches()
        .add(folder.dir(), WatchMask::MOVED_TO)
        .context(|| format!("watch {}", folder.dir().display()))?;
    let mut buf = [0u8; 1024];
    loop {
        if let Some(status) = folder.status() {
            if status.finished {
                return Ok(Some(status.phase()));
            }
        }
        if !folder.supervised() {
            return Ok(Some(folder.status().map_or(Phase::Failed, |s| s.phase())));
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(None);
        }
        // The supervisor's death changes no file: look again at least this often.
        let mut wait = Duration::from_millis(250);
        if let Some(d) = deadline {
            wait = wait.min(d - now);
        }
        let mut fds = vec![PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        if let Some(sfd) = interrupt {
            fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
        }
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context(|| "poll".into())?,
        }
        let interrupted = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        drop(fds);
        let _ = inotify.read_events(&mut buf);
        if let (true, Some(sfd)) = (interrupted, interrupt) {
            while let Ok(Some(_)) = sfd.read_signal() {}
            let _ = folder.request("stop");
        }
    }
}

/// The containers whose state the `pod logs --follow` loop waits on: whether
/// `container`'s current run still goes on.
pub fn still_running(folder: &PodFolder, container: &str) -> bool {
    folder.status().is_some_and(|s| {
        !s.finished
            && s.status
                .container(container)
                .is_some_and(|c| !matches!(c.state, ContainerState::Terminated(_)))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn pod() -> Pod {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default, uid: u-1}\nspec: {containers: [{name: c, image: busybox}]}\n";
        admission::parse(text, "t.yaml").unwrap().pod
    }

    /// Found by scripts/soak: `pod rm --force` on a supervisor that was just
    /// exiting failed with "Connection reset by peer". A supervisor that goes
    /// away under the request is gone, not an error: the stop goes on.
    #[test]
    fn a_supervisor_that_resets_the_request_is_taken_as_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = PodFolder::new(tmp.path().join("u-1"));
        std::fs::create_dir_all(folder.dir()).unwrap();
        let lock = folder.lock_supervisor().unwrap();
        let listener = UnixListener::bind(folder.api_socket()).unwrap();
        let exiting = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            // The request arrives, unread when the "supervisor" exits: the
            // kernel resets the connection.
            let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
            nix::poll::poll(&mut fds, PollTimeout::from(10_000u16)).unwrap();
            drop(lock);
            drop(stream);
            drop(listener);
        });
        let p = pod();
        let result = stop_once(&folder, &p, false);
        exiting.join().unwrap();
        result.unwrap();
    }

    #[test]
    fn gone_means_reset_refused_missing_or_broken() {
        use std::io::{Error as IoError, ErrorKind};
        for kind in [
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionRefused,
            ErrorKind::NotFound,
            ErrorKind::BrokenPipe,
        ] {
            assert!(supervisor_gone(&IoError::from(kind)), "{kind:?}");
        }
        assert!(!supervisor_gone(&IoError::from(ErrorKind::TimedOut)));
        assert!(!supervisor_gone(&IoError::from(
            ErrorKind::PermissionDenied
        )));
    }
}
