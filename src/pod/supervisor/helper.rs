//! Short-lived helper processes of the supervisor.

use std::fs::File;
use std::io::{Read, Write};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::waitpid;

use crate::error::Context;
use crate::pod::error::{Error, Result};

/// The signals the supervisor handles through its signalfd.
pub(super) fn handled_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask
}

/// Runs `work` in a forked child of the supervisor and returns its answer.
///
/// Every libcontainer call goes through here. Its side effects on the calling
/// process (chdir, non-dumpable, its own oom_score_adj, a signal mask inherited
/// by the container) stay in the short-lived child, and the code and heap it
/// touches never count against the long-lived supervisor's memory. Container
/// processes the child creates are reparented to the supervisor (a subreaper)
/// when the child exits, so the supervisor still reaps them. An error comes
/// back as its one-line text.
pub(super) fn in_child(work: impl FnOnce() -> Result<i32>) -> Result<i32> {
    let (read, write) = nix::unistd::pipe().context(|| "pipe".into())?;
    // SAFETY: the supervisor is single-threaded, so the child may run Rust code.
    match unsafe { nix::unistd::fork() }.context(|| "fork".into())? {
        nix::unistd::ForkResult::Child => {
            drop(read);
            // Containers inherit this mask: none of our signals may stay blocked.
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_UNBLOCK,
                Some(&handled_signals()),
                None,
            );
            // Nor ignored: a container whose stop signal is ignored can only be killed.
            // (SIGPIPE stays ignored here, as Rust set it, so that a broken
            // pipe is an error to report; the container's init resets it.)
            crate::pod::launch::default_signal_dispositions();
            // SAFETY: SIG_IGN installs no handler; the child is single-threaded.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            let answer = match work() {
                Ok(n) => format!("ok {n}"),
                Err(e) => format!("error {}", crate::error::one_line(&e)),
            };
            let mut out = File::from(write);
            let _ = out.write_all(answer.as_bytes());
            drop(out);
            // SAFETY: leave at once, without running the supervisor's exit code.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(write);
            let mut answer = String::new();
            let read_result = File::from(read).read_to_string(&mut answer);
            let status = loop {
                match waitpid(child, None) {
                    Err(Errno::EINTR) => continue,
                    other => break other,
                }
            };
            read_result.context(|| "read from helper process".into())?;
            match answer.split_once(' ') {
                Some(("ok", n)) => n
                    .parse()
                    .map_err(|_| Error::Supervisor(format!("helper process said {answer:?}"))),
                Some(("error", message)) => Err(Error::Supervisor(message.to_string())),
                _ => Err(Error::Supervisor(format!(
                    "helper process ended without an answer ({status:?})"
                ))),
            }
        }
    }
}
