//! Pulls in progress: each has a scratch folder `<store>/pulls/<id>/`, held by
//! a flock on `<store>/pulls/<id>.lock` for the pull's life, and a use record
//! that keeps the layers it committed from garbage collection until its image
//! is in the index. A pull killed with SIGKILL releases its flock: the next pull
//! (or GC) sweeps its folder and record away.
//!
//! `<store>/pulls/locks/<hex>.lock` serialize the work on one manifest or one
//! layer between processes, so that each is fetched and unpacked once.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use crate::error::Context;
use crate::image::error::Result;
use crate::image::store::{lock_file, ImageStore};
use crate::image::uses::{self, UseRecord};

const PULLS_DIR: &str = "pulls";
const LOCKS_DIR: &str = "locks";
const LOCK_EXT: &str = "lock";
/// A lock file being made: renamed to `.lock` once flocked.
const NEW_LOCK_EXT: &str = "locking";

pub(crate) fn pulls_dir(store: &ImageStore) -> PathBuf {
    store.root().join(PULLS_DIR)
}

/// One pull's scratch folder; dropping it removes the folder and the record.
pub(crate) struct Scratch {
    dir: PathBuf,
    lock_path: PathBuf,
    root: PathBuf,
    record: Option<String>,
    _lock: Flock<File>,
}

impl Scratch {
    pub(crate) fn new(store: &ImageStore) -> Result<Scratch> {
        let pulls = pulls_dir(store);
        fs::create_dir_all(pulls.join(LOCKS_DIR))
            .context(|| format!("creating {}", pulls.display()))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!("{}-{nanos}", std::process::id());
        let making = pulls.join(format!("{id}.{NEW_LOCK_EXT}"));
        let lock_path = pulls.join(format!("{id}.{LOCK_EXT}"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&making)
            .context(|| format!("creating {}", making.display()))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| errno)
            .context(|| format!("locking {}", making.display()))?;
        // Appears under its swept name already locked: a sweep never takes a live pull.
        fs::rename(&making, &lock_path).context(|| format!("creating {}", lock_path.display()))?;
        let dir = pulls.join(&id);
        fs::create_dir(&dir).context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch {
            dir,
            lock_path,
            root: store.root().to_path_buf(),
            record: None,
            _lock: lock,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps `layers` (diff_ids) from garbage collection while this pull lives.
    pub(crate) fn protect(&mut self, image: &str, name: &str, layers: &[String]) -> Result<()> {
        let record = UseRecord {
            dir: self.dir.clone(),
            image: image.to_string(),
            name: name.to_string(),
            layers: layers.to_vec(),
        };
        self.record = Some(uses::write(&self.root, &record)?);
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(record) = &self.record {
            let _ = uses::remove(&self.root, record);
        }
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Removes what dead pulls left: folders whose lock nobody holds, and their records.
pub(crate) fn sweep(store: &ImageStore) -> Result<()> {
    let pulls = pulls_dir(store);
    let entries = match fs::read_dir(&pulls) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e).context(|| format!("reading {}", pulls.display()))?,
    };
    for entry in entries {
        let path = entry
            .context(|| format!("reading {}", pulls.display()))?
            .path();
        let ext = path.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some(LOCK_EXT | NEW_LOCK_EXT)) {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        // Held: a live pull. Free: its owner died.
        let Ok(_held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let dir = path.with_extension("");
        let _ = uses::remove(store.root(), &uses::key(&dir));
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).context(|| format!("removing {}", dir.display()))?
            }
            _ => {}
        }
        let _ = fs::remove_file(&path);
        tracing::debug!("swept the leftovers of a dead pull: {}", dir.display());
    }
    Ok(())
}

/// An exclusive lock on one manifest or layer (by digest hex) across processes.
pub(crate) struct KeyLock {
    path: PathBuf,
    lock: Option<Flock<File>>,
}

impl KeyLock {
    /// Waits until no other pull works on `hex`.
    pub(crate) fn acquire(store: &ImageStore, hex: &str) -> Result<KeyLock> {
        let dir = pulls_dir(store).join(LOCKS_DIR);
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{hex}.{LOCK_EXT}"));
        let lock = lock_file(&path)?;
        Ok(KeyLock {
            path,
            lock: Some(lock),
        })
    }

    /// Releases the lock once the work is committed, removing its file. A waiter
    /// that wakes on the removed file finds the work done, since it checks first.
    pub(crate) fn done(mut self) {
        let _ = fs::remove_file(&self.path);
        self.lock.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_pull_is_swept_a_live_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let mut live = Scratch::new(&store).unwrap();
        live.protect("", "x", &["sha256:aa".into()]).unwrap();
        // A dead pull: its folder and lock file, no one holding the lock.
        let dead = pulls_dir(&store).join("1-1");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("partial"), b"x").unwrap();
        fs::write(pulls_dir(&store).join("1-1.lock"), b"").unwrap();
        let record = UseRecord {
            dir: dead.clone(),
            image: String::new(),
            name: "dead".into(),
            layers: vec!["sha256:bb".into()],
        };
        uses::write(store.root(), &record).unwrap();

        sweep(&store).unwrap();
        assert!(!dead.exists() && !pulls_dir(&store).join("1-1.lock").exists());
        assert!(live.dir().is_dir(), "a live pull is kept");
        let in_use = uses::layers_in_use(store.root()).unwrap();
        assert!(in_use.contains("sha256:aa") && !in_use.contains("sha256:bb"));

        let dir = live.dir().to_path_buf();
        drop(live);
        assert!(!dir.exists());
        assert!(uses::layers_in_use(store.root()).unwrap().is_empty());
        assert_eq!(
            fs::read_dir(pulls_dir(&store)).unwrap().count(),
            1,
            "only locks/"
        );
    }

    #[test]
    fn key_locks_exclude_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let first = KeyLock::acquire(&store, "abc").unwrap();
        let path = pulls_dir(&store).join("locks/abc.lock");
        let other = File::open(&path).unwrap();
        assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_err());
        first.done();
        assert!(!path.exists());
        let again = KeyLock::acquire(&store, "abc").unwrap();
        drop(again);
    }
}
