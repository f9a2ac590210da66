//! Pinned pod network namespaces: a new namespace with `lo` up, kept alive by
//! a bind mount of its nsfs file on `<dir>/<name>`, as containerd and CRI-O
//! (and `ip netns add`) pin theirs, so it outlives the processes in it and
//! CNI plugins and the sandbox can join it by path.
//!
//! The namespace is made by a forked child that unshares it: the caller never
//! changes namespace (the engine is single-threaded and must stay so), and
//! the child runs only system calls between fork and exit, so forking is safe
//! even from a multi-threaded process (tests).

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::statfs::{statfs, NSFS_MAGIC};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns name {name:?}: {problem}")]
    Name { name: String, problem: &'static str },
    #[error("netns {}: already exists", .0.display())]
    Exists(PathBuf),
    #[error("netns {}: {what}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The steps of the child, for the error it reports.
const STEPS: [&str; 4] = ["unshare", "bring lo up", "bind-mount", "fork"];

/// Makes a new network namespace with `lo` up and pins it at `<dir>/<name>`
/// (the folder is created 0755 if needed). Fails if that file exists; on
/// failure nothing is left.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf, NetnsError> {
    create_owned(dir, name, None)
}

/// `create`, with the namespace owned by the user namespace pinned at
/// `userns` (a pod with `hostUsers: false`: its sandbox, inside that user
/// namespace, may join only a network namespace it owns).
pub fn create_owned(dir: &Path, name: &str, userns: Option<&Path>) -> Result<PathBuf, NetnsError> {
    check_name(name)?;
    let owner = userns
        .map(|p| fs::File::open(p).map_err(io("open user namespace", p)))
        .transpose()?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io("create folder", dir))?;
    let path = dir.join(name);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(NetnsError::Exists(path))
        }
        Err(e) => return Err(io("create", &path)(e)),
    }
    let pinned = pin_new(&path, owner.as_ref().map(|f| f.as_raw_fd()));
    if pinned.is_err() {
        let _ = fs::remove_file(&path);
    }
    pinned.map(|()| path)
}

fn check_name(name: &str) -> Result<(), NetnsError> {
    let problem = if name.is_empty() {
        "must not be empty"
    } else if name == "." || name == ".." || name.contains(['/', '\0']) {
        "must be a file name"
    } else {
        return Ok(());
    };
    Err(NetnsError::Name {
        name: name.to_string(),
        problem,
    })
}

/// Forks a child that unshares its network namespace (in the user namespace
/// `userns` if given), brings `lo` up and bind-mounts `/proc/self/ns/net` on
/// `target`; it reports a failing step and its errno through a pipe. In a
/// user namespace the child may not mount on the host: it waits, and this
/// process bind-mounts its namespace.
fn pin_new(target: &Path, userns: Option<i32>) -> Result<(), NetnsError> {
    let source = CString::new("/proc/self/ns/net").expect("no NUL");
    let target_c = CString::new(target.as_os_str().as_bytes()).map_err(|_| NetnsError::Name {
        name: target.display().to_string(),
        problem: "must not hold NUL",
    })?;
    let (read_end, write_end) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io("pipe", target)(e.into()))?;
    let (go_read, go_write) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io("pipe", target)(e.into()))?;
    // SAFETY: the child only makes system calls (no allocation, no locks) and
    // ends with _exit, so it is safe even if the parent has other threads.
    match unsafe { fork() } {
        Err(e) => Err(io("fork", target)(e.into())),
        Ok(ForkResult::Child) => {
            drop(read_end);
            drop(go_write);
            let (step, errno) = match child_pin(&source, &target_c, userns) {
                Ok(()) => (0, 0),
                Err((step, errno)) => (step + 1, errno as i32),
            };
            let mut report = [0u8; 8];
            report[..4].copy_from_slice(&(step as i32).to_ne_bytes());
            report[4..].copy_from_slice(&errno.to_ne_bytes());
            // SAFETY: write and _exit are async-signal-safe; the buffer is ours.
            unsafe {
                libc::write(write_end.as_raw_fd(), report.as_ptr().cast(), report.len());
                if userns.is_some() {
                    // Alive until the parent has pinned the namespace.
                    let mut byte = [0u8; 1];
                    libc::read(go_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1);
                }
                libc::_exit(if step == 0 { 0 } else { 1 });
            }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write_end);
            drop(go_read);
            let mut report = [0u8; 8];
            let mut got = 0;
            let mut reader = fs::File::from(read_end);
            while got < report.len() {
                match std::io::Read::read(&mut reader, &mut report[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = waitpid(child, None);
                        return Err(io("read from the child", target)(e));
                    }
                }
            }
            let step = i32::from_ne_bytes(report[..4].try_into().expect("4 bytes"));
            let parent_pin = match (userns, got, step) {
                (Some(_), 8, 0) => {
                    pin_of(child.as_raw(), "net", target).map_err(io(STEPS[2], target))
                }
                _ => Ok(()),
            };
            drop(go_write);
            let status = loop {
                match waitpid(child, None) {
                    Err(Errno::EINTR) => continue,
                    other => break other,
                }
            };
            let errno = i32::from_ne_bytes(report[4..].try_into().expect("4 bytes"));
            parent_pin?;
            match (got, step, status) {
                (8, 0, Ok(WaitStatus::Exited(_, 0))) => Ok(()),
                (8, step @ 1..=3, _) => Err(io(STEPS[step as usize - 1], target)(
                    std::io::Error::from_raw_os_error(errno),
                )),
                (_, _, status) => Err(io(STEPS[3], target)(std::io::Error::other(format!(
                    "the child ended without a report ({status:?})"
                )))),
            }
        }
    }
}

/// Pins the namespace `kind` (`net`, `user`) of process `pid` on `target`:
/// a bind mount of its nsfs file, which holds the namespace while it lasts.
pub fn pin_of(pid: i32, kind: &str, target: &Path) -> std::io::Result<()> {
    let source = PathBuf::from(format!("/proc/{pid}/ns/{kind}"));
    nix::mount::mount(
        Some(&source),
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(Into::into)
}

/// The child's work; the error is (step, errno). Only system calls.
fn child_pin(
    source: &CString,
    target: &CString,
    userns: Option<i32>,
) -> Result<(), (usize, Errno)> {
    // SAFETY: plain system calls on values we own; see each comment.
    unsafe {
        // The child is single-threaded, as setns to a user namespace needs.
        if let Some(fd) = userns {
            if libc::setns(fd, libc::CLONE_NEWUSER) != 0 {
                return Err((0, Errno::last()));
            }
        }
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err((0, Errno::last()));
        }
        // A socket made here belongs to the new namespace: flag lo up through it.
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err((1, Errno::last()));
        }
        // ifreq is plain old data; all-zero is valid.
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            return Err((1, Errno::last()));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr) != 0 {
            return Err((1, Errno::last()));
        }
        if userns.is_some() {
            return Ok(());
        }
        // The child shares the caller's mount namespace: the pin is visible there.
        let ok = libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        );
        if ok != 0 {
            return Err((2, Errno::last()));
        }
    }
    Ok(())
}

/// Unpins and removes a namespace file; nothing there is success (twice is
/// fine). The namespace itself ends once no process or descriptor holds it.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| NetnsError::Name {
        name: path.display().to_string(),
        problem: "must not hold NUL",
    })?;
    // Stacked pins come off one at a time; a file that is no namespace is
    // only removed.
    for _ in 0..16 {
        if !is_pinned(path) {
            break;
        }
        // SAFETY: umount2 reads the NUL-terminated path we own.
        if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } != 0 {
            match Errno::last() {
                Errno::EINVAL | Errno::ENOENT => break,
                errno => return Err(io("unmount", path)(errno.into())),
            }
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Whether `path` is a pinned namespace (an nsfs file), e.g. to adopt a pod.
pub fn is_pinned(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_file_names() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", ".", "..", "a/b"] {
            let err = create(dir.path(), bad).unwrap_err();
            assert!(matches!(err, NetnsError::Name { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn removing_nothing_succeeds_and_a_plain_file_is_not_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        remove(&path).unwrap();
        fs::write(&path, "").unwrap();
        assert!(!is_pinned(&path));
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&path).unwrap();
    }

    #[test]
    fn without_root_creation_fails_cleanly() {
        if nix::unistd::geteuid().is_root() {
            return; // integration/net.rs proves the real thing.
        }
        let dir = tempfile::tempdir().unwrap();
        let err = create(dir.path(), "pod").unwrap_err().to_string();
        assert!(err.contains("unshare"), "{err}");
        assert!(!dir.path().join("pod").exists());
    }
}
