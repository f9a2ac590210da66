//! ID-mapped mounts (mount_setattr(2) with MOUNT_ATTR_IDMAP): a copy of a
//! mount whose owners are seen through a user namespace's mapping. Neither
//! nix 0.29 nor libcontainer 0.7 (which skips the OCI `idmap` option) makes
//! them, so the system calls are made here.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `struct mount_attr` of mount_setattr(2) (also used by oci::remount).
#[repr(C)]
pub(crate) struct MountAttr {
    pub(crate) attr_set: u64,
    pub(crate) attr_clr: u64,
    pub(crate) propagation: u64,
    pub(crate) userns_fd: u64,
}
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// Mounts a copy of `source` on `target` (an existing folder) with the IDs
/// of the user namespace pinned at `userns` mapped: a file owned by ID `i`
/// on disk is seen as owned by `base + i`. Used for the image's layers,
/// which pods share, so they cannot be chowned to one pod's range.
pub fn idmapped_mount(source: &Path, target: &Path, userns: &Path) -> io::Result<()> {
    let ns = File::open(userns)?;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("paths hold no NUL");
    let (source_c, target_c) = (c(source), c(target));
    let empty = CString::new("").expect("no NUL");
    // SAFETY: the system calls read NUL-terminated strings and a struct we own.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source_c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        );
        if fd < 0 {
            return Err(context("open_tree", source));
        }
        let tree = OwnedFd::from_raw_fd(fd as i32);
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: ns.as_raw_fd() as u64,
        };
        let set = libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if set != 0 {
            return Err(context("ID-map a mount of", source));
        }
        let moved = libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        );
        if moved != 0 {
            return Err(context("move_mount to", target));
        }
    }
    Ok(())
}

fn context(what: &str, path: &Path) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}
