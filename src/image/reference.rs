//! Image names: parsing, the canonical form the store keeps, and how a reference
//! finds an image.
//!
//! Canonical names are `<domain>/<path>:<tag>`; a name without a domain is local
//! (`localhost`), one without a tag is `latest`, and Docker Hub names keep Docker's
//! spelling (`docker.io/library/busybox:latest`). Since peapod has no registry,
//! unqualified, `localhost/` and `docker.io/` references find each other's images.

use super::error::{ImageError, Result};
use super::Image;

pub(crate) const LOCAL_DOMAIN: &str = "localhost";
const DOCKER_DOMAIN: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME: usize = 255;
/// Shorter hex strings are too likely to be a mistyped name matching a random id.
const MIN_ID_PREFIX: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// As written (Docker Hub aliases folded to docker.io); None when not given.
    domain: Option<String>,
    /// Path components, `library/` added for Docker Hub's single-component names.
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    pub(crate) fn parse(text: &str) -> Result<Reference> {
        let invalid = |reason: &str| ImageError::InvalidReference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                super::digest::Digest::parse(digest)
                    .map_err(|_| invalid("the digest must be sha256:<64 hex digits>"))?;
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&rest[..colon], Some(rest[colon + 1..].to_string()))
            }
            _ => (rest, None),
        };
        if let Some(tag) = &tag {
            if !valid_tag(tag) {
                return Err(invalid(
                    "the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == LOCAL_DOMAIN
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                if !valid_domain(first) {
                    return Err(invalid("invalid registry host"));
                }
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        if path.is_empty() || !path.split('/').all(valid_component) {
            return Err(invalid(
                "the repository must be lowercase letters, digits and separators (. _ __ -), components joined by /",
            ));
        }
        let domain = domain.map(|d| match d.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_DOMAIN.to_string(),
            _ => d,
        });
        let path = if domain.as_deref() == Some(DOCKER_DOMAIN) && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let reference = Reference {
            domain,
            path,
            tag,
            digest,
        };
        if reference.canonical().len() > MAX_NAME {
            return Err(invalid("the name is longer than 255 characters"));
        }
        Ok(reference)
    }

    fn domain(&self) -> &str {
        self.domain.as_deref().unwrap_or(LOCAL_DOMAIN)
    }

    /// `domain/path:tag`, the form the store keeps (the digest is not part of it).
    pub(crate) fn canonical(&self) -> String {
        format!(
            "{}/{}:{}",
            self.domain(),
            self.path,
            self.tag.as_deref().unwrap_or(DEFAULT_TAG)
        )
    }

    /// The repository as the local store and Docker Hub both see it, or None for
    /// another registry's names.
    fn local_key(&self) -> Option<&str> {
        match self.domain.as_deref() {
            None | Some(DOCKER_DOMAIN) => {
                Some(self.path.strip_prefix("library/").unwrap_or(&self.path))
            }
            Some(LOCAL_DOMAIN) => Some(&self.path),
            Some(_) => None,
        }
    }

    fn tag_matches(&self, stored: &Reference) -> bool {
        match (&self.tag, &self.digest) {
            // name@digest and name:tag@digest: the digest decides, as for a pull.
            (_, Some(_)) => true,
            (Some(tag), None) => stored.tag.as_deref() == Some(tag.as_str()),
            (None, None) => stored.tag.as_deref() == Some(DEFAULT_TAG),
        }
    }

    /// The manifest, the config, or (for an image pulled by an index's digest)
    /// the digest its name holds.
    fn digest_matches(&self, image: &Image, stored: &Reference) -> bool {
        self.digest.as_deref().is_none_or(|d| {
            image.manifest_digest == d || image.id == d || stored.digest.as_deref() == Some(d)
        })
    }
}

/// A reference as a registry sees it, normalized as containerd and the kubelet do:
/// no registry means Docker Hub (`busybox` is `docker.io/library/busybox:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteName {
    /// `host[:port]`, Docker Hub as `docker.io`.
    pub registry: String,
    /// The repository on that registry, e.g. `library/busybox`.
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl RemoteName {
    /// What to ask the registry for: the digest when there is one, else the tag.
    pub(crate) fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// The name the store keeps a pulled image under: `registry/repository:tag`,
    /// with `@digest` when pulled by digest.
    pub(crate) fn store_name(&self) -> String {
        let mut name = format!("{}/{}", self.registry, self.repository);
        if let Some(tag) = &self.tag {
            name.push(':');
            name.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            name.push('@');
            name.push_str(digest);
        }
        name
    }
}

/// Parses a reference to pull. `localhost/…` names the local store (imported
/// images), never a registry: a registry on this machine is `localhost:PORT/…`.
pub(crate) fn remote_name(text: &str) -> Result<RemoteName> {
    let reference = Reference::parse(text)?;
    let registry = match reference.domain.as_deref() {
        None => DOCKER_DOMAIN.to_string(),
        Some(LOCAL_DOMAIN) => {
            return Err(ImageError::InvalidReference {
                reference: text.to_string(),
                reason: "localhost/ names images imported into the local store, not a registry (a registry on this machine is localhost:PORT/...)".to_string(),
            })
        }
        Some(domain) => domain.to_string(),
    };
    let repository = if registry == DOCKER_DOMAIN && !reference.path.contains('/') {
        format!("library/{}", reference.path)
    } else {
        reference.path
    };
    let tag = match (&reference.tag, &reference.digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (tag, _) => tag.clone(),
    };
    // Normalizing adds `docker.io/library/`: the name the store keeps must still parse.
    let stored = format!(
        "{registry}/{repository}:{}",
        tag.as_deref().unwrap_or(DEFAULT_TAG)
    );
    if stored.len() > MAX_NAME {
        return Err(ImageError::InvalidReference {
            reference: text.to_string(),
            reason: format!("the name is longer than {MAX_NAME} characters as {stored}"),
        });
    }
    Ok(RemoteName {
        registry,
        repository,
        tag,
        digest: reference.digest,
    })
}

/// The tag and the digest a reference gives, as written (no default applied).
pub(crate) fn tag_and_digest(text: &str) -> Result<(Option<String>, Option<String>)> {
    let reference = Reference::parse(text)?;
    Ok((reference.tag, reference.digest))
}

/// Whether `text` names a registry explicitly (`quay.io/x`, `localhost:5000/x`),
/// rather than a short name (`busybox`, `team/app`).
pub(crate) fn has_registry(text: &str) -> Result<bool> {
    Ok(Reference::parse(text)?.domain.is_some())
}

/// The canonical form of a name given to an image (a digest is refused there).
pub(crate) fn canonical_name(name: &str) -> Result<String> {
    let reference = Reference::parse(name)?;
    if reference.digest.is_some() {
        return Err(ImageError::InvalidReference {
            reference: name.to_string(),
            reason: "an image name cannot hold a digest".to_string(),
        });
    }
    Ok(reference.canonical())
}

/// How a reference found its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    Name,
    Id,
}

/// The image `reference` means: its exact canonical name first, then the same
/// repository under a local or Docker Hub spelling, then an id prefix.
pub(crate) fn find<'a>(images: &'a [Image], reference: &str) -> Result<(&'a Image, Match)> {
    let parsed = Reference::parse(reference);
    if let Ok(wanted) = &parsed {
        let stored: Vec<(&Image, Reference)> = images
            .iter()
            .filter_map(|img| Reference::parse(&img.name).ok().map(|r| (img, r)))
            .filter(|(img, r)| wanted.tag_matches(r) && wanted.digest_matches(img, r))
            .collect();
        let exact = stored
            .iter()
            .find(|(_, r)| r.domain() == wanted.domain() && r.path == wanted.path);
        if let Some((img, _)) = exact {
            return Ok((img, Match::Name));
        }
        if let Some(key) = wanted.local_key() {
            let loose: Vec<&Image> = stored
                .iter()
                .filter(|(_, r)| r.local_key() == Some(key))
                .map(|(img, _)| *img)
                .collect();
            if let Some(first) = loose.first() {
                if loose.iter().all(|img| img.id == first.id) {
                    return Ok((first, Match::Name));
                }
                return Err(ImageError::Ambiguous {
                    reference: reference.to_string(),
                    candidates: loose.iter().map(|img| img.name.clone()).collect(),
                });
            }
        }
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let is_hex = (MIN_ID_PREFIX..=64).contains(&hex.len())
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if is_hex {
        let by_id: Vec<&Image> = images
            .iter()
            .filter(|img| {
                img.id
                    .strip_prefix("sha256:")
                    .is_some_and(|id| id.starts_with(hex))
            })
            .collect();
        if let Some(first) = by_id.first() {
            if by_id.iter().all(|img| img.id == first.id) {
                return Ok((first, Match::Id));
            }
            let mut ids: Vec<String> = by_id.iter().map(|img| img.id.clone()).collect();
            ids.dedup();
            return Err(ImageError::Ambiguous {
                reference: reference.to_string(),
                candidates: ids,
            });
        }
    }
    match parsed {
        Err(e) if !is_hex => Err(e),
        _ => Err(ImageError::NotFound {
            reference: reference.to_string(),
        }),
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-z0-9]+` runs joined by one of `.`, `_`, `__` or any number of `-`.
fn valid_component(comp: &str) -> bool {
    let bytes = comp.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
        return false;
    }
    let mut separator = String::new();
    for b in bytes {
        if alnum(b) {
            let ok = separator.is_empty()
                || matches!(separator.as_str(), "." | "_" | "__")
                || separator.bytes().all(|s| s == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(*b as char);
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageConfig;

    fn image(name: &str, id_hex: &str) -> Image {
        Image {
            name: name.to_string(),
            id: format!("sha256:{id_hex}"),
            manifest_digest: format!("sha256:{}", "f".repeat(64)),
            layers: vec![],
            config: ImageConfig::default(),
            size: 0,
            created: None,
        }
    }

    #[test]
    fn canonical_names() {
        let c = |s| canonical_name(s).unwrap();
        assert_eq!(c("busybox"), "localhost/busybox:latest");
        assert_eq!(c("busybox:1.36"), "localhost/busybox:1.36");
        assert_eq!(c("localhost/busybox"), "localhost/busybox:latest");
        assert_eq!(c("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            c("index.docker.io/library/busybox:1"),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            c("registry.example:5000/team/app:v1.2"),
            "registry.example:5000/team/app:v1.2"
        );
        assert_eq!(c("a__b/c-d--e/f.g"), "localhost/a__b/c-d--e/f.g:latest");
        for bad in [
            "",
            "BusyBox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a..b",
            "-a",
            "a_",
            "busybox@sha256:abc",
            "x/../y",
        ] {
            assert!(canonical_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn resolve_rules() {
        let id = "ab12".to_string() + &"0".repeat(60);
        let other = "cd34".to_string() + &"0".repeat(60);
        let images = vec![
            image("localhost/busybox:latest", &id),
            image("localhost/pause:3.9", &other),
        ];
        for r in [
            "busybox",
            "busybox:latest",
            "localhost/busybox",
            "localhost/busybox:latest",
            "docker.io/library/busybox",
            "docker.io/busybox:latest",
            "library/busybox",
            "ab1",
            "sha256:ab12",
            &id,
        ] {
            let (found, _) = find(&images, r).unwrap_or_else(|e| panic!("{r}: {e}"));
            assert_eq!(found.name, "localhost/busybox:latest", "{r}");
        }
        assert_eq!(find(&images, "ab1").unwrap().1, Match::Id);
        assert!(find(&images, "ab").is_err());
        assert_eq!(
            find(&images, "pause:3.9").unwrap().0.name,
            "localhost/pause:3.9"
        );
        for r in [
            "busybox:1.0",
            "quay.io/busybox",
            "pause",
            "sha256:ef",
            "nothere",
        ] {
            match find(&images, r) {
                Err(ImageError::NotFound { reference }) => assert_eq!(reference, r),
                other => panic!("{r}: {other:?}"),
            }
        }
        let msg = find(&images, "nothere").unwrap_err().to_string();
        assert!(msg.contains("nothere") && !msg.contains("busybox"), "{msg}");
    }

    #[test]
    fn exact_name_wins_over_docker_hub_alias() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let images = vec![
            image("docker.io/library/busybox:latest", &a),
            image("localhost/busybox:latest", &b),
        ];
        assert_eq!(
            find(&images, "busybox").unwrap().0.id,
            format!("sha256:{b}")
        );
        assert_eq!(
            find(&images, "docker.io/busybox").unwrap().0.id,
            format!("sha256:{a}")
        );
        // An id prefix shared by two images is ambiguous; a longer one is not.
        let images = vec![
            image("localhost/x:latest", &a),
            image("localhost/y:latest", &format!("aaa{}", &b[3..])),
        ];
        assert!(matches!(
            find(&images, "aaa"),
            Err(ImageError::Ambiguous { .. })
        ));
        assert_eq!(
            find(&images, "sha256:aaab").unwrap().0.name,
            "localhost/y:latest"
        );
        // Too short to be taken for an id.
        assert!(matches!(
            find(&images, "aa"),
            Err(ImageError::NotFound { .. })
        ));
    }

    #[test]
    fn short_names_too_long_once_normalized_are_refused() {
        // Found by fuzzing (fuzz/fuzz_targets/image_reference.rs): the store
        // name of a long short name did not parse back. 235 characters fit
        // as localhost/NAME:latest but not as docker.io/library/NAME:latest.
        let name = "a".repeat(235);
        assert!(Reference::parse(&name).is_ok());
        let err = remote_name(&name).unwrap_err().to_string();
        assert!(err.contains("longer than 255"), "{err}");
        let fits = "a".repeat(255 - "docker.io/library/:latest".len());
        let stored = remote_name(&fits).unwrap().store_name();
        Reference::parse(&stored).unwrap();
    }

    #[test]
    fn remote_names_are_normalized_as_containerd_does() {
        let r = |s: &str| {
            let n = remote_name(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            (n.store_name(), n.reference().to_string())
        };
        let digest = format!("sha256:{}", "d".repeat(64));
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            r("busybox"),
            s("docker.io/library/busybox:latest", "latest")
        );
        assert_eq!(
            r("busybox:1.36"),
            s("docker.io/library/busybox:1.36", "1.36")
        );
        assert_eq!(r("foo/bar"), s("docker.io/foo/bar:latest", "latest"));
        assert_eq!(
            r("index.docker.io/busybox"),
            s("docker.io/library/busybox:latest", "latest")
        );
        assert_eq!(
            r("registry.k8s.io/pause:3.9"),
            s("registry.k8s.io/pause:3.9", "3.9")
        );
        assert_eq!(
            r("localhost:5000/team/app"),
            s("localhost:5000/team/app:latest", "latest")
        );
        assert_eq!(r("127.0.0.1:5000/app:v1"), s("127.0.0.1:5000/app:v1", "v1"));
        assert_eq!(
            r(&format!("busybox@{digest}")),
            (
                format!("docker.io/library/busybox@{digest}"),
                digest.clone()
            )
        );
        assert_eq!(
            r(&format!("quay.io/a/b:1@{digest}")),
            (format!("quay.io/a/b:1@{digest}"), digest.clone())
        );
        assert!(remote_name("localhost/busybox").is_err());
        assert!(remote_name("Busybox").is_err());
        assert!(has_registry("quay.io/x").unwrap());
        assert!(has_registry("localhost/x").unwrap());
        assert!(!has_registry("team/app").unwrap());
    }

    #[test]
    fn a_pulled_digest_name_is_found() {
        let f = "f".repeat(64);
        let images = vec![image(
            &format!("docker.io/library/busybox@sha256:{f}"),
            &"a".repeat(64),
        )];
        for r in [
            format!("busybox@sha256:{f}"),
            format!("docker.io/library/busybox:1.36@sha256:{f}"),
        ] {
            assert!(find(&images, &r).is_ok(), "{r}");
        }
        assert!(find(&images, "busybox").is_err(), "no tag: not :latest");
        assert!(find(&images, "docker.io/library/busybox:latest").is_err());
    }

    #[test]
    fn digest_references() {
        let a = "a".repeat(64);
        let images = vec![image("localhost/busybox:latest", &a)];
        let by_manifest = format!("busybox@sha256:{}", "f".repeat(64));
        assert_eq!(
            find(&images, &by_manifest).unwrap().0.name,
            "localhost/busybox:latest"
        );
        let wrong = format!("busybox@sha256:{}", "e".repeat(64));
        assert!(matches!(
            find(&images, &wrong),
            Err(ImageError::NotFound { .. })
        ));
    }
}
