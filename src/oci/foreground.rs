//! Waiting in the foreground for a container's process (`run`, `exec` without
//! `--detach`): signals are forwarded to it, a terminal is proxied, and its exit
//! becomes ours.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::console::{copy_window_size, set_nonblocking, RawMode};
use super::error::Result;
use crate::error::Context;

/// A process's end as a shell reports it: its exit code, or 128 + the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus(pub i32);

impl ExitStatus {
    fn from_wait(status: WaitStatus) -> Option<Self> {
        match status {
            WaitStatus::Exited(_, code) => Some(Self(code)),
            WaitStatus::Signaled(_, sig, _) => Some(Self(128 + sig as i32)),
            _ => None,
        }
    }
}

/// Blocks every signal and returns a signalfd that receives them. Signals
/// that arrive while blocked stay pending for the next signalfd.
pub(crate) fn block_signals() -> Result<SignalFd> {
    let all = SigSet::all();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)
        .context(|| "block signals".into())?;
    Ok(SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC).context(|| "signalfd".into())?)
}

/// Reaps exited children; returns the status of `pid` once it is among them.
fn reap(pid: Pid) -> Result<Option<ExitStatus>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(None),
            Ok(status) => {
                if status.pid() == Some(pid) {
                    if let Some(exit) = ExitStatus::from_wait(status) {
                        return Ok(Some(exit));
                    }
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => Err(e).context(|| "waitpid".into())?,
        }
    }
}

/// Waits for `pid` (a child of ours) to end, forwarding signals to it. With a
/// pty `master`, copies our stdin to it and its output to our stdout.
pub fn wait(pid: Pid, master: Option<OwnedFd>) -> Result<ExitStatus> {
    let sfd = block_signals()?;
    // The child may have ended before signals were blocked; its SIGCHLD is then lost.
    if let Some(exit) = reap(pid)? {
        if let Some(m) = &master {
            drain(m.as_fd());
        }
        return Ok(exit);
    }
    let stdin = std::io::stdin();
    let _raw = master.as_ref().and_then(|_| RawMode::enter(stdin.as_fd()));
    if let Some(m) = &master {
        copy_window_size(stdin.as_fd(), m.as_fd());
    }
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let (true, Some(m)) = (master_open, &master) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            r => r.context(|| "poll".into())?,
        };
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut idx = 1;
        if master_open {
            if ready[idx] {
                let m = master.as_ref().expect("master present when open");
                master_open = copy_once(m.as_fd(), &mut std::io::stdout(), &mut buf);
            }
            idx += 1;
        }
        if stdin_open && ready[idx] {
            let m = master.as_ref().expect("stdin proxied only with a master");
            stdin_open = copy_stdin(&mut buf, m.as_fd());
        }
        if ready[0] {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => {
                        if let Some(exit) = reap(pid)? {
                            if let Some(m) = &master {
                                drain(m.as_fd());
                            }
                            return Ok(exit);
                        }
                    }
                    Signal::SIGWINCH => {
                        if let Some(m) = &master {
                            copy_window_size(stdin.as_fd(), m.as_fd());
                        }
                    }
                    other => {
                        // The process may be gone already; its SIGCHLD will follow.
                        let _ = kill(pid, other);
                    }
                }
                break;
            }
        }
    }
}

/// Copies one read from `from` to `to`; false once `from` is closed or drained.
fn copy_once(from: BorrowedFd, to: &mut dyn Write, buf: &mut [u8]) -> bool {
    match nix::unistd::read(from.as_raw_fd(), buf) {
        Ok(0) | Err(Errno::EIO) | Err(Errno::EAGAIN) => false,
        Ok(n) => {
            let _ = to.write_all(&buf[..n]);
            let _ = to.flush();
            true
        }
        Err(Errno::EINTR) => true,
        Err(_) => false,
    }
}

/// Copies one read of our stdin to the pty; false at end of input.
fn copy_stdin(buf: &mut [u8], master: BorrowedFd) -> bool {
    match std::io::stdin().lock().read(buf) {
        Ok(0) => false,
        Ok(n) => {
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                match nix::unistd::write(master, rest) {
                    Ok(w) => rest = &rest[w..],
                    Err(Errno::EINTR) => {}
                    Err(_) => return false,
                }
            }
            true
        }
        Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
    }
}

/// Reads what is left in the pty after the process ended.
fn drain(master: BorrowedFd) {
    let _ = set_nonblocking(master);
    let mut buf = [0u8; 8192];
    while copy_once(master, &mut std::io::stdout(), &mut buf) {}
}
