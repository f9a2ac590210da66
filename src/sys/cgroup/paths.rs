//! A cgroup's folders: one in each mounted hierarchy, found from a
//! `cgroupsPath` (the runtime layer, the pod engine) or from a process's
//! /proc/PID/cgroup (the shim, exec).

use std::path::{Path, PathBuf};

use super::layout::{Hierarchy, Layout, Version};
use super::{Error, Result};

/// The cgroup's folder in one hierarchy (it may not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    pub version: Version,
    /// The hierarchy's controllers (v1; empty for v2).
    pub controllers: Vec<String>,
    pub path: PathBuf,
    /// Where the hierarchy is mounted: its root cgroup, never to be removed.
    pub mount_point: PathBuf,
}

impl Dir {
    fn new(h: &Hierarchy, rel: &Path) -> Self {
        Dir {
            version: h.version,
            controllers: h.controllers.clone(),
            path: h.mount_point.join(rel.strip_prefix("/").unwrap_or(rel)),
            mount_point: h.mount_point.clone(),
        }
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    pub fn is_root(&self) -> bool {
        self.path == self.mount_point
    }
}

/// One cgroup across the hierarchies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroup {
    dirs: Vec<Dir>,
}

impl Layout {
    /// The cgroup at `path` (a `cgroupsPath`, relative to each hierarchy's
    /// root, leading `/` or not) in every hierarchy.
    pub fn cgroup(&self, path: impl AsRef<Path>) -> Cgroup {
        let rel = path.as_ref();
        Cgroup {
            dirs: self
                .hierarchies()
                .iter()
                .map(|h| Dir::new(h, rel))
                .collect(),
        }
    }

    /// The cgroups a process is in, from the text of /proc/PID/cgroup
    /// (`hierarchy-id:controllers:path` lines), in its order. Hierarchies not
    /// mounted here are left out.
    pub fn cgroup_of(&self, membership: &str) -> Cgroup {
        let mut dirs = Vec::new();
        for line in membership.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let v2 = id == "0" && controllers.is_empty();
            let wanted: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
            let hierarchy = self.hierarchies().iter().find(|h| {
                if v2 {
                    h.version == Version::V2
                } else {
                    h.version == Version::V1
                        && !wanted.is_empty()
                        && wanted.iter().all(|c| h.has(c))
                }
            });
            let Some(h) = hierarchy else { continue };
            // A hierarchy mounted from a subfolder shows paths relative to its root.
            if let Ok(rel) = Path::new(path).strip_prefix(&h.root) {
                dirs.push(Dir::new(h, rel));
            }
        }
        Cgroup { dirs }
    }

    /// The cgroups process `pid` is in.
    pub fn cgroup_of_pid(&self, pid: i32) -> Result<Cgroup> {
        let file = format!("/proc/{pid}/cgroup");
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(file, e))?;
        Ok(self.cgroup_of(&text))
    }
}

impl Cgroup {
    pub fn dirs(&self) -> &[Dir] {
        &self.dirs
    }

    /// The folder that serves `controller`: in the v1 hierarchy that carries
    /// it, else in the cgroup2 tree (where its files exist only if the
    /// controller is enabled there).
    pub fn controller(&self, controller: &str) -> Option<&Dir> {
        self.dirs
            .iter()
            .find(|d| d.version == Version::V1 && d.has(controller))
            .or_else(|| self.dirs.iter().find(|d| d.version == Version::V2))
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::tests::{layout, HYBRID, LEGACY, UNIFIED};
    use super::*;

    fn paths(c: &Cgroup) -> Vec<&Path> {
        c.dirs().iter().map(|d| d.path.as_path()).collect()
    }

    #[test]
    fn a_cgroups_path_is_in_every_hierarchy() {
        let c = layout(HYBRID).cgroup("/peapod/uid/web");
        assert_eq!(c.dirs().len(), 10);
        assert_eq!(
            c.controller("memory").unwrap().path,
            Path::new("/sys/fs/cgroup/memory/peapod/uid/web")
        );
        // hugetlb is in no v1 hierarchy here: the cgroup2 tree serves it.
        let huge = c.controller("hugetlb").unwrap();
        assert_eq!(huge.version, Version::V2);
        assert_eq!(
            huge.path,
            Path::new("/sys/fs/cgroup/unified/peapod/uid/web")
        );
        assert_eq!(
            layout(HYBRID).cgroup("peapod/x").dirs()[0].path,
            Path::new("/sys/fs/cgroup/cpu/peapod/x"),
            "relative and absolute paths are the same"
        );
    }

    #[test]
    fn on_pure_v2_every_controller_is_in_the_one_tree() {
        let c = layout(UNIFIED).cgroup("/peapod/a");
        assert_eq!(paths(&c), vec![Path::new("/sys/fs/cgroup/peapod/a")]);
        for ctl in ["memory", "cpu", "pids", "io", "hugetlb", "freezer"] {
            assert_eq!(c.controller(ctl).unwrap().version, Version::V2, "{ctl}");
        }
        assert!(!c.dirs()[0].is_root());
        assert!(layout(UNIFIED).cgroup("/").dirs()[0].is_root());
    }

    #[test]
    fn on_legacy_an_unmounted_controller_has_no_folder() {
        let c = layout(LEGACY).cgroup("/a");
        assert!(c.controller("hugetlb").is_none());
        assert_eq!(
            c.controller("cpuacct").unwrap().path,
            Path::new("/sys/fs/cgroup/cpu,cpuacct/a")
        );
    }

    #[test]
    fn a_process_membership_finds_its_mounted_hierarchies() {
        let l = layout(
            b"30 22 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
              31 22 0:28 /ns /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
              32 22 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        let c = l.cgroup_of(
            "4:cpu,cpuacct:/peapod/a\n3:memory:/peapod/a\n2:pids:/ns/peapod/a\n\
             1:name=systemd:/x\n0::/peapod/a\nbroken\n",
        );
        assert_eq!(
            paths(&c),
            vec![
                Path::new("/sys/fs/cgroup/cpu,cpuacct/peapod/a"),
                Path::new("/sys/fs/cgroup/pids/peapod/a"),
                Path::new("/sys/fs/cgroup/unified/peapod/a"),
            ],
            "memory and name=systemd are not mounted; pids is mounted from /ns"
        );
        assert!(c.controller("memory").unwrap().version == Version::V2);
    }

    #[test]
    fn the_membership_of_this_process_is_readable() {
        let l = Layout::host();
        let c = l.cgroup_of_pid(std::process::id() as i32).unwrap();
        assert!(c.dirs().len() <= l.hierarchies().len());
    }
}
