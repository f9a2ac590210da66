//! The image store on a real filesystem as root: layers unpacked with their owners,
//! device nodes and overlay whiteouts, and overlay root filesystems mounted over them.

use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use peapod::image::fixture::{self, named, LayerTar, OciLayout};
use peapod::image::{is_mounted, mount_points, unpack_tar, ImageError, ImageStore, Rootfs};
use serde_json::json;

use crate::common::{repo, require_root};

fn unpack(tar: &[u8], root: &Path) {
    unpack_tar(tar, root, "sha256:test").unwrap();
}

/// An extended attribute of `path` itself (not of a symbolic link's target).
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings; buf is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

/// What overlayfs reads as a whiteout: a character device 0:0.
fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn busybox_archive() -> PathBuf {
    let archive = repo().join("bundles/images/busybox.tar");
    assert!(
        archive.exists(),
        "{} missing: run scripts/setup",
        archive.display()
    );
    archive
}

#[test]
fn metadata_links_and_nodes_are_kept() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let tar = LayerTar::new()
        .dir("./", 0o755)
        .dir("home/app", 0o750)
        .file_as("home/app/tool", b"#!/bin/sh\n", 0o4755, 1000, 1000)
        .hardlink("home/app/tool2", "home/app/tool")
        .symlink("bin", "usr/bin")
        .symlink("escape", "../../../../etc")
        .char_dev("dev/null", 1, 3)
        .fifo("run/pipe")
        .pax(&[
            ("SCHILY.xattr.user.peapod", b"yes"),
            ("mtime", b"1600000000.5"),
        ])
        .file("etc/motd", b"hello", 0o644)
        .build();
    unpack(&tar, tmp.path());
    let root = tmp.path();

    let tool = fs::symlink_metadata(root.join("home/app/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!((tool.uid(), tool.gid()), (1000, 1000));
    assert_eq!(tool.mtime(), fixture::MTIME as i64);
    assert_eq!(tool.nlink(), 2);
    assert_eq!(
        fs::symlink_metadata(root.join("home/app/tool2"))
            .unwrap()
            .ino(),
        tool.ino()
    );
    let app = fs::symlink_metadata(root.join("home/app")).unwrap();
    assert_eq!(app.mode() & 0o7777, 0o750);
    assert_eq!(
        app.mtime(),
        fixture::MTIME as i64,
        "folder mtimes are set last"
    );
    assert_eq!(
        fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        fs::read_link(root.join("escape")).unwrap(),
        Path::new("../../../../etc")
    );
    let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(fs::symlink_metadata(root.join("run/pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    let motd = root.join("etc/motd");
    assert_eq!(xattr(&motd, "user.peapod").as_deref(), Some(&b"yes"[..]));
    let motd = fs::symlink_metadata(&motd).unwrap();
    assert_eq!(
        (motd.mtime(), motd.mtime_nsec()),
        (1_600_000_000, 500_000_000)
    );
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let tar = LayerTar::new()
        .file(".wh.gone", b"", 0o644)
        .dir("opaque", 0o755)
        .file("opaque/.wh..wh..opq", b"", 0o644)
        .file("opaque/new", b"new", 0o644)
        .file("deep/er/.wh.file", b"", 0o644)
        .file(".wh..wh.plnk", b"", 0o644)
        .build();
    unpack(&tar, tmp.path());
    let gone = fs::symlink_metadata(tmp.path().join("gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(is_whiteout(
        &fs::symlink_metadata(tmp.path().join("deep/er/file")).unwrap()
    ));
    assert_eq!(
        xattr(&tmp.path().join("opaque"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(tmp.path().join("opaque/new").is_file());
    assert!(!tmp.path().join(".wh..wh.plnk").exists() && !tmp.path().join("plnk").exists());
}

#[test]
fn own_overlay_xattrs_are_dropped() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let tar = LayerTar::new()
        .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
        .dir("d", 0o755)
        .build();
    unpack(&tar, tmp.path());
    assert_eq!(
        xattr(&tmp.path().join("d"), "trusted.overlay.redirect"),
        None
    );
}

#[test]
fn the_busybox_fixture_imports() {
    require_root();
    let archive = busybox_archive();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let images = store.import(&archive, None).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].name, "localhost/busybox:latest");
    assert_eq!(images[0].config.cmd, vec!["sh"]);
    let image = store.resolve("busybox").unwrap();
    let dirs = store.layer_dirs(&image).unwrap();
    assert!(dirs[0].join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(dirs[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
}

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

fn hex(digest: &str) -> String {
    digest.trim_start_matches("sha256:").to_string()
}

/// Nothing mounted under the container folder, and its upper, work and
/// rootfs.json gone (the layout image/mod.rs documents).
fn assert_unmounted(dir: &Path) {
    let rootfs = dir.join("rootfs");
    assert!(
        !mount_points().unwrap().iter().any(|p| p.starts_with(dir)),
        "{} is still mounted",
        rootfs.display()
    );
    assert!(!dir.join("upper").exists() && !dir.join("work").exists());
    assert!(!dir.join("rootfs.json").exists());
}

#[test]
fn whiteouts_and_opaque_folders_show_through_the_overlay() {
    require_root();
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
    require_root();
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
    assert!(!store.root().join("blobs/sha256").join(hex(&c.id)).exists());

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
    require_root();
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
    require_root();
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
    require_root();
    let archive = busybox_archive();
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    store.import(&archive, None).unwrap();
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
