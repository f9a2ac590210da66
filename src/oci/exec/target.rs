//! What an exec'd process joins: the namespaces and cgroups of the container's
//! init, opened by the parent while it still sees the host.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::enter::{CgroupJoin, Namespace};
use crate::error::Context;
use crate::oci::error::{Error, Result};
use crate::sys::cgroup::Layout;

pub struct Target {
    /// Joined by the parent itself: it only changes the pid namespace of the
    /// parent's children, so the forked child is born in it (and stays the
    /// parent's child, to be waited for).
    pub pid_ns: Option<OwnedFd>,
    pub namespaces: Vec<Namespace>,
    pub cgroups: Vec<CgroupJoin>,
}

/// The order the child joins them: user first (it grants the rights to join
/// the others), mount last (after it the host's paths are gone).
const ORDER: [(LinuxNamespaceType, &str, CloneFlags); 7] = [
    (LinuxNamespaceType::User, "user", CloneFlags::CLONE_NEWUSER),
    (LinuxNamespaceType::Ipc, "ipc", CloneFlags::CLONE_NEWIPC),
    (LinuxNamespaceType::Uts, "uts", CloneFlags::CLONE_NEWUTS),
    (LinuxNamespaceType::Network, "net", CloneFlags::CLONE_NEWNET),
    (
        LinuxNamespaceType::Cgroup,
        "cgroup",
        CloneFlags::CLONE_NEWCGROUP,
    ),
    (
        LinuxNamespaceType::Time,
        "time", // nix has no name for it (CLONE_NEWTIME, 0x80).
        CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    ),
    (LinuxNamespaceType::Mount, "mnt", CloneFlags::CLONE_NEWNS),
];

impl Target {
    /// The namespaces the container's config lists, as its init `pid` holds
    /// them (also those it joined by path), and the init's cgroups, or
    /// `sub_cgroup` below them (`path` or `controller[,controller]:path`).
    pub fn of(spec: &Spec, pid: i32, sub_cgroup: Option<&str>) -> Result<Self> {
        let listed: Vec<LinuxNamespaceType> = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .map(|nss| nss.iter().map(|ns| ns.typ()).collect())
            .unwrap_or_default();
        let open = |name: &str| -> Result<Option<OwnedFd>> {
            let theirs = format!("/proc/{pid}/ns/{name}");
            let file = File::open(&theirs).context(|| format!("open {theirs}"))?;
            let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
                .context(|| format!("stat /proc/self/ns/{name}"))?;
            let meta = file.metadata().context(|| format!("stat {theirs}"))?;
            // Joining one's own user namespace is an error; the others are no-ops.
            let same = (meta.dev(), meta.ino()) == (ours.dev(), ours.ino());
            Ok((!same).then(|| file.into()))
        };
        let pid_ns = if listed.contains(&LinuxNamespaceType::Pid) {
            open("pid")?
        } else {
            None
        };
        let mut namespaces = Vec::new();
        for (typ, name, flag) in ORDER {
            if listed.contains(&typ) {
                if let Some(fd) = open(name)? {
                    namespaces.push(Namespace { name, flag, fd });
                }
            }
        }
        let cgroups = cgroups_of(pid, sub_cgroup)?;
        Ok(Self {
            pid_ns,
            namespaces,
            cgroups,
        })
    }
}

/// `path` or `controller[,controller]:path`, as runc's `exec --cgroup`.
fn parse_sub(sub: &str) -> Result<(Vec<String>, PathBuf)> {
    let (controllers, path) = match sub.split_once(':') {
        Some((c, p)) => (c.split(',').map(String::from).collect(), p),
        None => (Vec::new(), sub),
    };
    let path = Path::new(path);
    if path.as_os_str().is_empty()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::RootDir))
    {
        return Err(Error::Invalid(format!(
            "--cgroup {sub}: a path below the container's cgroup is expected"
        )));
    }
    let rel = path.strip_prefix("/").unwrap_or(path).to_path_buf();
    Ok((controllers, rel))
}

fn cgroups_of(pid: i32, sub_cgroup: Option<&str>) -> Result<Vec<CgroupJoin>> {
    let sub = sub_cgroup.map(parse_sub).transpose()?;
    let cgroup = Layout::host()
        .cgroup_of_pid(pid)
        .map_err(|e| Error::Cgroup(e.to_string()))?;
    let mut joins = Vec::new();
    for d in cgroup.dirs() {
        let mut dir = d.path.clone();
        if let Some((controllers, path)) = &sub {
            if controllers.is_empty() || controllers.iter().any(|c| d.has(c)) {
                dir.push(path);
                if !dir.is_dir() {
                    return Err(Error::Invalid(format!(
                        "--cgroup {}: no such cgroup {}",
                        sub_cgroup.unwrap_or_default(),
                        dir.display()
                    )));
                }
            }
        }
        let procs_path = dir.join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .context(|| format!("open {}", procs_path.display()))?;
        joins.push(CgroupJoin { dir, procs });
    }
    Ok(joins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_cgroups_stay_below_the_container() {
        assert_eq!(parse_sub("a/b").unwrap(), (vec![], PathBuf::from("a/b")));
        assert_eq!(
            parse_sub("cpu,memory:x").unwrap(),
            (
                vec!["cpu".to_string(), "memory".to_string()],
                PathBuf::from("x")
            )
        );
        for bad in ["../up", "a/../../b", "", "cpu:"] {
            assert!(parse_sub(bad).is_err(), "{bad:?} accepted");
        }
    }
}
