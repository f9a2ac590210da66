//! TaskOOM from the kernel's notifications: cgroup v1's
//! `memory.oom_control` eventfd, or inotify on cgroup v2's `memory.events`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use containerd_shim_protos::events::task::TaskOOM;
use containerd_shim_protos::topics;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::stats::{cgroup_dir, unified};
use super::stdio::async_fd;
use super::task::Queued;

type Events = mpsc::UnboundedSender<Queued>;

fn owned(fd: i32) -> Option<OwnedFd> {
    // SAFETY: a fresh descriptor from a syscall, owned from here on.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Watches the memory cgroup of `pid`; None when there is nothing to watch.
pub fn watch(pid: i32, id: String, events: Events) -> Option<JoinHandle<()>> {
    if unified() {
        let dir = cgroup_dir(pid, None)?;
        let fd = v2_fd(&dir)?;
        Some(tokio::spawn(v2_loop(fd, dir, id, events)))
    } else {
        let dir = cgroup_dir(pid, Some("memory"))?;
        let fd = v1_fd(&dir)?;
        Some(tokio::spawn(v1_loop(fd, dir, id, events)))
    }
}

fn v1_fd(dir: &Path) -> Option<OwnedFd> {
    // SAFETY: plain syscall.
    let efd = owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    let control = std::fs::File::open(dir.join("memory.oom_control")).ok()?;
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
    )
    .ok()?;
    Some(efd)
}

async fn v1_loop(fd: OwnedFd, dir: PathBuf, id: String, events: Events) {
    let Ok(fd) = async_fd(fd) else { return };
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        let mut buf = [0u8; 8];
        match guard.try_io(|f| nix::unistd::read(f.as_raw_fd(), &mut buf).map_err(Into::into)) {
            Ok(Ok(8)) => {}
            Ok(_) => return,
            Err(_) => continue,
        }
        // The eventfd also fires when the cgroup is removed.
        if !dir.exists() {
            return;
        }
        send(&events, &id);
    }
}

fn v2_fd(dir: &Path) -> Option<OwnedFd> {
    // SAFETY: plain syscalls.
    let fd = owned(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })?;
    let path = std::ffi::CString::new(dir.join("memory.events").to_str()?).ok()?;
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) };
    (wd >= 0).then_some(fd)
}

fn oom_kills(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("memory.events"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

async fn v2_loop(fd: OwnedFd, dir: PathBuf, id: String, events: Events) {
    let Ok(fd) = async_fd(fd) else { return };
    let mut seen = oom_kills(&dir).unwrap_or(0);
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        let mut buf = [0u8; 4096];
        match guard.try_io(|f| nix::unistd::read(f.as_raw_fd(), &mut buf).map_err(Into::into)) {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return,
            Err(_) => continue,
        }
        let Some(now) = oom_kills(&dir) else { return };
        if now > seen {
            seen = now;
            send(&events, &id);
        }
    }
}

fn send(events: &Events, id: &str) {
    let _ = events.send(Queued::Event(
        topics::TASK_OOM_EVENT_TOPIC,
        Box::new(TaskOOM {
            container_id: id.to_string(),
            ..Default::default()
        }),
    ));
}
