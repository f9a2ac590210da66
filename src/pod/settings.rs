//! How this node runs pods: the settings `pod run`, `static` and the supervisor
//! share. `pod run` records them in the pod's folder (settings.json), so a
//! supervisor, and any supervisor that later adopts the pod, runs it as it
//! was started.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lifecycle::Backoff;
use super::logs::{Rotation, DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE};
use super::security::SecuritySettings;
use crate::image::registry::RegistrySettings;
use crate::image::GcPolicy;
use crate::net::NetworkSettings;

/// The cgroup parent of pods unless `--cgroup-prefix` says otherwise.
pub const DEFAULT_CGROUP_PREFIX: &str = "peapod";

/// The sandbox runs this image's /pause.
pub const PAUSE_IMAGE: &str = "localhost/pause:latest";

/// New fields take their default when a pod's settings.json predates them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    pub image_store: PathBuf,
    /// The pods' cgroup parent, under each hierarchy.
    pub cgroup_prefix: String,
    /// Who makes the pods' cgroups: peapod as folders, or systemd as units
    /// (the kubelet's cgroupDriver).
    pub cgroup_driver: CgroupDriver,
    /// The first restart back-off (the kubelet's 10 s; tests shorten it).
    #[serde(with = "millis")]
    pub backoff_base: Duration,
    /// The node's name (the static daemon's `--node-name`): `spec.nodeName`
    /// in the Downward API, and the suffix of static pods' names.
    pub node_name: String,
    /// Where the network parts look, and the node's DNS.
    pub network: NetworkSettings,
    /// The kubelet's containerLogMaxSize: a container's log is rotated
    /// before it grows past this many bytes.
    pub container_log_max_size: u64,
    /// The kubelet's containerLogMaxFiles: files kept of a run's log.
    pub container_log_max_files: u32,
    /// The seccomp profile folder, seccompDefault, allowedUnsafeSysctls.
    pub security: SecuritySettings,
    /// How pulls reach registries (insecure ones, hosts.toml and CA folders,
    /// the credentials file); a pull runs as `peapod image pull` with these.
    pub registry: RegistrySettings,
    /// The kubelet's imageGCHighThresholdPercent (85): disk use at which the
    /// static daemon removes unused images.
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: u8,
    /// The kubelet's imageGCLowThresholdPercent (80): down to where.
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: u8,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image_store: PathBuf::from(crate::image::DEFAULT_STORE),
            cgroup_prefix: DEFAULT_CGROUP_PREFIX.into(),
            cgroup_driver: CgroupDriver::default(),
            backoff_base: Backoff::default().base,
            node_name: default_node_name(),
            network: NetworkSettings::default(),
            container_log_max_size: DEFAULT_MAX_SIZE,
            container_log_max_files: DEFAULT_MAX_FILES,
            security: SecuritySettings::default(),
            registry: RegistrySettings::default(),
            image_gc_high_threshold_percent: GcPolicy::default().high_percent,
            image_gc_low_threshold_percent: GcPolicy::default().low_percent,
        }
    }
}

/// The kubelet's `cgroupDriver`: `cgroupfs` makes the pods' cgroups as
/// folders; `systemd` asks systemd for a slice per pod (and per QoS class)
/// and a scope per container, as the kubelet and containerd do with
/// `SystemdCgroup = true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

impl std::str::FromStr for CgroupDriver {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "cgroupfs" => Ok(Self::Cgroupfs),
            "systemd" => Ok(Self::Systemd),
            _ => Err(format!(
                "invalid cgroup driver {text:?}: cgroupfs or systemd"
            )),
        }
    }
}

/// The kubelet's default node name: the host name, lower-cased.
pub fn default_node_name() -> String {
    crate::net::node::host_name().to_ascii_lowercase()
}

impl Settings {
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: self.backoff_base,
            ..Backoff::default()
        }
    }

    /// The image pull back-off: the kubelet's 10 s doubling to 5 min, its
    /// first step shortened with the restart back-off's (`--backoff-base`).
    pub fn pull_backoff(&self) -> crate::image::pull::PullBackOff {
        crate::image::pull::PullBackOff::new(self.backoff_base, std::time::Duration::from_secs(300))
    }

    /// The image GC thresholds (checked when the settings were made).
    pub fn image_gc(&self) -> GcPolicy {
        GcPolicy::new(
            self.image_gc_high_threshold_percent,
            self.image_gc_low_threshold_percent,
        )
        .unwrap_or_default()
    }

    pub fn log_rotation(&self) -> Rotation {
        Rotation {
            max_size: self.container_log_max_size,
            max_files: self.container_log_max_files,
        }
    }
}

/// A size as the kubelet's containerLogMaxSize takes it: bytes, or a
/// quantity with a suffix ("10Mi", "500Ki", "1G"), above zero.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let unit: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000 * 1000,
        "G" => 1000 * 1000 * 1000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size {text:?}: a number with an optional suffix Ki, Mi, Gi, k, M or G"
            ))
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    match n.checked_mul(unit) {
        Some(0) => Err(format!("invalid size {text:?}: must be above 0")),
        Some(size) => Ok(size),
        None => Err(format!("invalid size {text:?}: too large")),
    }
}

/// containerLogMaxFiles: the kubelet refuses fewer than 2.
pub fn parse_max_files(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err(format!(
            "invalid number of log files {text:?}: must be 2 or more"
        )),
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_give_the_backoff() {
        let settings = Settings {
            backoff_base: Duration::from_millis(250),
            cgroup_prefix: "test-prefix".into(),
            cgroup_driver: CgroupDriver::Systemd,
            ..Settings::default()
        };
        let text = serde_json::to_string(&settings).unwrap();
        assert!(text.contains("\"backoffBase\":250"), "{text}");
        assert!(text.contains("\"cgroupDriver\":\"systemd\""), "{text}");
        let back: Settings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, settings);
        assert_eq!(back.backoff().base, Duration::from_millis(250));
        assert_eq!(back.backoff().max, Backoff::default().max);
        // A settings.json written before the network settings existed.
        let old: Settings = serde_json::from_str("{\"cgroupPrefix\": \"p\"}").unwrap();
        assert_eq!(old.network, NetworkSettings::default());
        assert_eq!(old.node_name, default_node_name());
        // settings.json written before log rotation: the kubelet's defaults.
        let old: Settings =
            serde_json::from_str(r#"{"cgroupPrefix":"p","backoffBase":10}"#).unwrap();
        assert_eq!(old.log_rotation(), Rotation::default());
        assert_eq!(Rotation::default().max_size, 10 << 20);
    }

    #[test]
    fn log_sizes_and_counts_parse_as_the_kubelets() {
        for (text, want) in [
            ("10Mi", 10 << 20),
            ("500Ki", 500 << 10),
            ("1G", 1_000_000_000),
            ("4096", 4096),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in ["", "0", "10Mb", "-1", "1.5Mi", "99999999999999999999Gi"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_max_files("3"), Ok(3));
        assert!(parse_max_files("1").is_err() && parse_max_files("x").is_err());
    }
}
