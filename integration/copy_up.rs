//! tmpcopyup between two real folders: owners can only be set and checked as root.

use std::fs;
use std::os::unix::fs::{chown, lchown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::Mode;
use peapod::oci::copy_up::copy_up_between;

use crate::common::require_root;

fn write(path: &Path, data: &str, mode: u32, uid: u32, gid: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    chown(path, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path, mode: u32, uid: u32, gid: u32) {
    fs::create_dir_all(path).unwrap();
    chown(path, Some(uid), Some(gid)).unwrap();
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

fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

#[test]
fn tree_is_copied_with_links_modes_and_owners() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let (image, container) = (tmp.path().join("image"), tmp.path().join("container"));
    mkdir(&image.join("etc"), 0o750, 10, 20);
    write(&image.join("etc/passwd"), "root:x:0:0", 0o644, 0, 0);
    write(&image.join("etc/tool"), "#!/bin/sh\n", 0o4755, 1000, 1000);
    mkdir(&image.join("etc/ssl"), 0o711, 0, 0);
    mkdir(&image.join("etc/ssl/certs"), 0o555, 5, 5);
    write(
        &image.join("etc/ssl/certs/ca.pem"),
        "cert",
        0o600,
        1000,
        1001,
    );
    symlink("/usr/share/zoneinfo/UTC", image.join("etc/localtime")).unwrap();
    lchown(image.join("etc/localtime"), Some(7), Some(8)).unwrap();
    nix::unistd::mkfifo(&image.join("etc/fifo"), Mode::S_IRUSR).unwrap();
    write(&image.join("file"), "not a directory", 0o644, 0, 0);
    // The fresh tmpfs at /etc, and the mount points of the skipped destinations.
    mkdir(&container.join("etc"), 0o1777, 0, 0);
    mkdir(&container.join("file"), 0o755, 0, 0);
    mkdir(&container.join("missing"), 0o755, 0, 0);

    let destinations = ["/etc", "/file", "/missing"].map(String::from);
    copy_up_between(&image, &container, &destinations).unwrap();

    let etc = container.join("etc");
    assert_eq!(
        names(&etc),
        ["localtime", "passwd", "ssl", "tool"],
        "the fifo is skipped"
    );
    assert_eq!(owner_and_mode(&etc), (10, 20, 0o750));
    assert_eq!(
        fs::read_to_string(etc.join("passwd")).unwrap(),
        "root:x:0:0"
    );
    assert_eq!(owner_and_mode(&etc.join("passwd")), (0, 0, 0o644));
    assert_eq!(owner_and_mode(&etc.join("tool")), (1000, 1000, 0o4755));
    assert_eq!(owner_and_mode(&etc.join("ssl")), (0, 0, 0o711));
    assert_eq!(owner_and_mode(&etc.join("ssl/certs")), (5, 5, 0o555));
    assert_eq!(
        fs::read_to_string(etc.join("ssl/certs/ca.pem")).unwrap(),
        "cert"
    );
    assert_eq!(
        owner_and_mode(&etc.join("ssl/certs/ca.pem")),
        (1000, 1001, 0o600)
    );
    assert_eq!(
        fs::read_link(etc.join("localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/UTC")
    );
    let link = fs::symlink_metadata(etc.join("localtime")).unwrap();
    assert_eq!((link.uid(), link.gid()), (7, 8));
    assert!(names(&container.join("file")).is_empty());
    assert!(names(&container.join("missing")).is_empty());
}
