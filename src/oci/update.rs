//! `update`: changes a running container's cgroup limits: through libcgroups
//! on cgroup v1 and hybrid hosts (the files runc writes there, checked by the
//! integration tests), through runc's v2 mapping (update_v2.rs) on v2 hosts.

use std::io::Read;
use std::path::Path;

use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::cgroup::{cgroup_of, manager_of};
use super::error::{Error, Result};
use super::{status_name, update_v2, Runtime};
use crate::error::Context;
use crate::sys::cgroup::{Layout, Mode, Version};

/// runc's `update` flags; each set flag overrides the same field of `--resources`.
#[derive(Debug, Default)]
pub struct ResourceFlags {
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
}

impl ResourceFlags {
    fn merge_into(&self, r: &mut LinuxResources) {
        fn memory(r: &mut LinuxResources) -> &mut LinuxMemory {
            r.memory_mut().get_or_insert_with(LinuxMemory::default)
        }
        fn cpu(r: &mut LinuxResources) -> &mut LinuxCpu {
            r.cpu_mut().get_or_insert_with(LinuxCpu::default)
        }
        if let Some(v) = self.memory {
            memory(r).set_limit(Some(v));
        }
        if let Some(v) = self.memory_reservation {
            memory(r).set_reservation(Some(v));
        }
        if let Some(v) = self.memory_swap {
            memory(r).set_swap(Some(v));
        }
        if let Some(v) = self.cpu_shares {
            cpu(r).set_shares(Some(v));
        }
        if let Some(v) = self.cpu_quota {
            cpu(r).set_quota(Some(v));
        }
        if let Some(v) = self.cpu_period {
            cpu(r).set_period(Some(v));
        }
        if let Some(v) = self.cpu_rt_period {
            cpu(r).set_realtime_period(Some(v));
        }
        if let Some(v) = self.cpu_rt_runtime {
            cpu(r).set_realtime_runtime(Some(v));
        }
        if let Some(v) = &self.cpuset_cpus {
            cpu(r).set_cpus(Some(v.clone()));
        }
        if let Some(v) = &self.cpuset_mems {
            cpu(r).set_mems(Some(v.clone()));
        }
        if let Some(v) = self.pids_limit {
            r.pids_mut()
                .get_or_insert_with(LinuxPids::default)
                .set_limit(v);
        }
        if let Some(v) = self.blkio_weight {
            r.block_io_mut()
                .get_or_insert_with(LinuxBlockIo::default)
                .set_weight(Some(v));
        }
    }
}

/// Reads `--resources` (a file, or `-` for stdin: `linux.resources` of the
/// runtime spec) and applies the flags over it.
pub fn resources_from(path: Option<&Path>, flags: &ResourceFlags) -> Result<LinuxResources> {
    let mut resources = match path {
        None => LinuxResources::default(),
        Some(p) => {
            let mut text = String::new();
            if p == Path::new("-") {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context(|| "read resources from stdin".into())?;
            } else {
                text = std::fs::read_to_string(p).context(|| format!("read {}", p.display()))?;
            }
            serde_json::from_str(&text).map_err(|e| Error::Config {
                path: p.to_path_buf(),
                reason: format!("invalid resources: {e}"),
            })?
        }
    };
    flags.merge_into(&mut resources);
    Ok(resources)
}

impl Runtime {
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        let container = self.load(id)?;
        if !container.can_kill() {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(container.status()).into(),
                action: "update it",
            });
        }
        let cgroup_err = |e: String| Error::Cgroup(format!("update container {id}: {e}"));
        let apply = |resources: &LinuxResources| {
            manager_of(&container)?
                .apply(&ControllerOpt {
                    resources,
                    disable_oom_killer: false,
                    oom_score_adj: None,
                    freezer_state: None,
                })
                .map_err(|e| cgroup_err(e.to_string()))
        };
        if Layout::host().mode() != Mode::Unified {
            return apply(resources);
        }
        // Under systemd, the scope's properties first (as runc does): systemd
        // would put back its own values on its next reload of the unit.
        if container.systemd() {
            apply(resources)?;
        }
        // cgroup v2: runc's mapping (update_v2.rs); device rules through libcgroups' eBPF.
        let cgroup = cgroup_of(&container)?;
        let dir = cgroup
            .dirs()
            .iter()
            .find(|d| d.version == Version::V2)
            .ok_or_else(|| cgroup_err("no cgroup v2 folder".into()))?
            .path
            .clone();
        let current_memory_max = || {
            std::fs::read_to_string(dir.join("memory.max"))
                .ok()
                .and_then(|t| t.trim().parse().ok())
        };
        let writes = update_v2::writes(resources, current_memory_max).map_err(cgroup_err)?;
        update_v2::apply(&dir, &writes).map_err(|e| cgroup_err(e.to_string()))?;
        if resources.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            let mut devices = LinuxResources::default();
            devices.set_devices(resources.devices().clone());
            apply(&devices)?;
        }
        Ok(())
    }
}

/// Parses sizes as runc does: `1048576`, `512k`, `64m`, `1g` (powers of 1024); `-1` is unlimited.
pub fn parse_size(text: &str) -> std::result::Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1048576));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
        assert_eq!(parse_size("-1"), Ok(-1));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-5").is_err());
    }

    #[test]
    fn flags_override_file_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(
            &path,
            r#"{"memory":{"limit":100,"swap":200},"pids":{"limit":5}}"#,
        )
        .unwrap();
        let flags = ResourceFlags {
            memory: Some(300),
            cpu_shares: Some(512),
            ..Default::default()
        };
        let r = resources_from(Some(&path), &flags).unwrap();
        let mem = r.memory().unwrap();
        assert_eq!(mem.limit(), Some(300));
        assert_eq!(mem.swap(), Some(200));
        assert_eq!(r.cpu().as_ref().unwrap().shares(), Some(512));
        assert_eq!(r.pids().unwrap().limit(), 5);
    }

    #[test]
    fn bad_resources_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "{nope").unwrap();
        let err = resources_from(Some(&path), &ResourceFlags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.json: invalid resources"), "{err}");
        // Not an object, or a field of the wrong type: the file is named too.
        for text in ["[1]", r#"{"memory": {"limit": "lots"}}"#] {
            std::fs::write(&path, text).unwrap();
            let err = resources_from(Some(&path), &ResourceFlags::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("bad.json: invalid resources"), "{text}: {err}");
        }
    }

    #[test]
    fn flags_alone_make_their_sections() {
        let flags = ResourceFlags {
            memory_swap: Some(-1),
            cpu_quota: Some(50_000),
            cpuset_mems: Some("0".into()),
            pids_limit: Some(50),
            blkio_weight: Some(300),
            ..Default::default()
        };
        let r = resources_from(None, &flags).unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "memory": { "swap": -1 },
                "cpu": { "quota": 50_000, "mems": "0" },
                "pids": { "limit": 50 },
                "blockIO": { "weight": 300 }
            })
        );
    }
}
