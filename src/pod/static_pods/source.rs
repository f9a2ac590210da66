//! The manifest folder as a source of pods, the kubelet's way: which files
//! count, and how a file becomes the pod `<name>-<node>` whose uid is a hash of
//! the pod, the node and the file.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as k8s;
use sha2::{Digest, Sha256};

use super::error::{Result, StaticError};
use crate::error::Context;
use crate::pod::admission::{self, Admitted};

/// "file": the pod comes from a manifest folder.
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// The pod's uid, which is the hash of what the file declares.
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// When the daemon admitted the file (RFC 3339).
pub const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";
/// The manifest file the pod was made from.
pub const FILE_ANNOTATION: &str = "peapod.io/static-file";

/// Larger files are refused unread: a pod manifest is a few KiB.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Whether a file name is a manifest: `.yaml`, `.yml` or `.json`, not hidden.
/// Editors' temporaries (`.x.swp`, `x.yaml~`, `.#x.yaml`, `#x.yaml#`, `4913`)
/// fall out of that rule.
pub fn is_manifest_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

/// The manifests in `dir`, sorted: regular files (symbolic links followed)
/// with a manifest name.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(is_manifest_name))
        .map(|e| e.path())
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads a manifest, refusing one too large to be a pod.
pub fn read_manifest(path: &Path) -> Result<String> {
    let file = |reason: String| StaticError::File {
        path: path.to_path_buf(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| file(format!("cannot read: {e}")))?
        .len();
    if size > MAX_MANIFEST_BYTES {
        return Err(file(format!(
            "{size} bytes: larger than the {MAX_MANIFEST_BYTES} bytes a manifest may have"
        )));
    }
    std::fs::read_to_string(path).map_err(|e| file(format!("cannot read: {e}")))
}

/// Admits `text`, read from `path`, as a static pod of `node`: named
/// `<name>-<node>`, its uid a hash of the decoded pod (so comments and layout
/// do not count), the node and the file, and annotated with its source.
pub fn admit(text: &str, path: &Path, node: &str) -> Result<Admitted> {
    let file = path.display().to_string();
    admission::parse_adjusted(text, &file, node, |pod, warnings| {
        let hash = config_hash(pod, node, path);
        let meta = &mut pod.metadata;
        if meta.uid.as_deref().is_some_and(|uid| !uid.is_empty()) {
            warnings.push(format!(
                "{file}: metadata.uid: ignored (a static pod's uid is a hash of its manifest)"
            ));
        }
        meta.uid = Some(hash.clone());
        if let Some(name) = meta.name.as_mut().filter(|name| !name.is_empty()) {
            *name = format!("{name}-{node}");
        }
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
        annotations.insert(HASH_ANNOTATION.into(), hash);
        annotations.insert(FILE_ANNOTATION.into(), file.clone());
        annotations.insert(
            SEEN_ANNOTATION.into(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
    })
    .map_err(StaticError::from)
}

/// 128 bits of SHA-256 over the pod as decoded, the node and the file, in hex.
fn config_hash(pod: &k8s::Pod, node: &str, path: &Path) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(pod).unwrap_or_default());
    hasher.update(format!("\0host:{node}\0file:{}", path.display()));
    hex::encode(&hasher.finalize()[..16])
}

/// The node's name by default: the host name, lower-cased.
pub fn host_node_name() -> Result<String> {
    let name = nix::unistd::gethostname().context(|| "gethostname".into())?;
    check_node_name(&name.to_string_lossy().to_ascii_lowercase())
}

/// A node name becomes part of pod names: a DNS-1123 subdomain.
pub fn check_node_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if ok {
        Ok(name.to_string())
    } else {
        Err(StaticError::NodeName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    env: [{name: ME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]\n";

    #[test]
    fn manifest_names() {
        for name in ["web.yaml", "web.yml", "web.json", "Web.YAML", "a.b.yaml"] {
            assert!(is_manifest_name(name), "{name}");
        }
        for name in [
            ".web.yaml",
            ".web.yaml.swp",
            "web.yaml~",
            ".#web.yaml",
            "#web.yaml#",
            "4913",
            "web.yaml.bak",
            "web.txt",
            ".yaml",
            "web.yaml.tmp",
        ] {
            assert!(!is_manifest_name(name), "{name}");
        }
    }

    #[test]
    fn static_pods_are_named_for_the_node_and_hashed() {
        let path = Path::new("/m/web.yaml");
        let pod = admit(WEB, path, "node1").unwrap().pod;
        assert_eq!(pod.name, "web-node1");
        assert_eq!(pod.uid.len(), 32);
        assert_eq!(pod.annotations[HASH_ANNOTATION], pod.uid);
        assert_eq!(pod.annotations[SOURCE_ANNOTATION], "file");
        assert_eq!(pod.annotations[FILE_ANNOTATION], "/m/web.yaml");
        // fieldRefs see the final name.
        assert_eq!(pod.containers[0].env[0].value, "web-node1");
        // Same content, node and file: same uid; comments do not count.
        let again = admit(&format!("# a comment\n{WEB}"), path, "node1").unwrap();
        assert_eq!(again.pod.uid, pod.uid);
        // Another node, another file, other content: another uid.
        let others = [
            admit(WEB, path, "node2").unwrap().pod.uid,
            admit(WEB, Path::new("/m/web2.yaml"), "node1")
                .unwrap()
                .pod
                .uid,
            admit(&WEB.replace("busybox", "busybox:latest"), path, "node1")
                .unwrap()
                .pod
                .uid,
        ];
        assert!(others.iter().all(|uid| *uid != pod.uid), "{others:?}");
    }

    #[test]
    fn a_given_uid_is_replaced_with_a_warning() {
        let text = WEB.replace("{name: web}", "{name: web, uid: fixed}");
        let admitted = admit(&text, Path::new("/m/web.yaml"), "n").unwrap();
        assert_ne!(admitted.pod.uid, "fixed");
        assert!(
            admitted.warnings.iter().any(|w| w.contains("metadata.uid")),
            "{:?}",
            admitted.warnings
        );
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let err = admit(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c}]}\n",
            Path::new("/m/web.yaml"),
            "n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("/m/web.yaml: spec.containers[0].image"),
            "{err}"
        );
        let err = admit("", Path::new("/m/empty.yaml"), "n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/m/empty.yaml: "), "{err}");
    }

    #[test]
    fn node_names() {
        assert!(check_node_name("node-1.example").is_ok());
        for bad in ["", "Node", "-a", "a-", "a..b", "a_b"] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }
}
