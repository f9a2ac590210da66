//! Console sockets: the pty master travels over a Unix socket with SCM_RIGHTS, as
//! with runc. peapod listens on one itself when it runs a terminal container in
//! the foreground, and proxies the terminal.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};
use oci_spec::runtime::Process;

use super::error::{Error, Result};
use crate::error::Context;

/// A listening console socket, removed from the filesystem when dropped.
pub struct ConsoleListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleListener {
    pub fn bind(path: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .context(|| format!("bind console socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .context(|| format!("chmod console socket {}", path.display()))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master the runtime sent. The sender has already connected and
    /// written by the time container creation returns, so this does not block long.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let (stream, _) = self
            .listener
            .accept()
            .context(|| format!("accept on console socket {}", self.path.display()))?;
        receive_fd(&stream)
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Adds O_NONBLOCK to a descriptor's status flags (a terminal master, a pipe).
pub fn set_nonblocking(fd: BorrowedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

/// Receives one file descriptor passed with SCM_RIGHTS.
pub fn receive_fd(stream: &UnixStream) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context(|| "receive pty master from console socket".into())?;
    for cmsg in msg
        .cmsgs()
        .context(|| "read console socket message".into())?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::Invalid(
        "console socket message carried no file descriptor".into(),
    ))
}

/// The init's terminal as runc leaves it: its pty slave (the init's stdin,
/// set up by libcontainer) owned by the process's user, and sized by
/// `process.consoleSize`. Done from outside before the init runs anything of
/// the user's.
pub fn prepare_init_terminal(pid: i32, process: &Process) -> Result<()> {
    let path = format!("/proc/{pid}/fd/0");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .context(|| format!("open the container's terminal {path}"))?;
    let st = nix::sys::stat::fstat(slave.as_raw_fd()).context(|| format!("stat {path}"))?;
    let is_char = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    // 136-143: the Unix98 pty slaves.
    if !is_char || !(136..=143).contains(&libc::major(st.st_rdev)) {
        return Err(Error::Invalid(format!(
            "the container's stdin {path} is not a pty slave"
        )));
    }
    let uid = process.user().uid();
    if uid != 0 {
        nix::unistd::fchown(
            slave.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(uid)),
            None,
        )
        .context(|| format!("chown the container's terminal to {uid}"))?;
    }
    if let Some(size) = process.console_size() {
        set_window_size(slave.as_fd(), size.height(), size.width());
    }
    Ok(())
}

/// Sets a terminal's window size (rows, columns).
pub fn set_window_size(fd: BorrowedFd, rows: u64, cols: u64) {
    let ws = libc::winsize {
        ws_row: rows.min(u16::MAX as u64) as u16,
        ws_col: cols.min(u16::MAX as u64) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Copies the window size of `from` (our terminal) to `to` (the container's pty).
pub fn copy_window_size(from: BorrowedFd, to: BorrowedFd) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write a winsize we own.
    unsafe {
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Puts our terminal in raw mode while a container's terminal is proxied, and
/// restores it when dropped.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    pub fn enter(fd: BorrowedFd) -> Option<Self> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(Self {
            fd: fd.try_clone_to_owned().ok()?,
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}
