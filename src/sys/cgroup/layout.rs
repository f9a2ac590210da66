//! Which cgroup hierarchies this host has mounted, from mountinfo: pure v2
//! (cgroup2 at /sys/fs/cgroup), v1 (a hierarchy per controller or group of
//! controllers), or hybrid (v1 controllers plus a cgroup2 tree, usually at
//! /sys/fs/cgroup/unified). Plain folders on the tmpfs (left by tools for
//! controllers that are not mounted) do not count.

use std::path::{Path, PathBuf};

use crate::sys::mountinfo::{self, Mount};

/// The controllers a v1 hierarchy can carry (named hierarchies, `name=...`,
/// carry none but are hierarchies all the same).
const V1_CONTROLLERS: [&str; 14] = [
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// cgroup2 only (v1 hierarchies, if any, carry no controller).
    Unified,
    /// v1 controllers, no cgroup2.
    Legacy,
    /// v1 controllers and a cgroup2 tree beside them.
    Hybrid,
    /// No cgroup filesystem mounted.
    None,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// v1: its controllers and `name=` (from the superblock options); v2: empty.
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    /// The cgroup mounted there (not `/` inside a cgroup namespace or a bind
    /// of a subtree): /proc/PID/cgroup paths are relative to the hierarchy.
    pub root: PathBuf,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    fn from_mount(m: &Mount) -> Option<Self> {
        let (version, controllers) = match m.fs_type.as_str() {
            "cgroup2" => (Version::V2, vec![]),
            "cgroup" => (
                Version::V1,
                m.super_options
                    .split(',')
                    .filter(|o| o.starts_with("name=") || V1_CONTROLLERS.contains(o))
                    .map(String::from)
                    .collect(),
            ),
            _ => return None,
        };
        Some(Hierarchy {
            version,
            controllers,
            mount_point: m.mount_point.clone(),
            root: m.root.clone(),
        })
    }

    /// Another mount of the same hierarchy (a v1 controller set lives in one
    /// hierarchy; there is one cgroup2 tree).
    fn same_tree(&self, other: &Hierarchy) -> bool {
        if self.version != other.version {
            return false;
        }
        let mut a = self.controllers.clone();
        let mut b = other.controllers.clone();
        a.sort();
        b.sort();
        a == b
    }
}

/// The hierarchies mounted in this mount namespace, one mount each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// This process's view: read from /proc/self/mountinfo once per process
    /// (a supervisor asks at every container start, and mountinfo grows with
    /// every pod on the node). The cgroup hierarchies are mounted at boot and
    /// do not move while a peapod process lives.
    pub fn host() -> Self {
        static HOST: std::sync::OnceLock<Layout> = std::sync::OnceLock::new();
        HOST.get_or_init(|| Self::from_mounts(&mountinfo::mounts()))
            .clone()
    }

    /// From parsed mountinfo. A hierarchy mounted twice counts once: its
    /// mount of the whole tree if there is one, else its first.
    pub fn from_mounts(mounts: &[Mount]) -> Self {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for h in mounts.iter().filter_map(Hierarchy::from_mount) {
            match hierarchies.iter_mut().find(|seen| seen.same_tree(&h)) {
                Some(seen) if seen.root != Path::new("/") && h.root == Path::new("/") => *seen = h,
                Some(_) => {}
                None => hierarchies.push(h),
            }
        }
        Layout { hierarchies }
    }

    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    pub fn mode(&self) -> Mode {
        let v1 = self.hierarchies.iter().any(|h| {
            h.version == Version::V1 && h.controllers.iter().any(|c| !c.starts_with("name="))
        });
        let v2 = self.hierarchies.iter().any(|h| h.version == Version::V2);
        match (v1, v2) {
            (true, true) => Mode::Hybrid,
            (true, false) => Mode::Legacy,
            (false, true) => Mode::Unified,
            (false, false) => Mode::None,
        }
    }

    /// Whether a container's hugetlb limits can be set here: a v1 hugetlb
    /// hierarchy, or a pure cgroup v2 tree whose root offers the controller.
    /// libcontainer sees no other (on a hybrid host, hugetlb in the cgroup2
    /// tree beside v1 controllers is out of its reach).
    pub fn hugetlb_limits(&self) -> bool {
        match self.mode() {
            Mode::Unified => self.hierarchies.iter().any(|h| {
                std::fs::read_to_string(h.mount_point.join("cgroup.controllers"))
                    .is_ok_and(|text| text.split_whitespace().any(|c| c == "hugetlb"))
            }),
            Mode::Legacy | Mode::Hybrid => self
                .hierarchies
                .iter()
                .any(|h| h.version == Version::V1 && h.has("hugetlb")),
            Mode::None => false,
        }
    }

    /// Where each hierarchy is mounted.
    pub fn mount_points(&self) -> impl Iterator<Item = &Path> {
        self.hierarchies.iter().map(|h| h.mount_point.as_path())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// This machine: v1 controllers (cpu and cpuacct apart), a named systemd
    /// hierarchy, and cgroup2 at unified (only hugetlb in it).
    pub const HYBRID: &[u8] = b"\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    pub const UNIFIED: &[u8] = b"\
25 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    pub const LEGACY: &[u8] = b"\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/freezer rw,nosuid shared:16 - cgroup cgroup rw,freezer
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid shared:17 - cgroup cgroup rw,pids
";

    pub fn layout(text: &[u8]) -> Layout {
        Layout::from_mounts(&mountinfo::parse(text))
    }

    /// A layout whose hierarchies are folders of a temporary directory.
    pub fn fake(mountinfo_lines: &[(&str, &str)], root: &Path) -> Layout {
        let text: String = mountinfo_lines
            .iter()
            .enumerate()
            .map(|(i, (sub, fs))| {
                let (fs_type, opts) = fs.split_once(' ').unwrap_or((fs, "rw"));
                format!(
                    "{} 1 0:{} / {} rw - {fs_type} {fs_type} {opts}\n",
                    100 + i,
                    100 + i,
                    root.join(sub).display()
                )
            })
            .collect();
        Layout::from_mounts(&mountinfo::parse(text.as_bytes()))
    }

    pub fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn hybrid_has_v1_controllers_and_the_unified_tree() {
        let l = layout(HYBRID);
        assert_eq!(l.mode(), Mode::Hybrid);
        assert_eq!(l.hierarchies().len(), 10, "the tmpfs is not a hierarchy");
        let cpu = &l.hierarchies()[0];
        assert_eq!(cpu.version, Version::V1);
        assert_eq!(cpu.controllers, vec!["cpu"]);
        assert!(l.hierarchies()[8].has("name=systemd"));
        let v2 = l.hierarchies().last().unwrap();
        assert_eq!(v2.version, Version::V2);
        assert_eq!(v2.mount_point, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn unified_and_legacy() {
        let u = layout(UNIFIED);
        assert_eq!(u.mode(), Mode::Unified);
        assert_eq!(
            u.mount_points().collect::<Vec<_>>(),
            vec![Path::new("/sys/fs/cgroup")]
        );
        let l = layout(LEGACY);
        assert_eq!(l.mode(), Mode::Legacy);
        assert_eq!(l.hierarchies()[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(
            l.hierarchies()[0].controllers,
            vec!["name=systemd"],
            "mount options are not controllers"
        );
        assert_eq!(layout(b"").mode(), Mode::None);
    }

    #[test]
    fn a_named_hierarchy_beside_cgroup2_is_still_unified() {
        let text = [
            UNIFIED,
            b"40 26 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n",
        ]
        .concat();
        assert_eq!(layout(&text).mode(), Mode::Unified);
    }

    #[test]
    fn a_hierarchy_mounted_twice_counts_once_preferring_its_whole_tree() {
        let l = layout(
            b"50 1 0:40 /pods /mnt/mem rw - cgroup cgroup rw,memory\n\
              51 1 0:40 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
              52 1 0:41 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
              53 1 0:41 / /other rw - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(l.hierarchies().len(), 2);
        assert_eq!(
            l.hierarchies()[0].mount_point,
            Path::new("/sys/fs/cgroup/memory")
        );
        assert_eq!(l.hierarchies()[1].mount_point, Path::new("/sys/fs/cgroup"));
    }
}
