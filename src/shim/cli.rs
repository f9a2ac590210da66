//! The container's processes made and driven by the `peapod` CLI, one
//! single-threaded invocation per operation (`runtime.rs`), as containerd's
//! runc shim drives runc.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::process::{Processes, Spawned, Target};
use super::reaper::Reaper;
use super::runtime::{ChildStdio, Runtime};
use super::stdio::{open_streams, ConsoleSocket, IoPaths};
use super::Error;

/// The init's pid, in the bundle: `delete` (containerd's cleanup after a
/// dead shim) reads it back, as runc's shim reads its `init.pid`.
pub const INIT_PID_FILE: &str = "init.pid";

pub struct PeapodCli {
    runtime: Runtime,
    reaper: Arc<Reaper>,
    /// containerd's namespace, for `binary://` loggers.
    namespace: String,
}

/// A pidfd opened while the process was an unreaped child of ours: signals
/// sent through it can never reach a recycled PID.
pub struct Pidfd(Option<OwnedFd>);

impl Pidfd {
    fn open(pid: i32) -> Self {
        let fd = rustix::process::Pid::from_raw(pid).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
        Pidfd(fd)
    }

    fn signal(&self, signal: i32) -> Result<(), Error> {
        let Some(fd) = &self.0 else {
            return Err(Error::NotFound("the process has no pid".into()));
        };
        if signal <= 0 || signal > libc::SIGRTMAX() {
            return Err(Error::InvalidArgument(format!(
                "signal: invalid signal {signal}"
            )));
        }
        // SAFETY: a signal number in 1..=SIGRTMAX (checked above); real-time
        // signals (systemd's SIGRTMIN+3) are valid for pidfd_send_signal too.
        let sig = unsafe { rustix::process::Signal::from_raw_unchecked(signal) };
        rustix::process::pidfd_send_signal(fd, sig).map_err(|e| match e {
            rustix::io::Errno::SRCH => Error::NotFound("process already finished".into()),
            rustix::io::Errno::INVAL => {
                Error::InvalidArgument(format!("signal: invalid signal {signal}"))
            }
            e => Error::io("kill", e.into()),
        })
    }
}

/// Which process `launch` makes.
enum Launch<'a> {
    /// `peapod create`: the container and its init, `--systemd-cgroup` or not.
    Init { systemd_cgroup: bool },
    /// `peapod exec --detach`: `process` (JSON) in the container.
    Exec { exec_id: &'a str, process: &'a [u8] },
}

fn log_file(c: Target<'_>) -> PathBuf {
    c.bundle.join("log.json")
}

fn read_pid(file: &Path) -> Result<i32, Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::io(format!("read {}", file.display()), e))?;
    text.trim()
        .parse()
        .map_err(|_| Error::Other(format!("{}: not a pid: {text:?}", file.display())))
}

impl PeapodCli {
    pub fn new(runtime: Runtime, reaper: Arc<Reaper>, namespace: String) -> Self {
        PeapodCli {
            runtime,
            reaper,
            namespace,
        }
    }

    /// `peapod VERB args…` with the container's log; no stdio, no input.
    async fn call(&self, c: Target<'_>, args: &[&str]) -> Result<String, Error> {
        self.runtime.call(Some(&log_file(c)), args).await
    }

    /// Runs `peapod create` or `peapod exec`: the one place where a process
    /// gets its stdio, console socket, pid file and arguments. Nothing is
    /// left when it fails.
    async fn launch(
        &self,
        c: Target<'_>,
        what: Launch<'_>,
        io: &IoPaths,
    ) -> Result<Spawned<Pidfd>, Error> {
        let (child, mut streams) = open_streams(io, c.id, &self.namespace, &self.reaper).await?;
        let console = io
            .terminal
            .then(|| ConsoleSocket::new(&self.runtime.root))
            .transpose()?;
        // The exec's process and pid files are scratch, removed once read.
        let (mut args, pid_file, process_file): (Vec<OsString>, _, _) = match what {
            Launch::Init { systemd_cgroup } => (
                ["create", "--bundle"]
                    .into_iter()
                    .map(OsString::from)
                    .chain([c.bundle.into()])
                    .chain(systemd_cgroup.then(|| "--systemd-cgroup".into()))
                    .collect(),
                c.bundle.join(INIT_PID_FILE),
                None,
            ),
            Launch::Exec { exec_id, .. } => {
                let process_file = c.bundle.join(format!(".exec-{exec_id}.json"));
                (
                    vec![
                        "exec".into(),
                        "--process".into(),
                        process_file.clone().into(),
                        "--detach".into(),
                    ],
                    c.bundle.join(format!(".exec-{exec_id}.pid")),
                    Some(process_file),
                )
            }
        };
        args.extend(["--pid-file".into(), pid_file.clone().into()]);
        if let Some(socket) = &console {
            args.extend(["--console-socket".into(), socket.path.clone().into()]);
        }
        args.push(c.id.into());
        let attaching = console.map(|s| s.attach(io.clone())).transpose()?;
        if let (Launch::Exec { process, .. }, Some(file)) = (&what, &process_file) {
            std::fs::write(file, process)
                .map_err(|e| Error::io(format!("write {}", file.display()), e))?;
        }
        let ran = self
            .runtime
            .run(Some(&log_file(c)), &args, child, None)
            .await;
        let pid = ran.and_then(|_| read_pid(&pid_file));
        if let Some(file) = &process_file {
            let _ = std::fs::remove_file(file);
            let _ = std::fs::remove_file(&pid_file);
        }
        let pid = pid?;
        let handle = Pidfd::open(pid);
        let exited = self.reaper.watch(pid);
        if let Some(attaching) = attaching {
            match attaching.streams().await {
                Ok(s) => streams = s,
                Err(e) => {
                    match what {
                        Launch::Init { .. } => {
                            let _ = self.runtime.call(None, &["delete", "--force", c.id]).await;
                        }
                        Launch::Exec { .. } => {
                            let _ = handle.signal(libc::SIGKILL);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(Spawned {
            pid,
            handle,
            exited,
            streams,
        })
    }
}

#[async_trait]
impl Processes for PeapodCli {
    type Handle = Pidfd;

    async fn create(
        &self,
        c: Target<'_>,
        io: &IoPaths,
        systemd_cgroup: bool,
    ) -> Result<Spawned<Pidfd>, Error> {
        self.launch(c, Launch::Init { systemd_cgroup }, io).await
    }

    async fn start(&self, c: Target<'_>) -> Result<(), Error> {
        self.call(c, &["start", c.id]).await.map(drop)
    }

    async fn exec(
        &self,
        c: Target<'_>,
        exec_id: &str,
        process: &[u8],
        io: &IoPaths,
    ) -> Result<Spawned<Pidfd>, Error> {
        self.launch(c, Launch::Exec { exec_id, process }, io).await
    }

    fn signal(&self, process: &Pidfd, signal: i32) -> Result<(), Error> {
        process.signal(signal)
    }

    async fn kill_all(&self, c: Target<'_>, signal: u32) -> Result<(), Error> {
        let signal = signal.to_string();
        self.call(c, &["kill", "--all", c.id, &signal])
            .await
            .map(drop)
    }

    async fn delete(&self, c: Target<'_>, force: bool) -> Result<(), Error> {
        let args: &[&str] = if force {
            &["delete", "--force", c.id]
        } else {
            &["delete", c.id]
        };
        self.call(c, args).await.map(drop)
    }

    async fn pause(&self, c: Target<'_>) -> Result<(), Error> {
        self.call(c, &["pause", c.id]).await.map(drop)
    }

    async fn resume(&self, c: Target<'_>) -> Result<(), Error> {
        self.call(c, &["resume", c.id]).await.map(drop)
    }

    async fn update(&self, c: Target<'_>, resources: &[u8]) -> Result<(), Error> {
        let args: Vec<OsString> = ["update", "--resources", "-", c.id]
            .iter()
            .map(OsString::from)
            .collect();
        let log = log_file(c);
        self.runtime
            .run(Some(&log), &args, ChildStdio::default(), Some(resources))
            .await
            .map(drop)
    }

    async fn pids(&self, c: Target<'_>) -> Result<Vec<u32>, Error> {
        let out = self.call(c, &["ps", "--format", "json", c.id]).await?;
        serde_json::from_str(&out)
            .map_err(|e| Error::Other(format!("peapod ps: not a JSON list of pids: {e}")))
    }
}
