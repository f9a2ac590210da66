//! `pod run`: admit a manifest, resolve its images, make the pod's folder and
//! start its supervisor as a detached process of its own.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{fork, pipe2, setsid, ForkResult};

use super::admission;
use super::lifecycle::Backoff;
use super::model::Pod;
use super::store::{PodDir, PodStore, ResolvedImage};
use super::supervisor::{Mode, Settings, Supervisor, PAUSE_IMAGE};
use crate::error::Context;
use crate::image::ImageStore;

pub struct RunOptions {
    pub root: PathBuf,
    pub settings: Settings,
}

/// Admits the manifest and starts the pod; returns once the supervisor reports
/// the pod started (or failed to set up, which removes everything again).
pub fn run(manifest_path: &Path, opts: &RunOptions) -> Result<(PodDir, Pod), String> {
    let admitted = admission::load(manifest_path).map_err(|e| e.to_string())?;
    for warning in &admitted.warnings {
        eprintln!("peapod: warning: {warning}");
    }
    launch(admitted.pod, opts)?.wait()
}

/// A pod whose supervisor has been started and has not yet said whether the
/// pod started. The static-pod daemon polls `ready` instead of blocking.
pub struct Launch {
    pub dir: PodDir,
    pub pod: Pod,
    /// Readable once the supervisor has answered (or died).
    pub ready: File,
    cgroup_prefix: String,
}

impl Launch {
    /// Reads the supervisor's answer; on failure the pod's folder and whatever
    /// it held on the host are removed again.
    pub fn wait(self) -> Result<(PodDir, Pod), String> {
        match supervisor_answer(&self.ready, &self.dir) {
            Ok(()) => Ok((self.dir, self.pod)),
            Err(e) => {
                abandon(&self.dir, &self.pod, &self.cgroup_prefix);
                Err(e)
            }
        }
    }
}

/// The supervisor's first word on its ready pipe: "ok", or "error MESSAGE".
fn supervisor_answer(ready: &File, dir: &PodDir) -> Result<(), String> {
    let mut line = String::new();
    BufReader::new(ready)
        .read_line(&mut line)
        .map_err(|e| format!("read from supervisor: {e}"))?;
    match line.trim_end().split_once(' ') {
        _ if line.trim_end() == "ok" => Ok(()),
        Some(("error", message)) => Err(message.to_string()),
        _ => Err(format!(
            "the pod supervisor ended before it was ready; see {}",
            dir.supervisor_log().display()
        )),
    }
}

/// Resolves the admitted pod's images, makes its folder and starts its
/// supervisor, without waiting for the pod to start.
pub fn launch(pod: Pod, opts: &RunOptions) -> Result<Launch, String> {
    let images = resolve_images(&pod, &opts.settings.image_store)?;
    let store = PodStore::new(&opts.root);
    let dir = store.create(&pod).map_err(|e| e.to_string())?;
    let written = super::store::write_json_atomic(&dir.pod_file(), &pod)
        .and_then(|_| super::store::write_json_atomic(&dir.images_file(), &images))
        .and_then(|_| {
            std::fs::write(dir.cgroup_prefix_file(), &opts.settings.cgroup_prefix)
                .context(|| format!("write {}", dir.cgroup_prefix_file().display()))
                .map_err(super::store::StoreError::from)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(dir.dir());
        return Err(e.to_string());
    }
    match start_supervisor(&dir, &opts.settings, Mode::Start) {
        Ok(ready) => Ok(Launch {
            dir,
            pod,
            ready,
            cgroup_prefix: opts.settings.cgroup_prefix.clone(),
        }),
        Err(e) => {
            abandon(&dir, &pod, &opts.settings.cgroup_prefix);
            Err(e)
        }
    }
}

/// Undoes a pod that never started: what it held on the host, and its folder.
fn abandon(dir: &PodDir, pod: &Pod, cgroup_prefix: &str) {
    let _ = super::teardown::release(dir, pod, cgroup_prefix);
    let _ = std::fs::remove_dir_all(dir.dir());
}

/// Every container's image must be in the store; the error names the field.
pub fn resolve_images(
    pod: &Pod,
    store_root: &Path,
) -> Result<BTreeMap<String, ResolvedImage>, String> {
    let store = ImageStore::open(store_root).map_err(|e| e.to_string())?;
    store.resolve(PAUSE_IMAGE).map_err(|e| {
        format!("the sandbox image {PAUSE_IMAGE} is not in the image store ({e}); import bundles/images/pause.tar with `peapod image import`")
    })?;
    let mut images = BTreeMap::new();
    let fields = pod
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}].image"), c))
        .chain(
            pod.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("spec.containers[{i}].image"), c)),
        );
    for (field, c) in fields {
        let image = store
            .resolve(&c.image)
            .map_err(|e| format!("{field}: {e}"))?;
        images.insert(c.name.clone(), ResolvedImage::new(&c.image, &image));
    }
    Ok(images)
}

/// Forks the supervisor (we are single-threaded, so fork is safe) into its own
/// session, with its output in the pod folder; returns the pipe on which it
/// will say whether the pod started (or was taken over).
fn start_supervisor(dir: &PodDir, settings: &Settings, mode: Mode) -> Result<File, String> {
    // Close-on-exec: other supervisors forked meanwhile must not inherit it.
    let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // Appended to: an adopting supervisor writes after the one before it.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.supervisor_log())
        .map_err(|e| format!("open {}: {e}", dir.supervisor_log().display()))?;
    // SAFETY: the process is single-threaded (the CLI or the static-pod daemon),
    // so the child may run Rust code.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(read);
            let _ = setsid();
            // The static-pod daemon blocks the signals it reads from a signalfd.
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            let null = File::open("/dev/null").ok();
            // SAFETY: dup2 onto the standard descriptors of this fresh process.
            unsafe {
                if let Some(null) = &null {
                    libc::dup2(null.as_raw_fd(), 0);
                }
                libc::dup2(log.as_raw_fd(), 1);
                libc::dup2(log.as_raw_fd(), 2);
            }
            let _ = std::env::set_current_dir("/");
            // A fresh image: the supervisor then maps only the pages it uses,
            // not everything the CLI had touched (RSS per pod matters).
            let err = exec_supervisor(dir, settings, mode, write);
            eprintln!("peapod supervisor: exec: {err}");
            std::process::exit(1);
        }
        ForkResult::Parent { .. } => Ok(File::from(read)),
    }
}

/// Replaces this (forked) process with `peapod pod supervise`; returns only on error.
fn exec_supervisor(
    dir: &PodDir,
    settings: &Settings,
    mode: Mode,
    ready: std::os::fd::OwnedFd,
) -> String {
    use std::ffi::CString;
    use std::os::fd::IntoRawFd;
    // The ready pipe must survive exec.
    let ready = ready.into_raw_fd();
    let _ = nix::fcntl::fcntl(
        ready,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    );
    let mut args = vec![
        "peapod".to_string(),
        "pod".into(),
        "supervise".into(),
        "--ready-fd".into(),
        ready.to_string(),
        "--image-store".into(),
        settings.image_store.display().to_string(),
        "--cgroup-prefix".into(),
        settings.cgroup_prefix.clone(),
        "--backoff-base-ms".into(),
        settings.backoff.base.as_millis().to_string(),
        dir.dir().display().to_string(),
    ];
    if mode == Mode::Adopt {
        args.insert(3, "--adopt".into());
    }
    let args: Vec<CString> = args
        .into_iter()
        .filter_map(|a| CString::new(a).ok())
        .collect();
    let exe = CString::new("/proc/self/exe").expect("no NUL");
    match nix::unistd::execv(&exe, &args) {
        Ok(never) => match never {},
        Err(e) => e.to_string(),
    }
}

/// `pod supervise`: the supervisor's own entry point (started by `pod run`).
pub fn supervise(
    dir: &Path,
    ready_fd: Option<i32>,
    settings: Settings,
    mode: Mode,
) -> Result<(), String> {
    let dir = PodDir {
        paths: super::spec::PodPaths::new(dir.to_path_buf()),
    };
    // SAFETY: the fd was left open across exec for us by `pod run`.
    let ready = ready_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    // One supervisor per pod, for as long as it lives: the lock goes with it.
    let lock = match super::store::lock_supervisor(&dir) {
        Ok(lock) => lock,
        Err(e) => {
            if let Some(mut ready) = ready {
                let _ = std::io::Write::write_all(&mut ready, format!("error {e}\n").as_bytes());
            }
            return Err(e);
        }
    };
    let result = Supervisor::new(dir, settings, ready, mode)?.run();
    drop(lock);
    result
}

/// Settings for tests and the CLI: the kubelet's back-off unless told otherwise.
pub fn default_settings(
    image_store: PathBuf,
    backoff_base: Option<std::time::Duration>,
) -> Settings {
    let mut backoff = Backoff::default();
    if let Some(base) = backoff_base {
        backoff.base = base;
    }
    Settings {
        image_store,
        cgroup_prefix: super::store::DEFAULT_CGROUP_PREFIX.into(),
        backoff,
    }
}

/// `pod adopt`: starts a new supervisor for a pod whose supervisor died. The
/// pod's containers that still run are kept (their exit statuses will be
/// unknown: they are not the new supervisor's children); the rest carries on
/// from the pod's status.json. Returns once the new supervisor has taken over.
pub fn adopt(dir: &PodDir, opts: &RunOptions) -> Result<(), String> {
    let status = dir
        .status()
        .ok_or_else(|| format!("{}: the pod has no status", dir.dir().display()))?;
    if status.finished {
        return Err("the pod has finished: there is nothing to adopt".into());
    }
    if super::store::supervisor_running(dir) {
        return Err(format!(
            "the pod's supervisor (pid {}) is running",
            status.supervisor_pid
        ));
    }
    let ready = start_supervisor(dir, &opts.settings, Mode::Adopt)?;
    supervisor_answer(&ready, dir)
}
