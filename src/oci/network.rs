//! Bringing `lo` up in a container's new network namespace, as runc and crun do
//! (libcontainer leaves it down).

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use super::error::Result;
use crate::error::Context;

nix::ioctl_read_bad!(get_if_flags, libc::SIOCGIFFLAGS, libc::ifreq);
nix::ioctl_write_ptr_bad!(set_if_flags, libc::SIOCSIFFLAGS, libc::ifreq);

/// Brings up the loopback interface in the network namespace of `pid`.
///
/// A socket belongs to the namespace it was created in, so we only need to be in
/// the container's namespace for the `socket()` call. This switches the calling
/// thread's namespace, which is safe because the runtime is single-threaded.
pub fn bring_up_loopback(pid: Pid) -> Result<()> {
    let own = File::open("/proc/self/ns/net").context(|| "open /proc/self/ns/net".into())?;
    let target_path = format!("/proc/{pid}/ns/net");
    let target = File::open(&target_path).context(|| format!("open {target_path}"))?;
    setns(&target, CloneFlags::CLONE_NEWNET).context(|| format!("setns {target_path}"))?;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    );
    let back = setns(&own, CloneFlags::CLONE_NEWNET);
    back.context(|| "setns back to the runtime's network namespace".into())?;
    let sock = sock.context(|| "socket in the container's network namespace".into())?;

    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the ioctls read and write the ifreq we own; the fd is a live socket.
    unsafe {
        get_if_flags(sock.as_raw_fd(), &mut ifr).context(|| "SIOCGIFFLAGS lo".into())?;
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        set_if_flags(sock.as_raw_fd(), &ifr).context(|| "SIOCSIFFLAGS lo".into())?;
    }
    Ok(())
}
