//! The pod's cgroups on the host, shaped as the kubelet's cgroupfs driver
//! makes them: `<prefix>/kubepods[/burstable|/besteffort]/pod<uid>/<container>`.
//! The pod cgroup carries the pod's summed shares and limits (`qos.rs`); the
//! QoS and `kubepods` parents are made with the first pod that needs them and
//! go with the last.
//!
//! Pods start and stop side by side (several supervisors, `pod rm`): a parent
//! removed between another pod's mkdir of it and of its own folder would
//! fail that pod. So both happen under one lock file beside the pods folder;
//! rmdir itself only ever removes an empty cgroup.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::error::{Error, Result};
use super::folder::PodFolder;
use super::model::Pod;
use super::qos::{self, QosClass, PODS_CGROUP};
use crate::sys::cgroup::{Layout, Limits};

/// `<prefix>/kubepods[/…]/pod<uid>/<leaf>`: the cgroup path of one container of the pod.
pub fn container_cgroup(prefix: &str, pod: &Pod, leaf: &str) -> String {
    format!("{}/{leaf}", qos::pod_cgroup(prefix, pod))
}

/// Held while parents are made or removed.
struct ParentsLock(#[allow(dead_code)] Flock<File>);

/// The lock file lives beside the pods' folders (`<root>/cgroups.lock`), not
/// among them, so no listing of pods ever sees it.
fn lock(folder: &PodFolder) -> Result<ParentsLock> {
    let root = folder
        .dir()
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let path = root.join("cgroups.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Supervisor(format!("{}: {e}", path.display())))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map(ParentsLock)
        .map_err(|(_, e)| Error::Supervisor(format!("flock {}: {e}", path.display())))
}

/// Makes `kubepods`, the pod's QoS cgroup and the pod cgroup with its limits
/// (BestEffort's parent weighs the minimum, as the kubelet's QoS manager sets it).
pub fn create(folder: &PodFolder, prefix: &str, pod: &Pod) -> Result<()> {
    let class = qos::qos_class(pod);
    let layout = Layout::host();
    let _lock = lock(folder)?;
    let made = |path: &str, limits: &Limits| {
        layout
            .cgroup(path)
            .create(limits)
            .map_err(|e| Error::pod(&pod.name, format!("pod cgroup: {e}")))
    };
    let unlimited = Limits {
        cpu_period: qos::CPU_PERIOD,
        ..Limits::default()
    };
    made(&qos::qos_cgroup(prefix, QosClass::Guaranteed), &unlimited)?;
    if class == QosClass::BestEffort {
        let minimum = Limits {
            cpu_shares: Some(qos::MIN_SHARES),
            ..unlimited
        };
        made(&qos::qos_cgroup(prefix, class), &minimum)?;
    }
    made(
        &qos::pod_cgroup(prefix, pod),
        &qos::pod_limits(pod).cgroup_limits(),
    )
}

/// Removes the pod cgroup (with whatever is left below it), then each parent
/// up to the prefix that no other pod uses.
pub fn remove(folder: &PodFolder, prefix: &str, pod: &Pod) -> Result<()> {
    let layout = Layout::host();
    let _lock = lock(folder)?;
    let result = layout.cgroup(qos::pod_cgroup(prefix, pod)).remove();
    // Pods started before the kubelet's layout: `<prefix>/<uid>`.
    let _ = layout
        .cgroup(format!("/{}/{}", prefix.trim_matches('/'), pod.uid))
        .remove();
    remove_unused_parents(&layout, prefix);
    result.map_err(|e| Error::pod(&pod.name, format!("remove cgroup {e}")))
}

fn remove_unused_parents(layout: &Layout, prefix: &str) {
    for class in [QosClass::Burstable, QosClass::BestEffort] {
        layout
            .cgroup(qos::qos_cgroup(prefix, class))
            .remove_if_empty();
    }
    layout
        .cgroup(qos::qos_cgroup(prefix, QosClass::Guaranteed))
        .remove_if_empty();
    layout.cgroup(prefix.trim_matches('/')).remove_if_empty();
}

/// The parents of every pod, for `pod rm` after the last folder went
/// (a pod that failed before making its cgroup leaves none to find).
pub fn remove_parents_if_unused(folder: &PodFolder, prefix: &str) {
    if let Ok(_lock) = lock(folder) {
        remove_unused_parents(&Layout::host(), prefix);
    }
}

/// The cgroup under the prefix that holds every pod.
pub fn pods_parent(prefix: &str) -> String {
    format!("/{}/{PODS_CGROUP}", prefix.trim_matches('/'))
}
