//! `exec`: runs another process in a container, confined as the container's
//! own process: its namespaces, cgroup, seccomp filter, no_new_privs,
//! capabilities, rlimits, labels and user. The container may be created (not
//! yet started) or running; paused only with `--ignore-paused`.
//!
//! peapod does this itself rather than through libcontainer's tenant builder,
//! which drops the container's seccomp filter and refuses created containers.
//! The parent (this single-threaded CLI process) opens what the child joins,
//! enters the container's pid namespace for its children and forks; the child
//! (`enter.rs`) does the rest and reports over a close-on-exec channel, so a
//! failure before execve is an error here and nothing runs.

mod channel;
mod enter;
mod process;
mod target;

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use libcontainer::container::{Container, ContainerStatus};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxSeccomp, Spec};

use self::channel::Message;
use self::enter::Entry;
use self::target::Target;
use super::error::{Error, Result};
use super::foreground::{self, ExitStatus};
use super::{status_name, Runtime};
use crate::error::Context;

#[derive(Default)]
pub struct ExecOptions<'a> {
    pub id: &'a str,
    /// A process.json; when absent the process is the container's own with the overrides below.
    pub process: Option<&'a Path>,
    pub args: Vec<String>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
    pub sub_cgroup: Option<String>,
    /// The process's stdin instead of ours (a startContainer hook's state).
    pub stdin: Option<OwnedFd>,
}

/// What `exec` started: detached, or waited for in the foreground.
pub enum ExecOutcome {
    Detached(Pid),
    Exited(ExitStatus),
}

impl Runtime {
    pub fn exec(&self, opts: &ExecOptions) -> Result<ExecOutcome> {
        let container = self.load(opts.id)?;
        let paused = match container.status() {
            ContainerStatus::Created | ContainerStatus::Running => false,
            ContainerStatus::Paused if opts.ignore_paused => true,
            ContainerStatus::Paused => {
                return Err(Error::Status {
                    id: opts.id.to_string(),
                    status: "paused".into(),
                    action: "exec in it (use --ignore-paused)",
                })
            }
            status => {
                return Err(Error::Status {
                    id: opts.id.to_string(),
                    status: status_name(status).into(),
                    action: "exec in it",
                })
            }
        };
        let init = container
            .pid()
            .ok_or_else(|| Error::Invalid(format!("container {} has no init process", opts.id)))?;
        let config = container.bundle().join("config.json");
        let spec = Spec::load(&config).map_err(|e| Error::Config {
            path: config.clone(),
            reason: format!("invalid config: {e}"),
        })?;
        let spec = super::adjust::user_spec(&self.root, opts.id, spec)?;
        let process = match opts.process {
            Some(path) => process::from_file(path)?,
            None => process::from_container(&spec, opts)?,
        };
        let terminal = process.terminal().unwrap_or(false);
        match (terminal, opts.console_socket, opts.detach) {
            (true, None, true) => {
                return Err(Error::Invalid(
                    "exec: a detached process with a terminal needs --console-socket".into(),
                ))
            }
            (false, Some(_), _) => {
                return Err(Error::Invalid(
                    "exec: --console-socket was given but the process has no terminal".into(),
                ))
            }
            _ => {}
        }
        // Everything that can fail without the container is checked before
        // anything runs in it (runc exits 255 on a pid file it cannot write).
        let pid_file = opts.pid_file.map(PidFile::prepare).transpose()?;
        let console = opts
            .console_socket
            .map(|path| {
                UnixStream::connect(path)
                    .context(|| format!("--console-socket {}: connect", path.display()))
            })
            .transpose()?;
        let target = Target::of(&spec, init.as_raw(), opts.sub_cgroup.as_deref())
            .map_err(|e| Error::Invalid(format!("exec in container {}: {e}", opts.id)))?;
        let linux = spec.linux().as_ref();
        let entry = Entry {
            process,
            seccomp: linux
                .and_then(|l| l.seccomp().as_ref())
                .map(super::seccomp::build)
                .transpose()
                .map_err(Error::Invalid)?,
            personality: linux.and_then(|l| l.personality().clone()),
            namespaces: target.namespaces,
            cgroups: target.cgroups,
            preserve_fds: opts.preserve_fds,
            stdin: opts
                .stdin
                .as_ref()
                .map(|fd| fd.try_clone())
                .transpose()
                .context(|| "exec: stdin".into())?,
        };
        if !opts.detach {
            // From here on a signal for us is the process's: keep it pending
            // for `foreground::wait` (the child unblocks its own mask).
            foreground::block_signals()?;
        }
        let (ours, theirs) = channel::pair()?;
        if let Some(pid_ns) = &target.pid_ns {
            setns(pid_ns, CloneFlags::CLONE_NEWPID)
                .context(|| format!("exec in container {}: join its pid namespace", opts.id))?;
        }
        tracing::debug!(
            id = opts.id,
            init = init.as_raw(),
            "exec: forking the process"
        );
        // SAFETY: this process is single-threaded (a CLI run, or a supervisor's
        // forked helper), so the child may allocate and use the standard library.
        let child = match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(ours);
                enter::run(entry, theirs)
            }
            Ok(ForkResult::Parent { child }) => child,
            Err(nix::Error::ENOMEM) if target.pid_ns.is_some() => {
                return Err(Error::Invalid(format!(
                    "exec in container {}: its init has exited",
                    opts.id
                )))
            }
            Err(e) => Err(e).context(|| "exec: fork".into())?,
        };
        drop(theirs);
        drop(entry);
        let started = Started { child, id: opts.id };
        let mut master = None;
        loop {
            match started.check(ours.receive())? {
                None => break,
                Some(Message::Failed(why)) => return Err(started.failed(why)),
                Some(Message::Terminal(fd)) => {
                    if let Some(socket) = &console {
                        started.check(
                            send_fd(socket, &fd, "/dev/ptmx")
                                .map_err(|e| Error::Invalid(format!("--console-socket: {e}"))),
                        )?;
                    } else {
                        master = Some(fd);
                    }
                }
                Some(Message::SeccompNotify(fd)) => {
                    let seccomp = linux.and_then(|l| l.seccomp().as_ref());
                    let annotations = spec.annotations().as_ref();
                    let status = status_name(container.status());
                    started.check(send_to_listener(
                        seccomp,
                        annotations,
                        &container,
                        status,
                        child,
                        &fd,
                    ))?
                }
                // A frozen cgroup holds the process before execve until resumed.
                Some(Message::Ready) if paused => break,
                Some(Message::Ready) => {}
            }
        }
        tracing::debug!(id = opts.id, pid = child.as_raw(), "exec: process started");
        if let Some(file) = pid_file {
            started.check(file.commit(child))?;
        }
        if opts.detach {
            return Ok(ExecOutcome::Detached(child));
        }
        Ok(ExecOutcome::Exited(foreground::wait(child, master)?))
    }
}

/// The forked child, until it has become the process: any error on our side
/// kills and reaps it, so a failed exec leaves nothing running.
struct Started<'a> {
    child: Pid,
    id: &'a str,
}

impl Started<'_> {
    fn check<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            let _ = kill(self.child, Signal::SIGKILL);
            let _ = waitpid(self.child, None);
        }
        result
    }

    fn failed(&self, why: String) -> Error {
        let _ = waitpid(self.child, None);
        Error::Invalid(format!("exec in container {}: {why}", self.id))
    }
}

/// A pid file written atomically once the process runs; its temporary file is
/// made first, so a folder that does not exist fails the exec before it runs.
struct PidFile {
    path: PathBuf,
    temp: PathBuf,
}

impl PidFile {
    fn prepare(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("--pid-file {}: not a file", path.display())))?;
        let temp = path.with_file_name(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)
            .context(|| format!("--pid-file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            temp,
        })
    }

    fn commit(self, pid: Pid) -> Result<()> {
        std::fs::write(&self.temp, pid.as_raw().to_string())
            .and_then(|()| std::fs::rename(&self.temp, &self.path))
            .context(|| format!("--pid-file {}", self.path.display()))?;
        Ok(())
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Sends a descriptor with SCM_RIGHTS and `text` as the message (runc sends a
/// terminal's name, or a seccomp listener's state).
fn send_fd(socket: &UnixStream, fd: &OwnedFd, text: &str) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(text.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context(|| "send a descriptor".into())?;
    Ok(())
}

/// Hands the process's seccomp notify descriptor to the profile's listener, with
/// the container process state of the runtime spec, as runc does.
pub(super) fn send_to_listener(
    seccomp: Option<&LinuxSeccomp>,
    annotations: Option<&std::collections::HashMap<String, String>>,
    container: &Container,
    status: &str,
    pid: Pid,
    fd: &OwnedFd,
) -> Result<()> {
    let listener = seccomp
        .and_then(|s| s.listener_path().clone())
        .ok_or_else(|| {
            Error::Invalid("linux.seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into())
        })?;
    let state = serde_json::json!({
        "ociVersion": "1.0.2",
        "fds": ["seccompFd"],
        "pid": pid.as_raw(),
        "metadata": seccomp.and_then(|s| s.listener_metadata().clone()).unwrap_or_default(),
        "state": {
            "ociVersion": "1.0.2",
            "id": container.id(),
            "status": status,
            "pid": container.pid().map(|p| p.as_raw()),
            "bundle": Runtime::user_bundle(container),
            "annotations": annotations.cloned().unwrap_or_default(),
        },
    });
    let socket = UnixStream::connect(&listener)
        .context(|| format!("linux.seccomp.listenerPath {}", listener.display()))?;
    send_fd(&socket, fd, &state.to_string())
        .map_err(|e| Error::Invalid(format!("seccomp listener {}: {e}", listener.display())))
}
