//! runc's `tmpcopyup` mount option, done by peapod after libcontainer has
//! mounted the fresh tmpfs (adjust.rs strips the option from the copy of the
//! config libcontainer reads).

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::{self, Gid, Uid};

use super::error::Result;
use crate::error::Context;

/// runc's tmpcopyup: the image's content at each mount point is copied into the
/// fresh tmpfs. The container's view is reached through /proc/<pid>/root, the
/// image's original content through the rootfs on the host; each path is resolved
/// inside its own root, so a symlink in the image cannot reach the host's files.
pub fn copy_up(rootfs: &Path, pid: i32, destinations: &[String]) -> Result<()> {
    copy_up_between(
        rootfs,
        Path::new(&format!("/proc/{pid}/root")),
        destinations,
    )
}

/// `copy_up` between two root folders, each taken as `/` for its side's paths.
pub fn copy_up_between(image: &Path, container: &Path, destinations: &[String]) -> Result<()> {
    if destinations.is_empty() {
        return Ok(());
    }
    let image_root = File::open(image).context(|| format!("open {}", image.display()))?;
    let container_root =
        File::open(container).context(|| format!("open {}", container.display()))?;
    for dest in destinations {
        let from = match open_dir_in_root(&image_root, dest) {
            Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
            from => from.context(|| format!("tmpcopyup {dest}"))?,
        };
        let to = open_dir_in_root(&container_root, dest).context(|| format!("tmpcopyup {dest}"))?;
        let original = stat::fstat(from.as_raw_fd()).context(|| format!("tmpcopyup {dest}"))?;
        copy_tree(from, &to).context(|| format!("tmpcopyup {dest}"))?;
        // The mount point itself takes the original directory's mode and owner.
        keep_owner_and_mode(to.as_raw_fd(), &original).context(|| format!("tmpcopyup {dest}"))?;
    }
    Ok(())
}

/// Opens directory `path` with `root` as `/`: absolute symlinks and `..` stay inside.
pub(super) fn open_dir_in_root(root: &File, path: &str) -> nix::Result<Dir> {
    let rel = match path.trim_start_matches('/') {
        "" => ".",
        rel => rel,
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN: a rename elsewhere raced a `..`, and the kernel asks us to try again.
    for _ in 0..16 {
        match fcntl::openat2(root.as_raw_fd(), rel, how) {
            Err(Errno::EAGAIN) => continue,
            fd => return Dir::from_fd(fd?),
        }
    }
    Err(Errno::EAGAIN)
}

/// Opens `path` (of any type) with `root` as `/`, as `open_dir_in_root`.
pub(super) fn open_in_root(root: &File, path: &str) -> nix::Result<File> {
    let rel = match path.trim_start_matches('/') {
        "" => ".",
        rel => rel,
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    for _ in 0..16 {
        match fcntl::openat2(root.as_raw_fd(), rel, how) {
            Err(Errno::EAGAIN) => continue,
            // SAFETY: openat2 just returned this descriptor; nothing else owns it.
            fd => return Ok(unsafe { File::from_raw_fd(fd?) }),
        }
    }
    Err(Errno::EAGAIN)
}

/// Copies the entries of `from` into `to`, one directory fd at a time: no symlink
/// is followed on either side.
fn copy_tree(mut from: Dir, to: &Dir) -> io::Result<()> {
    let (src, dst) = (from.as_raw_fd(), to.as_raw_fd());
    for entry in from.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = stat::fstatat(Some(src), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFLNK => {
                let target = fcntl::readlinkat(Some(src), name)?;
                unistd::symlinkat(target.as_os_str(), Some(dst), name)?;
                let (uid, gid) = owner(&st);
                unistd::fchownat(Some(dst), name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            }
            SFlag::S_IFDIR => {
                stat::mkdirat(Some(dst), name, Mode::S_IRWXU)?;
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let sub_from = Dir::openat(Some(src), name, flags, Mode::empty())?;
                let sub_to = Dir::openat(Some(dst), name, flags, Mode::empty())?;
                copy_tree(sub_from, &sub_to)?;
                // After the entries: a read-only directory still takes its children.
                keep_owner_and_mode(sub_to.as_raw_fd(), &st)?;
            }
            SFlag::S_IFREG => {
                let mut source = open_at(src, name, OFlag::O_RDONLY, Mode::empty())?;
                // O_EXCL: nothing already there, a symlink least of all, is written through.
                let mut copy = open_at(
                    dst,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                )?;
                io::copy(&mut source, &mut copy)?;
                keep_owner_and_mode(copy.as_raw_fd(), &st)?;
            }
            // Device nodes, fifos and sockets are not copied, as with runc.
            _ => continue,
        }
    }
    Ok(())
}

fn open_at(dir: RawFd, name: &CStr, flags: OFlag, mode: Mode) -> nix::Result<File> {
    let fd = fcntl::openat(
        Some(dir),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        mode,
    )?;
    // SAFETY: openat just returned this descriptor; nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn owner(st: &FileStat) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
}

/// Owner before mode: chown clears the set-id bits the mode then puts back.
fn keep_owner_and_mode(fd: RawFd, st: &FileStat) -> nix::Result<()> {
    let (uid, gid) = owner(st);
    unistd::fchown(fd, uid, gid)?;
    stat::fchmod(fd, Mode::from_bits_truncate(st.st_mode))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::PathBuf;

    use super::*;

    // All owned by the test's user, so no root needed; other owners: integration/copy_up.rs.
    fn write(path: &Path, data: &str, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mkdir(path: &Path, mode: u32) {
        fs::create_dir_all(path).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// A host folder outside both roots, holding one file nobody may touch.
    fn victim(tmp: &Path) -> PathBuf {
        let host = tmp.join("host");
        write(&host.join("secret"), "precious", 0o644);
        host
    }

    fn assert_untouched(host: &Path) {
        assert_eq!(names(host), ["secret"]);
        assert_eq!(fs::read_to_string(host.join("secret")).unwrap(), "precious");
    }

    #[test]
    fn image_symlinks_resolve_inside_the_image() {
        let tmp = tempfile::tempdir().unwrap();
        let host = victim(tmp.path());
        let (image, container) = (tmp.path().join("image"), tmp.path().join("container"));
        mkdir(&image, 0o755);
        symlink(&host, image.join("data")).unwrap();
        symlink("../../../../../host", image.join("up")).unwrap();
        mkdir(&container.join("data/x"), 0o755);
        mkdir(&container.join("up"), 0o755);

        let destinations = ["/data/x", "/data", "/up"].map(String::from);
        copy_up_between(&image, &container, &destinations).unwrap();

        // Neither link resolves in the image, so nothing is read from the host.
        assert_eq!(names(&container.join("data")), ["x"]);
        assert!(names(&container.join("data/x")).is_empty());
        assert!(names(&container.join("up")).is_empty());
        assert_untouched(&host);
    }

    #[test]
    fn container_symlinks_resolve_inside_the_container() {
        let tmp = tempfile::tempdir().unwrap();
        let host = victim(tmp.path());
        let (image, container) = (tmp.path().join("image"), tmp.path().join("container"));
        for dir in ["data", "up", "etc"] {
            write(&image.join(dir).join("secret"), "from image", 0o600);
        }
        mkdir(&container, 0o755);
        symlink(&host, container.join("data")).unwrap();
        symlink("../../../../../host", container.join("up")).unwrap();
        // A link already in the mount point is not written through either.
        mkdir(&container.join("etc"), 0o755);
        symlink(host.join("secret"), container.join("etc/secret")).unwrap();

        for dest in ["/data", "/up", "/etc"] {
            let err = copy_up_between(&image, &container, &[dest.to_string()]).unwrap_err();
            let err = err.to_string();
            assert!(err.starts_with(&format!("tmpcopyup {dest}: ")), "{err}");
        }
        assert_untouched(&host);
    }

    #[test]
    fn symlinks_in_the_tree_are_copied_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let host = victim(tmp.path());
        let (image, container) = (tmp.path().join("image"), tmp.path().join("container"));
        mkdir(&image.join("etc"), 0o755);
        symlink(&host, image.join("etc/abs")).unwrap();
        symlink("../../host", image.join("etc/rel")).unwrap();
        symlink(host.join("secret"), image.join("etc/file")).unwrap();
        mkdir(&container.join("etc"), 0o755);

        copy_up_between(&image, &container, &["/etc".to_string()]).unwrap();

        let etc = container.join("etc");
        assert_eq!(names(&etc), ["abs", "file", "rel"]);
        assert_eq!(fs::read_link(etc.join("abs")).unwrap(), host);
        assert_eq!(
            fs::read_link(etc.join("rel")).unwrap(),
            Path::new("../../host")
        );
        assert_eq!(
            fs::read_link(etc.join("file")).unwrap(),
            host.join("secret")
        );
        assert_untouched(&host);
    }
}
