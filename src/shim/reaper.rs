//! The shim is the subreaper of everything it starts: the runtime CLI
//! invocations, and the container inits and exec processes reparented to it
//! when the CLI exits. One SIGCHLD handler reaps them all; an exit that
//! arrives before anyone watches its PID (a process that dies before its pid
//! file is read) is kept until it is claimed.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::process::Command;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// Exits nobody claimed are kept up to this many (oldest dropped first):
/// grandchildren of containers that share the host's pid namespace are
/// reparented here too, and nobody will ever ask for them.
const MAX_UNCLAIMED: usize = 1024;

#[derive(Default)]
struct Inner {
    waiters: HashMap<i32, oneshot::Sender<i32>>,
    unclaimed: HashMap<i32, i32>,
    order: VecDeque<i32>,
}

/// Exit statuses of our children, by PID. The status is the exit code, or
/// 128 + the signal number for a process killed by a signal.
#[derive(Default)]
pub struct Reaper {
    inner: Mutex<Inner>,
}

impl Reaper {
    /// Starts reaping on SIGCHLD; call before anything is spawned.
    pub fn start() -> io::Result<Arc<Reaper>> {
        let reaper = Arc::new(Reaper::default());
        let mut sigchld = signal(SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            loop {
                r.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.deliver(pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.deliver(pid.as_raw(), 128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    break;
                }
            }
        }
    }

    fn deliver(&self, pid: i32, code: i32) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(tx) = inner.waiters.remove(&pid) {
            let _ = tx.send(code);
            return;
        }
        if inner.unclaimed.insert(pid, code).is_none() {
            inner.order.push_back(pid);
        }
        while inner.order.len() > MAX_UNCLAIMED {
            if let Some(old) = inner.order.pop_front() {
                inner.unclaimed.remove(&old);
            }
        }
    }

    /// The exit status of `pid`, one of our children (or reparented to us).
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<i32> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock().unwrap();
        if let Some(code) = inner.unclaimed.remove(&pid) {
            inner.order.retain(|p| *p != pid);
            let _ = tx.send(code);
        } else {
            inner.waiters.insert(pid, tx);
        }
        rx
    }

    /// Spawns `cmd` and returns its PID and its exit status to come; the PID
    /// is registered before the reaper can see the child's exit.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(i32, oneshot::Receiver<i32>)> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock().unwrap();
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        inner.waiters.insert(pid, tx);
        Ok((pid, rx))
    }
}
