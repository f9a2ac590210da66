//! Where a probe's connections are made: in our own network namespace (to the
//! pod's IP, or on a hostNetwork pod), or inside the pod's namespace (a pod
//! without an IP reachable from here: its loopback).
//!
//! A socket belongs to the namespace it was created in, so for the pod's
//! namespace the caller switches into it for the `socket()` call only and
//! back (two setns() calls, a few microseconds; see the module tests for the
//! measured cost against a forked helper per socket, which is some hundred
//! times dearer). That is only safe in a single-threaded process, which the
//! pod supervisor is; `oci/network.rs` brings `lo` up the same way.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    SockaddrIn6,
};

/// Where probe connections go, shared by a pod's checks.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod's namespace and ours, when sockets are made in the pod's.
    netns: Option<Rc<(File, File)>>,
    /// Where a probe without `host` connects: the pod's IP, or loopback.
    pub default_host: IpAddr,
}

impl Target {
    /// Connections from our own namespace, to `default_host` when a probe
    /// names none: the pod's IP, or for a hostNetwork pod the node (loopback).
    pub fn here(default_host: IpAddr) -> Self {
        Self {
            netns: None,
            default_host,
        }
    }

    /// Connections made inside the network namespace of process `pid` (the
    /// pod's sandbox), to its loopback when a probe names no host.
    pub fn inside(pid: i32) -> io::Result<Self> {
        let theirs = File::open(format!("/proc/{pid}/ns/net"))?;
        let ours = File::open("/proc/self/ns/net")?;
        Ok(Self {
            netns: Some(Rc::new((theirs, ours))),
            default_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        })
    }

    /// A nonblocking, close-on-exec TCP socket for `addr`, in the right namespace.
    pub fn socket(&self, addr: &SocketAddr) -> io::Result<OwnedFd> {
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let make = || {
            socket(
                family,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )
        };
        let Some(ns) = &self.netns else {
            return Ok(make()?);
        };
        let (theirs, ours) = &**ns;
        setns(theirs, CloneFlags::CLONE_NEWNET)?;
        let made = make();
        if let Err(e) = setns(ours, CloneFlags::CLONE_NEWNET) {
            // Every later socket, and every process we fork, would be in the pod's namespace.
            panic!("cannot return to our own network namespace: {e}");
        }
        Ok(made?)
    }

    /// Starts a nonblocking connect to `addr`: the stream, and whether it is
    /// already connected (else wait until it is writable, then [`connected`]).
    pub fn connect(&self, addr: &SocketAddr) -> Result<(TcpStream, bool), DialError> {
        let fd = self
            .socket(addr)
            .map_err(|e| DialError::new(addr, "socket", e))?;
        let started = match addr {
            SocketAddr::V4(a) => connect(fd.as_raw_fd(), &SockaddrIn::from(*a)),
            SocketAddr::V6(a) => connect(fd.as_raw_fd(), &SockaddrIn6::from(*a)),
        };
        let done = match started {
            Ok(()) => true,
            Err(Errno::EINPROGRESS) => false,
            Err(e) => return Err(DialError::new(addr, "connect", e.into())),
        };
        Ok((TcpStream::from(fd), done))
    }
}

/// Whether a nonblocking connect that became writable succeeded.
pub fn connected(stream: &TcpStream, addr: &SocketAddr) -> Result<(), DialError> {
    match getsockopt(stream, sockopt::SocketError) {
        Ok(0) => Ok(()),
        Ok(errno) => Err(DialError::new(
            addr,
            "connect",
            io::Error::from_raw_os_error(errno),
        )),
        Err(e) => Err(DialError::new(addr, "connect", e.into())),
    }
}

/// A failed dial, worded as Go's (`dial tcp 10.0.0.2:80: connect: connection
/// refused`), which is what the kubelet's events show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialError(pub String);

impl DialError {
    pub fn new(addr: &SocketAddr, op: &str, e: io::Error) -> Self {
        Self(format!("dial tcp {addr}: {op}: {}", go_errno_text(&e)))
    }

    /// The dial did not finish within the timeout.
    pub fn timeout(addr: &SocketAddr) -> Self {
        Self(format!("dial tcp {addr}: i/o timeout"))
    }
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An OS error as Go's syscall.Errno prints it: strerror, lower-cased first letter.
pub fn go_errno_text(e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(n) => Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_errors_read_like_gos() {
        let addr: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            DialError::new(&addr, "connect", refused).to_string(),
            "dial tcp 10.0.0.2:80: connect: connection refused"
        );
        assert_eq!(
            DialError::timeout(&"[::1]:8080".parse().unwrap()).to_string(),
            "dial tcp [::1]:8080: i/o timeout"
        );
    }
}
