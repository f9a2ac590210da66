//! Reading an OCI image layout: a folder, or a tar of one (optionally gzipped).
//!
//! A tar is indexed once (member name -> offset, size) and blobs are then read in
//! place; a gzipped tar is first decompressed to a scratch file, since blobs are
//! needed in whatever order the manifests name them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::digest::{self, Digest, Digester};
use super::error::{ImageError, Result};
use crate::error::Context;

/// Index, manifests and configs are small; anything bigger is not one of them.
const MAX_DOCUMENT: u64 = 16 << 20;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

pub(crate) struct Layout {
    origin: PathBuf,
    source: Source,
    /// A decompressed copy of the archive, deleted with the layout.
    scratch: Option<PathBuf>,
}

enum Source {
    Dir(PathBuf),
    Tar {
        file: PathBuf,
        members: HashMap<String, Member>,
    },
}

#[derive(Clone, Copy)]
struct Member {
    offset: u64,
    size: u64,
}

impl Layout {
    /// Opens `origin`; `scratch` is where a gzipped archive is decompressed to.
    pub(crate) fn open(origin: &Path, scratch: &Path) -> Result<Layout> {
        let meta = fs::metadata(origin).context(|| format!("{}", origin.display()))?;
        let mut layout = Layout {
            origin: origin.to_path_buf(),
            source: Source::Dir(origin.to_path_buf()),
            scratch: None,
        };
        if meta.is_dir() {
            if !origin.join("index.json").is_file() {
                return Err(layout.invalid("no index.json"));
            }
            return Ok(layout);
        }
        let mut file = File::open(origin).context(|| format!("opening {}", origin.display()))?;
        let mut magic = [0u8; 2];
        let gzipped = file.read_exact(&mut magic).is_ok() && magic == GZIP_MAGIC;
        let tar_path = if gzipped {
            file.seek(SeekFrom::Start(0))
                .context(|| format!("reading {}", origin.display()))?;
            layout.scratch = Some(scratch.to_path_buf());
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(scratch)
                .context(|| format!("creating {}", scratch.display()))?;
            let mut gz = MultiGzDecoder::new(BufReader::new(file));
            io::copy(&mut gz, &mut out)
                .context(|| format!("decompressing {}", origin.display()))?;
            scratch.to_path_buf()
        } else {
            origin.to_path_buf()
        };
        let members =
            index_tar(&tar_path).context(|| format!("reading the tar {}", origin.display()))?;
        if !members.contains_key("index.json") {
            let reason = if members.contains_key("manifest.json") {
                "no index.json (a `docker save` archive without an OCI layout is not supported)"
            } else {
                "no index.json"
            };
            return Err(layout.invalid(reason));
        }
        layout.source = Source::Tar {
            file: tar_path,
            members,
        };
        Ok(layout)
    }

    pub(crate) fn origin(&self) -> &Path {
        &self.origin
    }

    /// The archive's name without its extensions: `busybox` for `busybox.tar.gz`.
    pub(crate) fn stem(&self) -> String {
        // `.` or `dir/..` have no file name of their own: use the real folder's.
        let real = self
            .origin
            .canonicalize()
            .unwrap_or_else(|_| self.origin.clone());
        let name = self
            .origin
            .file_name()
            .or(real.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut stem = name.as_str();
        for ext in [".gz", ".tgz", ".tar", ".oci"] {
            if let Some(s) = stem.strip_suffix(ext) {
                stem = s;
            }
        }
        stem.to_lowercase()
    }

    fn invalid(&self, reason: &str) -> ImageError {
        ImageError::InvalidLayout {
            path: self.origin.clone(),
            reason: reason.to_string(),
        }
    }

    /// The bytes of `index.json` (it has no descriptor, so nothing to verify).
    pub(crate) fn index(&self) -> Result<Vec<u8>> {
        let (reader, size) = self
            .open_member("index.json")?
            .ok_or_else(|| self.invalid("no index.json"))?;
        if size > MAX_DOCUMENT {
            return Err(self.invalid("index.json is too large"));
        }
        let mut bytes = Vec::new();
        reader
            .take(MAX_DOCUMENT)
            .read_to_end(&mut bytes)
            .context(|| format!("{}: reading index.json", self.origin.display()))?;
        Ok(bytes)
    }

    /// A reader over the blob `digest`, whose size was checked against `size`.
    pub(crate) fn blob(&self, digest: &Digest, size: u64) -> Result<Box<dyn Read>> {
        let name = format!("blobs/sha256/{}", digest.hex());
        let (reader, actual) = self
            .open_member(&name)?
            .ok_or_else(|| ImageError::MissingBlob {
                archive: self.origin.clone(),
                digest: digest.to_string(),
            })?;
        if actual != size {
            return Err(ImageError::SizeMismatch {
                digest: digest.to_string(),
                expected: size,
                actual,
            });
        }
        Ok(reader)
    }

    /// A whole small blob (index, manifest, config), verified against its descriptor.
    pub(crate) fn read_document(&self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        if size > MAX_DOCUMENT {
            return Err(ImageError::InvalidDocument {
                what: "blob",
                digest: digest.to_string(),
                reason: format!("{size} bytes is too large for a manifest or config"),
            });
        }
        let mut reader = Digester::new(self.blob(digest, size)?.take(size + 1));
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .read_to_end(&mut bytes)
            .context(|| format!("{}: reading blob {digest}", self.origin.display()))?;
        let (_, actual, count) = reader.finish();
        digest::verify(digest, size, &actual, count)?;
        Ok(bytes)
    }

    fn open_member(&self, name: &str) -> Result<Option<(Box<dyn Read>, u64)>> {
        match &self.source {
            Source::Dir(dir) => {
                let path = dir.join(name);
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => Err(e).context(|| format!("opening {}", path.display()))?,
                };
                let meta = file.metadata().context(|| format!("{}", path.display()))?;
                if !meta.is_file() {
                    return Ok(None);
                }
                Ok(Some((Box::new(file), meta.len())))
            }
            Source::Tar { file, members } => {
                let Some(member) = members.get(name) else {
                    return Ok(None);
                };
                let mut f = File::open(file).context(|| format!("opening {}", file.display()))?;
                f.seek(SeekFrom::Start(member.offset))
                    .context(|| format!("{}: seeking to {name}", self.origin.display()))?;
                Ok(Some((
                    Box::new(BufReader::new(f).take(member.size)),
                    member.size,
                )))
            }
        }
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        if let Some(scratch) = &self.scratch {
            let _ = fs::remove_file(scratch);
        }
    }
}

/// Where each regular file of the tar lies. Hard links point at their target's data.
fn index_tar(path: &Path) -> io::Result<HashMap<String, Member>> {
    let file = File::open(path)?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut members = HashMap::new();
    let mut links = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let name = member_name(&entry.path_bytes());
        let kind = entry.header().entry_type();
        if kind.is_file() || kind == tar::EntryType::Continuous {
            let member = Member {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            members.insert(name, member);
        } else if kind.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                links.push((name, member_name(&target)));
            }
        }
    }
    for (name, target) in links {
        if let Some(member) = members.get(&target).copied() {
            members.insert(name, member);
        }
    }
    Ok(members)
}

/// `./blobs//sha256/x` -> `blobs/sha256/x`.
fn member_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalized() {
        assert_eq!(member_name(b"./blobs//sha256/abc"), "blobs/sha256/abc");
        assert_eq!(member_name(b"index.json"), "index.json");
        assert_eq!(member_name(b"/oci-layout"), "oci-layout");
    }
}
