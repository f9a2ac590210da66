//! When each image was last used: `<store>/lastused/<config digest hex>`, whose
//! mtime is the last time a rootfs was mounted from it (or it was pulled). Garbage
//! collection removes the least recently used images first, as the kubelet does.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::digest::Digest;
use super::error::Result;
use crate::error::Context;

const LASTUSED_DIR: &str = "lastused";

fn path(root: &Path, id: &str) -> Result<PathBuf> {
    Ok(root.join(LASTUSED_DIR).join(Digest::parse(id)?.hex()))
}

/// Records that image `id` is used now.
pub(crate) fn touch(root: &Path, id: &str) -> Result<()> {
    let path = path(root, id)?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::create(&path).context(|| format!("writing {}", path.display()))?;
    file.set_modified(SystemTime::now())
        .context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// When image `id` was last used, if it ever was.
pub(crate) fn get(root: &Path, id: &str) -> Option<SystemTime> {
    fs::metadata(path(root, id).ok()?).ok()?.modified().ok()
}

/// Drops the records of images no longer in the store.
pub(crate) fn forget_others(root: &Path, ids: &[&str]) -> Result<()> {
    let dir = root.join(LASTUSED_DIR);
    let keep: Vec<&str> = ids
        .iter()
        .map(|id| id.strip_prefix("sha256:").unwrap_or(id))
        .collect();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e).context(|| format!("reading {}", dir.display()))?,
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !keep.iter().any(|k| name.to_str() == Some(*k)) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_images_have_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert!(get(tmp.path(), &a).is_none());
        touch(tmp.path(), &a).unwrap();
        touch(tmp.path(), &b).unwrap();
        let t = get(tmp.path(), &a).unwrap();
        assert!(t.elapsed().unwrap().as_secs() < 60);
        forget_others(tmp.path(), &[&b]).unwrap();
        assert!(get(tmp.path(), &a).is_none() && get(tmp.path(), &b).is_some());
        assert!(touch(tmp.path(), "../../x").is_err());
    }
}
