//! Exit statuses of processes that are not our children.
//!
//! A supervisor that adopts a pod (its previous supervisor died) is not the
//! parent of the pod's processes, so `waitpid` cannot tell it how they end; a
//! pidfd only says *that* they ended. The kernel's process-events connector
//! (netlink, `NETLINK_CONNECTOR` group `CN_IDX_PROC`) reports every process's
//! exit with its wait status, to root in the initial namespaces. We subscribe
//! before checking which processes still run, so no exit can slip between,
//! keep the statuses of the processes we watch, and look one up when the
//! process's pidfd says it is gone.
//!
//! Kernels from 6.6 filter the events for a listener: we ask for exits only.
//! Older kernels take only the unfiltered subscription and send every event.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::PollTimeout;
use rustix::net;

/// `CN_IDX_PROC` and `CN_VAL_PROC` (linux/connector.h).
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `enum proc_cn_mcast_op` (linux/cn_proc.h).
const MCAST_LISTEN: u32 = 1;
const MCAST_IGNORE: u32 = 2;
/// `PROC_EVENT_EXIT` of `enum what` (linux/cn_proc.h).
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
/// `struct nlmsghdr` and `struct cn_msg`, in bytes.
const NLMSG_HDR: usize = 16;
const CN_MSG_HDR: usize = 20;
/// Offsets in `struct proc_event`: `what`, then (after cpu and the
/// timestamp) the exit event's pid, tgid and exit code.
const EV_WHAT: usize = 0;
const EV_PID: usize = 16;
const EV_TGID: usize = 20;
const EV_EXIT_CODE: usize = 24;

/// How a process ended, as `waitpid` would have said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// From the kernel's wait status (`task->exit_code`).
    pub fn from_wait_status(status: u32) -> Self {
        match status & 0x7f {
            0 => Exit::Code(((status >> 8) & 0xff) as i32),
            sig => Exit::Signal(sig as i32),
        }
    }
}

/// A subscription to process exits.
pub struct ExitEvents {
    socket: OwnedFd,
    /// The latest status of each thread-group leader that ended, of the pids
    /// asked for.
    ended: HashMap<i32, Exit>,
    seq: u32,
}

impl ExitEvents {
    /// Subscribes to process exits. Fails without CAP_NET_ADMIN in the
    /// initial user and pid namespaces.
    pub fn subscribe() -> io::Result<Self> {
        let socket = net::socket_with(
            net::AddressFamily::NETLINK,
            net::SocketType::DGRAM,
            net::SocketFlags::CLOEXEC | net::SocketFlags::NONBLOCK,
            Some(net::netlink::CONNECTOR),
        )?;
        net::bind(
            &socket,
            &net::netlink::SocketAddrNetlink::new(0, CN_IDX_PROC),
        )?;
        let mut events = Self {
            socket,
            ended: HashMap::new(),
            seq: 0,
        };
        events.control(MCAST_LISTEN)?;
        Ok(events)
    }

    /// Listens or stops listening: exits only where the kernel can filter.
    fn control(&mut self, op: u32) -> io::Result<()> {
        let mut payload = op.to_ne_bytes().to_vec();
        if kernel_filters_events() {
            payload.extend_from_slice(&PROC_EVENT_EXIT.to_ne_bytes());
        }
        self.seq = self.seq.wrapping_add(1);
        let total = NLMSG_HDR + CN_MSG_HDR + payload.len();
        let mut msg = Vec::with_capacity(total);
        // struct nlmsghdr: len, type (NLMSG_DONE), flags, seq, port id.
        msg.extend_from_slice(&(total as u32).to_ne_bytes());
        msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&std::process::id().to_ne_bytes());
        // struct cn_msg: id (idx, val), seq, ack, len, flags.
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&(payload.len() as u16).to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&payload);
        // The kernel is the destination of an unconnected netlink socket.
        net::send(&self.socket, &msg, net::SendFlags::empty())?;
        Ok(())
    }

    /// Readable when events are queued.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Reads every queued event; keeps the exits of the pids `wanted` says.
    pub fn read(&mut self, wanted: impl Fn(i32) -> bool) {
        let mut buf = [0u8; 8192];
        loop {
            let n = match net::recv(&self.socket, &mut buf[..], net::RecvFlags::empty()) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::INTR) => continue,
                // ENOBUFS: the queue overflowed and events were lost; the
                // processes they were about are reported as lost.
                Err(rustix::io::Errno::NOBUFS) => continue,
                Err(_) => return,
            };
            for (pid, exit) in exits_in(&buf[..n]) {
                if wanted(pid) {
                    self.ended.insert(pid, exit);
                }
            }
        }
    }

    /// How `pid` ended, once its pidfd said so: its event is sent just after
    /// the pidfd wakes, so this waits up to `patience` for it.
    pub fn take(&mut self, pid: i32, patience: Duration) -> Option<Exit> {
        let deadline = Instant::now() + patience;
        loop {
            self.read(|p| p == pid);
            if let Some(exit) = self.ended.remove(&pid) {
                return Some(exit);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            if super::poll::readable(&[self.as_fd()], timeout).is_err() {
                return None;
            }
        }
    }
}

impl Drop for ExitEvents {
    fn drop(&mut self) {
        // Older kernels count listeners and send events while any is left.
        let _ = self.control(MCAST_IGNORE);
    }
}

/// The exits (thread-group leaders only) in one datagram of netlink messages.
fn exits_in(mut data: &[u8]) -> Vec<(i32, Exit)> {
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut found = Vec::new();
    while data.len() >= NLMSG_HDR {
        let Some(len) = u32_at(data, 0).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDR || len > data.len() {
            break;
        }
        let event = data.get(NLMSG_HDR + CN_MSG_HDR..len).unwrap_or_default();
        if u32_at(event, EV_WHAT) == Some(PROC_EVENT_EXIT) {
            if let (Some(pid), Some(tgid), Some(status)) = (
                u32_at(event, EV_PID),
                u32_at(event, EV_TGID),
                u32_at(event, EV_EXIT_CODE),
            ) {
                if pid == tgid {
                    found.push((pid as i32, Exit::from_wait_status(status)));
                }
            }
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        data = data.get(next..).unwrap_or_default();
    }
    found
}

/// Linux 6.6 and later take a `struct proc_input` with an event filter.
fn kernel_filters_events() -> bool {
    let Ok(uname) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = uname.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(what: u32, pid: u32, tgid: u32, status: u32) -> Vec<u8> {
        let mut event = vec![0u8; 40];
        event[EV_WHAT..EV_WHAT + 4].copy_from_slice(&what.to_ne_bytes());
        event[EV_PID..EV_PID + 4].copy_from_slice(&pid.to_ne_bytes());
        event[EV_TGID..EV_TGID + 4].copy_from_slice(&tgid.to_ne_bytes());
        event[EV_EXIT_CODE..EV_EXIT_CODE + 4].copy_from_slice(&status.to_ne_bytes());
        let len = NLMSG_HDR + CN_MSG_HDR + event.len();
        let mut msg = (len as u32).to_ne_bytes().to_vec();
        msg.resize(NLMSG_HDR + CN_MSG_HDR, 0);
        msg.extend_from_slice(&event);
        msg
    }

    #[test]
    fn wait_statuses_decode_as_waitpid_does() {
        assert_eq!(Exit::from_wait_status(0), Exit::Code(0));
        assert_eq!(Exit::from_wait_status(7 << 8), Exit::Code(7));
        assert_eq!(Exit::from_wait_status(9), Exit::Signal(9));
        // A core dump sets 0x80 beside the signal.
        assert_eq!(Exit::from_wait_status(0x80 | 11), Exit::Signal(11));
    }

    #[test]
    fn only_leaders_exits_are_taken_from_a_datagram() {
        let mut data = message(PROC_EVENT_EXIT, 10, 10, 3 << 8);
        data.extend(message(PROC_EVENT_EXIT, 11, 10, 0));
        data.extend(message(0x0000_0001, 12, 12, 0));
        data.extend(message(PROC_EVENT_EXIT, 13, 13, 15));
        assert_eq!(
            exits_in(&data),
            [(10, Exit::Code(3)), (13, Exit::Signal(15))]
        );
        // A truncated message ends the walk without a panic.
        assert!(exits_in(&data[..NLMSG_HDR + 3]).is_empty());
    }
}
