//! The one poll() of a single-threaded event loop (the pod supervisor, the
//! static-pod daemon).

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes, or
/// a signal interrupts; returns, for each fd in order, whether it is ready.
pub fn readable(fds: &[BorrowedFd<'_>], timeout: PollTimeout) -> nix::Result<Vec<bool>> {
    let fds: Vec<(BorrowedFd, PollFlags)> = fds.iter().map(|fd| (*fd, PollFlags::POLLIN)).collect();
    wait(&fds, timeout)
}

/// As [`readable`], each fd with the events it waits for (a connect under way
/// waits to be writable).
pub fn wait(fds: &[(BorrowedFd<'_>, PollFlags)], timeout: PollTimeout) -> nix::Result<Vec<bool>> {
    let mut polled: Vec<PollFd> = fds
        .iter()
        .map(|(fd, events)| PollFd::new(*fd, *events))
        .collect();
    match poll(&mut polled, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(e),
    }
    Ok(polled
        .iter()
        .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}
