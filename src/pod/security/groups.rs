//! A container's groups and its volumes' group, as the kubelet and
//! containerd make them: supplementalGroups and fsGroup join the process's
//! groups, and with supplementalGroupsPolicy Merge (the default) so do the
//! groups the image's /etc/group lists the user in; fsGroup owns the
//! emptyDir volumes (never hostPath), with the setgid bit on folders so
//! that what containers create there keeps the group.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::pod::model::{Container, Pod};

/// The process's additional groups: its primary group first (containerd
/// keeps it there), then the image's memberships (Merge), then
/// supplementalGroups, then fsGroup; each once.
pub fn additional_gids(pod: &Pod, c: &Container, uid: u32, gid: u32, rootfs: &Path) -> Vec<u32> {
    let mut gids = vec![gid];
    if !pod.security.supplemental_groups_strict {
        gids.extend(image_groups(rootfs, uid));
    }
    gids.extend(c.security.supplemental_groups.iter().copied());
    gids.extend(pod.security.fs_group);
    let mut seen = std::collections::BTreeSet::new();
    gids.retain(|g| seen.insert(*g));
    gids
}

/// The groups of the image's /etc/group whose member list names the user
/// that `uid` is in the image's /etc/passwd (none for a uid it lacks).
pub fn image_groups(rootfs: &Path, uid: u32) -> Vec<u32> {
    let read = |file: &str| std::fs::read_to_string(rootfs.join(file)).unwrap_or_default();
    let passwd = read("etc/passwd");
    let Some(user) = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 3 && fields[2].parse() == Ok(uid)).then(|| fields[0].to_string())
    }) else {
        return Vec::new();
    };
    read("etc/group")
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let members = fields.get(3)?;
            let gid = fields.get(2)?.parse().ok()?;
            members.split(',').any(|m| m.trim() == user).then_some(gid)
        })
        .collect()
}

/// The kubelet's SetVolumeOwnership: every file and folder under `dir`
/// gets group `fs_group` and group read-write (folders also search and
/// setgid). With `on_root_mismatch`, nothing is done when `dir` already
/// has them. Symbolic links are left alone.
pub fn set_volume_ownership(
    dir: &Path,
    fs_group: u32,
    on_root_mismatch: bool,
) -> std::io::Result<()> {
    if on_root_mismatch && owned(dir, fs_group)? {
        return Ok(());
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::lchown(&path, None, Some(fs_group))?;
        let mut mode = meta.mode() & 0o7777 | 0o660;
        if meta.is_dir() {
            mode |= 0o110 | 0o2000;
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The volume's root already has the group, its setgid bit and group rwx.
fn owned(dir: &Path, fs_group: u32) -> std::io::Result<bool> {
    let meta = std::fs::metadata(dir)?;
    Ok(meta.gid() == fs_group && meta.mode() & 0o2770 == 0o2770)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_memberships_are_found_by_user_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root\naudio:x:29:app, root\napp:x:1000:\nbad\nstaff:x:50:application\n",
        )
        .unwrap();
        assert_eq!(image_groups(dir.path(), 0), [10, 29]);
        assert_eq!(image_groups(dir.path(), 1000), [29]);
        assert_eq!(image_groups(dir.path(), 4242), Vec::<u32>::new());
    }

    #[test]
    fn fs_group_owns_the_tree_unless_the_root_already_matches() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), "x").unwrap();
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        set_volume_ownership(root, 4321, false).unwrap();
        let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!(
            (meta("sub").gid(), meta("sub").mode() & 0o7777 & 0o2770),
            (4321, 0o2770)
        );
        assert_eq!(
            (meta("sub/f").gid(), meta("sub/f").mode() & 0o777),
            (4321, 0o660)
        );
        assert_ne!(std::fs::metadata("/etc/passwd").unwrap().gid(), 4321);
        // OnRootMismatch: a root that matches stops the walk.
        std::fs::write(root.join("new"), "y").unwrap();
        // (The setgid folder gave it the group: take it away.)
        std::os::unix::fs::lchown(root.join("new"), None, Some(0)).unwrap();
        set_volume_ownership(root, 4321, true).unwrap();
        assert_ne!(meta("new").gid(), 4321);
        set_volume_ownership(root, 4321, false).unwrap();
        assert_eq!(meta("new").gid(), 4321);
    }
}
