//! TaskOOM from the kernel's notifications (`sys::cgroup::OomWatch`: cgroup
//! v1's `memory.oom_control` eventfd, or inotify on cgroup v2's
//! `memory.events`), one task per container.

use containerd_shim_protos::events::task::TaskOOM;
use containerd_shim_protos::topics;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::task::Queued;
use crate::sys::cgroup::{Layout, OomEvent, OomWatch};

type Events = mpsc::UnboundedSender<Queued>;

/// Watches the memory cgroup of `pid`; None when there is nothing to watch.
pub fn watch(pid: i32, id: String, events: Events) -> Option<JoinHandle<()>> {
    let watch = Layout::host()
        .cgroup_of_pid(pid)
        .and_then(|c| c.watch_oom())
        .map_err(|e| log::warn!("no OOM events for {id}: {e}"))
        .ok()??;
    // SAFETY: the OomWatch owns its descriptor and keeps it open, the same
    // one, for as long as it lives inside the AsyncFd.
    let fd = unsafe { AsyncFd::register_with_interest(watch, Interest::READABLE) }.ok()?;
    Some(tokio::spawn(watch_loop(fd, id, events)))
}

async fn watch_loop(mut fd: AsyncFd<OomWatch>, id: String, events: Events) {
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        match guard.try_io(|w| w.get_mut().read()) {
            Ok(Ok(OomEvent::Oom)) => send(&events, &id),
            Ok(Ok(OomEvent::Other)) => {}
            Ok(Ok(OomEvent::Gone)) | Ok(Err(_)) => return,
            Err(_would_block) => {}
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
