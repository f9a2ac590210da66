//! How this node runs pods: the settings `pod run`, `static` and the supervisor
//! share. `pod run` records them in the pod's folder (settings.json), so a
//! supervisor, and any supervisor that later adopts the pod, runs it as it
//! was started.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lifecycle::Backoff;
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
    /// The first restart back-off (the kubelet's 10 s; tests shorten it).
    #[serde(with = "millis")]
    pub backoff_base: Duration,
    /// The node's name (the static daemon's `--node-name`): `spec.nodeName`
    /// in the Downward API, and the suffix of static pods' names.
    pub node_name: String,
    /// Where the network parts look, and the node's DNS.
    pub network: NetworkSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image_store: PathBuf::from(crate::image::DEFAULT_STORE),
            cgroup_prefix: DEFAULT_CGROUP_PREFIX.into(),
            backoff_base: Backoff::default().base,
            node_name: default_node_name(),
            network: NetworkSettings::default(),
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
            ..Settings::default()
        };
        let text = serde_json::to_string(&settings).unwrap();
        assert!(text.contains("\"backoffBase\":250"), "{text}");
        let back: Settings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, settings);
        assert_eq!(back.backoff().base, Duration::from_millis(250));
        assert_eq!(back.backoff().max, Backoff::default().max);
        // A settings.json written before the network settings existed.
        let old: Settings = serde_json::from_str("{\"cgroupPrefix\": \"p\"}").unwrap();
        assert_eq!(old.network, NetworkSettings::default());
        assert_eq!(old.node_name, default_node_name());
    }
}
