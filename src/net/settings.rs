//! Where the network parts look and what the node's DNS is: flags over an
//! optional config file section over defaults, like the other pod settings.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// libcni's and containerd's default network config folder.
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// Plugin folders: the upstream install path, then Debian's
/// `containernetworking-plugins`.
pub const DEFAULT_CNI_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];
/// Our own cache of ADD results (libcni's is /var/lib/cni, in its own format):
/// on disk, so that DEL still releases leases after a reboot.
pub const DEFAULT_CNI_CACHE_DIR: &str = "/var/lib/peapod/cni";
/// Pinned pod network namespaces, under the runtime's state root.
pub const DEFAULT_NETNS_DIR: &str = "/run/peapod/netns";
/// What every kubeadm-made cluster uses (the kubelet itself defaults to none).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// The kubelet's `resolvConf` default.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";
/// How long one plugin call may take before it is killed.
pub const DEFAULT_CNI_TIMEOUT: Duration = Duration::from_secs(60);

/// Recorded with each pod (its settings.json); fields added later take their
/// default when read from an older file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NetworkSettings {
    pub cni_conf_dir: PathBuf,
    /// Searched in order for plugin binaries; also the plugins' CNI_PATH.
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_cache_dir: PathBuf,
    #[serde(rename = "cniTimeoutSeconds", with = "seconds")]
    pub cni_timeout: Duration,
    pub netns_dir: PathBuf,
    /// The kubelet's `clusterDNS`: empty means ClusterFirst falls back to Default.
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Vec<IpAddr>,
    /// The kubelet's `clusterDomain`.
    pub cluster_domain: String,
    /// The kubelet's `resolvConf`; `None` is its `--resolv-conf=""` (no host DNS).
    pub resolv_conf: Option<PathBuf>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            cni_conf_dir: DEFAULT_CNI_CONF_DIR.into(),
            cni_bin_dirs: DEFAULT_CNI_BIN_DIRS.iter().map(PathBuf::from).collect(),
            cni_cache_dir: DEFAULT_CNI_CACHE_DIR.into(),
            cni_timeout: DEFAULT_CNI_TIMEOUT,
            netns_dir: DEFAULT_NETNS_DIR.into(),
            cluster_dns: Vec::new(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.into(),
            resolv_conf: Some(DEFAULT_RESOLV_CONF.into()),
        }
    }
}

/// The `network:` section of a config file: every key optional, unknown keys
/// refused. Names follow the kubelet's where it has one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkConfigFile {
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bin_dirs: Option<Vec<PathBuf>>,
    pub cni_cache_dir: Option<PathBuf>,
    pub cni_timeout_seconds: Option<u64>,
    pub netns_dir: Option<PathBuf>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    /// An empty string turns host DNS off, as the kubelet's `resolvConf: ""`.
    pub resolv_conf: Option<PathBuf>,
}

/// What flags or the environment say; each value set here wins over the file.
#[derive(Debug, Default, Clone)]
pub struct NetworkOverrides {
    pub cni_conf_dir: Option<PathBuf>,
    pub cni_bin_dirs: Option<Vec<PathBuf>>,
    pub cni_cache_dir: Option<PathBuf>,
    pub cni_timeout_seconds: Option<u64>,
    pub netns_dir: Option<PathBuf>,
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    pub resolv_conf: Option<PathBuf>,
}

impl NetworkSettings {
    /// Flags over the file over defaults; errors name the key.
    pub fn resolve(file: NetworkConfigFile, flags: NetworkOverrides) -> Result<Self, String> {
        let defaults = Self::default();
        let cni_conf_dir = absolute(
            "cniConfDir",
            flags.cni_conf_dir.or(file.cni_conf_dir),
            defaults.cni_conf_dir,
        )?;
        let cni_bin_dirs = match flags.cni_bin_dirs.or(file.cni_bin_dirs) {
            None => defaults.cni_bin_dirs,
            Some(dirs) if dirs.is_empty() => return Err("cniBinDirs: must not be empty".into()),
            Some(dirs) => {
                for (i, dir) in dirs.iter().enumerate() {
                    absolute(
                        &format!("cniBinDirs[{i}]"),
                        Some(dir.clone()),
                        PathBuf::new(),
                    )?;
                }
                dirs
            }
        };
        let cni_cache_dir = absolute(
            "cniCacheDir",
            flags.cni_cache_dir.or(file.cni_cache_dir),
            defaults.cni_cache_dir,
        )?;
        let netns_dir = absolute(
            "netnsDir",
            flags.netns_dir.or(file.netns_dir),
            defaults.netns_dir,
        )?;
        let cni_timeout = match flags.cni_timeout_seconds.or(file.cni_timeout_seconds) {
            None => defaults.cni_timeout,
            Some(0) => return Err("cniTimeoutSeconds: must be at least 1".into()),
            Some(seconds) => Duration::from_secs(seconds),
        };
        let cluster_dns = flags
            .cluster_dns
            .or(file.cluster_dns)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| format!("clusterDNS[{i}]: {text:?}: not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster_domain = flags
            .cluster_domain
            .or(file.cluster_domain)
            .unwrap_or(defaults.cluster_domain);
        let cluster_domain = cluster_domain.trim_end_matches('.').to_string();
        if !cluster_domain.is_empty() && !super::dns::is_search_domain(&cluster_domain) {
            return Err(format!(
                "clusterDomain: {cluster_domain:?}: must be a DNS-1123 subdomain"
            ));
        }
        let resolv_conf = match flags.resolv_conf.or(file.resolv_conf) {
            None => defaults.resolv_conf,
            Some(path) if path.as_os_str().is_empty() => None,
            Some(path) => Some(absolute("resolvConf", Some(path), PathBuf::new())?),
        };
        Ok(Self {
            cni_conf_dir,
            cni_bin_dirs,
            cni_cache_dir,
            cni_timeout,
            netns_dir,
            cluster_dns,
            cluster_domain,
            resolv_conf,
        })
    }

    /// The netns folder of a runtime whose state root is `root` (the default
    /// is the one of the default root).
    pub fn netns_dir_under(root: &Path) -> PathBuf {
        root.join("netns")
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

fn absolute(key: &str, value: Option<PathBuf>, default: PathBuf) -> Result<PathBuf, String> {
    match value {
        None => Ok(default),
        Some(path) if path.is_absolute() => Ok(path),
        Some(path) => Err(format!(
            "{key}: {}: must be an absolute path",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<NetworkConfigFile, String> {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_libcni_and_kubelet_ones() {
        let s = NetworkSettings::resolve(NetworkConfigFile::default(), Default::default()).unwrap();
        assert_eq!(s, NetworkSettings::default());
        assert_eq!(s.cni_conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(
            s.cni_bin_dirs,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert!(s.cluster_dns.is_empty());
        assert_eq!(
            s.resolv_conf.as_deref(),
            Some(Path::new("/etc/resolv.conf"))
        );
        assert_eq!(
            NetworkSettings::netns_dir_under(Path::new(crate::oci::DEFAULT_ROOT)),
            Path::new(DEFAULT_NETNS_DIR)
        );
    }

    #[test]
    fn flags_override_the_file() {
        let f = file(
            "cniConfDir: /srv/net.d\ncniBinDirs: [/a, /b]\nclusterDNS: [10.96.0.10, 'fd00::a']\n\
             clusterDomain: corp.example.\nresolvConf: ''\ncniTimeoutSeconds: 5\n",
        )
        .unwrap();
        let s = NetworkSettings::resolve(
            f,
            NetworkOverrides {
                cni_conf_dir: Some("/flag/net.d".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.cni_conf_dir, Path::new("/flag/net.d"));
        assert_eq!(
            s.cni_bin_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(s.cluster_dns.len(), 2);
        assert_eq!(s.cluster_domain, "corp.example");
        assert_eq!(s.resolv_conf, None);
        assert_eq!(s.cni_timeout, Duration::from_secs(5));
    }

    #[test]
    fn settings_round_trip_as_recorded_with_a_pod() {
        let s = NetworkSettings {
            cluster_dns: vec!["10.96.0.10".parse().unwrap()],
            resolv_conf: None,
            cni_timeout: Duration::from_secs(7),
            ..Default::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.contains("\"clusterDNS\":[\"10.96.0.10\"]")
                && text.contains("\"cniTimeoutSeconds\":7"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<NetworkSettings>(&text).unwrap(), s);
        let old: NetworkSettings = serde_json::from_str("{\"cniConfDir\": \"/x\"}").unwrap();
        assert_eq!(old.cni_cache_dir, Path::new(DEFAULT_CNI_CACHE_DIR));
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = file("cniConfDirs: /x\n").unwrap_err();
        assert!(err.contains("cniConfDirs"), "{err}");
        for (text, key) in [
            (
                "cniConfDir: relative\n",
                "cniConfDir: relative: must be an absolute path",
            ),
            (
                "cniBinDirs: [/a, b]\n",
                "cniBinDirs[1]: b: must be an absolute path",
            ),
            ("cniBinDirs: []\n", "cniBinDirs: must not be empty"),
            (
                "clusterDNS: [10.0.0.1, dns]\n",
                "clusterDNS[1]: \"dns\": not an IP address",
            ),
            (
                "clusterDomain: Bad_Domain\n",
                "clusterDomain: \"Bad_Domain\"",
            ),
            (
                "cniTimeoutSeconds: 0\n",
                "cniTimeoutSeconds: must be at least 1",
            ),
            ("netnsDir: run/netns\n", "netnsDir: run/netns"),
        ] {
            let err =
                NetworkSettings::resolve(file(text).unwrap(), Default::default()).unwrap_err();
            assert!(err.starts_with(key), "{text}: {err}");
        }
    }
}
