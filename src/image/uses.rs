//! Use records: which layers each mounted rootfs stacks, so that removing an image
//! keeps the layers a running container still reads.
//!
//! One file per rootfs, `<store>/uses/<sha256 of the container folder>.json`. A
//! record whose folder no longer exists is stale (nothing can be mounted there) and
//! is dropped when read.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::Result;
use super::store::write_atomic;
use crate::error::Context;

pub(crate) const USES_DIR: &str = "uses";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UseRecord {
    /// The container folder holding the rootfs.
    pub dir: PathBuf,
    pub image: String,
    pub name: String,
    /// diff_ids of the stacked layers.
    pub layers: Vec<String>,
}

/// The record's file name for a container folder (an absolute, canonical path).
pub(crate) fn key(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    Digest::of(dir.as_os_str().as_bytes()).hex().to_string()
}

fn path(root: &Path, key: &str) -> PathBuf {
    root.join(USES_DIR).join(format!("{key}.json"))
}

pub(crate) fn write(root: &Path, record: &UseRecord) -> Result<String> {
    let key = key(&record.dir);
    let bytes = serde_json::to_vec_pretty(record)
        .context(|| format!("use record for {}", record.dir.display()))?;
    write_atomic(&path(root, &key), &bytes)?;
    Ok(key)
}

pub(crate) fn remove(root: &Path, key: &str) -> Result<()> {
    let path = path(root, key);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).context(|| format!("removing {}", path.display()))?
        }
        _ => {}
    }
    Ok(())
}

/// diff_ids of every layer a live record names.
pub(crate) fn layers_in_use(root: &Path) -> Result<HashSet<String>> {
    Ok(live_records(root)?
        .into_iter()
        .flat_map(|record| record.layers)
        .collect())
}

/// Ids of the images a live record names (a mounted rootfs, or a pull in progress).
pub(crate) fn images_in_use(root: &Path) -> Result<HashSet<String>> {
    Ok(live_records(root)?
        .into_iter()
        .map(|record| record.image)
        .collect())
}

/// Every record whose folder still exists; the others are dropped.
fn live_records(root: &Path) -> Result<Vec<UseRecord>> {
    let dir = root.join(USES_DIR);
    let mut records = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(records),
        Err(e) => Err(e).context(|| format!("reading {}", dir.display()))?,
    };
    for entry in entries {
        let entry = entry.context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => Err(e).context(|| format!("reading {}", path.display()))?,
        };
        let record: UseRecord = serde_json::from_slice(&bytes)
            .context(|| format!("{}: invalid JSON", path.display()))?;
        if !record.dir.exists() {
            let _ = fs::remove_file(&path);
            continue;
        }
        records.push(record);
    }
    Ok(records)
}
