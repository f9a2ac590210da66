//! The kubelet's QoS rules, case by case (each case names the rule it checks).

use super::*;
use crate::pod::admission::tests::admit_ok;
use crate::pod::model::{Resources, RestartPolicy};

const GI: i64 = 1 << 30;

fn res(
    cpu_req: Option<u64>,
    cpu_lim: Option<u64>,
    mem_req: Option<i64>,
    mem_lim: Option<i64>,
) -> Resources {
    Resources {
        cpu_request_millis: cpu_req,
        cpu_limit_millis: cpu_lim,
        memory_request_bytes: mem_req,
        memory_limit_bytes: mem_lim,
        ..Default::default()
    }
}

/// A pod from a manifest's containers (admission applies the API's defaults:
/// a missing request is the limit).
fn pod(containers: &str) -> Pod {
    admit_ok(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, uid: u-1}}\nspec:\n{containers}"
    ))
    .pod
}

const GUARANTEED: &str = "  containers:
  - {name: a, image: busybox, resources: {limits: {cpu: 500m, memory: 64Mi}}}
  - {name: b, image: busybox, resources: {limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 1, memory: 1Gi}}}
";
const BURSTABLE: &str = "  containers:
  - {name: a, image: busybox, resources: {requests: {cpu: 250m, memory: 1Gi}, limits: {cpu: 500m}}}
  - {name: b, image: busybox}
";
const BEST_EFFORT: &str = "  containers:
  - {name: a, image: busybox}
  - {name: b, image: busybox, resources: {limits: {ephemeral-storage: 1Gi}}}
";

#[test]
fn get_pod_qos_classes() {
    assert_eq!(qos_class(&pod(GUARANTEED)), QosClass::Guaranteed);
    assert_eq!(qos_class(&pod(BURSTABLE)), QosClass::Burstable);
    assert_eq!(qos_class(&pod(BEST_EFFORT)), QosClass::BestEffort);
    let cases = [
        // GetPodQOS: every container must limit both cpu and memory.
        ("  containers: [{name: a, image: i, resources: {limits: {cpu: 1}}}]\n", QosClass::Burstable),
        // ... with requests equal to the limits.
        ("  containers: [{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 500m}}}]\n", QosClass::Burstable),
        // A request alone makes it Burstable; a zero one does not count.
        ("  containers: [{name: a, image: i, resources: {requests: {memory: 1Mi}}}]\n", QosClass::Burstable),
        ("  containers: [{name: a, image: i, resources: {requests: {cpu: \"0\"}}}]\n", QosClass::BestEffort),
        // Init containers and sidecars count like the others.
        ("  initContainers: [{name: i, image: i, resources: {requests: {cpu: 1}}}]\n  containers: [{name: a, image: i}]\n", QosClass::Burstable),
        ("  initContainers: [{name: s, image: i, restartPolicy: Always}]\n  containers: [{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}}}]\n", QosClass::Burstable),
        ("  initContainers: [{name: s, image: i, restartPolicy: Always, resources: {limits: {cpu: 1, memory: 1Gi}}}]\n  containers: [{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}}}]\n", QosClass::Guaranteed),
        // Pod-level spec.resources decide when set (PodLevelResources).
        ("  resources: {limits: {cpu: 1, memory: 1Gi}}\n  containers: [{name: a, image: i}, {name: b, image: i}]\n", QosClass::Guaranteed),
        ("  resources: {requests: {memory: 1Gi}}\n  containers: [{name: a, image: i, resources: {limits: {cpu: 1, memory: 1Gi}}}]\n", QosClass::Burstable),
    ];
    for (spec, class) in cases {
        assert_eq!(qos_class(&pod(spec)), class, "{spec}");
    }
}

#[test]
fn pod_cgroups_sit_where_the_kubelet_puts_them() {
    let path = |spec| pod_cgroup("/peapod/", &pod(spec));
    assert_eq!(path(GUARANTEED), "/peapod/kubepods/podu-1");
    assert_eq!(path(BURSTABLE), "/peapod/kubepods/burstable/podu-1");
    assert_eq!(path(BEST_EFFORT), "/peapod/kubepods/besteffort/podu-1");
    assert_eq!(
        crate::pod::cgroups::container_cgroup(
            &crate::pod::Settings {
                cgroup_prefix: "a/b".into(),
                ..Default::default()
            },
            &pod(BURSTABLE),
            "web"
        ),
        "/a/b/kubepods/burstable/podu-1/web"
    );
}

#[test]
fn milli_cpu_to_shares_and_quota() {
    // MilliCPUToShares: no request is MinShares (2), not the kernel's 1024.
    assert_eq!(cpu_shares(None), 2);
    assert_eq!(cpu_shares(Some(0)), 2);
    assert_eq!(cpu_shares(Some(1)), 2);
    assert_eq!(cpu_shares(Some(250)), 256);
    assert_eq!(cpu_shares(Some(1000)), 1024);
    assert_eq!(cpu_shares(Some(1_000_000)), MAX_SHARES);
    // MilliCPUToQuota: 100 ms periods, at least 1 ms.
    assert_eq!(cpu_quota(None), None);
    assert_eq!(cpu_quota(Some(0)), None);
    assert_eq!(cpu_quota(Some(1)), Some(1000));
    assert_eq!(cpu_quota(Some(500)), Some(50_000));
    assert_eq!(cpu_quota(Some(2500)), Some(250_000));
    // A container's shares: its request, else its limit, else the minimum.
    let p = pod(BURSTABLE);
    assert_eq!(container_shares(&p.containers[0]), 256);
    assert_eq!(container_shares(&p.containers[1]), 2);
    let mut c = p.containers[1].clone();
    c.resources = res(None, Some(2000), None, None);
    assert_eq!(container_shares(&c), 2048);
}

#[test]
fn resource_config_for_pod() {
    // Guaranteed: summed shares, quota and memory.
    assert_eq!(
        pod_limits(&pod(GUARANTEED)),
        PodLimits {
            cpu_shares: 1536,
            cpu_quota: Some(150_000),
            memory_bytes: Some((64 << 20) + GI),
            ..PodLimits::default()
        }
    );
    // Burstable: limits only if every container declares them.
    assert_eq!(
        pod_limits(&pod(BURSTABLE)),
        PodLimits {
            cpu_shares: 256,
            cpu_quota: None,
            memory_bytes: None,
            ..PodLimits::default()
        }
    );
    let all_cpu = "  containers:
  - {name: a, image: i, resources: {requests: {cpu: 100m}, limits: {cpu: 200m, memory: 1Gi}}}
  - {name: b, image: i, resources: {limits: {cpu: 300m}}}
";
    assert_eq!(
        pod_limits(&pod(all_cpu)),
        PodLimits {
            cpu_shares: 409,
            cpu_quota: Some(50_000),
            memory_bytes: None,
            ..PodLimits::default()
        }
    );
    // BestEffort: the minimum weight, nothing else.
    assert_eq!(
        pod_limits(&pod(BEST_EFFORT)),
        PodLimits {
            cpu_shares: 2,
            ..PodLimits::default()
        }
    );
    // PodRequests: an init container beside the sidecars before it, or the
    // sidecars plus the app containers, whichever is more.
    let init = "  initContainers:
  - {name: s, image: i, restartPolicy: Always, resources: {requests: {cpu: 100m}}}
  - {name: i, image: i, resources: {requests: {cpu: 2}}}
  containers:
  - {name: a, image: i, resources: {requests: {cpu: 500m}}}
";
    assert_eq!(pod_limits(&pod(init)).cpu_shares, cpu_shares(Some(2100)));
    // Pod-level resources take the place of the sums.
    let pod_level = "  resources: {requests: {cpu: 300m}, limits: {cpu: 1, memory: 1Gi}}
  containers: [{name: a, image: i, resources: {requests: {cpu: 100m}}}]
";
    assert_eq!(
        pod_limits(&pod(pod_level)),
        PodLimits {
            cpu_shares: 307,
            cpu_quota: Some(100_000),
            memory_bytes: Some(GI),
            ..PodLimits::default()
        }
    );
}

// ResourceConfigForPod's HugePageLimit: per page size, summed as the other
// requests (the init container beside the apps, whichever is more); the
// cgroup manager limits every other size of the host to 0.
#[test]
fn hugepages_of_the_pod_and_the_sizes_it_does_not_ask_for() {
    let spec = "  initContainers:
  - {name: i, image: i, resources: {limits: {hugepages-2Mi: 8Mi, memory: 16Mi}}}
  containers:
  - {name: a, image: i, resources: {limits: {hugepages-2Mi: 4Mi, memory: 16Mi}}}
  - {name: b, image: i, resources: {limits: {hugepages-2Mi: 2Mi, cpu: 100m}}}
";
    let limits = pod_limits(&pod(spec));
    assert_eq!(limits.hugepages.get(&(2 << 20)), Some(&(8 << 20)));
    let host = [2 << 20, 1 << 30];
    assert_eq!(
        limits.cgroup_limits(Some(&host)).hugetlb,
        vec![("2MB".to_string(), 8 << 20), ("1GB".to_string(), 0)]
    );
    // Where hugetlb limits are not set, none.
    assert!(limits.cgroup_limits(None).hugetlb.is_empty());
}

#[test]
fn get_container_oom_score_adjust() {
    let capacity = 10 * GI;
    let g = pod(GUARANTEED);
    assert_eq!(oom_score_adj(&g, &g.containers[0], capacity), -997);
    let be = pod(BEST_EFFORT);
    assert_eq!(oom_score_adj(&be, &be.containers[0], capacity), 1000);
    // Burstable: 1000 - 1000 × request / capacity.
    let b = pod(BURSTABLE);
    assert_eq!(oom_score_adj(&b, &b.containers[0], capacity), 900);
    // No memory request would be 1000: one less, above BestEffort.
    assert_eq!(oom_score_adj(&b, &b.containers[1], capacity), 999);
    // A request of the whole node stays above Guaranteed: 1000 - 997 = 3.
    let mut big = b.clone();
    big.containers[0].resources.memory_request_bytes = Some(capacity);
    assert_eq!(oom_score_adj(&big, &big.containers[0], capacity), 3);
    // A sidecar scores no higher than the app container with the least request.
    let sidecar = "  initContainers:
  - {name: s, image: i, restartPolicy: Always, resources: {requests: {memory: 1Mi}}}
  containers:
  - {name: a, image: i, resources: {requests: {memory: 5Gi}}}
";
    let p = pod(sidecar);
    assert_eq!(oom_score_adj(&p, &p.init_containers[0], capacity), 500);
    // Pod-level requests left over are shared among the containers.
    let pod_level = "  resources: {requests: {memory: 4Gi}}
  containers: [{name: a, image: i}, {name: b, image: i, resources: {requests: {memory: 2Gi}}}]
";
    let p = pod(pod_level);
    assert_eq!(qos_class(&p), QosClass::Burstable);
    assert_eq!(oom_score_adj(&p, &p.containers[0], capacity), 900);
    assert_eq!(oom_score_adj(&p, &p.containers[1], capacity), 700);
    // The sandbox is below every container.
    const { assert!(SANDBOX_OOM_SCORE_ADJ < GUARANTEED_OOM_SCORE_ADJ) };
}

#[test]
fn a_host_that_cannot_lower_scores_raises_them_to_its_floor() {
    assert_eq!(clamp_oom_score_adj(-997, Some(0)), 0);
    assert_eq!(clamp_oom_score_adj(500, Some(0)), 500);
    assert_eq!(clamp_oom_score_adj(-997, None), -997);
    assert!(memory_capacity() > 0);
    let _ = RestartPolicy::Always;
}
