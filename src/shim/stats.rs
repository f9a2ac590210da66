//! Stats: the container's cgroup metrics as containerd's
//! `io.containerd.cgroups.v1.Metrics` (cgroup v1 and hybrid hosts) or
//! `io.containerd.cgroups.v2.Metrics` (pure cgroup v2 hosts), from
//! `sys::cgroup`'s reading of the init's cgroups.

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;

use super::Error;
use crate::sys::cgroup::{self, IoStats, Layout, Mode, Stats};

/// A message as containerd's typeurl expects it (the bare message name).
pub fn any(type_url: &str, m: &dyn containerd_shim_protos::protobuf::MessageDyn) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: m.write_to_bytes_dyn().unwrap_or_default(),
        ..Default::default()
    }
}

pub fn collect(pid: i32) -> Result<Any, Error> {
    if pid <= 0 {
        return Err(Error::Precondition("the container has no process".into()));
    }
    let layout = Layout::host();
    let stats = layout
        .cgroup_of_pid(pid)
        .and_then(|c| c.stats())
        .map_err(|e| match e {
            e if e.is_not_found() => Error::NotFound(format!("no cgroup for pid {pid}")),
            e => Error::Other(format!("stats of pid {pid}: {e}")),
        })?;
    Ok(encode(layout.mode(), &stats))
}

/// containerd decodes v2 Metrics from pure cgroup v2 hosts only (as its runc
/// shim sends them); a hybrid host's stats are v1 ones.
fn encode(mode: Mode, stats: &Stats) -> Any {
    if mode == Mode::Unified {
        any("io.containerd.cgroups.v2.Metrics", &metrics_v2(stats))
    } else {
        any("io.containerd.cgroups.v1.Metrics", &metrics_v1(stats))
    }
}

fn memory_entry(e: &cgroup::MemoryEntry) -> v1::MemoryEntry {
    v1::MemoryEntry {
        usage: e.usage,
        max: e.max,
        limit: e.limit,
        failcnt: e.failcnt,
        ..Default::default()
    }
}

fn metrics_v1(s: &Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    if let Some(p) = &s.pids {
        m.pids = Some(v1::PidsStat {
            current: p.current,
            limit: p.limit.unwrap_or(0),
            ..Default::default()
        })
        .into();
    }
    if let Some(c) = &s.cpu {
        m.cpu = Some(v1::CPUStat {
            usage: Some(v1::CPUUsage {
                total: c.usage,
                user: c.user,
                kernel: c.kernel,
                per_cpu: c.per_cpu.clone(),
                ..Default::default()
            })
            .into(),
            throttling: Some(v1::Throttle {
                periods: c.periods,
                throttled_periods: c.throttled_periods,
                throttled_time: c.throttled_time,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into();
    }
    if let Some(mem) = &s.memory {
        let g = |k: &str| mem.stat.get(k).copied().unwrap_or(0);
        let entry = |e: &Option<cgroup::MemoryEntry>| e.as_ref().map(memory_entry).into();
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
            usage: Some(memory_entry(&mem.usage)).into(),
            swap: entry(&mem.swap),
            kernel: entry(&mem.kernel),
            kernel_tcp: entry(&mem.kernel_tcp),
            ..Default::default()
        })
        .into();
        if !mem.oom_control.is_empty() {
            let o = |k: &str| mem.oom_control.get(k).copied().unwrap_or(0);
            m.memory_oom_control = Some(v1::MemoryOomControl {
                oom_kill_disable: o("oom_kill_disable"),
                under_oom: o("under_oom"),
                oom_kill: o("oom_kill"),
                ..Default::default()
            })
            .into();
        }
    }
    if let Some(IoStats::V1 {
        service_bytes,
        serviced,
    }) = &s.io
    {
        let entries = |list: &[cgroup::BlkioEntry]| {
            list.iter()
                .map(|e| v1::BlkIOEntry {
                    op: e.op.clone(),
                    major: e.major,
                    minor: e.minor,
                    value: e.value,
                    ..Default::default()
                })
                .collect()
        };
        m.blkio = Some(v1::BlkIOStat {
            io_service_bytes_recursive: entries(service_bytes),
            io_serviced_recursive: entries(serviced),
            ..Default::default()
        })
        .into();
    }
    m.hugetlb = s
        .hugetlb
        .iter()
        .map(|h| v1::HugetlbStat {
            usage: h.usage,
            max: h.max_usage,
            failcnt: h.failcnt,
            pagesize: h.page_size.clone(),
            ..Default::default()
        })
        .collect();
    m
}

fn metrics_v2(s: &Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    if let Some(p) = &s.pids {
        m.pids = Some(v2::PidsStat {
            current: p.current,
            limit: p.limit.unwrap_or(0),
            ..Default::default()
        })
        .into();
    }
    if let Some(c) = &s.cpu {
        m.cpu = Some(v2::CPUStat {
            usage_usec: c.usage / 1000,
            user_usec: c.user / 1000,
            system_usec: c.kernel / 1000,
            nr_periods: c.periods,
            nr_throttled: c.throttled_periods,
            throttled_usec: c.throttled_time / 1000,
            ..Default::default()
        })
        .into();
    }
    if let Some(mem) = &s.memory {
        let g = |k: &str| mem.stat.get(k).copied().unwrap_or(0);
        let swap = mem.swap.clone().unwrap_or_default();
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
            // Kernels from 5.9 count anon and file apart.
            workingset_refault: g("workingset_refault")
                + g("workingset_refault_anon")
                + g("workingset_refault_file"),
            workingset_activate: g("workingset_activate")
                + g("workingset_activate_anon")
                + g("workingset_activate_file"),
            workingset_nodereclaim: g("workingset_nodereclaim"),
            pgrefill: g("pgrefill"),
            pgscan: g("pgscan"),
            pgsteal: g("pgsteal"),
            pgactivate: g("pgactivate"),
            pgdeactivate: g("pgdeactivate"),
            pglazyfree: g("pglazyfree"),
            pglazyfreed: g("pglazyfreed"),
            thp_fault_alloc: g("thp_fault_alloc"),
            thp_collapse_alloc: g("thp_collapse_alloc"),
            usage: mem.usage.usage,
            usage_limit: mem.usage.limit,
            max_usage: mem.usage.max,
            swap_usage: swap.usage,
            swap_limit: mem.swap.as_ref().map_or(0, |s| s.limit),
            swap_max_usage: swap.max,
            ..Default::default()
        })
        .into();
        if let Some(e) = &mem.events {
            m.memory_events = Some(v2::MemoryEvents {
                low: e.low,
                high: e.high,
                max: e.max,
                oom: e.oom,
                oom_kill: e.oom_kill,
                oom_group_kill: e.oom_group_kill,
                ..Default::default()
            })
            .into();
        }
    }
    if let Some(IoStats::V2 { devices }) = &s.io {
        m.io = Some(v2::IOStat {
            usage: devices
                .iter()
                .map(|d| v2::IOEntry {
                    major: d.major,
                    minor: d.minor,
                    rbytes: d.rbytes,
                    wbytes: d.wbytes,
                    rios: d.rios,
                    wios: d.wios,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .into();
    }
    m.hugetlb = s
        .hugetlb
        .iter()
        .map(|h| v2::HugeTlbStat {
            current: h.usage,
            max: h.limit,
            failcnt: h.failcnt,
            pagesize: h.page_size.clone(),
            ..Default::default()
        })
        .collect();
    m
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::protobuf::Message;

    use super::*;
    use crate::sys::cgroup::{
        CpuStats, HugetlbStats, IoDevice, MemoryEntry, MemoryEvents, MemoryStats, PidsStats,
        Version,
    };

    fn memory(version: Version) -> MemoryStats {
        MemoryStats {
            version,
            usage: MemoryEntry {
                usage: 4096,
                max: 8192,
                limit: u64::MAX,
                failcnt: 1,
            },
            swap: Some(MemoryEntry {
                usage: 10,
                limit: 20,
                ..Default::default()
            }),
            kernel: None,
            kernel_tcp: None,
            stat: [
                ("anon".to_string(), 1),
                ("file".to_string(), 2),
                ("cache".to_string(), 3),
                ("total_rss".to_string(), 4),
                ("workingset_refault_anon".to_string(), 5),
                ("workingset_refault_file".to_string(), 6),
            ]
            .into(),
            oom_control: [("under_oom".to_string(), 1), ("oom_kill".to_string(), 2)].into(),
            events: Some(MemoryEvents {
                max: 1,
                oom_kill: 2,
                ..Default::default()
            }),
            oom_kills: 2,
        }
    }

    fn stats(version: Version) -> Stats {
        Stats {
            cpu: Some(CpuStats {
                usage: 3_000_000,
                user: 2_000_000,
                kernel: 1_000_000,
                per_cpu: vec![3_000_000],
                periods: 5,
                throttled_periods: 1,
                throttled_time: 7000,
            }),
            memory: Some(memory(version)),
            pids: Some(PidsStats {
                current: 3,
                limit: Some(10),
            }),
            io: Some(match version {
                Version::V1 => IoStats::V1 {
                    service_bytes: vec![cgroup::BlkioEntry {
                        major: 8,
                        minor: 0,
                        op: "Read".into(),
                        value: 512,
                    }],
                    serviced: vec![],
                },
                Version::V2 => IoStats::V2 {
                    devices: vec![IoDevice {
                        major: 8,
                        rbytes: 512,
                        wios: 2,
                        ..Default::default()
                    }],
                },
            }),
            hugetlb: vec![HugetlbStats {
                page_size: "2MB".into(),
                usage: 2 << 20,
                max_usage: 4 << 20,
                limit: u64::MAX,
                failcnt: 1,
            }],
        }
    }

    #[test]
    fn pure_v2_hosts_send_v2_metrics() {
        let any = encode(Mode::Unified, &stats(Version::V2));
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 10);
        assert_eq!(
            (m.cpu.usage_usec, m.cpu.user_usec, m.cpu.system_usec),
            (3000, 2000, 1000)
        );
        assert_eq!(m.cpu.throttled_usec, 7);
        assert_eq!((m.memory.usage, m.memory.usage_limit), (4096, u64::MAX));
        assert_eq!(
            (m.memory.max_usage, m.memory.swap_usage, m.memory.swap_limit),
            (8192, 10, 20)
        );
        assert_eq!((m.memory.anon, m.memory.file), (1, 2));
        assert_eq!(m.memory.workingset_refault, 11);
        assert_eq!(m.memory_events.oom_kill, 2);
        assert_eq!(m.io.usage[0].rbytes, 512);
        assert_eq!(m.io.usage[0].wios, 2);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
        assert_eq!(m.hugetlb[0].current, 2 << 20);
        assert_eq!(m.hugetlb[0].max, u64::MAX, "v2's max is the limit");
    }

    #[test]
    fn v1_and_hybrid_hosts_send_v1_metrics() {
        for mode in [Mode::Hybrid, Mode::Legacy] {
            let any = encode(mode, &stats(Version::V1));
            assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
            let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
            assert_eq!(m.cpu.usage.total, 3_000_000);
            assert_eq!(m.cpu.usage.per_cpu, vec![3_000_000]);
            assert_eq!(m.cpu.throttling.throttled_time, 7000);
            assert_eq!(m.memory.usage.usage, 4096);
            assert_eq!(m.memory.swap.usage, 10);
            assert!(m.memory.kernel.is_none());
            assert_eq!((m.memory.cache, m.memory.total_rss), (3, 4));
            assert_eq!(m.memory_oom_control.under_oom, 1);
            assert_eq!(m.memory_oom_control.oom_kill, 2);
            assert_eq!(m.blkio.io_service_bytes_recursive[0].value, 512);
            assert_eq!(m.hugetlb[0].max, 4 << 20, "v1's max is the peak");
            assert_eq!(m.pids.limit, 10);
        }
    }
}
