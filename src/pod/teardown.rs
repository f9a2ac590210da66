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
    // hostUsers: false: the pin goes (its range stays with the folder).
    if let Err(e) = super::security::userns::unpin(folder) {
        problems.push(one_line(&e));
    }
    // With the leaf cgroups left by a container that died with the
    // supervisor, and any sub-cgroups they made; parents no pod uses go too.
    if let Err(e) = super::cgroups::remove(folder, &settings, pod) {
        problems.push(one_line(&e));
    }
    if !problems.is_empty() {
        return Err(Error::pod(
            &pod.name,
            format!("cannot release: {}", problems.join("; ")),
        ));
    }
    Ok(())
}

/// After a pod's folder is removed: a pod that never made its cgroup
/// leaves parents only `release` of another pod, or this, removes.
pub fn remove_cgroup_parents(folder: &PodFolder, settings: &Settings) {
    super::cgroups::remove_parents_if_unused(folder, settings);
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
