//! `events`: container statistics from its cgroup, as runc's `{"type":"stats",...}` lines.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use libcontainer::container::ContainerStatus;
use serde_json::{json, Map, Value};

use super::cgroup::cgroup_of;
use super::error::{Error, Result};
use super::{status_name, Runtime};
use crate::error::Context;
use crate::sys::cgroup::{
    BlkioEntry, IoDevice, IoStats, MemoryEntry, OomEvent, OomWatch, Stats, Version,
};

impl Runtime {
    /// One stats event for a running container.
    pub fn stats_event(&self, id: &str) -> Result<serde_json::Value> {
        let container = self.load(id)?;
        if !matches!(
            container.status(),
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created
        ) {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(container.status()).into(),
                action: "read its stats",
            });
        }
        let stats = cgroup_of(&container)?
            .stats()
            .map_err(|e| Error::Cgroup(format!("stats of {id}: {e}")))?;
        Ok(json!({ "type": "stats", "id": id, "data": runc_stats(&stats) }))
    }

    /// `events`: with `once` (runc's `--stats`) one stats line; else stats
    /// every `interval` and an `{"type":"oom"}` line for each OOM kill in the
    /// container's cgroup, until the container stops.
    pub fn events(
        &self,
        id: &str,
        interval: Duration,
        once: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        if once {
            return emit(out, &self.stats_event(id)?);
        }
        let container = self.load(id)?;
        let first = self.stats_event(id)?;
        let cgroup = cgroup_of(&container)?;
        let mut oom = cgroup.watch_oom().ok().flatten();
        // The init's end wakes us at once rather than at the next tick.
        let init = container
            .pid()
            .and_then(|p| rustix::process::Pid::from_raw(p.as_raw()))
            .and_then(|p| {
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
            });
        emit(out, &first)?;
        let mut next = Instant::now() + interval;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            let (oom_ready, init_ended) = wait_for(oom.as_ref(), init.as_ref(), wait)?;
            if oom_ready {
                if let Some(watch) = oom.as_mut() {
                    match watch.read() {
                        Ok(OomEvent::Oom) => emit(out, &json!({ "type": "oom", "id": id }))?,
                        Ok(OomEvent::Gone) => return Ok(()),
                        Ok(OomEvent::Other) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // The watch broke: stats go on without it.
                        Err(_) => oom = None,
                    }
                }
            }
            if init_ended {
                return Ok(());
            }
            if Instant::now() >= next {
                match self.stats_event(id) {
                    Ok(event) => emit(out, &event)?,
                    // The container went away between two samples: the stream ends.
                    Err(Error::Status { .. } | Error::NotExist(_)) => return Ok(()),
                    Err(e) => return Err(e),
                }
                next += interval;
            }
        }
    }
}

fn emit(out: &mut dyn Write, event: &Value) -> Result<()> {
    writeln!(out, "{event}").context(|| "write event".into())?;
    out.flush().context(|| "write event".into())?;
    Ok(())
}

/// Waits up to `wait` for an OOM notification or the init's end; says which
/// came.
fn wait_for(
    oom: Option<&OomWatch>,
    init: Option<&std::os::fd::OwnedFd>,
    wait: Duration,
) -> Result<(bool, bool)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = vec![];
    if let Some(watch) = oom {
        fds.push(PollFd::new(watch.as_fd(), PollFlags::POLLIN));
    }
    if let Some(fd) = init {
        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
    }
    let ms = PollTimeout::try_from(wait.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, ms) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(Error::Invalid(format!("events: poll: {e}"))),
    }
    let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    let oom_ready = oom.is_some() && fds.first().is_some_and(ready);
    let init_ended = init.is_some() && fds.last().is_some_and(ready);
    Ok((oom_ready, init_ended))
}

/// The stats as runc prints them (its `types.Stats`); on cgroup v2 too, with
/// runc's v1-compatible swap (memory and swap together) and block I/O entries.
fn runc_stats(s: &Stats) -> Value {
    let mut data = Map::new();
    if let Some(cpu) = &s.cpu {
        data.insert(
            "cpu".into(),
            json!({
                "usage": {
                    "total": cpu.usage,
                    "percpu": cpu.per_cpu,
                    "kernel": cpu.kernel,
                    "user": cpu.user,
                },
                "throttling": {
                    "periods": cpu.periods,
                    "throttledPeriods": cpu.throttled_periods,
                    "throttledTime": cpu.throttled_time,
                },
            }),
        );
    }
    if let Some(m) = &s.memory {
        let entry = |e: &MemoryEntry| json!({ "limit": e.limit, "usage": e.usage, "max": e.max, "failcnt": e.failcnt });
        let (cache, swap) = match m.version {
            Version::V1 => (m.stat.get("cache"), m.swap.clone()),
            Version::V2 => (
                m.stat.get("file"),
                m.swap.as_ref().map(|sw| MemoryEntry {
                    usage: sw.usage.saturating_add(m.usage.usage),
                    limit: match sw.limit {
                        u64::MAX => u64::MAX,
                        l => l.saturating_add(m.usage.limit),
                    },
                    ..sw.clone()
                }),
            ),
        };
        let mut memory = Map::new();
        memory.insert("cache".into(), json!(cache.copied().unwrap_or(0)));
        memory.insert("usage".into(), entry(&m.usage));
        for (key, e) in [
            ("swap", &swap),
            ("kernel", &m.kernel),
            ("kernelTCP", &m.kernel_tcp),
        ] {
            if let Some(e) = e {
                memory.insert(key.into(), entry(e));
            }
        }
        memory.insert("raw".into(), json!(m.stat));
        data.insert("memory".into(), Value::Object(memory));
    }
    if let Some(p) = &s.pids {
        data.insert(
            "pids".into(),
            json!({ "current": p.current, "limit": p.limit.unwrap_or(0) }),
        );
    }
    if let Some(io) = &s.io {
        let entries = |list: &[BlkioEntry]| -> Value {
            list.iter()
                .map(
                    |e| json!({ "major": e.major, "minor": e.minor, "op": e.op, "value": e.value }),
                )
                .collect()
        };
        let (bytes, ops) = match io {
            IoStats::V1 {
                service_bytes,
                serviced,
            } => (entries(service_bytes), entries(serviced)),
            IoStats::V2 { devices } => {
                let per_op = |f: fn(&IoDevice) -> [u64; 3]| -> Value {
                    devices
                        .iter()
                        .flat_map(|d| {
                            ["Read", "Write", "Discard"]
                                .into_iter()
                                .zip(f(d))
                                .map(|(op, value)| {
                                    json!({ "major": d.major, "minor": d.minor, "op": op, "value": value })
                                })
                        })
                        .collect()
                };
                (
                    per_op(|d| [d.rbytes, d.wbytes, d.dbytes]),
                    per_op(|d| [d.rios, d.wios, d.dios]),
                )
            }
        };
        data.insert(
            "blkio".into(),
            json!({ "ioServiceBytesRecursive": bytes, "ioServicedRecursive": ops }),
        );
    }
    let hugetlb: Map<String, Value> = s
        .hugetlb
        .iter()
        .map(|h| {
            (
                h.page_size.clone(),
                json!({ "usage": h.usage, "max": h.max_usage, "failcnt": h.failcnt }),
            )
        })
        .collect();
    data.insert("hugetlb".into(), Value::Object(hugetlb));
    Value::Object(data)
}

/// Parses runc's `--interval` (`5s`, `500ms`, `1m`, or plain seconds).
pub fn parse_interval(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| t.split_at(i))
        .unwrap_or((t, "s"));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid interval {text:?}"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("invalid interval {text:?}")),
    };
    if d.is_zero() {
        return Err(format!("invalid interval {text:?}: must be positive"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_stats_in_runcs_shape() {
        use crate::sys::cgroup::{CpuStats, HugetlbStats, IoDevice, MemoryStats, PidsStats};
        let stats = Stats {
            cpu: Some(CpuStats {
                usage: 3000,
                user: 2000,
                kernel: 1000,
                ..Default::default()
            }),
            memory: Some(MemoryStats {
                version: Version::V2,
                usage: MemoryEntry {
                    usage: 100,
                    max: 0,
                    limit: 1000,
                    failcnt: 0,
                },
                swap: Some(MemoryEntry {
                    usage: 10,
                    max: 0,
                    limit: 50,
                    failcnt: 0,
                }),
                kernel: None,
                kernel_tcp: None,
                stat: [("file".to_string(), 64)].into(),
                oom_control: Default::default(),
                events: None,
                oom_kills: 0,
            }),
            pids: Some(PidsStats {
                current: 2,
                limit: None,
            }),
            io: Some(IoStats::V2 {
                devices: vec![IoDevice {
                    major: 8,
                    rbytes: 512,
                    wios: 3,
                    ..Default::default()
                }],
            }),
            hugetlb: vec![HugetlbStats {
                page_size: "2MB".into(),
                usage: 1,
                ..Default::default()
            }],
        };
        let v = runc_stats(&stats);
        assert_eq!(v["cpu"]["usage"]["total"], 3000);
        assert_eq!(v["cpu"]["usage"]["kernel"], 1000);
        assert_eq!(v["memory"]["cache"], 64);
        assert_eq!(v["memory"]["usage"]["limit"], 1000);
        assert_eq!(v["memory"]["swap"]["usage"], 110, "memory and swap, as v1");
        assert_eq!(v["memory"]["swap"]["limit"], 1050);
        assert_eq!(v["memory"]["raw"]["file"], 64);
        assert!(v["memory"].get("kernel").is_none());
        assert_eq!(v["pids"], json!({ "current": 2, "limit": 0 }));
        assert_eq!(
            v["blkio"]["ioServiceBytesRecursive"][0],
            json!({ "major": 8, "minor": 0, "op": "Read", "value": 512 })
        );
        assert_eq!(v["blkio"]["ioServicedRecursive"][1]["value"], 3);
        assert_eq!(v["hugetlb"]["2MB"]["usage"], 1);
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("3"), Ok(Duration::from_secs(3)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("5h").is_err());
    }
}
