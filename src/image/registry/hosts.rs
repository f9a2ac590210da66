//! Where a registry's content is fetched from: its own server, or the mirrors a
//! containerd-style `hosts.toml` lists (`<hosts dir>/<registry>/hosts.toml`, else
//! `<hosts dir>/_default/hosts.toml`), tried in the file's order, the server last.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::RegistryError;
use super::settings::RegistrySettings;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_SERVER: &str = "https://registry-1.docker.io";
const HOSTS_FILE: &str = "hosts.toml";
const DEFAULT_FOLDER: &str = "_default";

/// One place to ask: a mirror or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The API root, without a trailing slash: `https://host:port/v2`.
    pub api: String,
    /// `host[:port]`: the key for credentials and per-registry CA folders.
    pub host: String,
    pub plain_http: bool,
    /// May serve blobs and manifests by digest.
    pub pull: bool,
    /// May turn a tag into a digest.
    pub resolve: bool,
    /// Extra CA files trusted for this endpoint.
    pub cas: Vec<PathBuf>,
    pub skip_verify: bool,
}

/// A CA given as one path or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Paths {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

#[derive(Debug, Default, Deserialize)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    ca: Option<Paths>,
    skip_verify: Option<bool>,
    override_path: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct HostsFile {
    server: Option<String>,
    #[serde(flatten)]
    server_entry: HostEntry,
    /// A table, so that the file's order (the order mirrors are tried in) is kept.
    host: Option<toml::Table>,
}

/// The endpoints for `registry`, in the order to try them.
pub(crate) fn endpoints(
    settings: &RegistrySettings,
    registry: &str,
) -> Result<Vec<Endpoint>, RegistryError> {
    let folder = [registry, DEFAULT_FOLDER]
        .iter()
        .map(|name| settings.hosts_dir.join(name))
        .find(|dir| dir.join(HOSTS_FILE).is_file());
    let mut endpoints = match folder {
        Some(dir) => {
            let path = dir.join(HOSTS_FILE);
            let text = std::fs::read_to_string(&path).map_err(|e| RegistryError::Settings {
                what: path.display().to_string(),
                reason: format!("cannot read: {e}"),
            })?;
            parse(&text, &path, registry, settings)?
        }
        None => vec![default_server(registry, settings)],
    };
    for endpoint in &mut endpoints {
        endpoint
            .cas
            .extend(ca_files(&settings.ca_dir, &endpoint.host));
    }
    Ok(endpoints)
}

/// The registry itself, as containerd reaches it without a hosts.toml.
fn default_server(registry: &str, settings: &RegistrySettings) -> Endpoint {
    let url = if registry == DOCKER_HUB {
        DOCKER_HUB_SERVER.to_string()
    } else if settings.is_insecure(registry) {
        format!("http://{registry}")
    } else {
        format!("https://{registry}")
    };
    endpoint(&url, &HostEntry::default(), Path::new("/"), settings).expect("a valid default URL")
}

pub(crate) fn parse(
    text: &str,
    path: &Path,
    registry: &str,
    settings: &RegistrySettings,
) -> Result<Vec<Endpoint>, RegistryError> {
    let invalid = |reason: String| RegistryError::Settings {
        what: path.display().to_string(),
        reason,
    };
    let file: HostsFile = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut endpoints = Vec::new();
    for (url, value) in file.host.unwrap_or_default() {
        let entry: HostEntry = value
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("host.{url:?}: {}", e.message())))?;
        endpoints.push(
            endpoint(&url, &entry, base, settings)
                .map_err(|reason| invalid(format!("host.{url:?}: {reason}")))?,
        );
    }
    let server = match &file.server {
        Some(url) => url.clone(),
        None => default_server(registry, settings)
            .api
            .trim_end_matches("/v2")
            .to_string(),
    };
    endpoints.push(
        endpoint(&server, &file.server_entry, base, settings)
            .map_err(|reason| invalid(format!("server {server:?}: {reason}")))?,
    );
    Ok(endpoints)
}

/// One endpoint from its URL (`scheme://host[:port][/path]`, scheme optional) and settings.
fn endpoint(
    url: &str,
    entry: &HostEntry,
    base: &Path,
    settings: &RegistrySettings,
) -> Result<Endpoint, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (host, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], rest[slash..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err("expected [http[s]://]host[:port][/path]".into());
    }
    let plain_http = match scheme {
        Some("https") => false,
        Some("http") => true,
        None => settings.is_insecure(host),
        Some(other) => return Err(format!("unsupported scheme {other:?}")),
    };
    let api = if entry.override_path.unwrap_or(false) {
        format!(
            "{}://{host}{path}",
            if plain_http { "http" } else { "https" }
        )
    } else {
        format!(
            "{}://{host}{path}/v2",
            if plain_http { "http" } else { "https" }
        )
    };
    let capabilities = entry
        .capabilities
        .clone()
        .unwrap_or_else(|| vec!["pull".into(), "resolve".into(), "push".into()]);
    if let Some(bad) = capabilities
        .iter()
        .find(|c| !matches!(c.as_str(), "pull" | "resolve" | "push"))
    {
        return Err(format!("unknown capability {bad:?}"));
    }
    let cas = match &entry.ca {
        None => Vec::new(),
        Some(Paths::One(p)) => vec![p.clone()],
        Some(Paths::Many(ps)) => ps.clone(),
    };
    Ok(Endpoint {
        api,
        host: host.to_string(),
        plain_http,
        pull: capabilities.iter().any(|c| c == "pull"),
        resolve: capabilities.iter().any(|c| c == "resolve"),
        cas: cas.into_iter().map(|p| base.join(p)).collect(),
        skip_verify: entry.skip_verify.unwrap_or(false),
    })
}

/// `<ca dir>/<host>/*.crt`, Docker's per-registry CA files, sorted.
fn ca_files(ca_dir: &Path, host: &str) -> Vec<PathBuf> {
    let dir = ca_dir.join(host);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "crt"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> RegistrySettings {
        RegistrySettings {
            insecure: vec!["127.0.0.1:5000".into()],
            hosts_dir: dir.join("hosts"),
            ca_dir: dir.join("certs"),
            ..Default::default()
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn without_hosts_toml_the_registry_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path());
        let one = |r: &str| endpoints(&s, r).unwrap().remove(0);
        assert_eq!(one("docker.io").api, "https://registry-1.docker.io/v2");
        assert_eq!(one("docker.io").host, "registry-1.docker.io");
        assert_eq!(one("quay.io").api, "https://quay.io/v2");
        let local = one("127.0.0.1:5000");
        assert_eq!(local.api, "http://127.0.0.1:5000/v2");
        assert!(local.plain_http && local.pull && local.resolve);
        assert_eq!(one("127.0.0.1:5001").api, "https://127.0.0.1:5001/v2");

        write(&tmp.path().join("certs/quay.io/ca.crt"), "x");
        write(&tmp.path().join("certs/quay.io/notes.txt"), "x");
        assert_eq!(
            one("quay.io").cas,
            [tmp.path().join("certs/quay.io/ca.crt")]
        );
    }

    #[test]
    fn mirrors_in_file_order_then_the_server() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path());
        write(
            &tmp.path().join("hosts/registry.k8s.io/hosts.toml"),
            r#"
server = "https://registry.k8s.io"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]

[host."https://mirror.example:8443/k8s"]
  capabilities = ["pull"]
  ca = "mirror.pem"
  skip_verify = true

[host."https://cache.example/v2/registry.k8s.io"]
  override_path = true
  ca = ["/a.pem", "b.pem"]
"#,
        );
        let e = endpoints(&s, "registry.k8s.io").unwrap();
        let apis: Vec<&str> = e.iter().map(|e| e.api.as_str()).collect();
        assert_eq!(
            apis,
            [
                "http://127.0.0.1:5000/v2",
                "https://mirror.example:8443/k8s/v2",
                "https://cache.example/v2/registry.k8s.io",
                "https://registry.k8s.io/v2",
            ]
        );
        assert!(e[0].resolve && e[0].pull);
        assert!(e[1].pull && !e[1].resolve && e[1].skip_verify);
        assert_eq!(
            e[1].cas,
            [tmp.path().join("hosts/registry.k8s.io/mirror.pem")]
        );
        assert_eq!(
            e[2].cas,
            [
                PathBuf::from("/a.pem"),
                tmp.path().join("hosts/registry.k8s.io/b.pem")
            ]
        );
        assert_eq!(e[1].host, "mirror.example:8443");

        // _default applies to registries without their own folder; no server means the default.
        write(
            &tmp.path().join("hosts/_default/hosts.toml"),
            "[host.\"http://127.0.0.1:5000\"]\n",
        );
        let e = endpoints(&s, "quay.io").unwrap();
        assert_eq!(e[0].api, "http://127.0.0.1:5000/v2");
        assert_eq!(e[1].api, "https://quay.io/v2");
    }

    #[test]
    fn bad_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path());
        let path = tmp.path().join("hosts/r.example/hosts.toml");
        for (text, needle) in [
            ("server = [", "hosts.toml"),
            ("[host.\"ftp://x\"]\n", "unsupported scheme"),
            ("[host.\"https://x\"]\ncapabilities = [\"fly\"]\n", "fly"),
            (
                "[host.\"https://x\"]\nskip_verify = \"yes\"\n",
                "host.\"https://x\"",
            ),
        ] {
            write(&path, text);
            let err = endpoints(&s, "r.example").unwrap_err().to_string();
            assert!(
                err.contains("hosts.toml") && err.contains(needle),
                "{text}: {err}"
            );
        }
    }
}
