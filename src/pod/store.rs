//! The pods of this node: `<root>/pods/<uid>/` (see folder.rs), and an index
//! `<root>/pod-names/<namespace>/<name>` of symbolic links to them.
//!
//! The index makes finding a pod by name, and refusing a second pod of the same
//! name, one lookup instead of a read of every pod.json (start times must not
//! grow with the number of pods), and it makes that refusal atomic: two pods of
//! one name created at once cannot both make the link. Pods made before the
//! index existed are still found, by a scan.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::folder::{FolderError, PodFolder};
use super::model::Pod;
use crate::error::{Context, IoError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("pod {0:?} not found")]
    NotFound(String),
    #[error("{key:?} names more than one pod: {uids}; use NAMESPACE/NAME or the uid")]
    Ambiguous { key: String, uids: String },
    #[error("pod {namespace}/{name} already exists (uid {uid})")]
    Exists {
        namespace: String,
        name: String,
        uid: String,
    },
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Folder(#[from] FolderError),
}

/// All pods under `<root>`.
#[derive(Debug, Clone)]
pub struct PodStore {
    pods: PathBuf,
    names: PathBuf,
}

impl PodStore {
    pub fn new(root: &Path) -> Self {
        Self {
            pods: root.join("pods"),
            names: root.join("pod-names"),
        }
    }

    /// The folder of every pod.
    pub fn pods_dir(&self) -> &Path {
        &self.pods
    }

    pub fn folder(&self, uid: &str) -> PodFolder {
        PodFolder::new(self.pods.join(uid))
    }

    fn name_link(&self, namespace: &str, name: &str) -> PathBuf {
        self.names.join(namespace).join(name)
    }

    /// Every pod folder with a readable pod.json, with its model, by namespace
    /// and name.
    pub fn list(&self) -> Vec<(PodFolder, Pod)> {
        let Ok(entries) = fs::read_dir(&self.pods) else {
            return vec![];
        };
        let mut pods: Vec<(PodFolder, Pod)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let folder = PodFolder::new(e.path());
                let pod = folder.pod().ok()?;
                Some((folder, pod))
            })
            .collect();
        pods.sort_by(|a, b| (&a.1.namespace, &a.1.name).cmp(&(&b.1.namespace, &b.1.name)));
        pods
    }

    /// Finds a pod by uid, `namespace/name`, or a name unique across namespaces.
    pub fn find(&self, key: &str) -> Result<(PodFolder, Pod), StoreError> {
        let by_uid = self.folder(key);
        if !key.contains('/') && !key.is_empty() && key != "." && key != ".." {
            if let Ok(pod) = by_uid.pod() {
                return Ok((by_uid, pod));
            }
        }
        let (namespace, name) = match key.split_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, key),
        };
        if let Some(ns) = namespace {
            if let Some(found) = self.by_name(ns, name) {
                return Ok(found);
            }
        }
        let mut found: Vec<(PodFolder, Pod)> = match namespace {
            // A name alone: it may be in any namespace of the index.
            None => fs::read_dir(&self.names)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .filter_map(|e| self.by_name(&e.file_name().to_string_lossy(), name))
                .collect(),
            Some(_) => vec![],
        };
        if found.is_empty() {
            // Pods made before the index.
            found = self
                .list()
                .into_iter()
                .filter(|(_, p)| p.name == name && namespace.is_none_or(|ns| ns == p.namespace))
                .collect();
        }
        match found.len() {
            0 => Err(StoreError::NotFound(key.to_string())),
            1 => Ok(found.remove(0)),
            _ => Err(StoreError::Ambiguous {
                key: key.to_string(),
                uids: found
                    .iter()
                    .map(|(_, p)| format!("{}/{} ({})", p.namespace, p.name, p.uid))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The pod the index names `namespace/name`, if its folder is there.
    fn by_name(&self, namespace: &str, name: &str) -> Option<(PodFolder, Pod)> {
        let target = fs::read_link(self.name_link(namespace, name)).ok()?;
        let uid = target.file_name()?.to_str()?;
        let folder = self.folder(uid);
        let pod = folder.pod().ok()?;
        (pod.namespace == namespace && pod.name == name).then_some((folder, pod))
    }

    /// Makes the folder of a newly admitted pod (0700) and its name's entry,
    /// refusing a second pod with the same namespace and name.
    pub fn create(&self, pod: &Pod) -> Result<PodFolder, StoreError> {
        for dir in [&self.pods, &self.names] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .context(|| format!("create {}", dir.display()))?;
        }
        let exists = |uid: String| StoreError::Exists {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid,
        };
        // A pod made before the index, with this name.
        let legacy = |p: &Pod| p.name == pod.name && p.namespace == pod.namespace;
        if !self.names.join(&pod.namespace).exists() {
            if let Some((_, other)) = self.list().into_iter().find(|(_, p)| legacy(p)) {
                return Err(exists(other.uid));
            }
        }
        let link = self.name_link(&pod.namespace, &pod.name);
        let ns_dir = self.names.join(&pod.namespace);
        fs::create_dir_all(&ns_dir).context(|| format!("create {}", ns_dir.display()))?;
        let target = Path::new("../../pods").join(&pod.uid);
        if let Err(e) = std::os::unix::fs::symlink(&target, &link) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e).context(|| format!("create {}", link.display()))?;
            }
            match self.by_name(&pod.namespace, &pod.name) {
                Some((_, other)) => return Err(exists(other.uid)),
                // A stale entry (its pod's folder is gone): take it over.
                None => {
                    let _ = fs::remove_file(&link);
                    std::os::unix::fs::symlink(&target, &link)
                        .context(|| format!("create {}", link.display()))?;
                }
            }
        }
        let folder = self.folder(&pod.uid);
        let made = fs::DirBuilder::new()
            .mode(0o700)
            .create(folder.dir())
            .context(|| format!("create {}", folder.dir().display()))
            .and_then(|()| {
                fs::set_permissions(folder.dir(), fs::Permissions::from_mode(0o700))
                    .context(|| format!("chmod {}", folder.dir().display()))
            });
        if let Err(e) = made {
            let _ = fs::remove_file(&link);
            return Err(e.into());
        }
        Ok(folder)
    }

    /// Removes a pod's folder (nothing may be mounted under it any more) and
    /// its name's entry.
    pub fn remove(&self, folder: &PodFolder, pod: &Pod) -> Result<(), StoreError> {
        fs::remove_dir_all(folder.dir())
            .context(|| format!("remove {}", folder.dir().display()))?;
        let link = self.name_link(&pod.namespace, &pod.name);
        if fs::read_link(&link).is_ok_and(|t| t.file_name() == Some(pod.uid.as_ref())) {
            let _ = fs::remove_file(&link);
            let _ = fs::remove_dir(link.parent().unwrap_or(&self.names));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::folder::write_json_atomic;

    fn pod(namespace: &str, name: &str, uid: &str) -> Pod {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, uid: {uid}}}\nspec: {{containers: [{{name: c, image: busybox}}]}}\n"
        );
        crate::pod::admission::parse(&text, "t.yaml").unwrap().pod
    }

    fn add(store: &PodStore, p: &Pod) -> Result<PodFolder, StoreError> {
        let folder = store.create(p)?;
        write_json_atomic(&folder.pod_file(), p).unwrap();
        Ok(folder)
    }

    #[test]
    fn pods_are_found_by_uid_name_and_namespace_and_names_are_unique() {
        let tmp = tempfile::tempdir().unwrap();
        let store = PodStore::new(tmp.path());
        let a = pod("default", "web", "u-a");
        let b = pod("other", "web", "u-b");
        let c = pod("default", "db", "u-c");
        for p in [&a, &b, &c] {
            add(&store, p).unwrap();
        }
        assert_eq!(store.find("u-b").unwrap().1.uid, "u-b");
        assert_eq!(store.find("other/web").unwrap().1.uid, "u-b");
        assert_eq!(store.find("db").unwrap().1.uid, "u-c");
        let err = store.find("web").unwrap_err().to_string();
        assert!(err.contains("names more than one pod"), "{err}");
        assert!(matches!(store.find("nope"), Err(StoreError::NotFound(_))));
        let again = pod("default", "web", "u-d");
        let err = store.create(&again).unwrap_err().to_string();
        assert_eq!(err, "pod default/web already exists (uid u-a)");
        assert!(!store.folder("u-d").dir().exists());

        let (folder, p) = store.find("default/web").unwrap();
        store.remove(&folder, &p).unwrap();
        assert!(matches!(
            store.find("default/web"),
            Err(StoreError::NotFound(_))
        ));
        add(&store, &again).unwrap();
        assert_eq!(store.find("default/web").unwrap().1.uid, "u-d");
    }

    #[test]
    fn pods_made_before_the_index_are_found_and_kept_unique() {
        let tmp = tempfile::tempdir().unwrap();
        let store = PodStore::new(tmp.path());
        let old = pod("default", "legacy", "u-old");
        let folder = store.folder("u-old");
        fs::create_dir_all(folder.dir()).unwrap();
        write_json_atomic(&folder.pod_file(), &old).unwrap();
        assert_eq!(store.find("legacy").unwrap().1.uid, "u-old");
        assert_eq!(store.find("default/legacy").unwrap().1.uid, "u-old");
        let err = store
            .create(&pod("default", "legacy", "u-new"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("already exists (uid u-old)"), "{err}");
    }

    #[test]
    fn a_stale_name_entry_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let store = PodStore::new(tmp.path());
        let a = pod("default", "web", "u-a");
        let folder = add(&store, &a).unwrap();
        // The folder went without its entry (a crash between the two).
        fs::remove_dir_all(folder.dir()).unwrap();
        let b = pod("default", "web", "u-b");
        add(&store, &b).unwrap();
        assert_eq!(store.find("default/web").unwrap().1.uid, "u-b");
    }
}
