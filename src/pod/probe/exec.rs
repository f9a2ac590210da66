//! The exec probe and hook: a command run in the container through peapod's
//! own exec (`Runtime::exec`: the container's namespaces, cgroup, seccomp
//! filter, user, ...), from a short-lived forked helper, so the caller's
//! poll loop never blocks.
//!
//! The helper makes the process (its stdout and stderr on one pipe, stdin
//! /dev/null), reads at most 10 KiB of what it writes (the kubelet's
//! maxReadLength; the rest is read and dropped so it never blocks), kills it
//! with SIGKILL when the timeout passes, and reports on a pipe the caller
//! watches: `exit N`, `timeout` or `error MESSAGE` on one line, then the
//! output. The caller cancels a check by dropping it (the helper sees its
//! cancel pipe close, kills the process and ends). The helper is the
//! caller's child: the caller's own SIGCHLD reaping may collect it; this
//! check reaps it through a pidfd, never by a pid that may have been reused.
//!
//! Forking and then running Rust code in the child is only sound in a
//! single-threaded process (glibc's fork keeps malloc usable in the child,
//! but no other lock is safe): the pod supervisor is one.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2, fork, pipe2, ForkResult, Pid};

use super::check::{go_duration, Outcome, Verdict};
use crate::oci::{ExecOptions, ExecOutcome, Runtime};

/// The kubelet's maxReadLength for exec output.
pub const OUTPUT_LIMIT: usize = 10 * 1024;

/// How long past its timeout a helper may take to report before it is killed.
const HELPER_SLACK: Duration = Duration::from_secs(5);

pub struct ExecCheck {
    helper: OwnedFd,
    report: File,
    /// Closing it tells the helper to give up.
    _cancel: OwnedFd,
    buf: Vec<u8>,
    command: Vec<String>,
    timeout: Option<Duration>,
    /// When the caller stops waiting for the helper.
    pub deadline: Option<Instant>,
}

impl ExecCheck {
    /// Forks the helper that runs `command` in container `id`; `timeout` None
    /// lets it run until it ends (a hook) or the check is dropped.
    pub fn start(
        runtime: &Runtime,
        id: &str,
        command: &[String],
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<Self, Outcome> {
        let fail = |what: &str, e: nix::Error| errored(format!("exec: {what}: {e}"));
        let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;
        let (cancel_r, cancel_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;
        // SAFETY: the caller is single-threaded (see the module notes).
        match unsafe { fork() }.map_err(|e| fail("fork", e))? {
            ForkResult::Child => {
                drop(report_r);
                drop(cancel_w);
                let report = helper(runtime, id, command, timeout, &cancel_r);
                let _ = File::from(report_w).write_all(&report);
                // SAFETY: leave at once, without running the caller's exit code.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                drop(report_w);
                drop(cancel_r);
                // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
                // the helper is our unreaped child, so the pid is still its.
                let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
                if fd < 0 {
                    let e = nix::Error::last();
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(fail("pidfd_open", e));
                }
                // SAFETY: pidfd_open returned a new fd that nothing else owns.
                let helper = unsafe { OwnedFd::from_raw_fd(fd as i32) };
                let report = File::from(report_r);
                set_nonblocking(report.as_fd()).map_err(|e| fail("fcntl", e))?;
                Ok(Self {
                    helper,
                    report,
                    _cancel: cancel_w,
                    buf: Vec::new(),
                    command: command.to_vec(),
                    timeout,
                    deadline: timeout.map(|t| now + t + HELPER_SLACK),
                })
            }
        }
    }

    /// The fd to watch for reading.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.report.as_fd()
    }

    /// Reads the report; Some once the helper is done.
    pub fn ready(&mut self) -> Option<Outcome> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.report.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) if self.buf.len() < OUTPUT_LIMIT + 256 => {
                    self.buf.extend_from_slice(&chunk[..n])
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        self.reap();
        Some(parse_report(&self.buf, &self.command, self.timeout))
    }

    /// The helper did not report in time: it is killed.
    pub fn timed_out(&self) -> Outcome {
        self.kill_helper();
        failure(format!("command {:?} timed out", self.command.join(" ")))
    }

    fn kill_helper(&self) {
        // SAFETY: pidfd_send_signal on our pidfd, no siginfo, no flags.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.helper.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        self.reap();
    }

    /// Collects the helper's exit if nobody has yet (ECHILD if the caller's reaping did).
    fn reap(&self) {
        // SAFETY: waitid on our pidfd with a zeroed siginfo we own.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PIDFD,
                self.helper.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            );
        }
    }
}

impl Drop for ExecCheck {
    fn drop(&mut self) {
        // The cancel pipe closes with us: the helper kills the process and ends.
        self.reap();
    }
}

/// What the report says.
fn parse_report(report: &[u8], command: &[String], timeout: Option<Duration>) -> Outcome {
    let (line, output) = match report.iter().position(|b| *b == b'\n') {
        Some(i) => (&report[..i], &report[i + 1..]),
        None => (report, &[][..]),
    };
    let line = String::from_utf8_lossy(line);
    let output = String::from_utf8_lossy(&output[..output.len().min(OUTPUT_LIMIT)]).into_owned();
    let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
    match (word, rest.parse::<i32>()) {
        ("exit", Ok(0)) => Outcome {
            verdict: Verdict::Success,
            output,
            exit_code: Some(0),
        },
        ("exit", Ok(code)) => Outcome {
            verdict: Verdict::Failure,
            output,
            exit_code: Some(code),
        },
        // The kubelet fails a timed-out probe with its output; an empty one says why.
        ("timeout", _) if output.is_empty() => failure(format!(
            "command {:?} timed out after {}",
            command.join(" "),
            go_duration(timeout.unwrap_or_default())
        )),
        ("timeout", _) => failure(output),
        ("error", _) => errored(rest.to_string()),
        _ => errored("exec helper ended without a report".into()),
    }
}

fn failure(output: String) -> Outcome {
    Outcome {
        verdict: Verdict::Failure,
        output,
        exit_code: None,
    }
}

fn errored(output: String) -> Outcome {
    Outcome {
        verdict: Verdict::Error,
        output,
        exit_code: None,
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

/// The helper's work: runs the command and returns its report.
fn helper(
    runtime: &Runtime,
    id: &str,
    command: &[String],
    timeout: Option<Duration>,
    cancel: &OwnedFd,
) -> Vec<u8> {
    let started = Instant::now();
    let setup = || -> nix::Result<(OwnedFd, File)> {
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
        let null = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|_| nix::Error::ENOENT)?;
        dup2(null.as_raw_fd(), 0)?;
        dup2(out_w.as_raw_fd(), 1)?;
        dup2(out_w.as_raw_fd(), 2)?;
        Ok((out_r, null))
    };
    let (out, null) = match setup() {
        Ok(pair) => pair,
        Err(e) => return format!("error exec: stdio: {e}\n").into_bytes(),
    };
    let opts = ExecOptions {
        id,
        args: command.to_vec(),
        detach: true,
        ..Default::default()
    };
    let pid = match runtime.exec(&opts) {
        Ok(ExecOutcome::Detached(pid)) => pid,
        Ok(ExecOutcome::Exited(_)) => return b"error exec did not detach\n".to_vec(),
        Err(e) => return format!("error {}\n", crate::error::one_line(&e)).into_bytes(),
    };
    // Only the process holds the pipe's write end now.
    let _ = dup2(null.as_raw_fd(), 1);
    let _ = dup2(null.as_raw_fd(), 2);
    let deadline = timeout.map(|t| started + t);
    let (status, output) = watch(pid, out, cancel, deadline);
    let mut report = match status {
        Some(WaitStatus::Exited(_, code)) => format!("exit {code}\n"),
        Some(WaitStatus::Signaled(_, sig, _)) => format!("exit {}\n", 128 + sig as i32),
        _ => "timeout\n".to_string(),
    }
    .into_bytes();
    report.extend(output);
    report
}

/// Waits for `pid` to end (None: the deadline passed or the caller gave up,
/// and it was killed), collecting at most OUTPUT_LIMIT bytes of its output.
fn watch(
    pid: Pid,
    out: OwnedFd,
    cancel: &OwnedFd,
    deadline: Option<Instant>,
) -> (Option<WaitStatus>, Vec<u8>) {
    let mut output = Vec::new();
    let mut out = Some(File::from(out));
    // SAFETY: pidfd_open takes a pid and flags; the process is our unreaped child.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if raw >= 0 {
        // SAFETY: pidfd_open returned a new fd that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                break;
            }
            let timeout = left.map_or(PollTimeout::NONE, |l| {
                let ms = l.as_millis().clamp(1, i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            });
            let mut fds = vec![
                PollFd::new(cancel.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(o) = &out {
                fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
            }
            if poll(&mut fds, timeout).is_err() {
                continue;
            }
            let fired: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if fired[0] {
                break;
            }
            if fired.get(2) == Some(&true)
                && !out.as_mut().is_some_and(|o| read_some(o, &mut output))
            {
                out = None;
            }
            if fired[1] {
                let status = waitpid(pid, None).ok();
                // What it wrote before it ended; a child it left may hold the pipe open.
                if let Some(o) = out.as_mut() {
                    let _ = set_nonblocking(o.as_fd());
                    while read_some(o, &mut output) {}
                }
                return (status, output);
            }
        }
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
    (None, output)
}

/// Reads once from `file` into `output` (up to OUTPUT_LIMIT, dropping the
/// rest); false at the end or on an error.
fn read_some(file: &mut File, output: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match file.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let room = OUTPUT_LIMIT.saturating_sub(output.len());
            output.extend_from_slice(&chunk[..n.min(room)]);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_become_outcomes() {
        let cmd = vec!["cat".to_string(), "/ok".to_string()];
        let t = Some(Duration::from_secs(1));
        let cases = [
            (&b"exit 0\nfine"[..], Verdict::Success, "fine", Some(0)),
            (
                b"exit 1\nno such file",
                Verdict::Failure,
                "no such file",
                Some(1),
            ),
            (b"exit 137\n", Verdict::Failure, "", Some(137)),
            (
                b"timeout\n",
                Verdict::Failure,
                "command \"cat /ok\" timed out after 1s",
                None,
            ),
            (b"timeout\npartial", Verdict::Failure, "partial", None),
            (
                b"error container does not exist: web",
                Verdict::Error,
                "container does not exist: web",
                None,
            ),
            (
                b"",
                Verdict::Error,
                "exec helper ended without a report",
                None,
            ),
        ];
        for (report, verdict, output, code) in cases {
            let o = parse_report(report, &cmd, t);
            assert_eq!(
                (o.verdict, o.output.as_str(), o.exit_code),
                (verdict, output, code),
                "{report:?}"
            );
        }
    }
}
