//! The OOM killer in a cgroup: how many processes it killed (the pod
//! engine's OOMKilled reason), and a descriptor that wakes when it strikes (the
//! shim's TaskOOM): v1 registers an eventfd on memory.oom_control through
//! cgroup.event_control; v2 has no such event, so inotify watches
//! memory.events and the `oom_kill` count is compared.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use inotify::{Inotify, WatchMask};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::files::{read_flat, write};
use super::layout::Version;
use super::paths::Cgroup;
use super::{Error, Result};

fn oom_kills_in(dir: &Path, version: Version) -> Result<Option<u64>> {
    let file = match version {
        Version::V1 => "memory.oom_control",
        Version::V2 => "memory.events",
    };
    Ok(read_flat(dir, file)?.map(|m| m.get("oom_kill").copied().unwrap_or(0)))
}

impl Cgroup {
    /// How many processes the OOM killer has killed in this cgroup: `oom_kill`
    /// of memory.events (v2) or memory.oom_control (v1). 0 if it has no
    /// memory controller or the file cannot be read (a cgroup already gone).
    pub fn oom_kills(&self) -> u64 {
        self.controller("memory")
            .and_then(|d| oom_kills_in(&d.path, d.version).ok().flatten())
            .unwrap_or(0)
    }

    /// A descriptor that becomes readable when the OOM killer acts here. None
    /// when there is no memory controller for this cgroup.
    pub fn watch_oom(&self) -> Result<Option<OomWatch>> {
        let Some(dir) = self.controller("memory") else {
            return Ok(None);
        };
        let path = dir.path.clone();
        let source = match dir.version {
            Version::V1 => {
                let control_path = path.join("memory.oom_control");
                if !control_path.exists() {
                    return Ok(None);
                }
                let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .map_err(|e| Error::io(&control_path, e.into()))?;
                let control = File::open(&control_path).map_err(|e| Error::io(&control_path, e))?;
                // The kernel keeps its own reference to memory.oom_control.
                write(
                    &path,
                    "cgroup.event_control",
                    &format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
                )?;
                Source::V1(efd)
            }
            Version::V2 => {
                let events = path.join("memory.events");
                if !events.exists() {
                    return Ok(None);
                }
                let inotify = Inotify::init().map_err(|e| Error::io(&events, e))?;
                inotify
                    .watches()
                    .add(&events, WatchMask::MODIFY)
                    .map_err(|e| Error::io(&events, e))?;
                Source::V2(inotify)
            }
        };
        let seen = match dir.version {
            Version::V1 => 0,
            Version::V2 => oom_kills_in(&path, Version::V2)?.unwrap_or(0),
        };
        Ok(Some(OomWatch {
            dir: path,
            source,
            seen,
        }))
    }
}

enum Source {
    V1(EventFd),
    V2(Inotify),
}

/// What woke an [`OomWatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomEvent {
    /// The OOM killer acted (once or more since the last read).
    Oom,
    /// Something else changed (another counter of memory.events).
    Other,
    /// The cgroup was removed: nothing more will come.
    Gone,
}

/// Readable (non-blocking) when the OOM killer acts in the cgroup or the
/// cgroup goes; [`OomWatch::read`] says which.
pub struct OomWatch {
    dir: PathBuf,
    source: Source,
    /// v2: the oom_kill count already reported.
    seen: u64,
}

impl OomWatch {
    /// Reads what woke the descriptor. `WouldBlock` when nothing did.
    pub fn read(&mut self) -> io::Result<OomEvent> {
        match &mut self.source {
            Source::V1(efd) => {
                efd.read()?;
                // The eventfd also fires when the cgroup is removed.
                Ok(if self.dir.exists() {
                    OomEvent::Oom
                } else {
                    OomEvent::Gone
                })
            }
            Source::V2(inotify) => {
                let mut buf = [0u8; 1024];
                let ignored = inotify
                    .read_events(&mut buf)?
                    .any(|e| e.mask.contains(inotify::EventMask::IGNORED));
                match oom_kills_in(&self.dir, Version::V2) {
                    Ok(Some(now)) if !ignored => {
                        let new = now > self.seen;
                        self.seen = now;
                        Ok(if new { OomEvent::Oom } else { OomEvent::Other })
                    }
                    Ok(_) => Ok(OomEvent::Gone),
                    Err(e) if e.is_not_found() => Ok(OomEvent::Gone),
                    Err(e) => Err(io::Error::other(e.to_string())),
                }
            }
        }
    }
}

impl AsFd for OomWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.source {
            Source::V1(efd) => efd.as_fd(),
            Source::V2(inotify) => inotify.as_fd(),
        }
    }
}

impl AsRawFd for OomWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::tests::{fake, write};
    use super::*;

    #[test]
    fn oom_kills_of_each_version() {
        let tmp = tempfile::tempdir().unwrap();
        let v2 = fake(&[("", "cgroup2")], tmp.path());
        write(
            &tmp.path().join("a"),
            &[("memory.events", "low 0\nhigh 0\nmax 1\noom 1\noom_kill 2\n")],
        );
        assert_eq!(v2.cgroup("a").oom_kills(), 2);
        assert_eq!(v2.cgroup("gone").oom_kills(), 0);

        let tmp = tempfile::tempdir().unwrap();
        let v1 = fake(
            &[("memory", "cgroup rw,memory"), ("unified", "cgroup2")],
            tmp.path(),
        );
        write(
            &tmp.path().join("memory/a"),
            &[(
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            )],
        );
        // A stray memory.events in the cgroup2 tree of a hybrid host is not read.
        write(
            &tmp.path().join("unified/a"),
            &[("memory.events", "oom_kill 9\n")],
        );
        assert_eq!(v1.cgroup("a").oom_kills(), 1);
    }

    #[test]
    fn v2_watch_reports_new_oom_kills_and_the_cgroup_going() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(&[("", "cgroup2")], tmp.path());
        let dir = tmp.path().join("a");
        let events = |kills: u32, high: u32| {
            std::fs::write(
                dir.join("memory.events"),
                format!("low 0\nhigh {high}\nmax 0\noom 0\noom_kill {kills}\n"),
            )
            .unwrap()
        };
        std::fs::create_dir(&dir).unwrap();
        events(1, 0);
        let mut watch = layout.cgroup("a").watch_oom().unwrap().unwrap();
        assert_eq!(
            watch.read().unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "kills before the watch are not news"
        );
        events(1, 5);
        assert_eq!(watch.read().unwrap(), OomEvent::Other);
        events(2, 5);
        assert_eq!(watch.read().unwrap(), OomEvent::Oom);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(watch.read().unwrap(), OomEvent::Gone);
    }

    #[test]
    fn no_memory_controller_no_watch() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(&[("pids", "cgroup rw,pids")], tmp.path());
        std::fs::create_dir_all(tmp.path().join("pids/a")).unwrap();
        assert!(layout.cgroup("a").watch_oom().unwrap().is_none());
        let v2 = fake(&[("", "cgroup2")], tmp.path());
        assert!(
            v2.cgroup("pids/a").watch_oom().unwrap().is_none(),
            "memory not enabled"
        );
    }
}
