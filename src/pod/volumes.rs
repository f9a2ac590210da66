//! What a pod has on the host besides its containers: its shared /dev/shm and
//! its volumes (its /etc files are the network's: `network.rs`). Made before
//! the sandbox starts, undone at `pod rm`.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::folder::PodFolder;
use super::model::{HostPathType, Pod, VolumeSource};
use super::security::userns;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mount {what} at {path}: {source}")]
    Mount {
        what: &'static str,
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error(
        "container {container}: volume {volume}: subPath {sub_path:?} goes through a symbolic link or a file (it must be folders inside the volume)"
    )]
    SubPath {
        container: String,
        volume: String,
        sub_path: String,
    },
    #[error("spec.volumes {name}: hostPath {path}: {problem}")]
    HostPath {
        name: String,
        path: String,
        problem: String,
    },
    #[error("{0}")]
    Userns(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The pod's /dev/shm size, as containerd's default.
const SHM_SIZE: &str = "size=65536k";

fn mount_tmpfs(path: &Path, options: &str, what: &'static str) -> Result<(), VolumeError> {
    fs::create_dir_all(path).map_err(io("create", path))?;
    mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(|source| VolumeError::Mount {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Makes the pod's files and volumes. On error, whatever was made is undone.
pub fn prepare(pod: &Pod, paths: &PodFolder) -> Result<(), VolumeError> {
    let result = prepare_inner(pod, paths);
    if result.is_err() {
        let _ = release(pod, paths);
    }
    result
}

fn prepare_inner(pod: &Pod, paths: &PodFolder) -> Result<(), VolumeError> {
    // hostUsers: false: what the pod alone uses belongs to its root
    // (chowned rather than ID-mapped, so that its files are owned by the
    // pod's host IDs on the host too); a hostPath never changes owner.
    let range = userns::range(paths).map_err(|e| VolumeError::Userns(e.to_string()))?;
    let give = |path: &Path| {
        userns::give(path, range, 0, 0).map_err(|e| VolumeError::Userns(e.to_string()))
    };
    mount_tmpfs(
        &paths.shm(),
        &format!("mode=1777,{SHM_SIZE}"),
        "pod /dev/shm",
    )?;
    give(&paths.shm())?;
    for volume in &pod.volumes {
        match &volume.source {
            VolumeSource::EmptyDir {
                memory,
                size_limit_bytes,
            } => {
                let dir = paths.volume(&volume.name);
                if *memory {
                    let size = size_limit_bytes
                        .map(|b| format!(",size={b}"))
                        .unwrap_or_default();
                    mount_tmpfs(&dir, &format!("mode=0777{size}"), "emptyDir (Memory)")?;
                } else {
                    fs::create_dir_all(&dir).map_err(io("create emptyDir", &dir))?;
                    // Any container user may write an emptyDir, as with the kubelet.
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
                        .map_err(io("chmod emptyDir", &dir))?;
                }
            }
            VolumeSource::HostPath { path, kind } => check_host_path(&volume.name, path, *kind)?,
        }
        if let VolumeSource::EmptyDir { .. } = &volume.source {
            give(&paths.volume(&volume.name))?;
        }
        // The kubelet gives fsGroup the volumes it manages, never a hostPath.
        if let (VolumeSource::EmptyDir { .. }, Some(group)) =
            (&volume.source, pod.security.fs_group)
        {
            let dir = paths.volume(&volume.name);
            let on_mismatch = pod.security.fs_group_on_root_mismatch;
            let group = range.map_or(group, |r| r.host(group));
            super::security::groups::set_volume_ownership(&dir, group, on_mismatch)
                .map_err(io("set fsGroup on emptyDir", &dir))?;
        }
    }
    Ok(())
}

fn check_host_path(name: &str, path: &str, kind: HostPathType) -> Result<(), VolumeError> {
    let p = Path::new(path);
    let err = |problem: &str| VolumeError::HostPath {
        name: name.to_string(),
        path: path.to_string(),
        problem: problem.to_string(),
    };
    let meta = fs::metadata(p).ok();
    match kind {
        HostPathType::Unset => Ok(()),
        HostPathType::DirectoryOrCreate => {
            if meta.is_none() {
                fs::create_dir_all(p).map_err(|e| err(&e.to_string()))?;
                fs::set_permissions(p, fs::Permissions::from_mode(0o755))
                    .map_err(|e| err(&e.to_string()))?;
                Ok(())
            } else if meta.is_some_and(|m| m.is_dir()) {
                Ok(())
            } else {
                Err(err("exists and is not a directory"))
            }
        }
        HostPathType::FileOrCreate => match meta {
            None => {
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent).map_err(|e| err(&e.to_string()))?;
                }
                fs::File::create(p).map_err(|e| err(&e.to_string()))?;
                Ok(())
            }
            Some(m) if m.is_file() => Ok(()),
            Some(_) => Err(err("exists and is not a file")),
        },
        HostPathType::Directory => meta
            .filter(|m| m.is_dir())
            .map(|_| ())
            .ok_or_else(|| err("no such directory")),
        HostPathType::File => meta
            .filter(|m| m.is_file())
            .map(|_| ())
            .ok_or_else(|| err("no such file")),
        HostPathType::Socket => meta
            .filter(|m| m.file_type().is_socket())
            .map(|_| ())
            .ok_or_else(|| err("no such socket")),
        HostPathType::CharDevice => meta
            .filter(|m| m.file_type().is_char_device())
            .map(|_| ())
            .ok_or_else(|| err("no such character device")),
        HostPathType::BlockDevice => meta
            .filter(|m| m.file_type().is_block_device())
            .map(|_| ())
            .ok_or_else(|| err("no such block device")),
    }
}

/// Creates the subPath folders a container mounts, as the kubelet does.
pub fn make_sub_paths(
    pod: &Pod,
    c: &super::model::Container,
    paths: &PodFolder,
) -> Result<(), VolumeError> {
    for m in &c.mounts {
        let Some(sub) = &m.sub_path else { continue };
        let base = match pod
            .volumes
            .iter()
            .find(|v| v.name == m.volume)
            .map(|v| &v.source)
        {
            Some(VolumeSource::EmptyDir { .. }) => paths.volume(&m.volume),
            Some(VolumeSource::HostPath { path, .. }) => Path::new(path).to_path_buf(),
            None => continue,
        };
        let outside = || VolumeError::SubPath {
            container: c.name.clone(),
            volume: m.volume.clone(),
            sub_path: sub.clone(),
        };
        let real_base = fs::canonicalize(&base).map_err(io("resolve volume", &base))?;
        let folder = open_sub_path(&real_base, sub).map_err(|e| match e.raw_os_error() {
            // A symbolic link (which a container may have planted in its
            // volume), or a component that is not a folder.
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => outside(),
            _ => VolumeError::Io {
                what: "create subPath",
                path: base.join(sub).display().to_string(),
                source: e,
            },
        })?;
        // hostUsers: false: a subPath folder the engine made in an emptyDir
        // is the pod's root's, as the emptyDir is (never in a hostPath).
        let range = userns::range(paths).map_err(|e| VolumeError::Userns(e.to_string()))?;
        if let (Some(range), Some(VolumeSource::EmptyDir { .. })) = (range, source(pod, m)) {
            let owner = nix::sys::stat::fstat(folder.as_raw_fd())
                .map_err(|e| io("stat subPath", &base.join(sub))(e.into()))?;
            if owner.st_uid == 0 {
                let root = Some(nix::unistd::Uid::from_raw(range.base));
                let group = Some(nix::unistd::Gid::from_raw(range.base));
                nix::unistd::fchown(folder.as_raw_fd(), root, group)
                    .map_err(|e| io("chown subPath", &base.join(sub))(e.into()))?;
            }
        }
    }
    Ok(())
}

fn source<'a>(pod: &'a Pod, m: &super::model::VolumeMount) -> Option<&'a VolumeSource> {
    pod.volumes
        .iter()
        .find(|v| v.name == m.volume)
        .map(|v| &v.source)
}

/// Opens (creating what is missing, mode 0755) the folder `sub` under `base`
/// one component at a time, never following a symbolic link: the path the
/// runtime later mounts is then exactly `base/sub`, inside the volume.
fn open_sub_path(base: &Path, sub: &str) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{mkdirat, Mode};
    let folder = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let open = |dir: Option<&OwnedFd>, name: &Path, flags: OFlag| -> nix::Result<OwnedFd> {
        let fd = openat(dir.map(|d| d.as_raw_fd()), name, flags, Mode::empty())?;
        // SAFETY: openat just returned this fd; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mut dir = open(None, base, folder)?;
    let parts: Vec<_> = Path::new(sub).components().collect();
    for (i, part) in parts.iter().enumerate() {
        let std::path::Component::Normal(name) = part else {
            // Admission allows only relative paths without "..".
            return Err(std::io::Error::from_raw_os_error(libc::ENOTDIR));
        };
        let name = Path::new(name);
        if i + 1 == parts.len() {
            // The last may be a file of the volume (a file mounted alone).
            let file = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
            if let Ok(fd) = open(Some(&dir), name, file) {
                let kind = nix::sys::stat::fstat(fd.as_raw_fd())?.st_mode & libc::S_IFMT;
                if kind == libc::S_IFREG {
                    return Ok(fd);
                }
            }
        }
        dir = match open(Some(&dir), name, folder) {
            Err(nix::Error::ENOENT) => {
                match mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(nix::Error::EEXIST) => open(Some(&dir), name, folder)?,
                    Err(e) => return Err(e.into()),
                }
            }
            other => other?,
        };
    }
    Ok(dir)
}

/// Unmounts the pod's shm and memory volumes. Volume contents stay until the
/// pod folder is removed (emptyDir lives as long as the pod).
pub fn release(pod: &Pod, paths: &PodFolder) -> Result<(), VolumeError> {
    let mut first_err = None;
    let mut unmount = |path: &Path, what: &'static str| {
        // Unknown (mountinfo unreadable) counts as not mounted: nothing to undo.
        if crate::image::is_mounted(path).unwrap_or(false) {
            if let Err(source) = umount2(path, MntFlags::empty()) {
                first_err.get_or_insert(VolumeError::Mount {
                    what,
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    };
    unmount(&paths.shm(), "pod /dev/shm");
    for volume in &pod.volumes {
        if let VolumeSource::EmptyDir { memory: true, .. } = volume.source {
            unmount(&paths.volume(&volume.name), "emptyDir (Memory)");
        }
    }
    first_err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sub_paths_are_created_inside_and_never_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, outside) = (tmp.path().join("volume"), tmp.path().join("host"));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        super::open_sub_path(&base, "a/b").unwrap();
        assert!(base.join("a/b").is_dir());
        std::fs::write(base.join("a/file"), "x").unwrap();
        super::open_sub_path(&base, "a/file").unwrap();
        std::os::unix::fs::symlink(&outside, base.join("evil")).unwrap();
        let err = super::open_sub_path(&base, "evil/made").unwrap_err();
        // O_DIRECTORY | O_NOFOLLOW on a link: ENOTDIR (ELOOP without O_DIRECTORY).
        assert!(
            matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
            "{err}"
        );
        assert!(!outside.join("made").exists(), "created through the link");
        std::os::unix::fs::symlink(&outside, base.join("a/last")).unwrap();
        assert!(super::open_sub_path(&base, "a/last").is_err());
        assert!(super::open_sub_path(&base, "a/file/x").is_err());
    }
}
