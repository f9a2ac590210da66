//! Quality of service as the kubelet computes it: the pod's QoS class, where
//! its cgroup goes in the kubelet's hierarchy, the pod cgroup's limits and
//! shares, each container's cpu shares and quota, and `oom_score_adj`.
//!
//! The rules are the kubelet's, named after the Go they copy so a reader can
//! check them: `v1qos.GetPodQOS` (pkg/apis/core/v1/helper/qos),
//! `ResourceConfigForPod`, `MilliCPUToShares`, `MilliCPUToQuota`
//! (pkg/kubelet/cm/helpers_linux.go), `resourcehelper.PodRequests`/`PodLimits`
//! (k8s.io/component-helpers/resource) and `GetContainerOOMScoreAdjust`
//! (pkg/kubelet/qos/policy.go).

use serde::{Deserialize, Serialize};

use super::model::{Container, Pod, Resources};
pub use crate::sys::cgroup::shares_to_weight;

/// The kubelet's MinShares: what a container or pod without a cpu request weighs.
pub const MIN_SHARES: u64 = 2;
/// The kubelet's MaxShares.
pub const MAX_SHARES: u64 = 262_144;
/// The kubelet's cfs period (100 ms) and its MinQuotaPeriod (1 ms).
pub const CPU_PERIOD: u64 = 100_000;
const MIN_QUOTA: u64 = 1_000;

/// policy.go: guaranteedOOMScoreAdj and besteffortOOMScoreAdj.
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
pub const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;
/// containerd's CRI gives the sandbox (pause) -998, below every container.
pub const SANDBOX_OOM_SCORE_ADJ: i32 = -998;

/// The cgroup under the prefix that holds every pod (the kubelet's "kubepods").
pub const PODS_CGROUP: &str = "kubepods";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// As `status.qosClass` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }

    /// The kubelet's QoS cgroup under kubepods (Guaranteed pods sit in kubepods itself).
    pub fn cgroup_dir(self) -> Option<&'static str> {
        match self {
            QosClass::Guaranteed => None,
            QosClass::Burstable => Some("burstable"),
            QosClass::BestEffort => Some("besteffort"),
        }
    }
}

/// Every init container (sidecars among them) and app container.
fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.init_containers.iter().chain(&pod.containers)
}

/// GetPodQOS: BestEffort when nothing requests or limits cpu or memory;
/// Guaranteed when every container limits both and the summed requests equal
/// the summed limits; else Burstable. With pod-level `spec.resources`, those
/// decide instead (Kubernetes 1.34, PodLevelResources).
pub fn qos_class(pod: &Pod) -> QosClass {
    let each: Vec<&Resources> = match &pod.resources {
        Some(r) if r.has_cpu_or_memory() => vec![r],
        _ => all_containers(pod).map(|c| &c.resources).collect(),
    };
    let positive = |v: Option<u64>| v.filter(|v| *v > 0);
    let positive_bytes = |v: Option<i64>| v.filter(|v| *v > 0).map(|v| v as u64);
    let (mut cpu_req, mut mem_req, mut cpu_lim, mut mem_lim) = (None, None, None, None);
    let add = |sum: &mut Option<u64>, v: Option<u64>| {
        if let Some(v) = v {
            *sum = Some(sum.unwrap_or(0).saturating_add(v));
        }
    };
    let mut guaranteed = true;
    for r in &each {
        add(&mut cpu_req, positive(r.cpu_request_millis));
        add(&mut mem_req, positive_bytes(r.memory_request_bytes));
        let (cl, ml) = (
            positive(r.cpu_limit_millis),
            positive_bytes(r.memory_limit_bytes),
        );
        add(&mut cpu_lim, cl);
        add(&mut mem_lim, ml);
        guaranteed &= cl.is_some() && ml.is_some();
    }
    let any = |v: &[Option<u64>]| v.iter().any(Option::is_some);
    if !any(&[cpu_req, mem_req, cpu_lim, mem_lim]) {
        return QosClass::BestEffort;
    }
    // Every request present must equal its limit, and both must be requested.
    if guaranteed && cpu_req == cpu_lim && mem_req == mem_lim {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// `<prefix>/kubepods[/burstable|/besteffort]/pod<uid>`: the pod's cgroup,
/// where the kubelet's cgroupfs driver puts it.
pub fn pod_cgroup(prefix: &str, pod: &Pod) -> String {
    let mut path = qos_cgroup(prefix, qos_class(pod));
    path.push_str(&format!("/pod{}", pod.uid));
    path
}

/// `<prefix>/kubepods[/burstable|/besteffort]`.
pub fn qos_cgroup(prefix: &str, class: QosClass) -> String {
    let mut path = format!("/{}/{PODS_CGROUP}", prefix.trim_matches('/'));
    if let Some(dir) = class.cgroup_dir() {
        path.push('/');
        path.push_str(dir);
    }
    path.replace("//", "/")
}

/// MilliCPUToShares: 1024 per cpu, no request is the minimum (2), capped at 262144.
pub fn cpu_shares(request_millis: Option<u64>) -> u64 {
    match request_millis.unwrap_or(0) {
        0 => MIN_SHARES,
        millis => (millis.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES),
    }
}

/// MilliCPUToQuota: the limit's share of a 100 ms period, at least 1 ms; none without a limit.
pub fn cpu_quota(limit_millis: Option<u64>) -> Option<i64> {
    let millis = limit_millis.filter(|m| *m > 0)?;
    let quota = (millis.saturating_mul(CPU_PERIOD) / 1000).max(MIN_QUOTA);
    Some(i64::try_from(quota).unwrap_or(i64::MAX))
}

/// What the pod's cgroup carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodLimits {
    pub cpu_shares: u64,
    /// cfs quota per `CPU_PERIOD`, if the pod's cpu is limited.
    pub cpu_quota: Option<i64>,
    pub memory_bytes: Option<i64>,
    /// Huge pages by page size (bytes), summed as the other requests.
    pub hugepages: std::collections::BTreeMap<u64, u64>,
}

/// resourcehelper.PodRequests/PodLimits for one resource: the app containers
/// and sidecars add up; an init container runs beside the sidecars started
/// before it, and the pod needs the most of either.
fn pod_total(pod: &Pod, amount: impl Fn(&Resources) -> Option<u64>) -> u64 {
    let mut sidecars: u64 = 0;
    let mut init_max: u64 = 0;
    for c in &pod.init_containers {
        let own = amount(&c.resources).unwrap_or(0);
        if c.is_sidecar() {
            sidecars = sidecars.saturating_add(own);
            init_max = init_max.max(sidecars);
        } else {
            init_max = init_max.max(sidecars.saturating_add(own));
        }
    }
    let apps: u64 = pod
        .containers
        .iter()
        .map(|c| amount(&c.resources).unwrap_or(0))
        .fold(0, u64::saturating_add);
    apps.saturating_add(sidecars).max(init_max)
}

/// ResourceConfigForPod: the pod cgroup's shares from its summed requests;
/// Guaranteed pods get their summed cpu and memory limits; Burstable ones
/// each limit only if every container declares it; BestEffort pods weigh
/// the minimum. Pod-level `spec.resources` take the place of the sums.
pub fn pod_limits(pod: &Pod) -> PodLimits {
    let class = qos_class(pod);
    if class == QosClass::BestEffort {
        return PodLimits {
            cpu_shares: MIN_SHARES,
            ..PodLimits::default()
        };
    }
    let bytes = |v: Option<i64>| v.filter(|b| *b > 0).map(|b| b as u64);
    let pod_level = pod.resources.as_ref();
    let cpu_request = pod_level
        .and_then(|r| r.cpu_request_millis)
        .unwrap_or_else(|| pod_total(pod, |r| r.cpu_request_millis));
    let cpu_limit = pod_level
        .and_then(|r| r.cpu_limit_millis)
        .unwrap_or_else(|| pod_total(pod, |r| r.cpu_limit_millis));
    let memory_limit = pod_level
        .and_then(|r| bytes(r.memory_limit_bytes))
        .unwrap_or_else(|| pod_total(pod, |r| bytes(r.memory_limit_bytes)));
    let every = |has: fn(&Resources) -> bool| all_containers(pod).all(|c| has(&c.resources));
    let cpu_declared = pod_level.is_some_and(|r| r.cpu_limit_millis.is_some_and(|m| m > 0))
        || every(|r| r.cpu_limit_millis.is_some_and(|m| m > 0));
    let memory_declared = pod_level.is_some_and(|r| r.memory_limit_bytes.is_some_and(|b| b > 0))
        || every(|r| r.memory_limit_bytes.is_some_and(|b| b > 0));
    let guaranteed = class == QosClass::Guaranteed;
    let sizes: std::collections::BTreeSet<u64> = all_containers(pod)
        .flat_map(|c| c.resources.hugepage_limits.keys().copied())
        .collect();
    let hugepages = sizes
        .into_iter()
        .map(|size| {
            (
                size,
                pod_total(pod, |r| r.hugepage_limits.get(&size).copied()),
            )
        })
        .collect();
    PodLimits {
        hugepages,
        cpu_shares: cpu_shares(Some(cpu_request)),
        cpu_quota: (guaranteed || cpu_declared)
            .then(|| cpu_quota(Some(cpu_limit)))
            .flatten(),
        memory_bytes: (guaranteed || memory_declared)
            .then(|| i64::try_from(memory_limit).ok())
            .flatten()
            .filter(|b| *b > 0),
    }
}

impl PodLimits {
    /// As the pod cgroup's files take them. `page_sizes`: the host's huge
    /// page sizes where hugetlb limits are set; each one the pod does not
    /// ask for is limited to 0 (the kubelet's cgroup manager does so).
    pub fn cgroup_limits(&self, page_sizes: Option<&[u64]>) -> crate::sys::cgroup::Limits {
        crate::sys::cgroup::Limits {
            cpu_shares: Some(self.cpu_shares),
            cpu_quota: self.cpu_quota,
            cpu_period: CPU_PERIOD,
            memory_bytes: self.memory_bytes,
            hugetlb: hugetlb_limits(&self.hugepages, page_sizes),
        }
    }
}

/// GetHugepageLimitsFromResources: every page size of the host, 0 unless
/// asked for; nothing where hugetlb limits are not set.
pub fn hugetlb_limits(
    asked: &std::collections::BTreeMap<u64, u64>,
    page_sizes: Option<&[u64]>,
) -> Vec<(String, u64)> {
    page_sizes
        .unwrap_or_default()
        .iter()
        .map(|size| {
            (
                crate::sys::cgroup::hugepage_size_name(*size),
                asked.get(size).copied().unwrap_or(0),
            )
        })
        .collect()
}

/// The container's cpu shares as the kubelet sends them: from its request,
/// else its limit, else the minimum (2).
pub fn container_shares(c: &Container) -> u64 {
    let request = c.resources.cpu_request_millis.filter(|m| *m > 0);
    cpu_shares(request.or(c.resources.cpu_limit_millis))
}

/// GetContainerOOMScoreAdjust: Guaranteed -997, BestEffort 1000; Burstable
/// `1000 - 1000 × memory request / node memory`, kept within [3, 999] so it
/// stays above Guaranteed and below BestEffort. With pod-level requests, the
/// pod's request not taken by containers is shared among them; a sidecar
/// scores no higher than the app container with the smallest request.
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: i64) -> i32 {
    match qos_class(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let capacity = memory_capacity.max(1);
    let request = |c: &Container| c.resources.memory_request_bytes.unwrap_or(0).max(0);
    let remaining = remaining_pod_request_per_container(pod);
    let score = |req: i64| 1000 - (1000i128 * i128::from(req) / i128::from(capacity)) as i64;
    let mut adj = score(request(c).saturating_add(remaining));
    if c.is_sidecar() && pod.init_containers.iter().any(|i| i.name == c.name) {
        let min_request = pod.containers.iter().map(request).min().unwrap_or(0);
        adj = adj.min(score(min_request.saturating_add(remaining)));
    }
    let floor = i64::from(1000 + GUARANTEED_OOM_SCORE_ADJ);
    if adj < floor {
        return floor as i32;
    }
    if adj == i64::from(BEST_EFFORT_OOM_SCORE_ADJ) {
        return BEST_EFFORT_OOM_SCORE_ADJ - 1;
    }
    adj as i32
}

/// remainingPodMemReqPerContainer: the pod-level memory request the
/// containers (app and sidecars) do not request themselves, shared evenly.
fn remaining_pod_request_per_container(pod: &Pod) -> i64 {
    let Some(pod_request) = pod.resources.as_ref().and_then(|r| r.memory_request_bytes) else {
        return 0;
    };
    let members: Vec<&Container> = pod
        .init_containers
        .iter()
        .filter(|c| c.is_sidecar())
        .chain(&pod.containers)
        .collect();
    let requested: i64 = members
        .iter()
        .map(|c| c.resources.memory_request_bytes.unwrap_or(0))
        .sum();
    let left = pod_request.saturating_sub(requested).max(0);
    left / (members.len().max(1) as i64)
}

/// The node's memory (MemTotal of /proc/meminfo), the kubelet's capacity.
pub fn memory_capacity() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(i64::MAX, |kib| kib.saturating_mul(1024))
}

/// The lowest `oom_score_adj` this process can give a child: anything
/// without CAP_SYS_RESOURCE cannot go below its own (the kernel's
/// oom_score_adj_min; EACCES otherwise). None: no floor.
pub fn oom_score_floor() -> Option<i32> {
    let can_lower = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if can_lower {
        return None;
    }
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").ok()?;
    own.trim().parse().ok()
}

/// What a container gets on this host: the kubelet's value, raised to the
/// floor where the host cannot lower scores.
pub fn clamp_oom_score_adj(wanted: i32, floor: Option<i32>) -> i32 {
    floor.map_or(wanted, |f| wanted.max(f))
}

#[cfg(test)]
#[path = "qos_tests.rs"]
mod tests;
