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
        if let Err(e) = rootfs.mount_overlay(image, &lowers) {
            let _ = Rootfs::unmount(&rootfs.dir);
            return Err(e);
        }
        Ok(rootfs)
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

    fn mount_overlay(&self, image: &Image, lowers: &[PathBuf]) -> Result<()> {
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
        std::os::unix::fs::chown(&upper, Some(uid), Some(gid))
            .context(|| format!("chown {}", upper.display()))?;
        fs::set_permissions(&upper, Permissions::from_mode(mode))
            .context(|| format!("chmod {}", upper.display()))?;

        // Top first, each layer once: a layer repeated lower down adds nothing its
        // topmost copy does not already show, and overlayfs refuses duplicates.
        let mut seen = HashSet::new();
        let lowers: Vec<&PathBuf> = lowers.iter().rev().filter(|p| seen.insert(*p)).collect();

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
    Ok(mount_points()?.iter().any(|p| p == path))
}

/// Every mount point of /proc/self/mountinfo, unescaped.
pub fn mount_points() -> Result<Vec<PathBuf>> {
    Ok(crate::sys::mountinfo::mount_points()
        .context(|| "reading /proc/self/mountinfo".to_string())?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::image::fixture::{self, named, LayerTar, OciLayout};
    use crate::image::ImageError;

    /// Unmounts on drop, so that a failing test does not leave a mount behind.
    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Rootfs::unmount(&self.0);
        }
    }

    fn layer_names(store: &ImageStore) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(store.root().join("layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn hex(diff_id: &str) -> String {
        diff_id.trim_start_matches("sha256:").to_string()
    }

    fn assert_unmounted(dir: &Path) {
        let rootfs = dir.join(ROOTFS_DIR);
        assert!(
            !mount_points().unwrap().iter().any(|p| p.starts_with(dir)),
            "{} is still mounted",
            rootfs.display()
        );
        assert!(!dir.join(UPPER_DIR).exists() && !dir.join(WORK_DIR).exists());
        assert!(!dir.join(MARKER_FILE).exists());
    }

    #[test]
    fn whiteouts_and_opaque_folders_show_through_the_overlay() {
        fixture::require_root();
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let lower = LayerTar::new()
            .dir("a", 0o755)
            .file("a/deleted", b"x", 0o644)
            .file("a/kept", b"x", 0o644)
            .dir("b", 0o755)
            .file("b/old", b"x", 0o644)
            .dir("b/sub", 0o755)
            .file("gone", b"x", 0o644)
            .dir("gonedir", 0o755)
            .file("gonedir/f", b"x", 0o644)
            .build();
        let upper = LayerTar::new()
            .dir("a", 0o755)
            .file("a/.wh.deleted", b"", 0o644)
            .dir("b", 0o711)
            .file("b/.wh..wh..opq", b"", 0o644)
            .file("b/new", b"new", 0o644)
            .file(".wh.gone", b"", 0o644)
            .file(".wh.gonedir", b"", 0o644)
            .build();
        let archive = fixture::archive(tmp.path(), "wh.tar", "wh", &[lower, upper]);
        let image = store.import(&archive, None).unwrap().remove(0);

        let dir = tmp.path().join("ctr");
        let _cleanup = Cleanup(dir.clone());
        let rootfs = Rootfs::mount(&store, &image, &dir).unwrap();
        let root = rootfs.path();
        assert_eq!(root, dir.canonicalize().unwrap().join("rootfs"));
        assert!(is_mounted(&root).unwrap());
        assert!(root.join("a/kept").exists());
        assert!(
            !root.join("a/deleted").exists(),
            "a whiteout hides the lower file"
        );
        assert!(!root.join("gone").exists() && !root.join("gonedir").exists());
        assert_eq!(fs::read(root.join("b/new")).unwrap(), b"new");
        assert!(
            !root.join("b/old").exists() && !root.join("b/sub").exists(),
            "an opaque folder hides lower content"
        );
        assert_eq!(fs::metadata(root.join("b")).unwrap().mode() & 0o777, 0o711);

        // Writes land in the upper folder and go with it.
        fs::write(root.join("a/written"), b"w").unwrap();
        fs::remove_file(root.join("a/kept")).unwrap();
        assert!(dir.join("upper/a/written").exists());
        let layer_dirs = store.layer_dirs(&image).unwrap();
        assert!(
            layer_dirs[0].join("a/kept").exists(),
            "a lower layer is never written"
        );

        Rootfs::unmount(&dir).unwrap();
        assert_unmounted(&dir);
        assert!(!root.exists());
        Rootfs::unmount(&dir).unwrap();
        Rootfs::unmount(&tmp.path().join("never-was")).unwrap();
    }

    #[test]
    fn remove_keeps_layers_a_mounted_rootfs_uses() {
        fixture::require_root();
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let file = |name: &str| LayerTar::new().file(name, name.as_bytes(), 0o644).build();
        let a = fixture::archive(tmp.path(), "a.tar", "a", &[file("shared"), file("only-a")]);
        let b = fixture::archive(tmp.path(), "b.tar", "b", &[file("shared"), file("only-b")]);
        let c = fixture::archive(tmp.path(), "c.tar", "c", &[file("only-c")]);
        let a = store.import(&a, None).unwrap().remove(0);
        let b = store.import(&b, None).unwrap().remove(0);
        let c = store.import(&c, None).unwrap().remove(0);
        assert_eq!(layer_names(&store).len(), 4);

        // Unused by anything else: its layer goes at once.
        assert_eq!(store.remove("c").unwrap().id, c.id);
        assert!(!layer_names(&store).contains(&hex(&c.layers[0])));
        assert!(!store
            .blob_path(&crate::image::digest::Digest::parse(&c.id).unwrap())
            .exists());

        let dir = tmp.path().join("ctr-a");
        let _cleanup = Cleanup(dir.clone());
        let rootfs = Rootfs::mount(&store, &a, &dir).unwrap();
        let removed = store.remove("localhost/a:latest").unwrap();
        assert_eq!(removed.name, "localhost/a:latest");
        assert!(matches!(
            store.resolve("a"),
            Err(ImageError::NotFound { .. })
        ));
        let names = layer_names(&store);
        assert!(
            names.contains(&hex(&a.layers[1])),
            "in use by the mounted rootfs"
        );
        assert!(names.contains(&hex(&a.layers[0])), "shared with b");
        assert_eq!(fs::read(rootfs.path().join("only-a")).unwrap(), b"only-a");

        // Unmounting the last user lets the layer go.
        Rootfs::unmount(&dir).unwrap();
        assert_unmounted(&dir);
        let names = layer_names(&store);
        assert!(!names.contains(&hex(&a.layers[1])));
        assert!(names.contains(&hex(&b.layers[0])));
        store.remove("b").unwrap();
        assert!(layer_names(&store).is_empty());
        assert!(fs::read_dir(store.root().join("uses"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn a_busy_rootfs_is_not_detached() {
        fixture::require_root();
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let single = LayerTar::new().file("f", b"f", 0o644).build();
        let archive = fixture::archive(tmp.path(), "one.tar", "one", &[single]);
        let image = store.import(&archive, None).unwrap().remove(0);
        let dir = tmp.path().join("ctr");
        let _cleanup = Cleanup(dir.clone());
        let rootfs = Rootfs::mount(&store, &image, &dir).unwrap();
        assert!(matches!(
            Rootfs::mount(&store, &image, &dir),
            Err(ImageError::AlreadyMounted { .. })
        ));

        let open = File::open(rootfs.path().join("f")).unwrap();
        let err = Rootfs::unmount(&dir).unwrap_err();
        assert!(
            matches!(
                &err,
                ImageError::Sys(e) if e.source == nix::Error::EBUSY
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("rootfs: busy"), "{err}");
        assert!(
            is_mounted(&rootfs.path()).unwrap(),
            "still mounted, not detached"
        );
        drop(open);
        Rootfs::unmount(&dir).unwrap();
        assert_unmounted(&dir);
    }

    #[test]
    fn deep_stacks_and_repeated_layers_mount() {
        fixture::require_root();
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let empty = LayerTar::new().build();
        let mut layers: Vec<Vec<u8>> = (0..60)
            .map(|i| LayerTar::new().file(&format!("f{i}"), b"x", 0o644).build())
            .collect();
        // Empty layers repeat in many real images (ENV-only build steps).
        layers.insert(10, empty.clone());
        layers.push(empty.clone());
        layers.push(LayerTar::new().file(".wh.f0", b"", 0o644).build());
        let mut layout = OciLayout::new();
        let manifest = layout.image(&layers, true, json!({}));
        layout.index(vec![named(manifest, "deep")]);
        let image = store
            .import(&layout.write_tar(&tmp.path().join("deep.tar")), None)
            .unwrap()
            .remove(0);
        assert_eq!(image.layers.len(), 63);

        let dir = tmp.path().join("ctr");
        let _cleanup = Cleanup(dir.clone());
        let rootfs = Rootfs::mount(&store, &image, &dir).unwrap();
        assert!(rootfs.path().join("f59").exists() && rootfs.path().join("f1").exists());
        assert!(!rootfs.path().join("f0").exists());
        Rootfs::unmount(&dir).unwrap();
        assert_unmounted(&dir);
    }

    #[test]
    fn the_busybox_fixture_mounts() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/images/busybox.tar");
        fixture::require_root();
        assert!(
            fixture.exists(),
            "{} missing: run scripts/setup",
            fixture.display()
        );
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        store.import(&fixture, None).unwrap();
        let image = store.resolve("docker.io/library/busybox").unwrap();
        assert_eq!(image.name, "localhost/busybox:latest");
        let dir = tmp.path().join("ctr");
        let _cleanup = Cleanup(dir.clone());
        let rootfs = Rootfs::mount(&store, &image, &dir).unwrap();
        assert!(rootfs.path().join("bin/busybox").is_file());
        assert!(rootfs.path().join("bin/sh").exists());
        let root_mode = fs::metadata(rootfs.path()).unwrap().mode() & 0o7777;
        assert_eq!(root_mode, 0o755);
        Rootfs::unmount(&dir).unwrap();
        assert_unmounted(&dir);
    }

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
