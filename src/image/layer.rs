//! Unpacking one layer blob into a folder that overlayfs can stack as a lowerdir.
//!
//! The blob's digest and size are checked while it is read, and its diff_id (the
//! digest of the uncompressed tar) is computed on the way. Entries keep their mode,
//! numeric owner, mtime and xattrs; symbolic and hard links, device nodes and fifos
//! are recreated. OCI whiteouts become what overlayfs reads: `.wh.<name>` a character
//! device 0:0 named `<name>`, `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on
//! its folder. No entry may leave the folder: absolute paths, `..` and writes
//! through a symbolic link are refused.

use std::ffi::{CString, OsStr};
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use nix::sys::stat::{self, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::digest::{self, Digest, Digester};
use super::error::{ImageError, Result};
use super::manifest::Compression;
use crate::error::Context;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks the layer blob `blob` (promised to be `digest`, `size` bytes) into the
/// existing empty folder `dest` and returns its diff_id. On error `dest` holds a
/// partial tree: the caller removes it.
pub(crate) fn unpack<R: Read>(
    blob: R,
    digest: &Digest,
    size: u64,
    compression: Compression,
    dest: &Path,
) -> Result<Digest> {
    let layer = digest.to_string();
    let mut buffered = BufReader::with_capacity(64 << 10, Digester::new(blob));
    let magic = {
        let buf = buffered
            .fill_buf()
            .context(|| format!("layer {layer}: reading"))?;
        buf[..buf.len().min(4)].to_vec()
    };
    let decoded = if compression == Compression::Zstd || magic.starts_with(&ZSTD_MAGIC) {
        let decoder = zstd::stream::read::Decoder::with_buffer(buffered)
            .context(|| format!("layer {layer}: starting zstd"))?;
        Decoded::Zstd(decoder)
    } else if magic.starts_with(&GZIP_MAGIC) {
        Decoded::Gzip(MultiGzDecoder::new(buffered))
    } else {
        Decoded::Plain(buffered)
    };

    let mut archive = tar::Archive::new(Digester::new(decoded));
    let applied = apply(&mut archive, dest, &layer);
    let mut plain = archive.into_inner();
    // Whatever follows the tar's end marker (padding) is part of the diff_id too.
    let applied = applied.and_then(|()| {
        io::copy(&mut plain, &mut io::sink())
            .context(|| format!("layer {layer}: decompressing"))?;
        Ok(())
    });
    let (decoded, diff_id, _) = plain.finish();
    let mut compressed = decoded.into_inner().into_inner();
    // Read to the end even after an error: a digest mismatch explains a corrupt stream best.
    match io::copy(&mut compressed, &mut io::sink()) {
        Ok(_) => {
            let (_, actual, count) = compressed.finish();
            digest::verify(digest, size, &actual, count)?;
        }
        Err(e) => {
            applied?;
            return Err(e)
                .context(|| format!("layer {layer}: reading"))
                .map_err(ImageError::from);
        }
    }
    applied?;
    Ok(diff_id)
}

/// Unpacks the uncompressed layer tar `tar` into the existing folder `dest`, as an
/// import does with each layer once its blob is verified; `layer` names it in errors.
pub fn unpack_tar<R: Read>(tar: R, dest: &Path, layer: &str) -> Result<()> {
    apply(&mut tar::Archive::new(tar), dest, layer)
}

/// Unpacks a layer blob into the new folder `dir` (mode 0755, whatever the
/// umask) and checks its diff_id against the config's.
pub(crate) fn unpack_new<R: Read>(
    blob: R,
    digest: &Digest,
    size: u64,
    compression: Compression,
    dir: &Path,
    diff_id: &Digest,
) -> Result<()> {
    DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, Permissions::from_mode(0o755))
        .context(|| format!("creating {}", dir.display()))?;
    let actual = unpack(blob, digest, size, compression, dir)?;
    if actual != *diff_id {
        return Err(ImageError::DiffIdMismatch {
            layer: digest.to_string(),
            diff_id: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// The blob, decompressed or not; `into_inner` gives the buffered blob back.
enum Decoded<R: BufRead> {
    Plain(R),
    Gzip(MultiGzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Decoded<R> {
    fn into_inner(self) -> R {
        match self {
            Decoded::Plain(r) => r,
            Decoded::Gzip(d) => d.into_inner(),
            Decoded::Zstd(d) => d.finish(),
        }
    }
}

impl<R: BufRead> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(d) => d.read(buf),
            Decoded::Zstd(d) => d.read(buf),
        }
    }
}

/// Writes every entry of `archive` under `root`.
pub(crate) fn apply<R: Read>(
    archive: &mut tar::Archive<R>,
    root: &Path,
    layer: &str,
) -> Result<()> {
    let mut unpacker = Unpacker {
        root,
        layer,
        dir_times: Vec::new(),
    };
    let reading = || format!("layer {layer}: reading the tar");
    for entry in archive.entries().context(reading)? {
        let mut entry = entry.context(reading)?;
        unpacker.entry(&mut entry)?;
    }
    // Last, as creating entries inside a folder changes its mtime.
    for (path, time) in unpacker.dir_times.iter().rev() {
        // A later entry may have replaced a parent with a symbolic link: the
        // utimensat below would follow it out of the layer.
        if !unpacker.is_real_dir(path) {
            continue;
        }
        match set_times(path, time) {
            Err(ImageError::Sys(e)) if e.source == nix::Error::ENOENT => {}
            other => other?,
        }
    }
    Ok(())
}

struct Unpacker<'a> {
    root: &'a Path,
    layer: &'a str,
    dir_times: Vec<(PathBuf, TimeSpec)>,
}

/// What an entry says about the file beyond its content.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn refuse(&self, path: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.layer.to_string(),
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    fn io(&self, path: &str) -> impl FnOnce() -> String {
        let what = format!("layer {}: writing {path}", self.layer);
        move || what
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = components(&raw).map_err(|reason| self.refuse(&shown, reason))?;
        let meta = self.meta(entry, &shown)?;
        let Some((name, parents)) = comps.split_last() else {
            // The layer's own root: only its metadata can be set.
            if kind.is_dir() {
                self.set_metadata(self.root, &meta, &shown)?;
                self.dir_times.push((self.root.to_path_buf(), meta.mtime));
            }
            return Ok(());
        };
        let parent = self.parents(parents, &shown)?;
        let name = name.as_bytes();
        if name == OPAQUE_MARKER {
            set_xattr(&parent, OPAQUE_XATTR.as_bytes(), b"y").context(self.io(&shown))?;
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            // aufs bookkeeping (e.g. .wh..wh.plnk): nothing for overlayfs.
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(self.refuse(&shown, "whiteout of an invalid name"));
            }
            return self.whiteout(&parent.join(OsStr::from_bytes(hidden)), &shown);
        }
        let path = parent.join(OsStr::from_bytes(name));
        match kind {
            EntryType::Directory => self.directory(&path, &meta, &shown),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(entry, &path, &meta, &shown)
            }
            EntryType::Link => self.hard_link(entry, &path, &shown),
            EntryType::Symlink => self.symlink(entry, &path, &meta, &shown),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.node(entry, &path, &meta, &shown)
            }
            other => Err(self.refuse(
                &shown,
                format!("unsupported entry type {:?}", other.as_byte() as char),
            )),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<R>, shown: &str) -> Result<Meta> {
        let header = entry.header();
        let bad = |e: io::Error| self.refuse(shown, format!("invalid header: {e}"));
        let mode = header.mode().map_err(bad)? & 0o7777;
        let id =
            |v: u64| u32::try_from(v).map_err(|_| self.refuse(shown, "uid or gid out of range"));
        let uid = id(header.uid().map_err(bad)?)?;
        let gid = id(header.gid().map_err(bad)?)?;
        let mut mtime = TimeSpec::new(header.mtime().map_err(bad)? as i64, 0);
        let mut xattrs = Vec::new();
        if let Some(extensions) = entry.pax_extensions().map_err(bad)? {
            for ext in extensions {
                let ext = ext.map_err(bad)?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        mtime = t;
                    }
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    /// The folder an entry goes in, with missing parents created; each existing
    /// component must be a real folder, never a symbolic link.
    fn parents(&self, comps: &[&OsStr], shown: &str) -> Result<PathBuf> {
        let mut path = self.root.to_path_buf();
        for comp in comps {
            path.push(comp);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refuse(
                        shown,
                        "a parent is a symbolic link: refusing to write through it",
                    ));
                }
                Ok(_) => return Err(self.refuse(shown, "a parent is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path).context(self.io(shown))?;
                    fs::set_permissions(&path, Permissions::from_mode(0o755))
                        .context(self.io(shown))?;
                }
                Err(e) => Err(e).context(self.io(shown))?,
            }
        }
        Ok(path)
    }

    /// Whether `path` (the root or below it) is a folder reached through folders
    /// only, no symbolic link on the way.
    fn is_real_dir(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(self.root) else {
            return false;
        };
        let mut at = self.root.to_path_buf();
        rel.components().all(|comp| {
            at.push(comp);
            fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir())
        })
    }

    /// An existing entry of this layer named by an archive path, through no symbolic link.
    fn existing(&self, raw: &[u8], shown: &str) -> Result<PathBuf> {
        let comps = components(raw)
            .map_err(|reason| self.refuse(shown, format!("link target: {reason}")))?;
        let mut path = self.root.to_path_buf();
        for (i, comp) in comps.iter().enumerate() {
            path.push(comp);
            let last = i + 1 == comps.len();
            match fs::symlink_metadata(&path) {
                Ok(m) if last && !m.is_dir() => return Ok(path),
                Ok(m) if !last && m.is_dir() => {}
                Ok(_) | Err(_) => break,
            }
        }
        Err(self.refuse(shown, "hard link target is not a file of this layer"))
    }

    fn directory(&mut self, path: &Path, meta: &Meta, shown: &str) -> Result<()> {
        let mut replaces_whiteout = false;
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => {
                replaces_whiteout = is_whiteout(&m);
                clear(path).context(self.io(shown))?;
                fs::create_dir(path).context(self.io(shown))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(path).context(self.io(shown))?;
            }
            Err(e) => Err(e).context(self.io(shown))?,
        }
        self.set_metadata(path, meta, shown)?;
        if replaces_whiteout {
            // Deleted, then created again in this layer: nothing below may show through.
            set_xattr(path, OPAQUE_XATTR.as_bytes(), b"y").context(self.io(shown))?;
        }
        self.dir_times.push((path.to_path_buf(), meta.mtime));
        Ok(())
    }

    fn file<R: Read>(
        &self,
        entry: &mut tar::Entry<R>,
        path: &Path,
        meta: &Meta,
        shown: &str,
    ) -> Result<()> {
        clear(path).context(self.io(shown))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .context(self.io(shown))?;
        io::copy(entry, &mut file).context(self.io(shown))?;
        std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid)).context(self.io(shown))?;
        // After chown, which clears set-id bits.
        file.set_permissions(Permissions::from_mode(meta.mode))
            .context(self.io(shown))?;
        self.set_xattrs(path, meta, shown)?;
        stat::futimens(file.as_raw_fd(), &meta.mtime, &meta.mtime).context(self.io(shown))?;
        Ok(())
    }

    fn hard_link<R: Read>(&self, entry: &tar::Entry<R>, path: &Path, shown: &str) -> Result<()> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| self.refuse(shown, "hard link without a target"))?
            .into_owned();
        let target = self.existing(&target, shown)?;
        if target == path {
            return Ok(());
        }
        clear(path).context(self.io(shown))?;
        fs::hard_link(&target, path).context(self.io(shown))?;
        Ok(())
    }

    fn symlink<R: Read>(
        &self,
        entry: &tar::Entry<R>,
        path: &Path,
        meta: &Meta,
        shown: &str,
    ) -> Result<()> {
        let target = entry
            .link_name_bytes()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.refuse(shown, "symbolic link without a target"))?
            .into_owned();
        clear(path).context(self.io(shown))?;
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), path).context(self.io(shown))?;
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)).context(self.io(shown))?;
        self.set_xattrs(path, meta, shown)?;
        set_times(path, &meta.mtime)
    }

    fn node<R: Read>(
        &self,
        entry: &tar::Entry<R>,
        path: &Path,
        meta: &Meta,
        shown: &str,
    ) -> Result<()> {
        let header = entry.header();
        let kind = match header.entry_type() {
            EntryType::Char => SFlag::S_IFCHR,
            EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let bad = |e: io::Error| self.refuse(shown, format!("invalid device number: {e}"));
        let dev = if kind == SFlag::S_IFIFO {
            0
        } else {
            let major = header.device_major().map_err(bad)?.unwrap_or(0);
            let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
            stat::makedev(major.into(), minor.into())
        };
        clear(path).context(self.io(shown))?;
        stat::mknod(path, kind, Mode::from_bits_truncate(0o600), dev).context(self.io(shown))?;
        self.set_metadata(path, meta, shown)?;
        set_times(path, &meta.mtime)
    }

    /// `.wh.<name>`: hides `<name>` of the layers below. Whiteouts apply to lower
    /// layers only: what this layer itself has at that path stays.
    fn whiteout(&self, path: &Path, shown: &str) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                set_xattr(path, OPAQUE_XATTR.as_bytes(), b"y").context(self.io(shown))?
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                stat::mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).context(self.io(shown))?
            }
            Err(e) => Err(e).context(self.io(shown))?,
        }
        Ok(())
    }

    /// Owner, then mode (chown clears set-id bits), then xattrs (chown clears
    /// security.capability). Not for symbolic links.
    fn set_metadata(&self, path: &Path, meta: &Meta, shown: &str) -> Result<()> {
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)).context(self.io(shown))?;
        fs::set_permissions(path, Permissions::from_mode(meta.mode)).context(self.io(shown))?;
        self.set_xattrs(path, meta, shown)
    }

    fn set_xattrs(&self, path: &Path, meta: &Meta, shown: &str) -> Result<()> {
        for (name, value) in &meta.xattrs {
            // Only whiteouts may steer overlayfs: a layer's own overlay xattrs could
            // redirect lookups outside of it.
            if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                continue;
            }
            match set_xattr(path, name, value) {
                Ok(()) => {}
                // "Where possible": the store's filesystem or our privileges may not allow it.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOTSUP | libc::EPERM | libc::EACCES | libc::EINVAL)
                    ) => {}
                Err(e) => Err(e).context(self.io(shown))?,
            }
        }
        Ok(())
    }
}

/// The components of an archive path; `.` and empty ones are dropped.
fn components(raw: &[u8]) -> std::result::Result<Vec<&OsStr>, &'static str> {
    if raw.is_empty() {
        return Err("empty path");
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.contains(&0) {
        return Err("NUL byte in path");
    }
    let mut comps = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("\"..\" in path"),
            _ => comps.push(OsStr::from_bytes(comp)),
        }
    }
    Ok(comps)
}

fn clear(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn set_times(path: &Path, time: &TimeSpec) -> Result<()> {
    stat::utimensat(None, path, time, time, UtimensatFlags::NoFollowSymlink)
        .context(|| format!("setting the mtime of {}", path.display()))?;
    Ok(())
}

/// PAX times are decimal seconds, maybe with a fraction: `1704067200.123`.
fn parse_pax_time(raw: &[u8]) -> Option<TimeSpec> {
    let text = std::str::from_utf8(raw).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if secs < 0 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(TimeSpec::new(secs, digits.parse().ok()?))
}

pub(crate) fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    let name = CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and live across the call; value is a valid slice.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::fixture::{self, LayerTar};

    fn apply_bytes(tar: &[u8], root: &Path) -> Result<()> {
        unpack_tar(tar, root, "sha256:test")
    }

    #[test]
    fn path_traversal_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "dot-dot",
                LayerTar::new()
                    .raw(b"../evil", EntryType::Regular, b"", b"x")
                    .build(),
            ),
            (
                "nested dot-dot",
                LayerTar::new()
                    .raw(b"a/../../evil", EntryType::Regular, b"", b"x")
                    .build(),
            ),
            (
                "absolute",
                LayerTar::new()
                    .raw(b"/evil", EntryType::Regular, b"", b"x")
                    .build(),
            ),
            (
                "whiteout of ..",
                LayerTar::new()
                    .raw(b"a/.wh...", EntryType::Regular, b"", b"")
                    .build(),
            ),
            (
                "write through a symlink",
                LayerTar::new()
                    .symlink("esc", &target)
                    .raw(b"esc/pwned", EntryType::Regular, b"", b"x")
                    .build(),
            ),
            (
                "folder through a symlink",
                LayerTar::new()
                    .symlink("esc", &target)
                    .dir("esc/sub", 0o755)
                    .build(),
            ),
            (
                "hard link out",
                LayerTar::new()
                    .raw(b"pw", EntryType::Link, b"../../../etc/passwd", b"")
                    .build(),
            ),
            (
                "hard link through a symlink",
                LayerTar::new()
                    .symlink("etc", "/etc")
                    .raw(b"pw", EntryType::Link, b"etc/passwd", b"")
                    .build(),
            ),
        ];
        for (what, tar) in cases {
            let root = tempfile::tempdir().unwrap();
            match apply_bytes(&tar, root.path()) {
                Err(ImageError::UnsafeEntry { layer, .. }) => {
                    assert_eq!(layer, "sha256:test", "{what}")
                }
                other => panic!("{what}: expected a refusal, got {other:?}"),
            }
            assert_eq!(
                fs::read_dir(outside.path()).unwrap().count(),
                0,
                "{what} wrote outside"
            );
        }
        assert!(!Path::new("/evil").exists());
    }

    #[test]
    fn blob_digest_and_diff_id_are_checked() {
        let tar = LayerTar::new().file("a", b"a", 0o644).build();
        let gz = fixture::gzip(&tar);
        let digest = Digest::of(&gz);
        let dest = tempfile::tempdir().unwrap();
        let diff_id = unpack(
            &gz[..],
            &digest,
            gz.len() as u64,
            Compression::TarOrGzip,
            dest.path(),
        )
        .unwrap();
        assert_eq!(diff_id, Digest::of(&tar));

        let wrong = Digest::of(b"something else");
        let dest = tempfile::tempdir().unwrap();
        match unpack(
            &gz[..],
            &wrong,
            gz.len() as u64,
            Compression::TarOrGzip,
            dest.path(),
        ) {
            Err(ImageError::DigestMismatch { digest, .. }) => assert_eq!(digest, wrong.to_string()),
            other => panic!("{other:?}"),
        }
        // A corrupt gzip stream is reported as the digest mismatch it is.
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let dest = tempfile::tempdir().unwrap();
        let err = unpack(
            &bad[..],
            &digest,
            gz.len() as u64,
            Compression::TarOrGzip,
            dest.path(),
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
    }

    #[test]
    fn zstd_layers_unpack_and_are_checked() {
        // Owned by whoever runs the test, so that it needs no root.
        let (uid, gid) = (
            u64::from(nix::unistd::getuid().as_raw()),
            u64::from(nix::unistd::getgid().as_raw()),
        );
        let tar = LayerTar::new()
            .file_as("z", b"zstd", 0o644, uid, gid)
            .build();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let digest = Digest::of(&zst);
        for compression in [Compression::Zstd, Compression::TarOrGzip] {
            let dest = tempfile::tempdir().unwrap();
            let diff_id = unpack(
                &zst[..],
                &digest,
                zst.len() as u64,
                compression,
                dest.path(),
            )
            .unwrap();
            assert_eq!(diff_id, Digest::of(&tar), "{compression:?}");
            assert_eq!(fs::read(dest.path().join("z")).unwrap(), b"zstd");
        }
        // A corrupt zstd stream is reported as the digest mismatch it is.
        let mut bad = zst.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let dest = tempfile::tempdir().unwrap();
        let err = unpack(
            &bad[..],
            &digest,
            zst.len() as u64,
            Compression::Zstd,
            dest.path(),
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
    }

    /// Found by fuzzing (fuzz/fuzz_targets/layer_tar.rs): a folder's mtime was
    /// set at the end through a parent that a later entry made a symbolic link.
    #[test]
    fn folder_times_are_not_set_through_a_later_symlink() {
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(outside.path().join("d")).unwrap();
        let old = TimeSpec::new(1_000_000_000, 0);
        set_times(&outside.path().join("d"), &old).unwrap();
        let tar = LayerTar::new()
            .dir("x", 0o755)
            .dir("x/d", 0o755)
            .symlink("x", outside.path().to_str().unwrap())
            .build();
        let root = tempfile::tempdir().unwrap();
        apply_bytes(&tar, root.path()).unwrap();
        let mtime = fs::metadata(outside.path().join("d")).unwrap().mtime();
        assert_eq!(
            mtime, 1_000_000_000,
            "the layer changed a folder outside it"
        );
        assert!(fs::symlink_metadata(root.path().join("x"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
