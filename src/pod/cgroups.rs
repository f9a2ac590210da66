//! The pod's cgroups on the host, shaped as the kubelet's cgroupfs driver
//! makes them: `<prefix>/kubepods[/burstable|/besteffort]/pod<uid>/<container>`.
//! The pod cgroup carries the pod's summed shares and limits (`qos.rs`); the
//! QoS and `kubepods` parents are made with the first pod that needs them and
//! go with the last.
//!
//! With the systemd driver (`cgroup_driver: systemd`) the same tree is made
//! of systemd units, as the kubelet's systemd driver names them
//! (`systemd_names.rs`): each cgroup above is a transient slice carrying the
//! same limits as unit properties, and each container is a transient scope
//! `peapod-<uid>-<container>.scope` in its pod's slice (libcontainer makes it
//! from the spec's `slice:prefix:name` cgroupsPath).
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
use super::settings::{CgroupDriver, Settings};
use super::systemd_names::{self, slice_cgroup, slice_name};
use crate::sys::cgroup::{Layout, Limits, Version};
use crate::sys::systemd::{self, Property, Systemd};

/// The scope prefix of containers' units (`<prefix>-<name>.scope`).
const SCOPE_PREFIX: &str = "peapod";

/// The cgroup of one container of the pod, as a path under each hierarchy:
/// `<prefix>/kubepods[/…]/pod<uid>/<leaf>`, or with systemd its scope in the
/// pod's slice. Where its files are read.
pub fn container_cgroup(settings: &Settings, pod: &Pod, leaf: &str) -> String {
    let prefix = &settings.cgroup_prefix;
    match settings.cgroup_driver {
        CgroupDriver::Cgroupfs => format!("{}/{leaf}", qos::pod_cgroup(prefix, pod)),
        CgroupDriver::Systemd => format!(
            "{}/{SCOPE_PREFIX}-{}.scope",
            pod_cgroup(settings, pod),
            scope_name(pod, leaf)
        ),
    }
}

/// The container's `linux.cgroupsPath`: its cgroup's path, or with systemd
/// runc's `<slice>:<prefix>:<name>` form of its scope.
pub fn container_cgroups_path(settings: &Settings, pod: &Pod, leaf: &str) -> String {
    match settings.cgroup_driver {
        CgroupDriver::Cgroupfs => container_cgroup(settings, pod, leaf),
        CgroupDriver::Systemd => systemd_names::container_cgroups_path(
            &settings.cgroup_prefix,
            pod,
            SCOPE_PREFIX,
            &scope_name(pod, leaf),
        ),
    }
}

/// The pod's cgroup as a path under each hierarchy (a slice's place in the
/// tree with systemd).
pub fn pod_cgroup(settings: &Settings, pod: &Pod) -> String {
    match settings.cgroup_driver {
        CgroupDriver::Cgroupfs => qos::pod_cgroup(&settings.cgroup_prefix, pod),
        CgroupDriver::Systemd => {
            slice_cgroup(&systemd_names::pod_slice(&settings.cgroup_prefix, pod))
        }
    }
}

/// `<uid>-<container>`, unique on the node as scopes must be.
fn scope_name(pod: &Pod, leaf: &str) -> String {
    systemd::unit_name_part(&format!("{}-{leaf}", pod.uid))
}

/// The host's huge page sizes, where pods' and containers' hugetlb limits
/// are set: with cgroupfs, where libcontainer can set them too (see
/// `Layout::hugetlb_limits`). systemd has no hugetlb properties and
/// libcontainer's systemd manager sets none, so not under systemd.
pub fn hugetlb_page_sizes(settings: &Settings) -> Option<Vec<u64>> {
    (settings.cgroup_driver == CgroupDriver::Cgroupfs && Layout::host().hugetlb_limits())
        .then(crate::sys::cgroup::hugepage_sizes)
}

/// With systemd: waits until the scope of a container just deleted is gone,
/// so the next run can take its name. Nothing to do with cgroupfs.
pub fn forget_container(settings: &Settings, pod: &Pod, leaf: &str) -> Result<()> {
    if settings.cgroup_driver == CgroupDriver::Cgroupfs {
        return Ok(());
    }
    let scope = format!("{SCOPE_PREFIX}-{}.scope", scope_name(pod, leaf));
    connect(pod)?
        .stop(&scope)
        .map_err(|e| Error::pod(&pod.name, format!("container {leaf}: {e}")))
}

fn connect(pod: &Pod) -> Result<Systemd> {
    Systemd::connect().map_err(|e| Error::pod(&pod.name, format!("cgroup driver systemd: {e}")))
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
/// `hugepage_sizes`: `hugetlb_page_sizes` of these settings.
pub fn create(
    folder: &PodFolder,
    settings: &Settings,
    pod: &Pod,
    hugepage_sizes: Option<&[u64]>,
) -> Result<()> {
    let prefix = settings.cgroup_prefix.as_str();
    let class = qos::qos_class(pod);
    let layout = Layout::host();
    let bus = match settings.cgroup_driver {
        CgroupDriver::Cgroupfs => None,
        CgroupDriver::Systemd => Some(connect(pod)?),
    };
    let _lock = lock(folder)?;
    let made = |path: &str, limits: &Limits| match &bus {
        None => layout
            .cgroup(path)
            .create(limits)
            .map_err(|e| Error::pod(&pod.name, format!("pod cgroup: {e}"))),
        Some(bus) => start_slice(bus, &layout, path, limits, pod),
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
        &qos::pod_limits(pod).cgroup_limits(hugepage_sizes),
    )
}

/// The slice of the cgroupfs path `path` as a transient unit with `limits`
/// as its properties (the kubelet's systemd driver sets them so, and systemd
/// would put back any value written to the files behind its back).
fn start_slice(
    bus: &Systemd,
    layout: &Layout,
    path: &str,
    limits: &Limits,
    pod: &Pod,
) -> Result<()> {
    // The cpu controller on v2 takes a weight; on a v1 hierarchy, shares.
    let v2 = !layout
        .hierarchies()
        .iter()
        .any(|h| h.version == Version::V1 && h.has("cpu"));
    let slice = slice_name(path);
    let properties = slice_properties(
        limits,
        v2,
        &format!("peapod {}", path.trim_start_matches('/')),
    );
    bus.start_transient(&slice, &properties)
        .map_err(|e| Error::pod(&pod.name, format!("pod cgroup: {e}")))
}

/// What systemd's runc-compatible managers set on a unit: accounting on,
/// no default dependencies, and the limits (CPUWeight on v2 and CPUShares on
/// v1, the quota per second with its period, MemoryMax).
pub(super) fn slice_properties(limits: &Limits, v2: bool, description: &str) -> Vec<Property> {
    let mut props = vec![
        Property::Str("Description", description.to_string()),
        Property::Bool("DefaultDependencies", false),
        Property::Bool("CPUAccounting", true),
        Property::Bool("MemoryAccounting", true),
        Property::Bool("TasksAccounting", true),
        Property::Bool("IOAccounting", true),
    ];
    if let Some(shares) = limits.cpu_shares {
        props.push(match v2 {
            true => Property::U64("CPUWeight", crate::sys::cgroup::shares_to_weight(shares)),
            false => Property::U64("CPUShares", shares),
        });
    }
    if let Some(quota) = limits.cpu_quota.filter(|q| *q > 0) {
        let period = limits.cpu_period.max(1);
        props.push(Property::U64(
            "CPUQuotaPerSecUSec",
            quota as u64 * 1_000_000 / period,
        ));
        props.push(Property::U64("CPUQuotaPeriodUSec", period));
    }
    if let Some(bytes) = limits.memory_bytes.filter(|b| *b > 0) {
        props.push(Property::U64("MemoryMax", bytes as u64));
    }
    props
}

/// Removes the pod cgroup (with whatever is left below it), then each parent
/// up to the prefix that no other pod uses.
pub fn remove(folder: &PodFolder, settings: &Settings, pod: &Pod) -> Result<()> {
    let prefix = settings.cgroup_prefix.as_str();
    let layout = Layout::host();
    if settings.cgroup_driver == CgroupDriver::Systemd {
        let bus = connect(pod)?;
        let _lock = lock(folder)?;
        let result = bus.stop(&systemd_names::pod_slice(prefix, pod));
        stop_unused_slices(&bus, &layout, prefix);
        return result.map_err(|e| Error::pod(&pod.name, format!("remove cgroup {e}")));
    }
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

/// With systemd: the QoS slices, `kubepods` and the prefix's slices, each
/// stopped if no pod's slice is left in it.
fn stop_unused_slices(bus: &Systemd, layout: &Layout, prefix: &str) {
    let mut parents: Vec<String> = [
        QosClass::Burstable,
        QosClass::BestEffort,
        QosClass::Guaranteed,
    ]
    .into_iter()
    .map(|class| qos::qos_cgroup(prefix, class))
    .collect();
    // `a/b` is the slices `a-b.slice` and `a.slice`, deepest first.
    let mut path = prefix.trim_matches('/').to_string();
    while !path.is_empty() {
        parents.push(format!("/{path}"));
        path = path
            .rsplit_once('/')
            .map_or(String::new(), |(up, _)| up.to_string());
    }
    for path in parents {
        let slice = slice_name(&path);
        if has_children(layout, &slice_cgroup(&slice)) {
            continue;
        }
        if let Err(e) = bus.stop(&slice) {
            tracing::warn!("{e}");
        }
    }
}

/// Whether the cgroup has child cgroups in any hierarchy.
fn has_children(layout: &Layout, path: &str) -> bool {
    layout
        .cgroup(path)
        .dirs()
        .iter()
        .filter(|d| !d.is_root())
        .any(|d| {
            std::fs::read_dir(&d.path).is_ok_and(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            })
        })
}

/// The parents of every pod, for `pod rm` after the last folder went
/// (a pod that failed before making its cgroup leaves none to find).
pub fn remove_parents_if_unused(folder: &PodFolder, settings: &Settings) {
    let prefix = settings.cgroup_prefix.as_str();
    if settings.cgroup_driver == CgroupDriver::Systemd {
        if let (Ok(bus), Ok(_lock)) = (Systemd::connect(), lock(folder)) {
            stop_unused_slices(&bus, &Layout::host(), prefix);
        }
        return;
    }
    if let Ok(_lock) = lock(folder) {
        remove_unused_parents(&Layout::host(), prefix);
    }
}

/// The cgroup under the prefix that holds every pod.
pub fn pods_parent(prefix: &str) -> String {
    format!("/{}/{PODS_CGROUP}", prefix.trim_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burstable_pod() -> Pod {
        crate::pod::admission::tests::admit_ok(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: 0a1b-2c3d}\n\
             spec: {containers: [{name: c, image: busybox, \
             resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: 500m, memory: 128Mi}}}]}\n",
        )
        .pod
    }

    fn systemd() -> Settings {
        Settings {
            cgroup_driver: CgroupDriver::Systemd,
            ..Settings::default()
        }
    }

    // The kubelet's systemd driver: the cgroupfs tree's names as slices,
    // containers as scopes in the pod's slice (runc's slice:prefix:name).
    #[test]
    fn under_systemd_a_container_is_a_scope_in_the_pods_slice() {
        let pod = burstable_pod();
        let s = systemd();
        let slice = "/peapod.slice/peapod-kubepods.slice/peapod-kubepods-burstable.slice/\
                     peapod-kubepods-burstable-pod0a1b_2c3d.slice";
        assert_eq!(pod_cgroup(&s, &pod), slice);
        assert_eq!(
            container_cgroups_path(&s, &pod, "c"),
            "peapod-kubepods-burstable-pod0a1b_2c3d.slice:peapod:0a1b-2c3d-c"
        );
        assert_eq!(
            container_cgroup(&s, &pod, "_sandbox"),
            format!("{slice}/peapod-0a1b-2c3d-_sandbox.scope")
        );
        let fs = Settings::default();
        assert_eq!(
            container_cgroups_path(&fs, &pod, "c"),
            "/peapod/kubepods/burstable/pod0a1b-2c3d/c"
        );
        assert_eq!(
            container_cgroups_path(&fs, &pod, "c"),
            container_cgroup(&fs, &pod, "c")
        );
    }

    // Burstable with both limits declared: the pod slice carries the summed
    // limits (ResourceConfigForPod) as systemd properties: CPUWeight from
    // the shares on v2 (CPUShares on v1), the quota per second, MemoryMax.
    #[test]
    fn a_pod_slice_carries_the_pods_limits_as_unit_properties() {
        let limits = qos::pod_limits(&burstable_pod()).cgroup_limits(None);
        let props = slice_properties(&limits, true, "d");
        let get = |name: &str| props.iter().find(|p| p.name() == name).cloned();
        // 250m -> 256 shares -> weight 35 (runc 1.3.2's conversion).
        assert_eq!(get("CPUWeight"), Some(Property::U64("CPUWeight", 35)));
        assert_eq!(get("CPUShares"), None);
        // 500m -> 50000 µs per 100000 µs -> 500000 µs per second.
        assert_eq!(
            get("CPUQuotaPerSecUSec"),
            Some(Property::U64("CPUQuotaPerSecUSec", 500_000))
        );
        assert_eq!(
            get("CPUQuotaPeriodUSec"),
            Some(Property::U64("CPUQuotaPeriodUSec", 100_000))
        );
        assert_eq!(
            get("MemoryMax"),
            Some(Property::U64("MemoryMax", 128 << 20))
        );
        assert_eq!(
            get("MemoryAccounting"),
            Some(Property::Bool("MemoryAccounting", true))
        );
        let v1 = slice_properties(&limits, false, "d");
        assert!(v1.contains(&Property::U64("CPUShares", 256)), "{v1:?}");
        // No limit, no property: systemd's default is unlimited.
        let none = slice_properties(&Limits::default(), true, "d");
        assert!(none
            .iter()
            .all(|p| !matches!(p.name(), "MemoryMax" | "CPUQuotaPerSecUSec" | "CPUWeight")));
    }
}
