//! A cgroup's statistics from either version's files, in one shape: cpu,
//! memory, pids, block I/O and hugetlb, each section absent where its
//! controller is not there. Values keep the version's own meaning where the
//! two differ (documented per field); the callers turn them into runc's
//! `events` JSON or containerd's Metrics.

use std::collections::BTreeMap;
use std::path::Path;

use super::files::{read, read_flat, read_list, read_u64};
use super::layout::Version;
use super::paths::Cgroup;
use super::{Error, Result};

/// cpuacct.stat counts in USER_HZ ticks, which Linux fixes at 100 a second
/// for user space on every architecture runc supports (runc assumes it too).
const NS_PER_USER_HZ_TICK: u64 = 10_000_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub pids: Option<PidsStats>,
    pub io: Option<IoStats>,
    /// One per huge page size, smallest first.
    pub hugetlb: Vec<HugetlbStats>,
}

/// All times in nanoseconds (v2 counts microseconds: multiplied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    pub usage: u64,
    pub user: u64,
    pub kernel: u64,
    /// v1 only (cpuacct.usage_percpu).
    pub per_cpu: Vec<u64>,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

/// Usage of one kind of memory. `limit` is `u64::MAX` for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEntry {
    pub usage: u64,
    /// The most ever used (v1 max_usage_in_bytes, v2 memory.peak; 0 where
    /// the kernel has no peak file).
    pub max: u64,
    pub limit: u64,
    /// v1 failcnt; v2 the `max` count of memory.events (times the limit was hit).
    pub failcnt: u64,
}

/// v2's memory.events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryStats {
    pub version: Version,
    pub usage: MemoryEntry,
    /// v1: memory and swap together (memsw); v2: swap alone (memory.swap.*).
    /// None without swap accounting.
    pub swap: Option<MemoryEntry>,
    /// v1 only: kernel memory (kmem) and its TCP buffers.
    pub kernel: Option<MemoryEntry>,
    pub kernel_tcp: Option<MemoryEntry>,
    /// memory.stat as the kernel writes it (its keys differ between versions).
    pub stat: BTreeMap<String, u64>,
    /// v1: memory.oom_control (oom_kill_disable, under_oom, oom_kill).
    pub oom_control: BTreeMap<String, u64>,
    /// v2: memory.events.
    pub events: Option<MemoryEvents>,
    /// Processes the OOM killer killed in this cgroup.
    pub oom_kills: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
    /// None: no limit (`max`).
    pub limit: Option<u64>,
}

/// One line of a v1 blkio file: `MAJ:MIN Op value`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    /// Read, Write, Sync, Async, Discard, Total.
    pub op: String,
    pub value: u64,
}

/// One device of v2's io.stat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoDevice {
    pub major: u64,
    pub minor: u64,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
    pub dbytes: u64,
    pub dios: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoStats {
    /// v1 blkio: bytes and operations per device and operation.
    V1 {
        service_bytes: Vec<BlkioEntry>,
        serviced: Vec<BlkioEntry>,
    },
    /// v2 io.stat.
    V2 { devices: Vec<IoDevice> },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HugetlbStats {
    /// As the kernel names it: `2MB`, `1GB`.
    pub page_size: String,
    pub usage: u64,
    /// v1 only (max_usage_in_bytes); 0 on v2.
    pub max_usage: u64,
    /// `u64::MAX` for none.
    pub limit: u64,
    /// v1 failcnt; v2 the `max` count of hugetlb.<size>.events.
    pub failcnt: u64,
}

impl Cgroup {
    /// Reads every section whose controller serves this cgroup.
    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            cpu: self.cpu_stats()?,
            memory: self.memory_stats()?,
            pids: self.pids_stats()?,
            io: self.io_stats()?,
            hugetlb: self.hugetlb_stats()?,
        })
    }

    fn cpu_stats(&self) -> Result<Option<CpuStats>> {
        let Some(acct) = self.controller("cpuacct") else {
            return Ok(None);
        };
        if acct.version == Version::V2 {
            return Ok(read_flat(&acct.path, "cpu.stat")?.map(|s| cpu_v2(&s)));
        }
        let Some(usage) = read_u64(&acct.path, "cpuacct.usage")? else {
            return Ok(None);
        };
        let (user, kernel) = match (
            read_u64(&acct.path, "cpuacct.usage_user")?,
            read_u64(&acct.path, "cpuacct.usage_sys")?,
        ) {
            (Some(user), Some(kernel)) => (user, kernel),
            // Kernels before 4.7 only count ticks.
            _ => {
                let ticks = read_flat(&acct.path, "cpuacct.stat")?.unwrap_or_default();
                let ns = |k: &str| ticks.get(k).copied().unwrap_or(0) * NS_PER_USER_HZ_TICK;
                (ns("user"), ns("system"))
            }
        };
        let throttling = match self.controller("cpu") {
            Some(cpu) if cpu.version == Version::V1 => {
                read_flat(&cpu.path, "cpu.stat")?.unwrap_or_default()
            }
            _ => BTreeMap::new(),
        };
        let t = |k: &str| throttling.get(k).copied().unwrap_or(0);
        Ok(Some(CpuStats {
            usage,
            user,
            kernel,
            per_cpu: read_list(&acct.path, "cpuacct.usage_percpu")?.unwrap_or_default(),
            periods: t("nr_periods"),
            throttled_periods: t("nr_throttled"),
            throttled_time: t("throttled_time"),
        }))
    }

    fn memory_stats(&self) -> Result<Option<MemoryStats>> {
        let Some(dir) = self.controller("memory") else {
            return Ok(None);
        };
        match dir.version {
            Version::V1 => memory_v1(&dir.path),
            Version::V2 => memory_v2(&dir.path),
        }
    }

    fn pids_stats(&self) -> Result<Option<PidsStats>> {
        let Some(dir) = self.controller("pids") else {
            return Ok(None);
        };
        let Some(current) = read_u64(&dir.path, "pids.current")? else {
            return Ok(None);
        };
        let limit = read_u64(&dir.path, "pids.max")?.filter(|l| *l != u64::MAX);
        Ok(Some(PidsStats { current, limit }))
    }

    fn io_stats(&self) -> Result<Option<IoStats>> {
        match self.controller("blkio") {
            Some(dir) if dir.version == Version::V1 => blkio_v1(&dir.path),
            Some(dir) => Ok(read(&dir.path, "io.stat")?
                .map(|text| io_v2(&dir.path, &text))
                .transpose()?
                .map(|devices| IoStats::V2 { devices })),
            None => Ok(None),
        }
    }

    fn hugetlb_stats(&self) -> Result<Vec<HugetlbStats>> {
        let Some(dir) = self.controller("hugetlb") else {
            return Ok(vec![]);
        };
        let (suffix, v1) = match dir.version {
            Version::V1 => (".usage_in_bytes", true),
            Version::V2 => (".current", false),
        };
        let mut sizes: Vec<String> = match std::fs::read_dir(&dir.path) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
                    // v2's hugetlb.<size>.rsvd.current counts reservations.
                    (!size.contains('.')).then(|| size.to_string())
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(&dir.path, e)),
        };
        sizes.sort_by_key(|s| page_size_bytes(s));
        let mut stats = Vec::new();
        for size in sizes {
            let f = |name: &str| format!("hugetlb.{size}.{name}");
            let get =
                |name: &str| -> Result<u64> { Ok(read_u64(&dir.path, &f(name))?.unwrap_or(0)) };
            stats.push(if v1 {
                HugetlbStats {
                    usage: get("usage_in_bytes")?,
                    max_usage: get("max_usage_in_bytes")?,
                    limit: get("limit_in_bytes")?,
                    failcnt: get("failcnt")?,
                    page_size: size,
                }
            } else {
                let events = read_flat(&dir.path, &f("events"))?.unwrap_or_default();
                HugetlbStats {
                    usage: get("current")?,
                    max_usage: 0,
                    limit: read_u64(&dir.path, &f("max"))?.unwrap_or(u64::MAX),
                    failcnt: events.get("max").copied().unwrap_or(0),
                    page_size: size,
                }
            });
        }
        Ok(stats)
    }
}

fn cpu_v2(stat: &BTreeMap<String, u64>) -> CpuStats {
    let ns = |k: &str| stat.get(k).copied().unwrap_or(0).saturating_mul(1000);
    CpuStats {
        usage: ns("usage_usec"),
        user: ns("user_usec"),
        kernel: ns("system_usec"),
        per_cpu: vec![],
        periods: stat.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: ns("throttled_usec"),
    }
}

/// `memory.<kind>usage_in_bytes` and its siblings; None if there is no usage file.
fn entry_v1(dir: &Path, prefix: &str) -> Result<Option<MemoryEntry>> {
    let Some(usage) = read_u64(dir, &format!("{prefix}usage_in_bytes"))? else {
        return Ok(None);
    };
    let get =
        |name: &str| -> Result<u64> { Ok(read_u64(dir, &format!("{prefix}{name}"))?.unwrap_or(0)) };
    Ok(Some(MemoryEntry {
        usage,
        max: get("max_usage_in_bytes")?,
        limit: get("limit_in_bytes")?,
        failcnt: get("failcnt")?,
    }))
}

fn memory_v1(dir: &Path) -> Result<Option<MemoryStats>> {
    let Some(usage) = entry_v1(dir, "memory.")? else {
        return Ok(None);
    };
    let oom_control = read_flat(dir, "memory.oom_control")?.unwrap_or_default();
    Ok(Some(MemoryStats {
        version: Version::V1,
        usage,
        swap: entry_v1(dir, "memory.memsw.")?,
        kernel: entry_v1(dir, "memory.kmem.")?,
        kernel_tcp: entry_v1(dir, "memory.kmem.tcp.")?,
        stat: read_flat(dir, "memory.stat")?.unwrap_or_default(),
        oom_kills: oom_control.get("oom_kill").copied().unwrap_or(0),
        oom_control,
        events: None,
    }))
}

fn memory_events(map: &BTreeMap<String, u64>) -> MemoryEvents {
    let e = |k: &str| map.get(k).copied().unwrap_or(0);
    MemoryEvents {
        low: e("low"),
        high: e("high"),
        max: e("max"),
        oom: e("oom"),
        oom_kill: e("oom_kill"),
        oom_group_kill: e("oom_group_kill"),
    }
}

fn memory_v2(dir: &Path) -> Result<Option<MemoryStats>> {
    let Some(current) = read_u64(dir, "memory.current")? else {
        return Ok(None);
    };
    let events = read_flat(dir, "memory.events")?.map(|m| memory_events(&m));
    let swap = match read_u64(dir, "memory.swap.current")? {
        Some(usage) => Some(MemoryEntry {
            usage,
            max: read_u64(dir, "memory.swap.peak")?.unwrap_or(0),
            limit: read_u64(dir, "memory.swap.max")?.unwrap_or(u64::MAX),
            failcnt: read_flat(dir, "memory.swap.events")?
                .and_then(|m| m.get("max").copied())
                .unwrap_or(0),
        }),
        None => None,
    };
    Ok(Some(MemoryStats {
        version: Version::V2,
        usage: MemoryEntry {
            usage: current,
            max: read_u64(dir, "memory.peak")?.unwrap_or(0),
            limit: read_u64(dir, "memory.max")?.unwrap_or(u64::MAX),
            failcnt: events.as_ref().map_or(0, |e| e.max),
        },
        swap,
        kernel: None,
        kernel_tcp: None,
        stat: read_flat(dir, "memory.stat")?.unwrap_or_default(),
        oom_control: BTreeMap::new(),
        oom_kills: events.as_ref().map_or(0, |e| e.oom_kill),
        events,
    }))
}

/// `MAJ:MIN`.
fn device(dir: &Path, file: &str, text: &str) -> Result<(u64, u64)> {
    text.split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| Error::Parse {
            path: dir.join(file),
            reason: format!("not a device number: {text:?}"),
        })
}

/// A v1 blkio file: `MAJ:MIN Op value` lines and a final `Total value`.
fn blkio_entries(dir: &Path, file: &str, text: &str) -> Result<Vec<BlkioEntry>> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match fields[..] {
            [dev, op, value] => (dev, op, value),
            [dev, value] if dev.contains(':') => (dev, "", value),
            // `Total N`, or an empty line.
            _ => continue,
        };
        let (major, minor) = device(dir, file, dev)?;
        let value = value.parse().map_err(|_| Error::Parse {
            path: dir.join(file),
            reason: format!("not a number in {line:?}"),
        })?;
        entries.push(BlkioEntry {
            major,
            minor,
            op: op.to_string(),
            value,
        });
    }
    Ok(entries)
}

/// The first family of blkio files with something in them, as runc picks:
/// BFQ's, the old CFQ scheduler's, then the throttle policy's (which counts
/// every device, also without a scheduler).
fn blkio_v1(dir: &Path) -> Result<Option<IoStats>> {
    const FAMILIES: [(&str, &str); 4] = [
        (
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.bfq.io_serviced_recursive",
        ),
        (
            "blkio.io_service_bytes_recursive",
            "blkio.io_serviced_recursive",
        ),
        (
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_serviced_recursive",
        ),
        (
            "blkio.throttle.io_service_bytes",
            "blkio.throttle.io_serviced",
        ),
    ];
    let mut found = None;
    for (bytes, ops) in FAMILIES {
        let Some(text) = read(dir, bytes)? else {
            continue;
        };
        let service_bytes = blkio_entries(dir, bytes, &text)?;
        let serviced = match read(dir, ops)? {
            Some(text) => blkio_entries(dir, ops, &text)?,
            None => vec![],
        };
        let empty = service_bytes.is_empty() && serviced.is_empty();
        let stats = IoStats::V1 {
            service_bytes,
            serviced,
        };
        if !empty {
            return Ok(Some(stats));
        }
        found.get_or_insert(stats);
    }
    Ok(found)
}

/// v2 io.stat: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N`.
fn io_v2(dir: &Path, text: &str) -> Result<Vec<IoDevice>> {
    let mut devices = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(dev) = fields.next() else { continue };
        let (major, minor) = device(dir, "io.stat", dev)?;
        let mut d = IoDevice {
            major,
            minor,
            ..Default::default()
        };
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let value = value.parse().map_err(|_| Error::Parse {
                path: dir.join("io.stat"),
                reason: format!("not a number in {field:?}"),
            })?;
            match key {
                "rbytes" => d.rbytes = value,
                "wbytes" => d.wbytes = value,
                "rios" => d.rios = value,
                "wios" => d.wios = value,
                "dbytes" => d.dbytes = value,
                "dios" => d.dios = value,
                _ => {}
            }
        }
        devices.push(d);
    }
    Ok(devices)
}

/// `2MB` → 2 MiB, for ordering; unknown forms sort last.
fn page_size_bytes(size: &str) -> u64 {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &size[digits.len()..] {
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return u64::MAX,
    };
    digits.parse::<u64>().map_or(u64::MAX, |n| n * unit)
}

#[cfg(test)]
mod tests {
    use super::super::layout::tests::{fake, write};
    use super::*;

    #[test]
    fn v2_stats_from_a_cgroup_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(&[("", "cgroup2")], tmp.path());
        let dir = tmp.path().join("peapod/a");
        write(
            &dir,
            &[
                (
                    "cpu.stat",
                    "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\n\
                     nr_throttled 1\nthrottled_usec 20\nnr_bursts 0\nburst_usec 0\n",
                ),
                ("memory.current", "4096\n"),
                ("memory.peak", "8192\n"),
                ("memory.max", "max\n"),
                ("memory.swap.current", "0\n"),
                ("memory.swap.max", "1048576\n"),
                ("memory.stat", "anon 1024\nfile 2048\nkernel_stack 16\n"),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
                ),
                ("pids.current", "2\n"),
                ("pids.max", "max\n"),
                (
                    "io.stat",
                    "8:0 rbytes=4096 wbytes=512 rios=2 wios=1 dbytes=0 dios=0\n\
                     253:1 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6\n",
                ),
                ("hugetlb.2MB.current", "2097152\n"),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.events", "max 2\n"),
                ("hugetlb.2MB.rsvd.current", "0\n"),
                ("hugetlb.1GB.current", "0\n"),
                ("hugetlb.1GB.max", "0\n"),
            ],
        );
        let stats = layout.cgroup("/peapod/a").stats().unwrap();
        let cpu = stats.cpu.unwrap();
        assert_eq!(
            (cpu.usage, cpu.user, cpu.kernel),
            (1_500_000, 1_000_000, 500_000)
        );
        assert_eq!(
            (cpu.periods, cpu.throttled_periods, cpu.throttled_time),
            (4, 1, 20_000)
        );
        let mem = stats.memory.unwrap();
        assert_eq!(mem.version, Version::V2);
        assert_eq!(
            mem.usage,
            MemoryEntry {
                usage: 4096,
                max: 8192,
                limit: u64::MAX,
                failcnt: 3
            }
        );
        assert_eq!(mem.swap.unwrap().limit, 1 << 20);
        assert_eq!(mem.stat["file"], 2048);
        assert_eq!(mem.events.unwrap().oom, 1);
        assert_eq!(mem.oom_kills, 1);
        assert_eq!(
            stats.pids,
            Some(PidsStats {
                current: 2,
                limit: None
            })
        );
        let Some(IoStats::V2 { devices }) = stats.io else {
            panic!("v2 io: {:?}", stats.io)
        };
        assert_eq!(devices.len(), 2);
        assert_eq!(
            (devices[0].major, devices[0].rbytes, devices[0].wios),
            (8, 4096, 1)
        );
        assert_eq!(devices[1].dios, 6);
        let sizes: Vec<&str> = stats.hugetlb.iter().map(|h| h.page_size.as_str()).collect();
        assert_eq!(
            sizes,
            vec!["2MB", "1GB"],
            "reservations are not a page size"
        );
        assert_eq!(stats.hugetlb[0].usage, 2 << 20);
        assert_eq!(stats.hugetlb[0].limit, u64::MAX);
        assert_eq!(stats.hugetlb[0].failcnt, 2);
        assert_eq!(stats.hugetlb[1].limit, 0);
    }

    #[test]
    fn v2_without_controllers_enabled_has_cpu_only() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(&[("", "cgroup2")], tmp.path());
        write(
            &tmp.path().join("a"),
            &[("cpu.stat", "usage_usec 7\nuser_usec 5\nsystem_usec 2\n")],
        );
        let stats = layout.cgroup("a").stats().unwrap();
        assert_eq!(stats.cpu.unwrap().usage, 7000);
        assert!(stats.memory.is_none() && stats.pids.is_none() && stats.io.is_none());
        assert!(stats.hugetlb.is_empty());
    }

    #[test]
    fn v1_stats_and_hybrid_hugetlb() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(
            &[
                ("cpu", "cgroup rw,cpu"),
                ("cpuacct", "cgroup rw,cpuacct"),
                ("memory", "cgroup rw,memory"),
                ("pids", "cgroup rw,pids"),
                ("blkio", "cgroup rw,blkio"),
                ("unified", "cgroup2"),
            ],
            tmp.path(),
        );
        let at = |h: &str| tmp.path().join(h).join("peapod/c");
        write(
            &at("cpu"),
            &[(
                "cpu.stat",
                "nr_periods 10\nnr_throttled 2\nthrottled_time 300\n",
            )],
        );
        write(
            &at("cpuacct"),
            &[
                ("cpuacct.usage", "5000\n"),
                ("cpuacct.usage_percpu", "3000 2000 \n"),
                ("cpuacct.stat", "user 3\nsystem 1\n"),
            ],
        );
        write(
            &at("memory"),
            &[
                ("memory.usage_in_bytes", "100\n"),
                ("memory.max_usage_in_bytes", "200\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.failcnt", "0\n"),
                ("memory.memsw.usage_in_bytes", "110\n"),
                ("memory.kmem.usage_in_bytes", "5\n"),
                ("memory.stat", "cache 40\nrss 60\ntotal_cache 40\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
            ],
        );
        write(
            &at("pids"),
            &[("pids.current", "3\n"), ("pids.max", "50\n")],
        );
        write(
            &at("blkio"),
            &[
                ("blkio.bfq.io_service_bytes_recursive", "Total 0\n"),
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:0 Read 1\nTotal 1\n",
                ),
            ],
        );
        write(
            &at("unified"),
            &[
                ("hugetlb.2MB.current", "0\n"),
                ("hugetlb.2MB.events", "max 0\n"),
            ],
        );
        let stats = layout.cgroup("/peapod/c").stats().unwrap();
        let cpu = stats.cpu.unwrap();
        assert_eq!(cpu.usage, 5000);
        assert_eq!(cpu.per_cpu, vec![3000, 2000]);
        assert_eq!(
            (cpu.user, cpu.kernel),
            (30_000_000, 10_000_000),
            "ticks of 10 ms"
        );
        assert_eq!((cpu.periods, cpu.throttled_time), (10, 300));
        let mem = stats.memory.unwrap();
        assert_eq!(mem.version, Version::V1);
        assert_eq!((mem.usage.usage, mem.usage.max), (100, 200));
        assert_eq!(mem.swap.unwrap().usage, 110);
        assert_eq!(mem.kernel.unwrap().usage, 5);
        assert!(mem.kernel_tcp.is_none(), "no file, no entry");
        assert_eq!(mem.stat["cache"], 40);
        assert_eq!(mem.oom_kills, 2);
        assert_eq!(mem.oom_control["under_oom"], 0);
        assert_eq!(stats.pids.unwrap().limit, Some(50));
        let Some(IoStats::V1 {
            service_bytes,
            serviced,
        }) = stats.io
        else {
            panic!("v1 blkio: {:?}", stats.io)
        };
        assert_eq!(service_bytes.len(), 3, "BFQ's empty files are passed over");
        assert_eq!(
            service_bytes[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
        assert_eq!(serviced.len(), 1);
        // hugetlb is not a v1 hierarchy here: the cgroup2 tree has it.
        assert_eq!(stats.hugetlb.len(), 1);
        assert_eq!(stats.hugetlb[0].limit, u64::MAX, "no max file: no limit");
    }

    #[test]
    fn v1_hugetlb_and_precise_cpu_times() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(
            &[
                ("cpu,cpuacct", "cgroup rw,cpu,cpuacct"),
                ("hugetlb", "cgroup rw,hugetlb"),
            ],
            tmp.path(),
        );
        write(
            &tmp.path().join("cpu,cpuacct/x"),
            &[
                ("cpuacct.usage", "9\n"),
                ("cpuacct.usage_user", "6\n"),
                ("cpuacct.usage_sys", "3\n"),
                ("cpuacct.stat", "user 100\nsystem 100\n"),
            ],
        );
        write(
            &tmp.path().join("hugetlb/x"),
            &[
                ("hugetlb.2MB.usage_in_bytes", "0\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.limit_in_bytes", "8388608\n"),
                ("hugetlb.2MB.failcnt", "1\n"),
            ],
        );
        let stats = layout.cgroup("x").stats().unwrap();
        let cpu = stats.cpu.unwrap();
        assert_eq!((cpu.user, cpu.kernel), (6, 3));
        assert_eq!(
            stats.hugetlb,
            vec![HugetlbStats {
                page_size: "2MB".into(),
                usage: 0,
                max_usage: 4 << 20,
                limit: 8 << 20,
                failcnt: 1
            }]
        );
        assert!(stats.memory.is_none(), "no memory hierarchy");
    }

    #[test]
    fn a_garbled_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(&[("", "cgroup2")], tmp.path());
        write(&tmp.path().join("a"), &[("io.stat", "sda rbytes=1\n")]);
        let err = layout.cgroup("a").stats().unwrap_err().to_string();
        assert!(err.contains("a/io.stat: not a device number"), "{err}");
    }

    #[test]
    fn page_sizes_order() {
        assert!(page_size_bytes("64KB") < page_size_bytes("2MB"));
        assert!(page_size_bytes("2MB") < page_size_bytes("1GB"));
        assert_eq!(page_size_bytes("odd"), u64::MAX);
    }
}
