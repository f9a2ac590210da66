//! A container's root filesystem: an overlay of the image's layers (read-only,
//! shared) under a private upper folder, mounted with mount(2).
//!
//! The container folder holds `rootfs/` (the mount point), `upper/`, `work/` and
//! `rootfs.json`, which names the store and the use record, so that unmounting needs
//! only the folder.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{self, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use super::error::{ImageError, Result};
use super::store::{write_atomic, ImageStore};
use super::uses::{self, UseRecord};
use super::Image;
use crate::error::Context;

const ROOTFS_DIR: &str = "rootfs";
const UPPER_DIR: &str = "upper";
const WORK_DIR: &str = "work";
/// ID-mapped copies of the layers, while the overlay is being mounted.
const LOWER_DIR: &str = "lower";
const MARKER_FILE: &str = "rootfs.json";
/// mount(2) copies one page of options, NUL included.
const MAX_MOUNT_DATA: usize = 4095;
/// More mounts than this stacked on one point means something else is wrong.
const MAX_UNMOUNTS: usize = 16;

/// A mounted root filesystem, known by its container folder.
#[derive(Debug, Clone)]
pub struct Rootfs {
    dir: PathBuf,
}

/// A rootfs for a container in a user namespace of its own: the image's
/// layers are seen through the namespace's mapping (ID-mapped mounts: the
/// layers are shared by pods, so they cannot be chowned to one pod's IDs),
/// and the upper folder belongs to the mapped owner of the image's root.
#[derive(Debug, Clone)]
pub struct IdMap {
    /// The pinned user namespace (an nsfs file).
    pub userns: PathBuf,
    /// The host ID that container ID 0 is.
    pub base: u32,
}

/// What `rootfs.json` records: where the use record lives.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    store: PathBuf,
    record: String,
    image: String,
}

impl Rootfs {
    /// Mounts an overlay at `<dir>/rootfs` with lowerdirs = the image's layers (top
    /// first, as overlayfs wants), upperdir `<dir>/upper`, workdir `<dir>/work`, and
    /// records the use of the layers so that `ImageStore::remove` keeps them.
    pub fn mount(store: &ImageStore, image: &Image, dir: &Path) -> Result<Rootfs> {
        Self::mount_mapped(store, image, dir, None)
    }

    /// `mount`, with the layers ID-mapped when `idmap` is given.
    pub fn mount_mapped(
        store: &ImageStore,
        image: &Image,
        dir: &Path,
        idmap: Option<&IdMap>,
    ) -> Result<Rootfs> {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .context(|| format!("{}", dir.display()))?;
        let target = dir.join(ROOTFS_DIR);
        if is_mounted(&target)? {
            return Err(ImageError::AlreadyMounted { path: target });
        }
        let lowers = {
            // Under the lock, so that no removal deletes a layer between the check and the record.
            let _lock = store.lock()?;
            let lowers = store.layer_dirs(image)?;
            let record = UseRecord {
                dir: dir.clone(),
                image: image.id.clone(),
                name: image.name.clone(),
                layers: image.layers.clone(),
            };
            let key = uses::write(store.root(), &record)?;
            let marker = Marker {
                store: store.root().to_path_buf(),
                record: key,
                image: image.name.clone(),
            };
            let bytes = serde_json::to_vec_pretty(&marker)
                .context(|| format!("{}", dir.join(MARKER_FILE).display()))?;
            write_atomic(&dir.join(MARKER_FILE), &bytes)?;
            super::lastuse::touch(store.root(), &image.id)?;
            lowers
        };
        let rootfs = Rootfs { dir };
        if let Err(e) = rootfs.mount_overlay(image, &lowers, idmap) {
            let _ = Rootfs::unmount(&rootfs.dir);
            return Err(e);
        }
        Ok(rootfs)
    }

    /// Unmounts this namespace's copy of the overlay once a container's init
    /// has made it its root in a mount namespace of its own (which holds its
    /// own copy, and with it the overlay, for as long as the container
    /// lives). The node's mount table then does not grow by a mount per
    /// running container: libcontainer and libcgroups read all of
    /// /proc/self/mountinfo about ten times per container start, so every
    /// mount left here slowed every later start. Upper, work and the use
    /// record stay until `unmount`, at the container's end. A busy mount is
    /// left mounted (`unmount` deals with it then).
    pub fn unmount_here(&self) -> Result<()> {
        let target = self.path();
        match mount::umount2(&target, MntFlags::empty()) {
            Ok(()) | Err(nix::Error::EBUSY) => Ok(()),
            Err(e) => Err(e).context(|| format!("unmounting {}", target.display()))?,
        }
    }

    /// The mount point, `<dir>/rootfs`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(ROOTFS_DIR)
    }

    /// The container folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmounts `<dir>/rootfs` (a busy mount is an error, never detached), removes
    /// upper, work and the use record, and lets the store drop layers no image needs
    /// any more. A folder with nothing mounted, or no folder at all, is fine.
    pub fn unmount(dir: &Path) -> Result<()> {
        let dir = match dir.canonicalize() {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e).context(|| format!("{}", dir.display()))?,
        };
        let target = dir.join(ROOTFS_DIR);
        let mut unmounts = 0;
        while is_mounted(&target)? {
            if unmounts == MAX_UNMOUNTS {
                return Err(ImageError::AlreadyMounted { path: target });
            }
            // Never MNT_DETACH: a lazily detached overlay would keep its layers in use unseen.
            if let Err(e) = mount::umount2(&target, MntFlags::empty()) {
                let busy = match e {
                    nix::Error::EBUSY => ": busy, still in use",
                    _ => "",
                };
                Err(e).context(|| format!("unmounting {}{busy}", target.display()))?;
            }
            unmounts += 1;
        }
        (Rootfs { dir: dir.clone() }).unmap_layers()?;
        for sub in [UPPER_DIR, WORK_DIR] {
            let path = dir.join(sub);
            match fs::remove_dir_all(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(e).context(|| format!("removing {}", path.display()))?
                }
                _ => {}
            }
        }
        match fs::remove_dir(&target) {
            // Not empty while unmounted: something else put files there; leave them.
            Err(e)
                if !matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
                ) =>
            {
                Err(e).context(|| format!("removing {}", target.display()))?
            }
            _ => {}
        }
        let marker_path = dir.join(MARKER_FILE);
        let bytes = match fs::read(&marker_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e).context(|| format!("reading {}", marker_path.display()))?,
        };
        let marker: Marker = serde_json::from_slice(&bytes)
            .context(|| format!("{}: invalid JSON", marker_path.display()))?;
        uses::remove(&marker.store, &marker.record)?;
        fs::remove_file(&marker_path).context(|| format!("removing {}", marker_path.display()))?;
        if marker.store.is_dir() {
            ImageStore::open(&marker.store)?.collect_garbage_locked()?;
        }
        Ok(())
    }

    fn mount_overlay(
        &self,
        image: &Image,
        lowers: &[PathBuf],
        idmap: Option<&IdMap>,
    ) -> Result<()> {
        let target = self.path();
        let upper = self.dir.join(UPPER_DIR);
        let work = self.dir.join(WORK_DIR);
        for path in [&target, &upper, &work] {
            fs::create_dir_all(path).context(|| format!("creating {}", path.display()))?;
        }
        // The merged root takes the upper folder's owner and mode: give it the image's.
        let top = lowers
            .last()
            .map(fs::metadata)
            .transpose()
            .context(|| format!("image {}", image.name))?;
        let (mode, uid, gid) = top.map_or((0o755, 0, 0), |m| (m.mode() & 0o7777, m.uid(), m.gid()));
        let shift = idmap.map_or(0, |m| m.base);
        let (uid, gid) = (uid.saturating_add(shift), gid.saturating_add(shift));
        std::os::unix::fs::chown(&upper, Some(uid), Some(gid))
            .context(|| format!("chown {}", upper.display()))?;
        fs::set_permissions(&upper, Permissions::from_mode(mode))
            .context(|| format!("chmod {}", upper.display()))?;

        // Top first, each layer once: a layer repeated lower down adds nothing its
        // topmost copy does not already show, and overlayfs refuses duplicates.
        let mut seen = HashSet::new();
        let lowers: Vec<&PathBuf> = lowers.iter().rev().filter(|p| seen.insert(*p)).collect();
        let mapped = match idmap {
            Some(idmap) => self.map_layers(&lowers, idmap)?,
            None => Vec::new(),
        };
        let lowers: Vec<&PathBuf> = match idmap {
            Some(_) => mapped.iter().collect(),
            None => lowers,
        };

        let data = overlay_options(
            lowers.iter().map(|p| p.as_os_str()),
            upper.as_os_str(),
            work.as_os_str(),
        );
        // Long stacks do not fit in one page: name the layers by short fd paths instead.
        let (data, _open) = if data.len() <= MAX_MOUNT_DATA {
            (data, Vec::new())
        } else {
            let files = lowers
                .iter()
                .map(|p| File::open(p).context(|| format!("opening {}", p.display())))
                .collect::<std::result::Result<Vec<File>, _>>()?;
            let names: Vec<String> = files
                .iter()
                .map(|f| format!("/proc/self/fd/{}", f.as_raw_fd()))
                .collect();
            let data = overlay_options(
                names.iter().map(OsStr::new),
                upper.as_os_str(),
                work.as_os_str(),
            );
            if data.len() > MAX_MOUNT_DATA {
                return Err(ImageError::TooManyLayers {
                    image: image.name.clone(),
                    count: lowers.len(),
                });
            }
            (data, files)
        };
        mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::empty(),
            Some(OsStr::from_bytes(&data)),
        )
        .context(|| {
            format!(
                "mounting the overlay of image {} at {}",
                image.name,
                target.display()
            )
        })?;
        // overlayfs holds private copies of its layers: the mapped ones here go.
        self.unmap_layers()
    }

    /// ID-mapped copies of the layers at `<dir>/lower/<i>`.
    fn map_layers(&self, lowers: &[&PathBuf], idmap: &IdMap) -> Result<Vec<PathBuf>> {
        let mut mapped = Vec::with_capacity(lowers.len());
        for (i, lower) in lowers.iter().enumerate() {
            let at = self.dir.join(LOWER_DIR).join(i.to_string());
            fs::create_dir_all(&at).context(|| format!("creating {}", at.display()))?;
            if let Err(e) = crate::sys::idmap::idmapped_mount(lower, &at, &idmap.userns) {
                let _ = self.unmap_layers();
                Err(e).context(|| format!("layer {}", lower.display()))?;
            }
            mapped.push(at);
        }
        Ok(mapped)
    }

    /// Unmounts and removes `<dir>/lower` (left by a crash, or after the
    /// overlay is mounted). Nothing there is fine.
    fn unmap_layers(&self) -> Result<()> {
        let dir = self.dir.join(LOWER_DIR);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let mut unmounts = 0;
            while is_mounted(&path)? && unmounts < MAX_UNMOUNTS {
                // Detached: the overlay keeps its own copies, nothing else uses these.
                mount::umount2(&path, MntFlags::MNT_DETACH)
                    .context(|| format!("unmounting {}", path.display()))?;
                unmounts += 1;
            }
            fs::remove_dir(&path).context(|| format!("removing {}", path.display()))?;
        }
        fs::remove_dir(&dir).context(|| format!("removing {}", dir.display()))?;
        Ok(())
    }
}

/// `lowerdir=a:b,upperdir=u,workdir=w`, with `\`, `:` and `,` escaped in paths.
fn overlay_options<'a>(
    lowers: impl Iterator<Item = &'a OsStr>,
    upper: &OsStr,
    work: &OsStr,
) -> Vec<u8> {
    let mut data = b"lowerdir=".to_vec();
    for (i, lower) in lowers.enumerate() {
        if i > 0 {
            data.push(b':');
        }
        escape_into(&mut data, lower);
    }
    data.extend_from_slice(b",upperdir=");
    escape_into(&mut data, upper);
    data.extend_from_slice(b",workdir=");
    escape_into(&mut data, work);
    data
}

fn escape_into(data: &mut Vec<u8>, path: &OsStr) {
    for &b in path.as_bytes() {
        if matches!(b, b'\\' | b':' | b',') {
            data.push(b'\\');
        }
        data.push(b);
    }
}

/// Whether something is mounted on `path` in this process's mount namespace.
pub fn is_mounted(path: &Path) -> Result<bool> {
    Ok(crate::sys::mountinfo::is_mount_point(path)
        .context(|| format!("statx {}", path.display()))?)
}

/// Every mount point of /proc/self/mountinfo, unescaped.
pub fn mount_points() -> Result<Vec<PathBuf>> {
    Ok(crate::sys::mountinfo::mount_points()
        .context(|| "reading /proc/self/mountinfo".to_string())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_escape_separators() {
        let data = overlay_options(
            [OsStr::new("/a:b"), OsStr::new("/c,d")].into_iter(),
            OsStr::new("/u\\x"),
            OsStr::new("/w"),
        );
        assert_eq!(
            data,
            b"lowerdir=/a\\:b:/c\\,d,upperdir=/u\\\\x,workdir=/w".to_vec()
        );
    }
}
