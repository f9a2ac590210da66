//! The freezer: v1's freezer.state (THAWED, FREEZING, FROZEN), v2's
//! cgroup.freeze with the outcome in cgroup.events (`frozen 1`). Freezing
//! waits until every process is frozen, as runc's pause does, and thaws again
//! if that does not happen in time.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use inotify::{Inotify, WatchMask};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::files::{read, read_flat, write};
use super::layout::Version;
use super::paths::{Cgroup, Dir};
use super::{Error, Result};

/// How long a freeze may take before it is undone.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze; some processes still run.
    Freezing,
    Frozen,
}

impl Cgroup {
    fn freezer(&self) -> Result<&Dir> {
        self.controller("freezer")
            .ok_or(Error::NoController("freezer"))
    }

    pub fn freezer_state(&self) -> Result<FreezerState> {
        let dir = self.freezer()?;
        state(&dir.path, dir.version)
    }

    /// Freezes every process of the cgroup and waits until they are.
    pub fn freeze(&self) -> Result<()> {
        let dir = self.freezer()?;
        set(&dir.path, dir.version, true, FREEZE_TIMEOUT)
    }

    pub fn thaw(&self) -> Result<()> {
        let dir = self.freezer()?;
        set(&dir.path, dir.version, false, FREEZE_TIMEOUT)
    }
}

fn missing(dir: &Path, file: &str) -> Error {
    Error::io(
        dir.join(file),
        std::io::Error::from(std::io::ErrorKind::NotFound),
    )
}

fn state(dir: &Path, version: Version) -> Result<FreezerState> {
    match version {
        Version::V1 => {
            let text = read(dir, "freezer.state")?.ok_or_else(|| missing(dir, "freezer.state"))?;
            match text.trim() {
                "THAWED" => Ok(FreezerState::Thawed),
                "FREEZING" => Ok(FreezerState::Freezing),
                "FROZEN" => Ok(FreezerState::Frozen),
                other => Err(Error::Parse {
                    path: dir.join("freezer.state"),
                    reason: format!("unknown state {other:?}"),
                }),
            }
        }
        Version::V2 => {
            let asked = read(dir, "cgroup.freeze")?.ok_or_else(|| missing(dir, "cgroup.freeze"))?;
            let frozen = read_flat(dir, "cgroup.events")?
                .and_then(|e| e.get("frozen").copied())
                .unwrap_or(0);
            Ok(match (asked.trim(), frozen) {
                (_, 1) => FreezerState::Frozen,
                ("1", _) => FreezerState::Freezing,
                _ => FreezerState::Thawed,
            })
        }
    }
}

fn set(dir: &Path, version: Version, frozen: bool, timeout: Duration) -> Result<()> {
    let result = match version {
        Version::V1 => set_v1(dir, frozen, timeout),
        Version::V2 => set_v2(dir, frozen, timeout),
    };
    if frozen && result.is_err() {
        // Half frozen is the worst state to leave a container in.
        let _ = match version {
            Version::V1 => write(dir, "freezer.state", "THAWED"),
            Version::V2 => write(dir, "cgroup.freeze", "0"),
        };
    }
    result
}

/// v1 gives no event: ask again until the state says so (a process in the
/// middle of a fork can hold the cgroup in FREEZING), with a growing pause.
fn set_v1(dir: &Path, frozen: bool, timeout: Duration) -> Result<()> {
    let (word, want) = if frozen {
        ("FROZEN", FreezerState::Frozen)
    } else {
        ("THAWED", FreezerState::Thawed)
    };
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        write(dir, "freezer.state", word)?;
        let now = state(dir, Version::V1)?;
        if now == want {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(Error::Stuck {
                path: dir.join("freezer.state"),
                state: format!("{now:?}").to_uppercase(),
                waited_ms: start.elapsed().as_millis(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// v2 writes cgroup.events when `frozen` changes: wait for that with inotify.
fn set_v2(dir: &Path, frozen: bool, timeout: Duration) -> Result<()> {
    let events = dir.join("cgroup.events");
    let inotify = Inotify::init().map_err(|e| Error::io(&events, e))?;
    inotify
        .watches()
        .add(&events, WatchMask::MODIFY)
        .map_err(|e| Error::io(&events, e))?;
    write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let want = if frozen {
        FreezerState::Frozen
    } else {
        FreezerState::Thawed
    };
    let start = Instant::now();
    let mut inotify = inotify;
    loop {
        let now = state(dir, Version::V2)?;
        if now == want {
            return Ok(());
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(Error::Stuck {
                path: events,
                state: format!("{now:?}").to_lowercase(),
                waited_ms: start.elapsed().as_millis(),
            });
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::io(&events, e.into())),
        }
        let mut buf = [0u8; 1024];
        // Drained; what it said is read from the file itself.
        let _ = inotify.read_events(&mut buf);
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::tests::{fake, write as put};
    use super::*;

    #[test]
    fn v1_freeze_and_thaw() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(&[("freezer", "cgroup rw,freezer")], tmp.path());
        put(
            &tmp.path().join("freezer/a"),
            &[("freezer.state", "THAWED\n")],
        );
        let c = layout.cgroup("a");
        assert_eq!(c.freezer_state().unwrap(), FreezerState::Thawed);
        c.freeze().unwrap();
        assert_eq!(c.freezer_state().unwrap(), FreezerState::Frozen);
        c.thaw().unwrap();
        assert_eq!(c.freezer_state().unwrap(), FreezerState::Thawed);
    }

    #[test]
    fn v2_freeze_waits_for_cgroup_events() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake(&[("", "cgroup2")], tmp.path());
        let dir = tmp.path().join("a");
        put(
            &dir,
            &[
                ("cgroup.freeze", "0\n"),
                ("cgroup.events", "populated 1\nfrozen 0\n"),
            ],
        );
        let c = layout.cgroup("a");
        assert_eq!(c.freezer_state().unwrap(), FreezerState::Thawed);
        // The kernel's part: cgroup.events says frozen once asked.
        let events = dir.join("cgroup.events");
        let freeze = dir.join("cgroup.freeze");
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let kernel = std::thread::spawn(move || {
            let mut ino = Inotify::init().unwrap();
            ino.watches().add(&freeze, WatchMask::CLOSE_WRITE).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1024];
            ino.read_events_blocking(&mut buf).unwrap();
            std::fs::write(&events, "populated 1\nfrozen 1\n").unwrap();
        });
        ready.recv().unwrap();
        c.freeze().unwrap();
        kernel.join().unwrap();
        assert_eq!(c.freezer_state().unwrap(), FreezerState::Frozen);
    }

    #[test]
    fn v2_a_freeze_not_reached_in_time_is_undone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        put(
            &dir,
            &[
                ("cgroup.freeze", "0\n"),
                ("cgroup.events", "populated 1\nfrozen 0\n"),
            ],
        );
        let err = set(&dir, Version::V2, true, Duration::from_millis(20))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cgroup.events: still freezing after"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap(),
            "0"
        );
    }
}
