//! Making the parent cgroups peapod owns (the pod engine's `kubepods`, QoS
//! and pod cgroups) and writing their limits, on v1 and v2. A container's
//! own cgroup is libcontainer's to make; these are the folders above it.
//!
//! Only where limits are written: the v1 `cpu` and `memory` hierarchies (and
//! `hugetlb` when hugetlb limits are given) and the cgroup2 tree. libcontainer makes the rest of the path in the other
//! hierarchies (and copies cpuset's cpus and mems down) with the leaf.

use std::io::ErrorKind;
use std::path::{Component, Path};

use super::layout::Version;
use super::paths::{Cgroup, Dir};
use super::{Error, Result};

/// The controllers a parent cgroup's limits need enabled below it on v2.
const V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "hugetlb"];

/// What peapod writes on a parent cgroup. cpu weight is given as v1 shares
/// and converted on v2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    pub cpu_shares: Option<u64>,
    /// cfs quota (µs per `cpu_period`); None: unlimited.
    pub cpu_quota: Option<i64>,
    pub cpu_period: u64,
    /// None: unlimited.
    pub memory_bytes: Option<i64>,
    /// hugetlb limits by page size name ("2MB"); none given, none written.
    pub hugetlb: Vec<(String, u64)>,
}

/// The host's huge page sizes in bytes (`/sys/kernel/mm/hugepages`).
pub fn hugepage_sizes() -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kib = name.strip_prefix("hugepages-")?.strip_suffix("kB")?;
            kib.parse::<u64>().ok().map(|k| k * 1024)
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

/// A page size as the hugetlb files name it (runc's and the kubelet's
/// HugePageSizeUnitList, base 1024): 2 MiB is "2MB", 1 GiB "1GB".
pub fn hugepage_size_name(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes;
    let mut unit = 0;
    while size >= 1024 && size.is_multiple_of(1024) && unit + 1 < UNITS.len() {
        size /= 1024;
        unit += 1;
    }
    format!("{size}{}", UNITS[unit])
}

/// cgroup v2's `cpu.weight` for v1 shares, with runc 1.3.2's conversion
/// (opencontainers/cgroups `ConvertCPUSharesToCgroupV2Value`, also youki's
/// libcgroups 0.7 for the containers' own cgroups): a quadratic fit in
/// log2(shares) mapping 2 → 1, 1024 → 100 (both defaults), 262144 → 10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    const MIN_SHARES: u64 = 2;
    const MAX_SHARES: u64 = 262_144;
    if shares <= MIN_SHARES {
        return 1;
    }
    if shares >= MAX_SHARES {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
}

impl Cgroup {
    /// Makes the cgroup and its missing parents where limits go, enabling
    /// cpu, memory and hugetlb for the children of every v2 folder on the
    /// way (so the cgroup's own files exist), and writes `limits`.
    pub fn create(&self, limits: &Limits) -> Result<()> {
        for dir in self.dirs().iter().filter(|d| wanted(d, limits)) {
            match dir.version {
                Version::V1 => {
                    std::fs::create_dir_all(&dir.path).map_err(|e| Error::io(&dir.path, e))?
                }
                Version::V2 => create_v2(dir)?,
            }
            write_limits(dir, limits)?;
        }
        Ok(())
    }
}

fn wanted(dir: &Dir, limits: &Limits) -> bool {
    !dir.is_root()
        && (dir.version == Version::V2
            || dir.has("cpu")
            || dir.has("memory")
            || (dir.has("hugetlb") && !limits.hugetlb.is_empty()))
}

/// Every folder from the hierarchy's root down: children get cpu, memory
/// and hugetlb if the folder has them (a folder with processes cannot enable
/// them, as on the root of a hybrid host's tree: they are then just not there).
fn create_v2(dir: &Dir) -> Result<()> {
    let rel = dir.path.strip_prefix(&dir.mount_point).unwrap_or(&dir.path);
    let mut current = dir.mount_point.clone();
    for part in rel.components() {
        let Component::Normal(name) = part else {
            continue;
        };
        enable_controllers(&current);
        current.push(name);
        match std::fs::create_dir(&current) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(Error::io(&current, e)),
            _ => {}
        }
    }
    Ok(())
}

fn enable_controllers(dir: &Path) {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    for controller in V2_CONTROLLERS {
        let has = |text: &str| text.split_whitespace().any(|c| c == controller);
        if has(&available) && !has(&enabled) {
            // Best effort: a missing controller shows as a missing file below.
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"));
        }
    }
}

fn write(dir: &Path, name: &str, value: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, value).map_err(|e| Error::io(path, e))
}

/// Writes the files that exist for these limits (a controller missing from
/// this hierarchy has none).
fn write_limits(dir: &Dir, limits: &Limits) -> Result<()> {
    let p = &dir.path;
    let exists = |name: &str| p.join(name).exists();
    match dir.version {
        Version::V1 => {
            if dir.has("cpu") {
                if let Some(shares) = limits.cpu_shares {
                    write(p, "cpu.shares", &shares.to_string())?;
                }
                if exists("cpu.cfs_quota_us") {
                    // The period first: a quota is checked against it.
                    write(p, "cpu.cfs_period_us", &limits.cpu_period.to_string())?;
                    let quota = limits.cpu_quota.unwrap_or(-1);
                    write(p, "cpu.cfs_quota_us", &quota.to_string())?;
                }
            }
            if dir.has("memory") {
                let bytes = limits.memory_bytes.unwrap_or(-1);
                write(p, "memory.limit_in_bytes", &bytes.to_string())?;
            }
            if dir.has("hugetlb") {
                for (size, bytes) in &limits.hugetlb {
                    write(
                        p,
                        &format!("hugetlb.{size}.limit_in_bytes"),
                        &bytes.to_string(),
                    )?;
                }
            }
        }
        Version::V2 => {
            if exists("cpu.weight") {
                if let Some(shares) = limits.cpu_shares {
                    write(p, "cpu.weight", &shares_to_weight(shares).to_string())?;
                }
                let quota = limits
                    .cpu_quota
                    .map_or_else(|| "max".to_string(), |q| q.to_string());
                write(p, "cpu.max", &format!("{quota} {}", limits.cpu_period))?;
            }
            if exists("memory.max") {
                let bytes = limits
                    .memory_bytes
                    .map_or_else(|| "max".to_string(), |b| b.to_string());
                write(p, "memory.max", &bytes)?;
            }
            // The reservation limit too where the kernel has one, as runc.
            for (size, bytes) in &limits.hugetlb {
                for file in [
                    format!("hugetlb.{size}.max"),
                    format!("hugetlb.{size}.rsvd.max"),
                ] {
                    if exists(&file) {
                        write(p, &file, &bytes.to_string())?;
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::layout::tests::fake;
    use super::*;

    // runc's and the kubelet's names (HugePageSizeUnitList, base 1024).
    #[test]
    fn hugepage_sizes_are_named_as_the_hugetlb_files_name_them() {
        assert_eq!(hugepage_size_name(64 << 10), "64KB");
        assert_eq!(hugepage_size_name(2 << 20), "2MB");
        assert_eq!(hugepage_size_name(32 << 20), "32MB");
        assert_eq!(hugepage_size_name(1 << 30), "1GB");
    }

    #[test]
    fn hugetlb_limits_go_to_the_files_of_each_version() {
        let tmp = tempfile::tempdir().unwrap();
        let v2 = fake(&[("", "cgroup2")], tmp.path());
        let dir = tmp.path().join("p");
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["hugetlb.2MB.max", "hugetlb.2MB.rsvd.max", "hugetlb.1GB.max"] {
            std::fs::write(dir.join(file), "max").unwrap();
        }
        let limits = Limits {
            cpu_period: 100_000,
            hugetlb: vec![
                ("2MB".into(), 4 << 20),
                ("1GB".into(), 0),
                ("16GB".into(), 0),
            ],
            ..Limits::default()
        };
        v2.cgroup("/p").create(&limits).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("hugetlb.2MB.max"), "4194304");
        assert_eq!(read("hugetlb.2MB.rsvd.max"), "4194304");
        assert_eq!(read("hugetlb.1GB.max"), "0");
        assert!(
            !dir.join("hugetlb.16GB.max").exists(),
            "a size the kernel lacks"
        );

        let tmp = tempfile::tempdir().unwrap();
        let v1 = fake(&[("hugetlb", "cgroup rw,hugetlb")], tmp.path());
        v1.cgroup("/p").create(&limits).unwrap();
        let file = tmp.path().join("hugetlb/p/hugetlb.2MB.limit_in_bytes");
        assert_eq!(std::fs::read_to_string(file).unwrap(), "4194304");
    }

    #[test]
    fn shares_convert_to_weight_as_runc_does() {
        // runc 1.3.2's table: the minimum, the default and the maximum are kept.
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        let mut last = 0;
        for shares in [3, 10, 102, 512, 2048, 4096, 100_000] {
            let w = shares_to_weight(shares);
            assert!(w >= last && (1..=10_000).contains(&w), "{shares} → {w}");
            last = w;
        }
    }

    #[test]
    fn v1_parents_get_their_limits_where_the_controllers_are() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(
            &[
                ("cpu", "cgroup rw,cpu"),
                ("memory", "cgroup rw,memory"),
                ("pids", "cgroup rw,pids"),
            ],
            tmp.path(),
        );
        let pod = layout.cgroup("/peapod/kubepods/burstable/podu");
        // The kernel's files exist once the folder does; here they are made first.
        std::fs::create_dir_all(tmp.path().join("cpu/peapod/kubepods/burstable/podu")).unwrap();
        std::fs::write(
            tmp.path()
                .join("cpu/peapod/kubepods/burstable/podu/cpu.cfs_quota_us"),
            "",
        )
        .unwrap();
        let limits = Limits {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: 100_000,
            memory_bytes: None,
            hugetlb: vec![],
        };
        pod.create(&limits).unwrap();
        let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
        let cpu = "cpu/peapod/kubepods/burstable/podu";
        assert_eq!(read(&format!("{cpu}/cpu.shares")), "512");
        assert_eq!(read(&format!("{cpu}/cpu.cfs_period_us")), "100000");
        assert_eq!(read(&format!("{cpu}/cpu.cfs_quota_us")), "50000");
        assert_eq!(
            read("memory/peapod/kubepods/burstable/podu/memory.limit_in_bytes"),
            "-1"
        );
        assert!(
            !tmp.path().join("pids/peapod").exists(),
            "libcontainer makes the rest with the leaf"
        );
    }

    #[test]
    fn v2_enables_cpu_and_memory_on_the_way_down() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(&[("unified", "cgroup2")], tmp.path());
        let root = tmp.path().join("unified");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        layout
            .cgroup("/peapod/kubepods")
            .create(&Limits::default())
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+memory",
            "each controller written on its own (a plain file keeps the last)"
        );
        assert!(root.join("peapod/kubepods").is_dir());
    }
}
