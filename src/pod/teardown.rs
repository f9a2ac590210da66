//! Undoing a pod on the host: its containers, rootfs mounts, shm and memory
//! volumes, and its cgroup. Used by the supervisor at the end, and by `pod stop`
//! and `pod rm` when the supervisor is gone.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::model::Pod;
use super::status::{ContainerState, Phase};
use super::store::PodDir;
use super::supervisor::SANDBOX_ID;
use super::volumes;
use crate::image::Rootfs;
use crate::oci::Runtime;
use crate::sys::cgroup::Layout;

/// Releases everything the pod holds on the host except its folder.
pub fn release(dir: &PodDir, pod: &Pod, cgroup_prefix: &str) -> Result<(), String> {
    let mut errors = vec![];
    match Runtime::new(&dir.paths.oci_root(), false) {
        Ok(runtime) => {
            for id in runtime.ids().unwrap_or_default() {
                if let Err(e) = runtime.delete(&id, true) {
                    errors.push(format!("delete {id}: {e}"));
                }
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    let names = pod
        .init_containers
        .iter()
        .chain(&pod.containers)
        .map(|c| c.name.as_str())
        .chain([SANDBOX_ID]);
    for name in names {
        if let Err(e) = Rootfs::unmount(&dir.paths.bundle(name)) {
            errors.push(format!("rootfs of {name}: {e}"));
        }
    }
    if let Err(e) = volumes::release(pod, &dir.paths) {
        errors.push(e.to_string());
    }
    // With the leaf cgroups left by a container that died with the
    // supervisor, and any sub-cgroups they made.
    let pod_cgroup = std::path::Path::new(cgroup_prefix.trim_matches('/')).join(&pod.uid);
    if let Err(e) = Layout::host().cgroup(pod_cgroup).remove() {
        errors.push(format!("remove cgroup {e}"));
    }
    if errors.is_empty() && is_last_pod(dir) {
        remove_cgroup_parent(cgroup_prefix);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// The shared parent goes with the last pod (rmdir fails harmlessly if a pod
/// being created right now already has its folder in it).
fn remove_cgroup_parent(cgroup_prefix: &str) {
    Layout::host()
        .cgroup(cgroup_prefix.trim_matches('/'))
        .remove_if_empty();
}

/// After a pod's folder is removed: removals running side by side each saw
/// the others' folders in `release`, so whoever removes the last folder takes
/// the cgroup parent.
pub fn remove_cgroup_parent_if_no_pods(pods_dir: &std::path::Path, cgroup_prefix: &str) {
    if std::fs::read_dir(pods_dir).is_ok_and(|mut entries| entries.next().is_none()) {
        remove_cgroup_parent(cgroup_prefix);
    }
}

/// Whether no other pod has a folder beside this one.
fn is_last_pod(dir: &PodDir) -> bool {
    let Some(pods) = dir.dir().parent() else {
        return false;
    };
    std::fs::read_dir(pods).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .all(|e| e.path() == dir.dir())
    })
}

/// Stops a pod whose supervisor is gone: TERM to every container, KILL after
/// the grace period, then the sandbox, then release.
pub fn stop_without_supervisor(dir: &PodDir, pod: &Pod, cgroup_prefix: &str) -> Result<(), String> {
    let runtime = Runtime::new(&dir.paths.oci_root(), false).map_err(|e| e.to_string())?;
    let members: Vec<String> = runtime
        .ids()
        .unwrap_or_default()
        .into_iter()
        .filter(|id| id != SANDBOX_ID)
        .collect();
    let running = |id: &str| runtime.state(id).is_ok_and(|s| s.status != "stopped");
    let images = dir.images().unwrap_or_default();
    for id in &members {
        if running(id) {
            let signal = images
                .get(id)
                .map_or(Signal::SIGTERM, |image| image.config.stop_signal);
            let _ = runtime.kill(id, signal, false);
        }
    }
    let deadline = Instant::now() + pod.termination_grace;
    let mut pause = Duration::from_millis(5);
    while members.iter().any(|id| running(id)) && Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    for id in members
        .iter()
        .chain(std::iter::once(&SANDBOX_ID.to_string()))
    {
        if runtime.state(id).is_ok() {
            let _ = runtime.kill(id, Signal::SIGKILL, true);
        }
    }
    release(dir, pod, cgroup_prefix)?;
    // Record the end: without the supervisor the exit codes are unknown, so a pod
    // that was not already done counts as failed.
    if let Some(mut status) = dir.status() {
        status.finished = true;
        status.pids.clear();
        status.sandbox_pid = None;
        if matches!(status.phase, Phase::Pending | Phase::Running) {
            // Apps that had all ended with 0 (sidecars still stopping) make a
            // pod that succeeded, as the supervisor would have recorded it.
            let apps = &status.status.container_statuses;
            let succeeded = status.phase == Phase::Running
                && !apps.is_empty()
                && apps
                    .iter()
                    .all(|c| matches!(&c.state, ContainerState::Terminated(t) if t.exit_code == 0));
            let phase = if succeeded {
                Phase::Succeeded
            } else {
                Phase::Failed
            };
            status.phase = phase;
            status.status.phase = phase;
        }
        dir.write_status(&status).map_err(|e| e.to_string())?;
    }
    Ok(())
}
