//! `update` on a cgroup v2 host: `linux.resources` (cgroup v1 terms) as the
//! v2 files, with runc's conversions (libcontainer/cgroups/fs2):
//! - cpu.shares -> cpu.weight, by the formula runc 1.3 and crun use (and
//!   libcgroups at create, so one value maps the same at create and update);
//! - quota/period -> cpu.max `"<quota|max> [period]"`;
//! - memory.swap is memory+swap in the spec, swap alone in memory.swap.max
//!   (-1 stays unlimited; memory -1 without a swap value frees swap too; a
//!   swap value without a memory limit takes the cgroup's current one);
//! - the blkio weight (10-1000) goes to io.bfq.weight as is where the kernel
//!   has it, else to io.weight scaled to 1-10000;
//! - pids.max, cpuset.cpus/mems, memory.low (reservation) as they are.
//!
//! Real-time CPU bandwidth does not exist on v2 (refused, as runc does).
//! Device rules are eBPF programs there, left to libcgroups.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

/// One file of the container's cgroup and what to write into it.
pub type Write = (&'static str, String);

/// The v2 files for `r`, in runc's order. `current_memory_max` reads the
/// cgroup's memory.max (None: unlimited) for a swap value given alone.
pub fn writes(
    r: &LinuxResources,
    current_memory_max: impl FnOnce() -> Option<i64>,
) -> Result<Vec<Write>, String> {
    let mut out = vec![];
    if let Some(cpu) = r.cpu() {
        if cpu.realtime_period().is_some_and(|v| v != 0)
            || cpu.realtime_runtime().is_some_and(|v| v != 0)
        {
            return Err("cpu real-time period and runtime are not supported on cgroup v2".into());
        }
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            out.push(("cpu.weight", shares_to_weight(shares).to_string()));
        }
        let quota = cpu.quota().unwrap_or(0);
        let period = cpu.period().unwrap_or(0);
        if quota != 0 || period != 0 {
            let mut max = if quota > 0 {
                quota.to_string()
            } else {
                "max".to_string()
            };
            if period != 0 {
                max = format!("{max} {period}");
            }
            out.push(("cpu.max", max));
        }
        if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            out.push(("cpuset.cpus", cpus.to_string()));
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            out.push(("cpuset.mems", mems.to_string()));
        }
    }
    if let Some(memory) = r.memory() {
        let limit = memory.limit().unwrap_or(0);
        let swap = memory.swap().unwrap_or(0);
        let swap = if swap > 0 && limit == 0 {
            let current = current_memory_max()
                .ok_or("memory.swap: unable to set a swap limit without a memory limit")?;
            swap_value(swap, current)?
        } else {
            swap_value(swap, limit)?
        };
        if swap != 0 {
            out.push(("memory.swap.max", max_or(swap)));
        }
        if limit != 0 {
            out.push(("memory.max", max_or(limit)));
        }
        if let Some(reservation) = memory.reservation().filter(|r| *r != 0) {
            out.push(("memory.low", max_or(reservation)));
        }
    }
    if let Some(pids) = r.pids() {
        if pids.limit() != 0 {
            out.push(("pids.max", max_or(pids.limit())));
        }
    }
    if let Some(weight) = r.block_io().as_ref().and_then(|b| b.weight()) {
        if weight != 0 {
            out.push(("io.bfq.weight", weight.to_string()));
        }
    }
    Ok(out)
}

/// Writes `writes` into `dir`; the blkio weight into io.weight (scaled)
/// where the kernel has no io.bfq.weight.
pub fn apply(dir: &Path, writes: &[Write]) -> std::io::Result<()> {
    for (file, value) in writes {
        if *file == "io.bfq.weight" && !dir.join(file).exists() {
            let weight: u64 = value.parse().unwrap_or(0);
            let path = dir.join("io.weight");
            std::fs::write(&path, blkio_weight_to_io_weight(weight).to_string())
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            continue;
        }
        let path = dir.join(file);
        std::fs::write(&path, value)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// runc's ConvertMemorySwapToCgroupV2Value: memory+swap into swap alone.
fn swap_value(memory_swap: i64, memory: i64) -> Result<i64, String> {
    if memory == -1 && memory_swap == 0 {
        return Ok(-1);
    }
    if memory_swap == -1 || memory_swap == 0 {
        return Ok(memory_swap);
    }
    if memory == 0 || memory == -1 {
        return Err("memory.swap: unable to set a swap limit without a memory limit".into());
    }
    if memory < 0 {
        return Err(format!("memory.limit {memory}: invalid"));
    }
    if memory_swap < memory {
        return Err(format!(
            "memory.swap {memory_swap}: memory+swap must not be lower than the memory limit {memory}"
        ));
    }
    Ok(memory_swap - memory)
}

fn max_or(value: i64) -> String {
    if value < 0 {
        "max".into()
    } else {
        value.to_string()
    }
}

/// cgroup v1 shares [2, 262144] into v2 weight [1, 10000], the curve that maps
/// the default 1024 to 100 (runc 1.3, crun 1.23, libcgroups).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
}

/// The blkio weight [10, 1000] into io.weight [1, 10000], linearly (runc).
pub fn blkio_weight_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + weight.saturating_sub(10) * 9999 / 990
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn of(json: &str) -> Vec<(&'static str, String)> {
        writes(&resources(json), || Some(64 << 20)).unwrap()
    }

    #[test]
    fn conversions_as_runc() {
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(swap_value(200, 100), Ok(100));
        assert_eq!(swap_value(-1, 100), Ok(-1));
        assert_eq!(swap_value(0, -1), Ok(-1));
        assert!(swap_value(50, 100).is_err());
        assert!(swap_value(50, 0).is_err());
    }

    #[test]
    fn resources_become_v2_files() {
        assert_eq!(
            of(
                r#"{"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
                  "memory": {"limit": 134217728, "swap": 268435456, "reservation": 67108864},
                  "pids": {"limit": 50}, "blockIO": {"weight": 500}}"#
            ),
            vec![
                ("cpu.weight", "100".into()),
                ("cpu.max", "50000 100000".into()),
                ("cpuset.cpus", "0-1".into()),
                ("cpuset.mems", "0".into()),
                ("memory.swap.max", "134217728".into()),
                ("memory.max", "134217728".into()),
                ("memory.low", "67108864".into()),
                ("pids.max", "50".into()),
                ("io.bfq.weight", "500".into()),
            ]
        );
        // Unlimited: -1 everywhere is "max"; memory -1 alone frees swap too.
        assert_eq!(
            of(r#"{"cpu": {"quota": -1}, "memory": {"limit": -1}, "pids": {"limit": -1}}"#),
            vec![
                ("cpu.max", "max".into()),
                ("memory.swap.max", "max".into()),
                ("memory.max", "max".into()),
                ("pids.max", "max".into()),
            ]
        );
        // A period alone resets the quota, as runc writes it.
        assert_eq!(
            of(r#"{"cpu": {"period": 20000}}"#),
            vec![("cpu.max", "max 20000".into())]
        );
        // Swap alone: against the cgroup's current memory.max (64 MiB here).
        assert_eq!(
            of(r#"{"memory": {"swap": 100663296}}"#),
            vec![("memory.swap.max", "33554432".into())]
        );
        let err = writes(&resources(r#"{"memory": {"swap": 100}}"#), || None).unwrap_err();
        assert!(err.contains("without a memory limit"), "{err}");
        let err = writes(&resources(r#"{"cpu": {"realtimeRuntime": 1000}}"#), || None).unwrap_err();
        assert!(err.contains("real-time"), "{err}");
        assert!(of("{}").is_empty());
    }

    #[test]
    fn files_are_written_with_io_weight_scaled_where_bfq_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "cpu.weight",
            "cpu.max",
            "memory.max",
            "memory.swap.max",
            "pids.max",
            "io.weight",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let w = of(
            r#"{"cpu": {"shares": 512, "quota": 20000}, "memory": {"limit": 1048576, "swap": -1},
                      "pids": {"limit": 9}, "blockIO": {"weight": 1000}}"#,
        );
        apply(d, &w).unwrap();
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read("cpu.weight"), "59");
        assert_eq!(read("cpu.max"), "20000");
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(read("memory.swap.max"), "max");
        assert_eq!(read("pids.max"), "9");
        assert_eq!(read("io.weight"), "10000");
        assert!(!d.join("io.bfq.weight").exists());

        // With io.bfq.weight present, the v1 value goes there unscaled.
        std::fs::write(d.join("io.bfq.weight"), "").unwrap();
        apply(d, &w).unwrap();
        assert_eq!(read("io.bfq.weight"), "1000");
        // A missing file is an error naming it.
        let err = apply(&d.join("gone"), &w).unwrap_err().to_string();
        assert!(err.contains("gone/cpu.weight"), "{err}");
    }
}
