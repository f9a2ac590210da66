//! Removing cgroups: rmdir succeeds only on a cgroup without processes or
//! child cgroups, so a tree goes leaves first.

use std::io::ErrorKind;
use std::path::Path;

use super::paths::Cgroup;
use super::{Error, Result};

impl Cgroup {
    /// Removes the cgroup and every cgroup below it, leaves first, in every
    /// hierarchy. Folders that do not exist are fine; one that still holds
    /// processes fails, named (after the other hierarchies were tried).
    pub fn remove(&self) -> Result<()> {
        let mut first_error = None;
        for dir in self.dirs().iter().filter(|d| !d.is_root()) {
            if let Err(e) = remove_tree(&dir.path) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the cgroup's own folder in every hierarchy, only if it has no
    /// child cgroups (a parent shared with others). False if one is left.
    pub fn remove_if_empty(&self) -> bool {
        // Every hierarchy is tried, whatever the others say.
        let left = self
            .dirs()
            .iter()
            .filter(|d| !d.is_root())
            .filter(|d| remove_dir(&d.path).is_err())
            .count();
        left == 0
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// One rmdir in the common case (no child cgroups); the walk only when it fails.
fn remove_tree(dir: &Path) -> Result<()> {
    if remove_dir(dir).is_ok() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries.filter_map(|e| e.ok()) {
        // A cgroup's files are not folders; its child cgroups are.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::super::layout::tests::fake;

    #[test]
    fn a_tree_goes_leaves_first_in_every_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(
            &[("memory", "cgroup rw,memory"), ("unified", "cgroup2")],
            tmp.path(),
        );
        for sub in ["memory/pod/a/x/y", "memory/pod/b", "unified/pod/a"] {
            std::fs::create_dir_all(tmp.path().join(sub)).unwrap();
        }
        let pod = layout.cgroup("/pod");
        assert!(!pod.remove_if_empty(), "it has children");
        assert!(tmp.path().join("memory/pod").exists());
        pod.remove().unwrap();
        assert!(!tmp.path().join("memory/pod").exists());
        assert!(!tmp.path().join("unified/pod").exists());
        pod.remove().unwrap();
        assert!(pod.remove_if_empty(), "gone is removed");
    }

    #[test]
    fn what_cannot_go_is_named_and_the_rest_still_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(
            &[("memory", "cgroup rw,memory"), ("pids", "cgroup rw,pids")],
            tmp.path(),
        );
        // A plain file stands for a cgroup that still has processes.
        std::fs::create_dir_all(tmp.path().join("memory/c")).unwrap();
        std::fs::write(tmp.path().join("memory/c/busy"), "").unwrap();
        std::fs::create_dir_all(tmp.path().join("pids/c/sub")).unwrap();
        let err = layout.cgroup("c").remove().unwrap_err().to_string();
        assert!(err.contains("memory/c: "), "{err}");
        assert!(!tmp.path().join("pids/c").exists());
    }

    #[test]
    fn a_hierarchy_root_is_never_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(&[("memory", "cgroup rw,memory")], tmp.path());
        std::fs::create_dir_all(tmp.path().join("memory/other")).unwrap();
        layout.cgroup("/").remove().unwrap();
        assert!(tmp.path().join("memory/other").exists());
    }
}
