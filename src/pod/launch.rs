//! Starting a pod's supervisor: the pod's folder and records are made, then the
//! supervisor is forked into a session of its own and re-executed as `peapod
//! pod supervise DIR` (a fresh image maps only what a supervisor uses). It says
//! on a pipe whether the pod started, or took over for `adopt`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{fork, pipe2, setsid, ForkResult};

use super::error::{Error, Result};
use super::folder::{write_json_atomic, PodFolder, ResolvedImage};
use super::model::Pod;
use super::settings::{Settings, PAUSE_IMAGE};
use super::store::PodStore;
use super::supervisor::{Mode, Supervisor};
use crate::error::Context;
use crate::image::pull::{policy, Decision, PullPolicy};
use crate::image::ImageStore;

/// A pod whose supervisor has been started and has not yet said whether the
/// pod started. The static-pod daemon polls `ready` instead of blocking.
pub struct Launch {
    pub folder: PodFolder,
    pub pod: Pod,
    /// Readable once the supervisor has answered (or died).
    pub ready: File,
    store: PodStore,
}

impl Launch {
    /// Reads the supervisor's answer; on failure the pod's folder and whatever
    /// it held on the host are removed again.
    pub fn wait(self) -> Result<(PodFolder, Pod)> {
        match supervisor_answer(&self.ready, &self.folder) {
            Ok(()) => Ok((self.folder, self.pod)),
            Err(e) => {
                abandon(&self.store, &self.folder, &self.pod);
                Err(e)
            }
        }
    }
}

/// The supervisor's first word on its ready pipe: "ok", or "error MESSAGE".
fn supervisor_answer(ready: &File, folder: &PodFolder) -> Result<()> {
    let mut line = String::new();
    BufReader::new(ready)
        .read_line(&mut line)
        .context(|| "read from the pod's supervisor".into())?;
    match line.trim_end().split_once(' ') {
        _ if line.trim_end() == "ok" => Ok(()),
        Some(("error", message)) => Err(Error::Supervisor(message.to_string())),
        _ => Err(Error::Supervisor(format!(
            "the pod supervisor ended before it was ready; see {}",
            folder.supervisor_log().display()
        ))),
    }
}

/// Resolves the admitted pod's images, makes its folder and starts its
/// supervisor, without waiting for the pod to start.
pub fn launch(store: &PodStore, pod: Pod, settings: &Settings) -> Result<Launch> {
    // What the node refuses (sysctls, seccomp profiles) is refused before
    // anything of the pod exists.
    super::security::check(&pod, &settings.security).map_err(|e| Error::pod(&pod.name, e))?;
    let images = resolve_images(&pod, &settings.image_store)?;
    let folder = store.create(&pod)?;
    let written = write_json_atomic(&folder.pod_file(), &pod)
        .and_then(|()| write_json_atomic(&folder.images_file(), &images))
        .and_then(|()| write_json_atomic(&folder.settings_file(), settings));
    if let Err(e) = written {
        let _ = store.remove(&folder, &pod);
        return Err(e.into());
    }
    match start_supervisor(&folder, Mode::Start) {
        Ok(ready) => Ok(Launch {
            folder,
            pod,
            ready,
            store: store.clone(),
        }),
        Err(e) => {
            abandon(store, &folder, &pod);
            Err(e)
        }
    }
}

/// Undoes a pod that never started: what it held on the host, and its folder.
fn abandon(store: &PodStore, folder: &PodFolder, pod: &Pod) {
    let _ = super::teardown::release(folder, pod);
    let _ = store.remove(folder, pod);
}

/// The images the containers can use as they are (the kubelet's pull policy
/// says so, `image::pull::policy`); the others are pulled by the supervisor
/// before their container starts, and images.json gets them then. The
/// sandbox's image must be here (it is imported, never pulled).
pub fn resolve_images(pod: &Pod, store_root: &Path) -> Result<BTreeMap<String, ResolvedImage>> {
    let store = ImageStore::open(store_root)?;
    store.resolve(PAUSE_IMAGE).map_err(|e| {
        Error::Supervisor(format!(
            "the sandbox image {PAUSE_IMAGE} is not in the image store ({e}); import bundles/images/pause.tar with `peapod image import`"
        ))
    })?;
    let mut images = BTreeMap::new();
    for c in pod.init_containers.iter().chain(&pod.containers) {
        let Ok(policy) = PullPolicy::of(c.image_pull_policy.as_deref(), &c.image) else {
            continue;
        };
        let Ok((presence, Some(image))) = store.presence(&c.image) else {
            continue;
        };
        if policy::decide(&c.image, policy, presence, false) == Decision::UseLocal {
            images.insert(c.name.clone(), ResolvedImage::new(&c.image, &image));
        }
    }
    Ok(images)
}

/// Forks the supervisor (we are single-threaded, so fork is safe) into its own
/// session, with its output in the pod folder; returns the pipe on which it
/// will say whether the pod started (or was taken over).
fn start_supervisor(folder: &PodFolder, mode: Mode) -> Result<File> {
    // Close-on-exec: other supervisors forked meanwhile must not inherit it.
    let (read, write) = pipe2(OFlag::O_CLOEXEC).context(|| "pipe".into())?;
    // Appended to: an adopting supervisor writes after the one before it.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(folder.supervisor_log())
        .context(|| format!("open {}", folder.supervisor_log().display()))?;
    // SAFETY: the process is single-threaded (the CLI, the static-pod daemon,
    // or a child of it), so the child may run Rust code.
    match unsafe { fork() }.context(|| "fork".into())? {
        ForkResult::Child => {
            drop(read);
            let _ = setsid();
            // The static-pod daemon blocks the signals it reads from a signalfd.
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            // Ignored signals survive exec and would reach every container
            // (a shell's background job ignores SIGINT and SIGQUIT, nohup
            // SIGHUP): a container whose stop signal is ignored could only
            // be killed. The supervisor starts from the defaults.
            default_signal_dispositions();
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
            let err = exec_supervisor(folder, mode, write);
            eprintln!("peapod supervisor: exec: {err}");
            // SAFETY: leave the forked child without the parent's exit handlers.
            unsafe { libc::_exit(1) }
        }
        ForkResult::Parent { .. } => Ok(File::from(read)),
    }
}

/// Sets every signal that can be caught (real-time ones too) back to its
/// default action. For a forked, single-threaded child before it execs or
/// makes containers.
pub(crate) fn default_signal_dispositions() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // The kernel's struct sigaction: handler SIG_DFL (0), no flags, no
        // restorer, an empty mask. Raw, as glibc refuses 32 and 33 (its own).
        let action: [u64; 4] = [0; 4];
        // SAFETY: rt_sigaction reads a struct we own and writes nothing back;
        // SIG_DFL installs no handler; the caller is single-threaded.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
}

/// Replaces this (forked) process with `peapod pod supervise`; returns only on error.
fn exec_supervisor(folder: &PodFolder, mode: Mode, ready: OwnedFd) -> String {
    // The ready pipe must survive exec.
    let ready = ready.into_raw_fd();
    let _ = fcntl(ready, FcntlArg::F_SETFD(FdFlag::empty()));
    let mut args = vec![
        "peapod".to_string(),
        "pod".into(),
        "supervise".into(),
        "--ready-fd".into(),
        ready.to_string(),
    ];
    if mode == Mode::Adopt {
        args.push("--adopt".into());
    }
    args.push(folder.dir().display().to_string());
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

/// `pod supervise`: the supervisor's own entry point (started by `launch`).
pub fn supervise(dir: &Path, ready_fd: Option<i32>, mode: Mode) -> Result<()> {
    let folder = PodFolder::new(dir.to_path_buf());
    // SAFETY: the fd was left open across exec for us by `start_supervisor`.
    let ready = ready_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    let tell = |ready: Option<File>, e: &Error| {
        if let Some(mut ready) = ready {
            let _ = ready.write_all(format!("error {}\n", crate::error::one_line(e)).as_bytes());
        }
    };
    // One supervisor per pod, for as long as it lives: the lock goes with it.
    let lock = match folder.lock_supervisor() {
        Ok(lock) => lock,
        Err(e) => {
            let e = Error::from(e);
            tell(ready, &e);
            return Err(e);
        }
    };
    let settings = match folder.settings() {
        Ok(settings) => settings,
        Err(e) => {
            let e = Error::from(e);
            tell(ready, &e);
            return Err(e);
        }
    };
    let result = Supervisor::new(folder, settings, ready, mode)?.run();
    drop(lock);
    result
}

/// Starts a new supervisor for a pod whose supervisor died: it carries on from
/// the pod's status.json and keeps the containers that still run. Returns once
/// the new supervisor has taken over.
pub fn adopt(folder: &PodFolder) -> Result<()> {
    let status = folder
        .status()
        .ok_or_else(|| Error::Supervisor("the pod has no status to carry on from".into()))?;
    if status.finished {
        return Err(Error::Supervisor(
            "the pod has finished: there is nothing to adopt".into(),
        ));
    }
    if folder.supervised() {
        return Err(Error::Supervisor(format!(
            "the pod's supervisor (pid {}) is running",
            status.supervisor_pid
        )));
    }
    let ready = start_supervisor(folder, Mode::Adopt)?;
    supervisor_answer(&ready, folder)
}
