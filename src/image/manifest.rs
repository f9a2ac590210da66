//! The OCI (and Docker v2) JSON documents an image layout holds: index, manifest,
//! config, and their media types.

use std::collections::HashMap;

use serde::Deserialize;

use super::config::parse_stop_signal;
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::ImageConfig;
use crate::error::Context;

pub(crate) const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub(crate) fn digest(&self) -> Result<Digest> {
        Digest::parse(&self.digest)
    }

    pub(crate) fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    pub(crate) fn is_host(&self) -> bool {
        self.os == "linux" && self.architecture == host_architecture()
    }

    pub(crate) fn describe(&self) -> String {
        match &self.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{v}", self.os, self.architecture),
            _ => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The host's architecture in OCI (Go) spelling.
pub(crate) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// An index or a manifest: which one is decided by the fields it has, because
/// descriptors and documents do not always carry a media type.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Document {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
}

pub(crate) enum Kind {
    Index(Vec<Descriptor>),
    Manifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

impl Document {
    pub(crate) fn parse(bytes: &[u8], what: &'static str, name: &str) -> Result<Document> {
        Ok(serde_json::from_slice(bytes).context(|| format!("{what} {name}: invalid JSON"))?)
    }

    pub(crate) fn kind(self, what: &'static str, digest: &str) -> Result<Kind> {
        let invalid = |reason: &str| ImageError::InvalidDocument {
            what,
            digest: digest.to_string(),
            reason: reason.to_string(),
        };
        if self.schema_version == Some(1) {
            return Err(invalid("Docker schema 1 manifests are not supported"));
        }
        if let Some(mt) = &self.media_type {
            let known = INDEX_TYPES.contains(&mt.as_str()) || MANIFEST_TYPES.contains(&mt.as_str());
            if !known {
                return Err(ImageError::UnsupportedMediaType {
                    what,
                    digest: digest.to_string(),
                    media_type: mt.clone(),
                });
            }
        }
        match (self.manifests, self.config) {
            (Some(manifests), None) => Ok(Kind::Index(manifests)),
            (None, Some(config)) => Ok(Kind::Manifest {
                config,
                layers: self.layers.unwrap_or_default(),
            }),
            (Some(_), Some(_)) => Err(invalid("has both manifests and a config")),
            (None, None) => Err(invalid("is neither an image index nor an image manifest")),
        }
    }
}

/// Whether a descriptor's media type allows it to be an index or a manifest
/// (an empty media type allows both: the document decides).
pub(crate) fn is_index_or_manifest(media_type: &str) -> bool {
    media_type.is_empty()
        || INDEX_TYPES.contains(&media_type)
        || MANIFEST_TYPES.contains(&media_type)
}

pub(crate) fn check_config_type(desc: &Descriptor) -> Result<()> {
    if desc.media_type.is_empty() || CONFIG_TYPES.contains(&desc.media_type.as_str()) {
        Ok(())
    } else {
        Err(ImageError::UnsupportedMediaType {
            what: "config",
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
        })
    }
}

/// How a layer blob is compressed, as its media type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// Plain or gzip: the first bytes decide, as some tools mislabel them.
    TarOrGzip,
    Zstd,
}

pub(crate) fn layer_compression(desc: &Descriptor) -> Result<Compression> {
    let mt = desc.media_type.as_str();
    let known_tar = [
        "",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ];
    if known_tar.contains(&mt) {
        Ok(Compression::TarOrGzip)
    } else if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
        Ok(Compression::Zstd)
    } else {
        Err(ImageError::UnsupportedMediaType {
            what: "layer",
            digest: desc.digest.clone(),
            media_type: mt.to_string(),
        })
    }
}

/// The image config blob: only the parts peapod uses.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ConfigFile {
    pub(crate) fn parse(bytes: &[u8], digest: &str) -> Result<ConfigFile> {
        Ok(serde_json::from_slice(bytes).context(|| format!("config {digest}: invalid JSON"))?)
    }

    /// The layers' diff_ids, bottom first.
    pub(crate) fn diff_ids(&self, digest: &str) -> Result<Vec<Digest>> {
        let rootfs = self
            .rootfs
            .as_ref()
            .ok_or_else(|| ImageError::InvalidDocument {
                what: "config",
                digest: digest.to_string(),
                reason: "has no rootfs".to_string(),
            })?;
        if rootfs.kind != "layers" {
            return Err(ImageError::InvalidDocument {
                what: "config",
                digest: digest.to_string(),
                reason: format!("rootfs type {:?} is not \"layers\"", rootfs.kind),
            });
        }
        rootfs.diff_ids.iter().map(|d| Digest::parse(d)).collect()
    }

    /// What a container takes from `image`, the image whose config this is.
    pub(crate) fn image_config(&self, image: &str) -> ImageConfig {
        let c = self.config.as_ref();
        let list = |v: Option<&Option<Vec<String>>>| v.and_then(|v| v.clone()).unwrap_or_default();
        let text = |v: Option<&Option<String>>| v.and_then(|v| v.clone()).filter(|s| !s.is_empty());
        ImageConfig {
            entrypoint: list(c.map(|c| &c.entrypoint)),
            cmd: list(c.map(|c| &c.cmd)),
            env: list(c.map(|c| &c.env)),
            working_dir: text(c.map(|c| &c.working_dir)),
            user: text(c.map(|c| &c.user)),
            stop_signal: parse_stop_signal(
                text(c.map(|c| &c.stop_signal)).as_deref(),
                &format!("image {image}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_with_nulls_parses() {
        let raw = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":null,"Entrypoint":["/pause"],"Env":null,"WorkingDir":"","User":""},
            "rootfs":{"type":"layers","diff_ids":["sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"]}}"#;
        let cfg = ConfigFile::parse(raw, "sha256:x").unwrap();
        let ic = cfg.image_config("localhost/pause:latest");
        assert_eq!(ic.entrypoint, vec!["/pause"]);
        assert!(ic.cmd.is_empty() && ic.env.is_empty());
        assert_eq!(ic.working_dir, None);
        assert_eq!(ic.user, None);
        assert_eq!(ic.stop_signal, nix::sys::signal::Signal::SIGTERM);
        assert_eq!(cfg.diff_ids("sha256:x").unwrap().len(), 1);
    }

    #[test]
    fn layer_media_types() {
        let desc = |mt: &str| Descriptor {
            media_type: mt.to_string(),
            digest: "sha256:x".to_string(),
            size: 0,
            annotations: None,
            platform: None,
        };
        let ok = |mt| layer_compression(&desc(mt)).unwrap();
        assert_eq!(
            ok("application/vnd.oci.image.layer.v1.tar"),
            Compression::TarOrGzip
        );
        assert_eq!(
            ok("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Compression::TarOrGzip
        );
        assert_eq!(
            ok("application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::Zstd
        );
        assert!(layer_compression(&desc("application/vnd.oci.empty.v1+json")).is_err());
    }
}
