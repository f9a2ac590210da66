//! metadata and names: the pod's name, namespace, uid, labels and annotations,
//! and the DNS-1123 and label-name rules every name here follows.

use std::collections::BTreeMap;
use std::io::Read;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Admission, ManifestError};

/// The pod's metadata, validated.
pub(super) struct Metadata {
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) uid: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) annotations: BTreeMap<String, String>,
}

impl Admission<'_> {
    pub(super) fn metadata(&mut self, metadata: ObjectMeta) -> Result<Metadata, ManifestError> {
        let ObjectMeta {
            annotations,
            // Bookkeeping an API server writes: meaningless here, ignored like status.
            creation_timestamp: _,
            deletion_grace_period_seconds: _,
            deletion_timestamp: _,
            finalizers,
            generate_name,
            generation: _,
            labels,
            managed_fields: _,
            name,
            namespace,
            owner_references,
            resource_version: _,
            self_link: _,
            uid,
        } = metadata;
        let Some(name) = name.filter(|name| !name.is_empty()) else {
            return Err(self.invalid("metadata.name", "required"));
        };
        if !is_dns_subdomain(&name) {
            return Err(self.invalid(
                "metadata.name",
                format!(
                    "invalid name {name:?}: must be a DNS-1123 subdomain (at most 253 lowercase \
                     letters, digits, '-' and '.', starting and ending with a letter or digit)"
                ),
            ));
        }
        if generate_name.is_some() {
            self.warn("metadata.generateName", "ignored (metadata.name is used)");
        }
        let namespace = namespace
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        self.dns_label("metadata.namespace", &namespace)?;
        let uid = match uid.filter(|uid| !uid.is_empty()) {
            Some(uid) if is_safe_uid(&uid) => uid,
            // The uid names cgroups and folders: nothing that could leave them.
            Some(uid) => {
                return Err(self.invalid(
                    "metadata.uid",
                    format!(
                        "invalid uid {uid:?}: must be at most 128 letters, digits, '-', '_' and '.'"
                    ),
                ))
            }
            None => fresh_uid().map_err(|cause| ManifestError::Read {
                file: "/dev/urandom".to_owned(),
                cause,
            })?,
        };
        let labels = labels.unwrap_or_default();
        for (key, value) in &labels {
            if let Err(problem) = check_qualified_name(key) {
                return Err(
                    self.invalid("metadata.labels", format!("invalid key {key:?}: {problem}"))
                );
            }
            if !is_label_value(value) {
                return Err(self.invalid(
                    format!("metadata.labels[{key}]"),
                    format!(
                        "invalid value {value:?}: at most 63 letters, digits, '-', '_' and '.', \
                         starting and ending with a letter or digit"
                    ),
                ));
            }
        }
        let annotations = annotations.unwrap_or_default();
        for key in annotations.keys() {
            if let Err(problem) = check_qualified_name(key) {
                return Err(self.invalid(
                    "metadata.annotations",
                    format!("invalid key {key:?}: {problem}"),
                ));
            }
        }
        let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > 256 * 1024 {
            return Err(self.invalid("metadata.annotations", "may not be larger than 256 KiB"));
        }
        if owner_references.is_some_and(|list| !list.is_empty()) {
            self.warn("metadata.ownerReferences", "ignored (no API server)");
        }
        if finalizers.is_some_and(|list| !list.is_empty()) {
            self.warn("metadata.finalizers", "ignored (no API server)");
        }
        Ok(Metadata {
            name,
            namespace,
            uid,
            labels,
            annotations,
        })
    }

    pub(super) fn dns_label(&self, field: &str, value: &str) -> Result<(), ManifestError> {
        if value.is_empty() {
            return Err(self.invalid(field, "required"));
        }
        if !is_dns_label(value) {
            return Err(self.invalid(
                field,
                format!(
                    "invalid name {value:?}: must be a DNS-1123 label (at most 63 lowercase \
                     letters, digits and '-', starting and ending with a letter or digit)"
                ),
            ));
        }
        Ok(())
    }
}

fn fresh_uid() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    // RFC 9562 version 4 (random) and variant 10.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

fn is_safe_uid(uid: &str) -> bool {
    uid.len() <= 128
        && uid != "."
        && uid != ".."
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_label(value: &str) -> bool {
    value.len() <= 63 && is_dns_part(value)
}

pub(super) fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_dns_part)
}

/// [a-z0-9]([-a-z0-9]*[a-z0-9])?
fn is_dns_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    let end = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.first().is_some_and(end)
        && bytes.last().is_some_and(end)
        && bytes.iter().all(|b| end(b) || *b == b'-')
}

/// ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at most 63 characters.
fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let end = |b: &u8| b.is_ascii_alphanumeric();
    name.len() <= 63
        && bytes.first().is_some_and(end)
        && bytes.last().is_some_and(end)
        && bytes
            .iter()
            .all(|b| end(b) || matches!(b, b'-' | b'_' | b'.'))
}

fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

/// A label or annotation key: an optional DNS subdomain prefix and '/', then a name.
pub(super) fn check_qualified_name(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if !is_dns_subdomain(prefix) {
                return Err("the prefix must be a DNS-1123 subdomain");
            }
            name
        }
        None => key,
    };
    if !is_label_name(name) {
        return Err(
            "the name must be at most 63 letters, digits, '-', '_' and '.', \
                    starting and ending with a letter or digit",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::admission::tests::*;

    #[test]
    fn fresh_uid_when_none_is_given() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n\
                    spec: {containers: [{name: app, image: busybox}]}\n";
        let first = admit_ok(text).pod.uid;
        let second = admit_ok(text).pod.uid;
        assert_ne!(first, second);
        for uid in [&first, &second] {
            let groups: Vec<usize> = uid.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{uid}");
            assert!(
                uid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()),
                "{uid}"
            );
            assert_eq!(&uid[14..15], "4", "{uid}");
            assert!("89ab".contains(&uid[19..20]), "{uid}");
        }
    }

    #[test]
    fn names() {
        for good in ["a", "web", "a-b", "0", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
            assert!(is_dns_subdomain(good), "{good}");
        }
        for bad in ["", "A", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        for good in ["a.b", "web-1.example.com", &"a".repeat(64)] {
            assert!(is_dns_subdomain(good), "{good}");
        }
        for bad in ["a..b", ".a", "a.", "a.-b", "a_b.c", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
        for good in ["app", "app.kubernetes.io/name", "A_b.c-D", "example.com/X"] {
            assert!(check_qualified_name(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "Ex.com/a", "a/b/c", "_a", "a b"] {
            assert!(check_qualified_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (
                "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, image: i}]}\n".into(),
                "web.yaml: metadata.name: required",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: Web}\n".into(),
                "web.yaml: metadata.name: invalid name \"Web\"",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web.}\n".into(),
                "web.yaml: metadata.name: invalid name",
            ),
            (
                format!(
                    "apiVersion: v1\nkind: Pod\nmetadata: {{name: {}}}\n",
                    "a".repeat(254)
                ),
                "web.yaml: metadata.name: invalid name",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a.b}\n".into(),
                "web.yaml: metadata.namespace: invalid name \"a.b\"",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web, uid: ../../etc}\n".into(),
                "web.yaml: metadata.uid: invalid uid",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {\"a b\": x}}\n".into(),
                "web.yaml: metadata.labels: invalid key \"a b\"",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {a: \"-x\"}}\n".into(),
                "web.yaml: metadata.labels[a]: invalid value",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web, annotations: {\"Bad_/x\": y}}\n"
                    .into(),
                "web.yaml: metadata.annotations: invalid key",
            ),
        ];
        assert_refusals(&cases);
    }
}
