//! Loading a bundle's config.json with errors that name the file and the field,
//! or writing it from a spec the caller holds.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::error::{Error, Result};
use crate::error::Context;

/// A bundle whose config.json parsed and passed our checks.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
}

impl Bundle {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Whether the container gets a network namespace of its own (not one joined by path).
    pub fn has_new_netns(&self) -> bool {
        self.spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|nss| {
                nss.iter()
                    .any(|ns| ns.typ() == LinuxNamespaceType::Network && ns.path().is_none())
            })
    }

    pub fn terminal(&self) -> bool {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    }
}

pub fn load(dir: &Path) -> Result<Bundle> {
    let dir = existing_dir(dir)?;
    let path = dir.join("config.json");
    let config_err = |reason: String| Error::Config {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => config_err("no such file".into()),
        _ => config_err(e.to_string()),
    })?;
    let spec: Spec =
        serde_json::from_slice(&text).map_err(|e| config_err(format!("invalid config: {e}")))?;
    check(&dir, &spec).map_err(config_err)?;
    Ok(Bundle { dir, spec })
}

/// A bundle folder whose config is `spec`: the same checks as `load`, then
/// config.json written for libcontainer (which reads it from the folder); we
/// go on with the value.
pub fn write(dir: &Path, spec: Spec) -> Result<Bundle> {
    let dir = existing_dir(dir)?;
    let path = dir.join("config.json");
    check(&dir, &spec).map_err(|reason| Error::Config {
        path: path.clone(),
        reason,
    })?;
    write_config(&path, &spec)?;
    Ok(Bundle { dir, spec })
}

/// Writes `spec` to `path`, readable by root only: the process's environment
/// may hold secrets.
pub(super) fn write_config(path: &Path, spec: &Spec) -> Result<()> {
    write_json(path, spec)
}

/// Writes `value` as JSON to `path`, readable by root only.
pub(super) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Invalid(format!("encode {}: {e}", path.display())))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .context(|| format!("write {}", path.display()))?;
    // A file that was already there keeps its mode through O_TRUNC.
    file.set_permissions(Permissions::from_mode(0o600))
        .context(|| format!("chmod {}", path.display()))?;
    file.write_all(&text)
        .context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// The bundle folder, canonical (state records it; relative paths in the spec
/// are taken from it).
fn existing_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(Error::NoBundle(dir.to_path_buf()));
    }
    std::fs::canonicalize(dir).map_err(|_| Error::NoBundle(dir.to_path_buf()))
}

/// The checks libcontainer would fail later with a vaguer message, or not at all.
fn check(dir: &Path, spec: &Spec) -> std::result::Result<(), String> {
    if !spec.version().starts_with("1.") {
        return Err(format!(
            "ociVersion {:?}: only 1.x is supported",
            spec.version()
        ));
    }
    let root = spec.root().as_ref().ok_or("root: required")?;
    let rootfs = dir.join(root.path());
    if !rootfs.is_dir() {
        return Err(format!(
            "root.path {}: no such directory",
            root.path().display()
        ));
    }
    check_mount_destinations(&rootfs, spec)?;
    let process = spec.process().as_ref().ok_or("process: required")?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err("process.args: required".into());
    }
    if process.cwd().as_os_str().is_empty() || !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd {:?}: must be an absolute path",
            process.cwd()
        ));
    }
    if spec.linux().is_none() {
        return Err("linux: required".into());
    }
    if let Some(adj) = process.oom_score_adj() {
        check_oom_score_adj(adj)?;
    }
    for (i, rlimit) in process.rlimits().iter().flatten().enumerate() {
        check_rlimit(i, rlimit)?;
    }
    Ok(())
}

/// Mount destinations as the rootfs has them: proc and sysfs go on a plain
/// directory, never through a symbolic link (runc's check), and no
/// destination goes through a link to a path the rootfs does not have (a
/// planted link to a host path; libcontainer fails it later, unnamed).
fn check_mount_destinations(rootfs: &Path, spec: &Spec) -> std::result::Result<(), String> {
    use nix::sys::stat::{fstatat, SFlag};
    let Some(mounts) = spec.mounts() else {
        return Ok(());
    };
    let root = std::fs::File::open(rootfs).map_err(|e| format!("root.path: {e}"))?;
    for (i, m) in mounts.iter().enumerate() {
        let destination = m.destination();
        let mut prefix = PathBuf::from("/");
        for component in destination.components().skip(1) {
            let parent = prefix.clone();
            prefix.push(component);
            let Ok(dir) = super::copy_up::open_dir_in_root(&root, &parent.to_string_lossy()) else {
                break;
            };
            let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
            let Ok(st) = fstatat(
                Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
                component.as_os_str(),
                flags,
            ) else {
                // Missing: made as a directory.
                break;
            };
            let is_link = st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits();
            let is_dir = st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits();
            let last = prefix == *destination;
            if let (true, Some(typ @ ("proc" | "sysfs"))) = (last, m.typ().as_deref()) {
                if !is_dir {
                    return Err(format!(
                        "mounts[{i}] {}: not a directory in the rootfs: filesystem {typ} must be mounted on ordinary directory",
                        destination.display()
                    ));
                }
            }
            if is_link
                && super::copy_up::open_dir_in_root(&root, &prefix.to_string_lossy()).is_err()
                && (!last
                    || super::copy_up::open_in_root(&root, &prefix.to_string_lossy()).is_err())
            {
                return Err(format!(
                    "mounts[{i}] {}: {} is a symbolic link to a path the rootfs does not have",
                    destination.display(),
                    prefix.display()
                ));
            }
        }
    }
    Ok(())
}

/// Lowering oom_score_adj below our own needs CAP_SYS_RESOURCE; some hosts (this
/// project's CI among them) drop it from the bounding set, and the kernel's EPERM
/// from deep inside container creation would not say which field is to blame.
fn check_oom_score_adj(adj: i32) -> std::result::Result<(), String> {
    if !(-1000..=1000).contains(&adj) {
        return Err(format!(
            "process.oomScoreAdj {adj}: must be between -1000 and 1000"
        ));
    }
    let current: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let can_lower = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if adj < current && !can_lower {
        return Err(format!(
            "process.oomScoreAdj {adj}: lower than the runtime's own ({current}) and CAP_SYS_RESOURCE is not available"
        ));
    }
    Ok(())
}

/// Raising a hard limit above ours needs CAP_SYS_RESOURCE, which some hosts
/// drop; the kernel's EPERM would otherwise surface without naming the limit.
fn check_rlimit(
    index: usize,
    rlimit: &oci_spec::runtime::PosixRlimit,
) -> std::result::Result<(), String> {
    use oci_spec::runtime::PosixRlimitType as T;
    let resource = match rlimit.typ() {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    };
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        return Ok(());
    }
    if rlimit.soft() > rlimit.hard() {
        return Err(format!(
            "process.rlimits[{index}] {:?}: soft limit {} is above the hard limit {}",
            rlimit.typ(),
            rlimit.soft(),
            rlimit.hard()
        ));
    }
    let can_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if rlimit.hard() > current.rlim_max && !can_raise {
        return Err(format!(
            "process.rlimits[{index}] {:?}: hard limit {} is above this host's {} and CAP_SYS_RESOURCE is not available",
            rlimit.typ(),
            rlimit.hard(),
            current.rlim_max
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    fn minimal(extra_process: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
                "process":{{"cwd":"/","user":{{"uid":0,"gid":0}},"args":["true"]{extra_process}}},"linux":{{}}}}"#
        )
    }

    fn load_err(dir: &Path) -> String {
        match load(dir) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn loads_a_minimal_bundle() {
        let dir = bundle_with(&minimal(""));
        let bundle = load(dir.path()).unwrap();
        assert!(!bundle.has_new_netns());
        assert!(!bundle.terminal());
    }

    #[test]
    fn missing_directory_is_named() {
        let err = load_err(Path::new("/nonexistent/peapod-bundle"));
        assert_eq!(err, "bundle /nonexistent/peapod-bundle: no such directory");
    }

    #[test]
    fn missing_config_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_err(dir.path());
        assert!(err.ends_with("config.json: no such file"), "{err}");
    }

    #[test]
    fn malformed_json_names_file_and_position() {
        let dir = bundle_with("{\"ociVersion\": ");
        let err = load_err(dir.path());
        assert!(err.contains("config.json: invalid config:"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn missing_rootfs_is_named() {
        let dir = bundle_with(&minimal("").replace("\"rootfs\"", "\"nothere\""));
        assert!(load_err(dir.path()).contains("root.path nothere: no such directory"));
    }

    #[test]
    fn empty_args_and_relative_cwd_are_rejected() {
        let dir = bundle_with(&minimal("").replace("[\"true\"]", "[]"));
        assert!(load_err(dir.path()).contains("process.args: required"));
        let dir = bundle_with(&minimal("").replace("\"cwd\":\"/\"", "\"cwd\":\"tmp\""));
        assert!(load_err(dir.path()).contains("process.cwd"));
    }

    #[test]
    fn proc_or_sys_on_a_link_is_rejected() {
        let with_proc = minimal("").replace(
            "\"linux\":{}",
            "\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"}],\"linux\":{}",
        );
        let dir = bundle_with(&with_proc);
        assert!(load(dir.path()).is_ok(), "a missing /proc is made");
        std::fs::create_dir(dir.path().join("rootfs/proc")).unwrap();
        assert!(load(dir.path()).is_ok());
        std::fs::remove_dir(dir.path().join("rootfs/proc")).unwrap();
        std::os::unix::fs::symlink("/tmp", dir.path().join("rootfs/proc")).unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains("mounts[0] /proc: not a directory in the rootfs: filesystem proc must be mounted on ordinary directory"),
            "{err}"
        );
    }

    #[test]
    fn a_destination_through_a_link_out_of_the_rootfs_is_rejected() {
        let with_mount = |dest: &str| {
            minimal("").replace(
                "\"linux\":{}",
                &format!("\"mounts\":[{{\"destination\":\"{dest}\",\"type\":\"tmpfs\",\"source\":\"tmpfs\"}}],\"linux\":{{}}"),
            )
        };
        let dir = bundle_with(&with_mount("/data/sub"));
        let rootfs = dir.path().join("rootfs");
        // A link the rootfs resolves (absolute, as images have them) is fine.
        std::fs::create_dir(rootfs.join("run")).unwrap();
        std::os::unix::fs::symlink("/run", rootfs.join("data")).unwrap();
        assert!(load(dir.path()).is_ok());
        std::fs::remove_file(rootfs.join("data")).unwrap();
        std::os::unix::fs::symlink("/no/such/host/path", rootfs.join("data")).unwrap();
        let err = load_err(dir.path());
        assert!(
            err.contains(
                "mounts[0] /data/sub: /data is a symbolic link to a path the rootfs does not have"
            ),
            "{err}"
        );
        // A file mount point at the end of a link the rootfs resolves.
        let dir = bundle_with(&with_mount("/etc/hosts"));
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("hosts.real"), "").unwrap();
        std::os::unix::fs::symlink("/hosts.real", rootfs.join("etc/hosts")).unwrap();
        assert!(load(dir.path()).is_ok());
    }

    #[test]
    fn wrong_version_is_rejected() {
        let dir = bundle_with(&minimal("").replace("1.0.2", "2.0.0"));
        assert!(load_err(dir.path()).contains("ociVersion \"2.0.0\""));
    }

    #[test]
    fn out_of_range_oom_score_adj_is_rejected() {
        let dir = bundle_with(&minimal(",\"oomScoreAdj\":5000"));
        assert!(load_err(dir.path()).contains("process.oomScoreAdj 5000"));
    }

    #[test]
    fn soft_above_hard_rlimit_is_named() {
        let dir = bundle_with(&minimal(
            ",\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":100,\"hard\":10}]",
        ));
        assert!(load_err(dir.path()).contains("process.rlimits[0] RlimitNofile: soft limit 100"));
    }

    #[test]
    fn a_spec_value_is_checked_then_written_for_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = bundle_with("left over");
        let path = dir.path().join("config.json");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let spec: Spec = serde_json::from_str(&minimal("")).unwrap();
        let bundle = write(dir.path(), spec.clone()).unwrap();
        assert_eq!(bundle.spec, spec);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(dir.path()).unwrap().spec, spec);

        // The same checks as for a loaded bundle; nothing is written.
        let dir = bundle_with("untouched");
        let mut spec = spec;
        spec.set_linux(None);
        let err = match write(dir.path(), spec) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        };
        assert!(err.ends_with("config.json: linux: required"), "{err}");
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert_eq!(text, "untouched");
    }

    #[test]
    fn new_and_joined_network_namespaces_differ() {
        let dir = bundle_with(&minimal("").replace(
            "\"linux\":{}",
            "\"linux\":{\"namespaces\":[{\"type\":\"network\"}]}",
        ));
        assert!(load(dir.path()).unwrap().has_new_netns());
        let dir = bundle_with(&minimal("").replace(
            "\"linux\":{}",
            "\"linux\":{\"namespaces\":[{\"type\":\"network\",\"path\":\"/proc/1/ns/net\"}]}",
        ));
        assert!(!load(dir.path()).unwrap().has_new_netns());
    }
}
