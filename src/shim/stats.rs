//! Stats: the container's cgroup metrics as containerd's
//! `io.containerd.cgroups.v1.Metrics` (cgroup v1 and hybrid hosts) or
//! `io.containerd.cgroups.v2.Metrics` (pure cgroup v2 hosts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;

use super::Error;

const ROOT: &str = "/sys/fs/cgroup";

/// A message as containerd's typeurl expects it (the bare message name).
pub fn any(type_url: &str, m: &dyn containerd_shim_protos::protobuf::MessageDyn) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: m.write_to_bytes_dyn().unwrap_or_default(),
        ..Default::default()
    }
}

/// Whether this host runs cgroup v2 only.
pub fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// The cgroup folder of `pid` for a v1 controller, or its v2 folder.
pub fn cgroup_dir(pid: i32, controller: Option<&str>) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        match controller {
            None if ctrls.is_empty() => return Some(Path::new(ROOT).join(rel)),
            Some(want) if ctrls.split(',').any(|c| c == want) => {
                // The hierarchy's mount folder names its controllers (cpu,cpuacct).
                let mount = std::fs::read_dir(ROOT).ok()?.flatten().find(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.split(',').any(|c| c == want))
                        && e.path().is_dir()
                })?;
                return Some(mount.path().join(rel));
            }
            _ => {}
        }
    }
    None
}

fn read_u64(dir: &Path, file: &str) -> u64 {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// `key value` lines (memory.stat, cpu.stat).
fn read_kv(dir: &Path, file: &str) -> HashMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A limit: "max" is u64::MAX (memory, as containerd reports it).
fn read_limit(dir: &Path, file: &str) -> u64 {
    match std::fs::read_to_string(dir.join(file)) {
        Ok(s) if s.trim() == "max" => u64::MAX,
        Ok(s) => s.trim().parse().unwrap_or(0),
        Err(_) => 0,
    }
}

pub fn collect(pid: i32) -> Result<Any, Error> {
    if pid <= 0 {
        return Err(Error::Precondition("the container has no process".into()));
    }
    if unified() {
        let dir = cgroup_dir(pid, None)
            .ok_or_else(|| Error::NotFound(format!("no cgroup for pid {pid}")))?;
        return Ok(any("io.containerd.cgroups.v2.Metrics", &metrics_v2(&dir)));
    }
    Ok(any("io.containerd.cgroups.v1.Metrics", &metrics_v1(pid)))
}

/// pids.max: "max" is 0, as containerd reports no limit.
fn read_pids_limit(dir: &Path) -> u64 {
    match read_limit(dir, "pids.max") {
        u64::MAX => 0,
        n => n,
    }
}

fn metrics_v1(pid: i32) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    if let Some(dir) = cgroup_dir(pid, Some("pids")) {
        m.pids = Some(v1::PidsStat {
            current: read_u64(&dir, "pids.current"),
            limit: read_pids_limit(&dir),
            ..Default::default()
        })
        .into();
    }
    if let Some(dir) = cgroup_dir(pid, Some("cpuacct")) {
        let stat = read_kv(&dir, "cpuacct.stat");
        // cpuacct.stat is in USER_HZ ticks (100/s); containerd reports ns.
        let tick = 10_000_000;
        let per_cpu = std::fs::read_to_string(dir.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let throttle = cgroup_dir(pid, Some("cpu"))
            .map(|d| read_kv(&d, "cpu.stat"))
            .unwrap_or_default();
        m.cpu = Some(v1::CPUStat {
            usage: Some(v1::CPUUsage {
                total: read_u64(&dir, "cpuacct.usage"),
                user: stat.get("user").copied().unwrap_or(0) * tick,
                kernel: stat.get("system").copied().unwrap_or(0) * tick,
                per_cpu,
                ..Default::default()
            })
            .into(),
            throttling: Some(v1::Throttle {
                periods: throttle.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: throttle.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: throttle.get("throttled_time").copied().unwrap_or(0),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into();
    }
    if let Some(dir) = cgroup_dir(pid, Some("memory")) {
        let s = read_kv(&dir, "memory.stat");
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        let entry = |prefix: &str| v1::MemoryEntry {
            usage: read_u64(&dir, &format!("{prefix}usage_in_bytes")),
            max: read_u64(&dir, &format!("{prefix}max_usage_in_bytes")),
            limit: read_u64(&dir, &format!("{prefix}limit_in_bytes")),
            failcnt: read_u64(&dir, &format!("{prefix}failcnt")),
            ..Default::default()
        };
        m.memory = Some(v1::MemoryStat {
            cache: g("cache"),
            rss: g("rss"),
            rss_huge: g("rss_huge"),
            mapped_file: g("mapped_file"),
            dirty: g("dirty"),
            writeback: g("writeback"),
            pg_pg_in: g("pgpgin"),
            pg_pg_out: g("pgpgout"),
            pg_fault: g("pgfault"),
            pg_maj_fault: g("pgmajfault"),
            inactive_anon: g("inactive_anon"),
            active_anon: g("active_anon"),
            inactive_file: g("inactive_file"),
            active_file: g("active_file"),
            unevictable: g("unevictable"),
            hierarchical_memory_limit: g("hierarchical_memory_limit"),
            hierarchical_swap_limit: g("hierarchical_memsw_limit"),
            total_cache: g("total_cache"),
            total_rss: g("total_rss"),
            total_rss_huge: g("total_rss_huge"),
            total_mapped_file: g("total_mapped_file"),
            total_dirty: g("total_dirty"),
            total_writeback: g("total_writeback"),
            total_pg_pg_in: g("total_pgpgin"),
            total_pg_pg_out: g("total_pgpgout"),
            total_pg_fault: g("total_pgfault"),
            total_pg_maj_fault: g("total_pgmajfault"),
            total_inactive_anon: g("total_inactive_anon"),
            total_active_anon: g("total_active_anon"),
            total_inactive_file: g("total_inactive_file"),
            total_active_file: g("total_active_file"),
            total_unevictable: g("total_unevictable"),
            usage: Some(entry("memory.")).into(),
            swap: Some(entry("memory.memsw.")).into(),
            kernel: Some(entry("memory.kmem.")).into(),
            kernel_tcp: Some(entry("memory.kmem.tcp.")).into(),
            ..Default::default()
        })
        .into();
    }
    m
}

fn metrics_v2(dir: &Path) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    m.pids = Some(v2::PidsStat {
        current: read_u64(dir, "pids.current"),
        limit: read_pids_limit(dir),
        ..Default::default()
    })
    .into();
    let cpu = read_kv(dir, "cpu.stat");
    let c = |k: &str| cpu.get(k).copied().unwrap_or(0);
    m.cpu = Some(v2::CPUStat {
        usage_usec: c("usage_usec"),
        user_usec: c("user_usec"),
        system_usec: c("system_usec"),
        nr_periods: c("nr_periods"),
        nr_throttled: c("nr_throttled"),
        throttled_usec: c("throttled_usec"),
        ..Default::default()
    })
    .into();
    let mem = read_kv(dir, "memory.stat");
    let g = |k: &str| mem.get(k).copied().unwrap_or(0);
    m.memory = Some(v2::MemoryStat {
        anon: g("anon"),
        file: g("file"),
        kernel_stack: g("kernel_stack"),
        slab: g("slab"),
        sock: g("sock"),
        shmem: g("shmem"),
        file_mapped: g("file_mapped"),
        file_dirty: g("file_dirty"),
        file_writeback: g("file_writeback"),
        anon_thp: g("anon_thp"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        slab_reclaimable: g("slab_reclaimable"),
        slab_unreclaimable: g("slab_unreclaimable"),
        pgfault: g("pgfault"),
        pgmajfault: g("pgmajfault"),
        usage: read_u64(dir, "memory.current"),
        usage_limit: read_limit(dir, "memory.max"),
        swap_usage: read_u64(dir, "memory.swap.current"),
        swap_limit: read_limit(dir, "memory.swap.max"),
        ..Default::default()
    })
    .into();
    let ev = read_kv(dir, "memory.events");
    let e = |k: &str| ev.get(k).copied().unwrap_or(0);
    m.memory_events = Some(v2::MemoryEvents {
        low: e("low"),
        high: e("high"),
        max: e("max"),
        oom: e("oom"),
        oom_kill: e("oom_kill"),
        ..Default::default()
    })
    .into();
    m
}
