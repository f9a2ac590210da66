//! Node settings for registries: which may be reached over plain HTTP, where the
//! mirror (hosts.toml) and CA folders are, and which credentials file to read.
//! Flags win over a YAML file, which wins over the defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// containerd's layout (`/etc/containerd/certs.d/<registry>/hosts.toml`), under peapod's name.
pub const DEFAULT_HOSTS_DIR: &str = "/etc/peapod/certs.d";
/// Docker's layout (`/etc/docker/certs.d/<registry>/*.crt`): the same folder by default.
pub const DEFAULT_CA_DIR: &str = "/etc/peapod/certs.d";
/// Where the kubelet reads credentials (its `config.json`), then the user's Docker file.
pub const KUBELET_CREDENTIALS: &str = "/var/lib/kubelet/config.json";
/// Debian's bundle of the system's CA certificates.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How this node reaches registries (recorded in a pod's settings.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RegistrySettings {
    /// `host[:port]` of registries that may be reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Folder of `<registry>/hosts.toml` (mirrors and endpoints).
    pub hosts_dir: PathBuf,
    /// Folder of `<registry>/*.crt`: CAs trusted for that registry only.
    pub ca_dir: PathBuf,
    /// A docker-style config.json; None reads the kubelet's, then ~/.docker/config.json.
    pub credentials: Option<PathBuf>,
    /// PEM bundle of the CAs trusted for every registry.
    pub system_cas: PathBuf,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            insecure: Vec::new(),
            hosts_dir: DEFAULT_HOSTS_DIR.into(),
            ca_dir: DEFAULT_CA_DIR.into(),
            credentials: None,
            system_cas: SYSTEM_CA_BUNDLE.into(),
        }
    }
}

/// The YAML file's keys (`--registry-config`), all optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryConfigFile {
    pub insecure_registries: Option<Vec<String>>,
    pub hosts_dir: Option<PathBuf>,
    pub ca_dir: Option<PathBuf>,
    pub credentials_file: Option<PathBuf>,
    pub image_store: Option<PathBuf>,
    /// The kubelet's imageGCHighThresholdPercent (default 85).
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<u8>,
    /// The kubelet's imageGCLowThresholdPercent (default 80).
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<u8>,
}

impl RegistryConfigFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What the command line (or the environment) says; each value set here wins.
#[derive(Debug, Default, Clone)]
pub struct RegistryOverrides {
    pub insecure: Vec<String>,
    pub hosts_dir: Option<PathBuf>,
    pub ca_dir: Option<PathBuf>,
    pub credentials: Option<PathBuf>,
}

impl RegistrySettings {
    pub fn resolve(file: &RegistryConfigFile, flags: RegistryOverrides) -> Result<Self, String> {
        let insecure = if flags.insecure.is_empty() {
            file.insecure_registries.clone().unwrap_or_default()
        } else {
            flags.insecure
        };
        for host in &insecure {
            if host.is_empty() || host.contains(['/', ' ']) {
                return Err(format!(
                    "insecureRegistries: {host:?}: expected host or host:port"
                ));
            }
        }
        let absolute = |key: &str, path: PathBuf| {
            if path.is_absolute() {
                Ok(path)
            } else {
                Err(format!(
                    "{key}: {}: must be an absolute path",
                    path.display()
                ))
            }
        };
        let hosts_dir = absolute(
            "hostsDir",
            flags
                .hosts_dir
                .or(file.hosts_dir.clone())
                .unwrap_or_else(|| DEFAULT_HOSTS_DIR.into()),
        )?;
        let ca_dir = absolute(
            "caDir",
            flags
                .ca_dir
                .or(file.ca_dir.clone())
                .unwrap_or_else(|| DEFAULT_CA_DIR.into()),
        )?;
        Ok(RegistrySettings {
            insecure,
            hosts_dir,
            ca_dir,
            credentials: flags.credentials.or(file.credentials_file.clone()),
            system_cas: SYSTEM_CA_BUNDLE.into(),
        })
    }

    pub(crate) fn is_insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host)
    }

    /// The credentials files to read, first match wins.
    pub(crate) fn credential_files(&self) -> Vec<PathBuf> {
        match &self.credentials {
            Some(path) => vec![path.clone()],
            None => {
                let mut files = vec![PathBuf::from(KUBELET_CREDENTIALS)];
                if let Some(home) = std::env::var_os("HOME") {
                    files.push(Path::new(&home).join(".docker/config.json"));
                }
                files
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<RegistryConfigFile, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.yaml");
        std::fs::write(&path, text).unwrap();
        RegistryConfigFile::load(&path)
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let f = file(
            "insecureRegistries: [\"127.0.0.1:5000\"]\nhostsDir: /srv/hosts\ncredentialsFile: /srv/auth.json\nimageGCHighThresholdPercent: 90\n",
        )
        .unwrap();
        assert_eq!(f.image_gc_high_threshold_percent, Some(90));
        let s = RegistrySettings::resolve(&f, RegistryOverrides::default()).unwrap();
        assert_eq!(s.insecure, ["127.0.0.1:5000"]);
        assert!(s.is_insecure("127.0.0.1:5000") && !s.is_insecure("127.0.0.1:5001"));
        assert_eq!(s.hosts_dir, Path::new("/srv/hosts"));
        assert_eq!(s.ca_dir, Path::new(DEFAULT_CA_DIR));
        assert_eq!(s.credential_files(), [PathBuf::from("/srv/auth.json")]);
        let s = RegistrySettings::resolve(
            &f,
            RegistryOverrides {
                insecure: vec!["r:1".into()],
                hosts_dir: Some("/h".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.insecure, ["r:1"]);
        assert_eq!(s.hosts_dir, Path::new("/h"));
        let d = RegistrySettings::resolve(&file("").unwrap(), RegistryOverrides::default());
        assert_eq!(
            d.unwrap().credential_files()[0],
            Path::new(KUBELET_CREDENTIALS)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = file("insecure: [x]\n").unwrap_err();
        assert!(
            err.contains("registries.yaml") && err.contains("insecure"),
            "{err}"
        );
        let f = file("hostsDir: relative\n").unwrap();
        let err = RegistrySettings::resolve(&f, RegistryOverrides::default()).unwrap_err();
        assert!(err.starts_with("hostsDir: relative"), "{err}");
        let f = file("insecureRegistries: [\"http://x\"]\n").unwrap();
        let err = RegistrySettings::resolve(&f, RegistryOverrides::default()).unwrap_err();
        assert!(err.contains("insecureRegistries"), "{err}");
    }
}
