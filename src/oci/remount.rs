//! Mount settings libcontainer 0.7 leaves undone, applied as runc applies them
//! once create has built the container's mounts: a mount's propagation option
//! (`rshared`, `rslave`, ...: libcontainer parses and drops them), a read-only
//! `/dev` (libcontainer clears `ro` there) and a read-only cgroup mount with
//! the hierarchies below it (on cgroup v1 libcontainer mounts them
//! read-write). They are set from a forked child inside the container's mount
//! namespace, with the init's root as its own, before the init runs anything
//! of the user's.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::mount::MsFlags;
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::Spec;

use super::error::{Error, Result};
use crate::error::Context;
use crate::sys::idmap::MountAttr;

/// One setting for the mount at `destination` (a path in the container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// `mount(NULL, destination, NULL, flags)`: MS_SHARED, MS_SLAVE,
    /// MS_PRIVATE or MS_UNBINDABLE, with MS_REC for the `r` options.
    Propagation {
        destination: PathBuf,
        flags: MsFlags,
    },
    /// Read-only, and every mount below it too if `recursive`.
    ReadOnly {
        destination: PathBuf,
        recursive: bool,
    },
}

/// The settings `spec`'s mounts ask for that libcontainer does not make, in
/// the order of the mounts.
pub fn plan(spec: &Spec) -> Vec<Fix> {
    let mut fixes = vec![];
    for m in spec.mounts().iter().flatten() {
        let options = m.options().as_deref().unwrap_or(&[]);
        let destination = m.destination().clone();
        for option in options {
            if let Some(flags) = propagation(option) {
                fixes.push(Fix::Propagation {
                    destination: destination.clone(),
                    flags,
                });
            }
        }
        if !options.iter().any(|o| o == "ro") {
            continue;
        }
        if m.typ().as_deref() == Some("cgroup") {
            fixes.push(Fix::ReadOnly {
                destination,
                recursive: true,
            });
        } else if destination == std::path::Path::new("/dev") {
            fixes.push(Fix::ReadOnly {
                destination,
                recursive: false,
            });
        }
    }
    fixes
}

/// The propagation flags of a mount option, as runc's mount option table.
fn propagation(option: &str) -> Option<MsFlags> {
    Some(match option {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Applies `fixes` in the mount namespace of the container whose init is `pid`.
pub fn apply(pid: i32, fixes: &[Fix]) -> Result<()> {
    if fixes.is_empty() {
        return Ok(());
    }
    let root_path = format!("/proc/{pid}/root");
    let root = File::open(&root_path).context(|| format!("open {root_path}"))?;
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = File::open(&ns_path).context(|| format!("open {ns_path}"))?;
    let (read, write) = nix::unistd::pipe().context(|| "pipe".into())?;
    // SAFETY: the runtime is single-threaded (see mod.rs); the child only makes
    // system calls and writes to a pipe before it exits.
    match unsafe { fork() }.context(|| "fork".into())? {
        ForkResult::Child => {
            drop(read);
            let code = match in_namespace(&ns, &root, fixes) {
                Ok(()) => 0,
                Err(message) => {
                    let _ = File::from(write).write_all(message.as_bytes());
                    1
                }
            };
            // SAFETY: _exit ends the forked child without running the parent's
            // atexit handlers or flushing its buffers twice.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write);
            let mut message = String::new();
            let _ = File::from(read).read_to_string(&mut message);
            match waitpid(child, None).context(|| "wait for the mount child".into())? {
                WaitStatus::Exited(_, 0) => Ok(()),
                _ if !message.is_empty() => Err(Error::Invalid(message)),
                status => Err(Error::Invalid(format!(
                    "setting the container's mounts: child ended with {status:?}"
                ))),
            }
        }
    }
}

/// In the forked child: enters the namespace, takes the init's root as its
/// own (paths then resolve as the container sees them; no link leaves it),
/// and makes each change.
fn in_namespace(ns: &File, root: &File, fixes: &[Fix]) -> std::result::Result<(), String> {
    setns(ns, CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("setns into the container's mount namespace: {e}"))?;
    nix::unistd::fchdir(root.as_raw_fd())
        .map_err(|e| format!("chdir to the container's root: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot to the container's root: {e}"))?;
    for fix in fixes {
        match fix {
            Fix::Propagation { destination, flags } => nix::mount::mount(
                None::<&str>,
                destination,
                None::<&str>,
                *flags,
                None::<&str>,
            )
            .map_err(|e| format!("mount {}: set propagation: {e}", destination.display()))?,
            Fix::ReadOnly {
                destination,
                recursive,
            } => read_only(destination, *recursive)
                .map_err(|e| format!("mount {}: make read-only: {e}", destination.display()))?,
        }
    }
    Ok(())
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Sets the read-only attribute alone (mount_setattr keeps nosuid, nodev,
/// noexec and the rest as they are, which a remount would have to repeat).
fn read_only(path: &std::path::Path, recursive: bool) -> nix::Result<()> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| nix::errno::Errno::EINVAL)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: the path is NUL-terminated and the attribute struct lives across
    // the call, its size passed with it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags | libc::AT_SYMLINK_NOFOLLOW,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mounts: &str) -> Spec {
        serde_json::from_str(&format!(r#"{{"ociVersion": "1.0.2", "mounts": {mounts}}}"#)).unwrap()
    }

    #[test]
    fn propagation_options_read_only_dev_and_cgroup_are_planned() {
        let s = spec(
            r#"[{"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "ro"]},
                {"destination": "/h", "type": "bind", "source": "/x", "options": ["rbind", "rslave"]},
                {"destination": "/g", "type": "bind", "source": "/y", "options": ["bind", "shared", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid"]}]"#,
        );
        assert_eq!(
            plan(&s),
            vec![
                Fix::ReadOnly {
                    destination: "/dev".into(),
                    recursive: false
                },
                Fix::Propagation {
                    destination: "/h".into(),
                    flags: MsFlags::MS_SLAVE | MsFlags::MS_REC
                },
                Fix::Propagation {
                    destination: "/g".into(),
                    flags: MsFlags::MS_SHARED
                },
                Fix::ReadOnly {
                    destination: "/sys/fs/cgroup".into(),
                    recursive: true
                },
            ]
        );
    }

    #[test]
    fn a_usual_spec_needs_nothing() {
        let s = spec(
            r#"[{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}]"#,
        );
        assert!(plan(&s).is_empty());
        assert!(plan(&serde_json::from_str(r#"{"ociVersion": "1.0.2"}"#).unwrap()).is_empty());
    }
}
