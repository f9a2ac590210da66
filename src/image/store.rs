//! The store itself: its folders, the image index, the lock, lookups, removal and
//! garbage collection. Importing is in `import.rs`.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::digest::{is_sha256_hex, Digest};
use super::error::{ImageError, Result};
use super::reference::{self, Match};
use super::uses;
use super::Image;
use crate::error::Context;

const INDEX_FILE: &str = "images.json";
const BLOBS_DIR: &str = "blobs/sha256";
const LAYERS_DIR: &str = "layers";
const TMP_DIR: &str = "tmp";
const LOCK_FILE: &str = ".lock";

/// A local image store rooted at one folder (see the module documentation for its layout).
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

#[derive(Default, Serialize, Deserialize)]
struct IndexFile {
    images: Vec<Image>,
}

impl ImageStore {
    /// Opens the store at `root`, creating it (mode 0700) and its folders when missing.
    pub fn open(root: &Path) -> Result<Self> {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
        }
        match DirBuilder::new().mode(0o700).create(root) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                Err(e).context(|| format!("creating the image store {}", root.display()))?
            }
            _ => {}
        }
        let root = root
            .canonicalize()
            .context(|| format!("opening the image store {}", root.display()))?;
        for dir in [BLOBS_DIR, LAYERS_DIR, uses::USES_DIR, TMP_DIR] {
            let path = root.join(dir);
            DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&path)
                .context(|| format!("creating {}", path.display()))?;
        }
        Ok(ImageStore { root })
    }

    /// The store's folder, absolute.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every image, sorted by name.
    pub fn list(&self) -> Result<Vec<Image>> {
        self.load()
    }

    /// The image a reference means: a name (`busybox`, `localhost/busybox:latest`,
    /// `docker.io/library/busybox`, ...) or an id prefix (`sha256:ab12`, `ab12`).
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        let images = self.load()?;
        reference::find(&images, reference).map(|(image, _)| image.clone())
    }

    /// Removes one name; the layers and blobs no image uses any more are deleted,
    /// except layers a mounted rootfs stacks (they go when it is unmounted).
    pub fn remove(&self, reference: &str) -> Result<Image> {
        let _lock = self.lock()?;
        let mut images = self.load()?;
        let (image, how) = reference::find(&images, reference)?;
        let image = image.clone();
        if how == Match::Id {
            let names: Vec<String> = images
                .iter()
                .filter(|i| i.id == image.id)
                .map(|i| i.name.clone())
                .collect();
            if names.len() > 1 {
                // Removing by id would be a guess: say which names to remove instead.
                return Err(ImageError::Ambiguous {
                    reference: reference.to_string(),
                    candidates: names,
                });
            }
        }
        images.retain(|i| i.name != image.name);
        self.save(&images)?;
        self.collect_garbage(&images)?;
        Ok(image)
    }

    /// The unpacked layer folders of `image`, bottom first.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        image
            .layers
            .iter()
            .map(|layer| {
                let path = self.layer_dir(&Digest::parse(layer)?);
                if path.is_dir() {
                    Ok(path)
                } else {
                    Err(ImageError::LayerMissing {
                        image: image.name.clone(),
                        diff_id: layer.clone(),
                        path,
                    })
                }
            })
            .collect()
    }

    pub(crate) fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join(LAYERS_DIR).join(diff_id.hex())
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(BLOBS_DIR).join(digest.hex())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// A fresh name under `tmp/`.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        self.tmp_dir().join(unique_name(what))
    }

    /// Serializes import, removal, garbage collection and use records between processes.
    pub(crate) fn lock(&self) -> Result<Flock<File>> {
        lock_file(&self.root.join(LOCK_FILE))
    }

    pub(crate) fn load(&self) -> Result<Vec<Image>> {
        let path = self.root.join(INDEX_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => Err(e).context(|| format!("reading {}", path.display()))?,
        };
        let index: IndexFile = serde_json::from_slice(&bytes)
            .context(|| format!("{}: invalid JSON", path.display()))?;
        Ok(index.images)
    }

    /// Writes the index (sorted by name); the caller holds the lock.
    pub(crate) fn save(&self, images: &[Image]) -> Result<()> {
        let mut images = images.to_vec();
        images.sort_by(|a, b| a.name.cmp(&b.name));
        let path = self.root.join(INDEX_FILE);
        let bytes = serde_json::to_vec_pretty(&IndexFile { images })
            .context(|| format!("{}", path.display()))?;
        write_atomic(&path, &bytes)
    }

    /// Deletes the layers and blobs that neither `images` nor a use record need.
    /// The caller holds the lock.
    pub(crate) fn collect_garbage(&self, images: &[Image]) -> Result<()> {
        let hex = |d: &String| d.strip_prefix("sha256:").unwrap_or(d).to_string();
        let mut layers: HashSet<String> = images
            .iter()
            .flat_map(|i| i.layers.iter().map(hex))
            .collect();
        layers.extend(uses::layers_in_use(&self.root)?.iter().map(hex));
        let layers_dir = self.root.join(LAYERS_DIR);
        for name in hex_entries(&layers_dir)? {
            if !layers.contains(&name) {
                // Out of sight first, so a half-deleted layer is never found under its name.
                let doomed = self.tmp_path("removed-layer");
                let from = layers_dir.join(&name);
                fs::rename(&from, &doomed).context(|| format!("moving {} away", from.display()))?;
                fs::remove_dir_all(&doomed).context(|| format!("removing {}", doomed.display()))?;
            }
        }
        let blobs: HashSet<String> = images
            .iter()
            .flat_map(|i| [hex(&i.id), hex(&i.manifest_digest)])
            .collect();
        let blobs_dir = self.root.join(BLOBS_DIR);
        for name in hex_entries(&blobs_dir)? {
            if !blobs.contains(&name) {
                let path = blobs_dir.join(&name);
                fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Takes the lock and collects garbage against the current index.
    pub(crate) fn collect_garbage_locked(&self) -> Result<()> {
        let _lock = self.lock()?;
        let images = self.load()?;
        self.collect_garbage(&images)
    }

    /// Empties `tmp/`: leftovers of an import or removal that did not finish.
    /// The caller holds the lock.
    pub(crate) fn clear_tmp(&self) -> Result<()> {
        let tmp = self.tmp_dir();
        let entries = fs::read_dir(&tmp).context(|| format!("reading {}", tmp.display()))?;
        for entry in entries {
            let path = entry
                .context(|| format!("reading {}", tmp.display()))?
                .path();
            let removed = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                Ok(_) => fs::remove_file(&path),
                Err(e) => Err(e),
            };
            match removed {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(e).context(|| format!("removing {}", path.display()))?
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// An exclusive flock(2) on `path` (created if missing), waiting for it.
pub(crate) fn lock_file(path: &Path) -> Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .context(|| format!("opening {}", path.display()))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .context(|| format!("locking {}", path.display()))?;
    Ok(lock)
}

/// Names in `dir` that are sha256 hex digests (anything else is not ours to touch).
fn hex_entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).context(|| format!("reading {}", dir.display()))? {
        let entry = entry.context(|| format!("reading {}", dir.display()))?;
        if let Some(name) = entry.file_name().to_str().filter(|n| is_sha256_hex(n)) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn unique_name(what: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{what}-{}-{n}", std::process::id())
}

/// Replaces `path` with `bytes` all at once: a reader sees the old or the new file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(unique_name(&format!(".{name}.tmp")));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::*;
    use crate::image::fixture::{self, LayerTar};

    #[test]
    fn open_creates_a_private_root() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("var/lib/peapod/images");
        let store = ImageStore::open(&root).unwrap();
        assert_eq!(
            fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(store.root(), root.canonicalize().unwrap());
        assert!(store.list().unwrap().is_empty());
        let err = store.resolve("busybox").unwrap_err();
        assert_eq!(err.to_string(), "image \"busybox\" not found");
        assert!(ImageStore::open(&root).is_ok(), "opening twice is fine");
    }

    #[test]
    fn reads_an_index_written_before_the_stop_signal_was_parsed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        // As import wrote it: the config's StopSignal kept as the image's text.
        let record = |name: &str, hex: char, stop: &str| {
            let hex = hex.to_string().repeat(64);
            format!(
                r#"{{"name": "{name}", "id": "sha256:{hex}", "manifest_digest": "sha256:{hex}",
                "layers": [], "config": {{"entrypoint": [], "cmd": ["sh"], "env": [],
                "working_dir": null, "user": null, "stop_signal": {stop}}},
                "size": 10, "created": null}}"#
            )
        };
        let index = format!(
            r#"{{"images": [{}, {}]}}"#,
            record("localhost/a:latest", 'a', r#""QUIT""#),
            record("localhost/b:latest", 'b', "null")
        );
        fs::write(store.root().join(INDEX_FILE), index).unwrap();
        let images = store.list().unwrap();
        assert_eq!(images[0].config.stop_signal, Signal::SIGQUIT);
        assert_eq!(images[0].config.cmd, ["sh"]);
        assert_eq!(images[1].config.stop_signal, Signal::SIGTERM);
    }

    #[test]
    fn removing_by_id_needs_a_single_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let layer = LayerTar::new().file("f", b"f", 0o644).build();
        let archive = fixture::archive(tmp.path(), "x.tar", "x", &[layer]);
        let image = store.import(&archive, None).unwrap().remove(0);
        store
            .import(&archive, Some("docker.io/library/y:1"))
            .unwrap();
        assert_eq!(store.resolve("y:1").unwrap().name, "docker.io/library/y:1");
        assert_eq!(
            store.resolve("localhost/y:1").unwrap().name,
            "docker.io/library/y:1"
        );

        let id = image.id.trim_start_matches("sha256:")[..12].to_string();
        match store.remove(&id) {
            Err(ImageError::Ambiguous { candidates, .. }) => assert_eq!(candidates.len(), 2),
            other => panic!("{other:?}"),
        }
        store.remove("x").unwrap();
        assert_eq!(
            store.layer_dirs(&image).unwrap().len(),
            1,
            "still used by y:1"
        );
        assert_eq!(store.remove(&id).unwrap().name, "docker.io/library/y:1");
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(
            store.layer_dirs(&image),
            Err(ImageError::LayerMissing { .. })
        ));
    }
}
