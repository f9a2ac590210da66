//! The daemon's settings: flags over an optional YAML file over defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::{Result, StaticError};
use crate::image::registry::RegistryConfigFile;
use crate::net::settings::NetworkConfigFile;
use crate::pod::security::SecurityConfigFile;

/// The kubelet's usual `staticPodPath`.
pub const DEFAULT_MANIFEST_DIR: &str = "/etc/kubernetes/manifests";
/// The kubelet's `fileCheckFrequency`.
pub const DEFAULT_RESCAN_SECONDS: u64 = 20;

/// `--config FILE`: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    pub manifest_dir: Option<PathBuf>,
    pub node_name: Option<String>,
    pub rescan_seconds: Option<u64>,
    /// The kubelet's containerLogMaxSize ("10Mi", or bytes).
    pub container_log_max_size: Option<Size>,
    /// The kubelet's containerLogMaxFiles.
    pub container_log_max_files: Option<u32>,
    /// The pods' network settings (the same as `pod run`'s flags).
    #[serde(default)]
    pub network: NetworkConfigFile,
    /// The node's security settings (the same as `pod run`'s flags).
    #[serde(default)]
    pub security: SecurityConfigFile,
    /// How images are pulled: the keys of `image pull --registry-config`.
    #[serde(default)]
    pub registry: RegistryConfigFile,
    /// The kubelet's imageGCHighThresholdPercent (default 85).
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<u8>,
    /// The kubelet's imageGCLowThresholdPercent (default 80).
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<u8>,
}

/// A size written as a quantity or a number of bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Quantity(String),
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self> {
        let file = |reason: String| StaticError::File {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file(format!("cannot read: {e}")))?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(&text).map_err(|e| file(e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub manifest_dir: PathBuf,
    pub node_name: String,
    pub rescan: Duration,
    /// Log rotation the file sets (flags win over it).
    pub container_log_max_size: Option<u64>,
    pub container_log_max_files: Option<u32>,
    /// Image GC thresholds the file sets (flags win over them).
    pub image_gc_high_threshold_percent: Option<u8>,
    pub image_gc_low_threshold_percent: Option<u8>,
}

/// What the command line says; each value set here wins over the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub manifest_dir: Option<PathBuf>,
    pub node_name: Option<String>,
    pub rescan_seconds: Option<u64>,
}

impl Config {
    pub fn resolve(file: ConfigFile, flags: Overrides) -> Result<Self> {
        let node_name = match flags.node_name.or(file.node_name) {
            Some(name) => {
                super::source::check_node_name(&name).map_err(|e| StaticError::Setting {
                    field: "nodeName",
                    reason: e.to_string(),
                })?
            }
            None => super::source::host_node_name()?,
        };
        let rescan = flags
            .rescan_seconds
            .or(file.rescan_seconds)
            .unwrap_or(DEFAULT_RESCAN_SECONDS);
        if rescan == 0 {
            return Err(StaticError::Setting {
                field: "rescanSeconds",
                reason: "must be at least 1".into(),
            });
        }
        let manifest_dir = flags
            .manifest_dir
            .or(file.manifest_dir)
            .unwrap_or_else(|| DEFAULT_MANIFEST_DIR.into());
        if !manifest_dir.is_absolute() {
            return Err(StaticError::Setting {
                field: "manifestDir",
                reason: format!("{}: must be an absolute path", manifest_dir.display()),
            });
        }
        let container_log_max_size = match file.container_log_max_size {
            None => None,
            Some(Size::Bytes(n)) => Some(crate::pod::settings::parse_size(&n.to_string())),
            Some(Size::Quantity(q)) => Some(crate::pod::settings::parse_size(&q)),
        }
        .transpose()
        .map_err(|reason| StaticError::Setting {
            field: "containerLogMaxSize",
            reason,
        })?;
        let container_log_max_files = file
            .container_log_max_files
            .map(|n| crate::pod::settings::parse_max_files(&n.to_string()))
            .transpose()
            .map_err(|reason| StaticError::Setting {
                field: "containerLogMaxFiles",
                reason,
            })?;
        Ok(Self {
            manifest_dir,
            node_name,
            rescan: Duration::from_secs(rescan),
            container_log_max_size,
            container_log_max_files,
            image_gc_high_threshold_percent: file.image_gc_high_threshold_percent,
            image_gc_low_threshold_percent: file.image_gc_low_threshold_percent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<ConfigFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("static.yaml");
        std::fs::write(&path, text).unwrap();
        ConfigFile::load(&path)
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let f = file("manifestDir: /srv/m\nnodeName: n1\nrescanSeconds: 5\nnetwork:\n  cniConfDir: /srv/net.d\n  clusterDNS: [10.96.0.10]\n").unwrap();
        assert_eq!(
            f.network.cni_conf_dir.as_deref(),
            Some(Path::new("/srv/net.d"))
        );
        assert_eq!(f.network.cluster_dns, Some(vec!["10.96.0.10".to_string()]));
        let f2 = file("security:\n  seccompDefault: true\n  allowedUnsafeSysctls: [net.core.somaxconn]\n  seccompProfileRoot: /srv/seccomp\n").unwrap();
        assert_eq!(f2.security.seccomp_default, Some(true));
        assert_eq!(
            f2.security.seccomp_profile_root.as_deref(),
            Some(Path::new("/srv/seccomp"))
        );
        assert_eq!(
            f2.security.allowed_unsafe_sysctls,
            Some(vec!["net.core.somaxconn".to_string()])
        );
        let err = file("security: {seccompDefaults: true}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("seccompDefaults"), "{err}");
        let c = Config::resolve(
            f,
            Overrides {
                node_name: Some("n2".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.manifest_dir, Path::new("/srv/m"));
        assert_eq!(c.node_name, "n2");
        assert_eq!(c.rescan, Duration::from_secs(5));
        let c = Config::resolve(
            file("").unwrap(),
            Overrides {
                node_name: Some("n".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.manifest_dir, Path::new(DEFAULT_MANIFEST_DIR));
        assert_eq!(c.rescan, Duration::from_secs(DEFAULT_RESCAN_SECONDS));
        let f = file("containerLogMaxSize: 1Mi\ncontainerLogMaxFiles: 3\n").unwrap();
        let c = Config::resolve(
            f,
            Overrides {
                node_name: Some("n".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (c.container_log_max_size, c.container_log_max_files),
            (Some(1 << 20), Some(3))
        );
        let f = file("containerLogMaxSize: 4096\n").unwrap();
        let overrides = Overrides {
            node_name: Some("n".into()),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(f, overrides)
                .unwrap()
                .container_log_max_size,
            Some(4096)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = file("manifestDirs: /x\n").unwrap_err().to_string();
        assert!(
            err.contains("static.yaml") && err.contains("manifestDirs"),
            "{err}"
        );
        let err = file("network: {cniConfDirs: /x}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cniConfDirs"), "{err}");
        let err = file("rescanSeconds: soon\n").unwrap_err().to_string();
        assert!(err.contains("rescanSeconds"), "{err}");
        for (flags, field) in [
            (
                Overrides {
                    node_name: Some("Bad_Node".into()),
                    ..Default::default()
                },
                "nodeName",
            ),
            (
                Overrides {
                    node_name: Some("n".into()),
                    rescan_seconds: Some(0),
                    ..Default::default()
                },
                "rescanSeconds",
            ),
            (
                Overrides {
                    node_name: Some("n".into()),
                    manifest_dir: Some("relative".into()),
                    ..Default::default()
                },
                "manifestDir",
            ),
        ] {
            let err = Config::resolve(ConfigFile::default(), flags)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
