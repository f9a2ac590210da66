//! Undoing a pod on the host: its containers, rootfs mounts, shm and memory
//! volumes, its network (CNI DEL, the namespace's pin) and its cgroup. Used by the supervisor at the end, by `pod rm`,
//! and when a pod that never recorded its state has to be killed.

use nix::sys::signal::Signal;

use super::error::{Error, Result};
use super::folder::{PodFolder, SANDBOX};
use super::model::Pod;
use super::settings::Settings;
use super::status::Phase;
use super::volumes;
use crate::error::one_line;
use crate::image::Rootfs;
use crate::oci::Runtime;
use crate::sys::cgroup::Layout;

/// Releases everything the pod holds on the host except its folder.
pub fn release(folder: &PodFolder, pod: &Pod) -> Result<()> {
    let settings = folder.settings()?;
    let mut problems = vec![];
    match Runtime::new(&folder.oci_root(), false) {
        Ok(runtime) => {
            for id in runtime.ids().unwrap_or_default() {
                if let Err(e) = runtime.delete(&id, true) {
                    problems.push(format!("delete {id}: {}", one_line(&e)));
                }
            }
        }
        Err(e) => problems.push(one_line(&e)),
    }
    let names = pod
        .init_containers
        .iter()
        .chain(&pod.containers)
        .map(|c| c.name.as_str())
        .chain([SANDBOX]);
    for name in names {
        if let Err(e) = Rootfs::unmount(&folder.bundle(name)) {
            problems.push(format!("rootfs of {name}: {}", one_line(&e)));
        }
    }
    if let Err(e) = volumes::release(pod, folder) {
        problems.push(one_line(&e));
    }
    // After the sandbox: nothing holds the namespace any more.
    if let Err(e) = super::network::release(folder, &settings) {
        problems.push(format!("network: {}", one_line(&e)));
    }
    // With the leaf cgroups left by a container that died with the
    // supervisor, and any sub-cgroups they made.
    let pod_cgroup = std::path::Path::new(settings.cgroup_prefix.trim_matches('/')).join(&pod.uid);
    if let Err(e) = Layout::host().cgroup(pod_cgroup).remove() {
        problems.push(format!("remove cgroup {}", one_line(&e)));
    }
    if !problems.is_empty() {
        return Err(Error::pod(
            &pod.name,
            format!("cannot release: {}", problems.join("; ")),
        ));
    }
    if is_last_pod(folder) {
        remove_cgroup_parent(&settings);
    }
    Ok(())
}

/// The shared parent goes with the last pod (rmdir fails harmlessly if a pod
/// being created right now already has its folder in it).
fn remove_cgroup_parent(settings: &Settings) {
    Layout::host()
        .cgroup(settings.cgroup_prefix.trim_matches('/'))
        .remove_if_empty();
}

/// After a pod's folder is removed: removals running side by side each saw
/// the others' folders in `release`, so whoever removes the last folder takes
/// the cgroup parent.
pub fn remove_cgroup_parent_if_no_pods(pods_dir: &std::path::Path, settings: &Settings) {
    if std::fs::read_dir(pods_dir).is_ok_and(|mut entries| entries.next().is_none()) {
        remove_cgroup_parent(settings);
    }
}

/// Whether no other pod has a folder beside this one.
fn is_last_pod(folder: &PodFolder) -> bool {
    let Some(pods) = folder.dir().parent() else {
        return false;
    };
    std::fs::read_dir(pods).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .all(|e| e.path() == folder.dir())
    })
}

/// For a pod no supervisor can take over (it died before it recorded the
/// pod's state): everything of it is killed and released, and the pod ends
/// `Failed` (nothing says how its containers ended).
pub fn kill_unsupervised(folder: &PodFolder, pod: &Pod) -> Result<()> {
    let runtime = Runtime::new(&folder.oci_root(), false)?;
    let mut ids = runtime.ids().unwrap_or_default();
    // The sandbox last: the others share its namespaces.
    ids.sort_by_key(|id| id == SANDBOX);
    for id in &ids {
        if runtime.state(id).is_ok_and(|s| s.status != "stopped") {
            let _ = runtime.kill(id, Signal::SIGKILL, true);
        }
    }
    release(folder, pod)?;
    if let Some(mut status) = folder.status() {
        status.finished = true;
        status.pids.clear();
        status.sandbox_pid = None;
        if !matches!(status.phase(), Phase::Succeeded | Phase::Failed) {
            status.status.phase = Phase::Failed;
        }
        folder.write_status(&status)?;
    }
    Ok(())
}
