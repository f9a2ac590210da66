//! The processes in a cgroup: cgroup.procs of it and of every cgroup below
//! it (a container may make sub-cgroups of its own), in one hierarchy.

use std::io::ErrorKind;
use std::path::Path;

use super::files::read;
use super::layout::Version;
use super::paths::Cgroup;
use super::{Error, Result};

impl Cgroup {
    /// Every process in the cgroup and below, sorted, each once. Read from the
    /// devices hierarchy as runc does (every container's process is in it),
    /// else any v1 one with controllers, else the cgroup2 tree; empty if the
    /// cgroup does not exist.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = self
            .dirs()
            .iter()
            .find(|d| d.version == Version::V1 && d.has("devices"))
            .or_else(|| {
                self.dirs().iter().find(|d| {
                    d.version == Version::V1
                        && d.controllers.iter().any(|c| !c.starts_with("name="))
                })
            })
            .or_else(|| self.dirs().iter().find(|d| d.version == Version::V2));
        let mut pids = Vec::new();
        if let Some(dir) = dir {
            collect(&dir.path, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }
}

fn collect(dir: &Path, pids: &mut Vec<i32>) -> Result<()> {
    let Some(text) = read(dir, "cgroup.procs")? else {
        // Gone, or removed while we walked.
        return Ok(());
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        pids.push(line.trim().parse().map_err(|_| Error::Parse {
            path: dir.join("cgroup.procs"),
            reason: format!("not a pid: {line:?}"),
        })?);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries.filter_map(|e| e.ok()) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect(&entry.path(), pids)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::layout::tests::{fake, write};

    #[test]
    fn processes_of_the_cgroup_and_below_from_one_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(
            &[
                ("systemd", "cgroup rw,name=systemd"),
                ("devices", "cgroup rw,devices"),
                ("pids", "cgroup rw,pids"),
                ("unified", "cgroup2"),
            ],
            tmp.path(),
        );
        write(
            &tmp.path().join("devices/c"),
            &[("cgroup.procs", "30\n10\n")],
        );
        write(
            &tmp.path().join("devices/c/sub"),
            &[("cgroup.procs", "20\n10\n")],
        );
        write(&tmp.path().join("pids/c"), &[("cgroup.procs", "99\n")]);
        write(&tmp.path().join("unified/c"), &[("cgroup.procs", "98\n")]);
        assert_eq!(layout.cgroup("c").pids().unwrap(), vec![10, 20, 30]);
        assert_eq!(layout.cgroup("none").pids().unwrap(), Vec::<i32>::new());

        let v2 = fake(&[("unified", "cgroup2")], tmp.path());
        assert_eq!(v2.cgroup("c").pids().unwrap(), vec![98]);
    }
}
