//! The one reader of `/proc/<pid>/mountinfo` (proc(5)): fields are unescaped
//! (`\040` is a space), the optional fields are skipped up to the `-` separator.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The path inside the filesystem that is mounted here (field 4).
    pub root: PathBuf,
    /// Where it is mounted (field 5).
    pub mount_point: PathBuf,
    /// Per-mount options (field 6): `rw,nosuid,...`.
    pub options: String,
    /// Optional fields (`shared:1`, `master:2`, ...).
    pub propagation: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options: for cgroup v1, the controllers.
    pub super_options: String,
}

impl Mount {
    pub fn has_super_option(&self, name: &str) -> bool {
        self.super_options.split(',').any(|o| o == name)
    }
}

/// The mounts of this process's mount namespace, in mount order. Empty if
/// mountinfo cannot be read.
pub fn mounts() -> Vec<Mount> {
    std::fs::read("/proc/self/mountinfo")
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// Every mount point of this process's mount namespace.
pub fn mount_points() -> std::io::Result<Vec<PathBuf>> {
    Ok(parse(&std::fs::read("/proc/self/mountinfo")?)
        .into_iter()
        .map(|m| m.mount_point)
        .collect())
}

/// Whether `path` is the root of a mount (something is mounted on it) in
/// this process's mount namespace. Asked of the kernel with statx(2)
/// (STATX_ATTR_MOUNT_ROOT, Linux 5.8): scanning mountinfo instead costs time
/// that grows with every mount on the node (three per pod). A missing path
/// is not mounted. Older kernels fall back to mountinfo.
pub fn is_mount_point(path: &Path) -> std::io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statx is plain data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statx buffer we own.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            0,
            &mut stx,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::NotFound => Ok(false),
            _ => Err(e),
        };
    }
    let flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & flag != 0 {
        return Ok(stx.stx_attributes & flag != 0);
    }
    Ok(mount_points()?.iter().any(|p| p == path))
}

pub fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|b| *b == b'\n').filter_map(parse_line).collect()
}

fn parse_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let sep = fields.iter().position(|f| *f == b"-")?;
    if sep < 6 || fields.len() < sep + 4 {
        return None;
    }
    let text = |f: &[u8]| String::from_utf8_lossy(&unescape(f)).into_owned();
    let path = |f: &[u8]| PathBuf::from(OsStr::from_bytes(&unescape(f)));
    Some(Mount {
        root: path(fields[3]),
        mount_point: path(fields[4]),
        options: text(fields[5]),
        propagation: fields[6..sep].iter().map(|f| text(f)).collect(),
        fs_type: text(fields[sep + 1]),
        source: text(fields[sep + 2]),
        super_options: text(fields[sep + 3]),
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| {
                u8::try_from(d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'))).ok()
            });
        match (field[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_unescaped() {
        assert_eq!(unescape(b"/tmp/a\\040b\\134c"), b"/tmp/a b\\c".to_vec());
        assert_eq!(unescape(b"/x\\9"), b"/x\\9".to_vec());
    }

    #[test]
    fn lines_with_and_without_optional_fields() {
        let text = b"36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
                     30 22 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
                     garbage line\n";
        let mounts = parse(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].root, PathBuf::from("/mnt1"));
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt 2"));
        assert_eq!(mounts[0].propagation, vec!["master:1", "shared:7"]);
        assert_eq!(mounts[0].fs_type, "ext3");
        assert_eq!(mounts[0].source, "/dev/root");
        assert_eq!(mounts[1].fs_type, "cgroup");
        assert!(mounts[1].has_super_option("cpuacct"));
        assert!(!mounts[1].has_super_option("cpuset"));
    }

    #[test]
    fn mount_points_are_told_from_folders() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        assert!(!is_mount_point(Path::new("/proc/self")).unwrap());
        assert!(!is_mount_point(Path::new("/no/such/folder")).unwrap());
    }

    #[test]
    fn this_process_has_a_root_mount() {
        assert!(mounts().iter().any(|m| m.mount_point == Path::new("/")));
    }
}
