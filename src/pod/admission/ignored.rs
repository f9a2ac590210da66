//! Pod fields peapod accepts but does not act on (there is no scheduler and no
//! API server on a single node): each one set gives a warning.

use k8s_openapi::api::core::v1 as k8s;

use super::Admission;

const SCHEDULING_IGNORED: &str = "ignored (no scheduler/API server on a single node)";

impl Admission<'_> {
    pub(super) fn ignored_pod_fields(&mut self, spec: &k8s::PodSpec) {
        let k8s::PodSpec {
            affinity,
            automount_service_account_token,
            enable_service_links,
            hostname_override,
            image_pull_secrets,
            node_name,
            node_selector,
            overhead,
            preemption_policy,
            priority,
            priority_class_name,
            readiness_gates,
            runtime_class_name,
            scheduler_name,
            scheduling_gates,
            service_account,
            service_account_name,
            set_hostname_as_fqdn,
            tolerations,
            topology_spread_constraints,
            ..
        } = spec;
        for (field, set) in [
            ("spec.affinity", affinity.is_some()),
            (
                "spec.automountServiceAccountToken",
                automount_service_account_token.is_some(),
            ),
            ("spec.enableServiceLinks", enable_service_links.is_some()),
            (
                "spec.nodeSelector",
                node_selector.as_ref().is_some_and(|m| !m.is_empty()),
            ),
            (
                "spec.overhead",
                overhead.as_ref().is_some_and(|m| !m.is_empty()),
            ),
            ("spec.preemptionPolicy", preemption_policy.is_some()),
            ("spec.priority", priority.is_some()),
            ("spec.priorityClassName", priority_class_name.is_some()),
            (
                "spec.readinessGates",
                readiness_gates.as_ref().is_some_and(|l| !l.is_empty()),
            ),
            ("spec.runtimeClassName", runtime_class_name.is_some()),
            ("spec.schedulerName", scheduler_name.is_some()),
            (
                "spec.schedulingGates",
                scheduling_gates.as_ref().is_some_and(|l| !l.is_empty()),
            ),
            ("spec.serviceAccount", service_account.is_some()),
            ("spec.serviceAccountName", service_account_name.is_some()),
            (
                "spec.tolerations",
                tolerations.as_ref().is_some_and(|l| !l.is_empty()),
            ),
            (
                "spec.topologySpreadConstraints",
                topology_spread_constraints
                    .as_ref()
                    .is_some_and(|l| !l.is_empty()),
            ),
        ] {
            if set {
                self.warn(field, SCHEDULING_IGNORED);
            }
        }
        if image_pull_secrets
            .as_ref()
            .is_some_and(|list| !list.is_empty())
        {
            self.warn("spec.imagePullSecrets", "ignored (images are local)");
        }
        if let Some(node_name) = node_name.as_ref().filter(|name| !name.is_empty()) {
            if *node_name != self.node.name {
                let message = format!(
                    "ignored: the pod runs on this node ({:?}), not {node_name:?}",
                    self.node.name
                );
                self.warn("spec.nodeName", message);
            }
        }
        for (field, set) in [
            (
                "spec.setHostnameAsFQDN",
                *set_hostname_as_fqdn == Some(true),
            ),
            ("spec.hostnameOverride", hostname_override.is_some()),
        ] {
            if set {
                self.warn(field, "ignored (not supported)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::pod::admission::tests::*;

    #[test]
    fn quiet_fields_give_no_warning() {
        let text = format!(
            "{HEAD}spec:\n  hostNetwork: false\n  dnsPolicy: ClusterFirst\n  nodeName: node-1\n  securityContext: {{seccompProfile: {{type: Unconfined}}}}\n  \
             containers:\n  - {{name: a, image: i, imagePullPolicy: Always, terminationMessagePath: /dev/termination-log, \
             terminationMessagePolicy: File, ports: [{{containerPort: 80, name: http}}]}}\n\
             status: {{phase: Running, podIP: 10.1.1.1}}\n"
        );
        assert_eq!(admit_ok(&text).warnings, Vec::<String>::new());
    }

    #[test]
    fn warnings_name_the_field() {
        let cases = [
            (
                pod("{nodeSelector: {disk: ssd}, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.nodeSelector: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{tolerations: [{operator: Exists}], containers: [{name: a, image: i}]}"),
                "web.yaml: spec.tolerations: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{serviceAccountName: robot, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.serviceAccountName: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{priority: 5, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.priority: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{affinity: {}, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.affinity: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{enableServiceLinks: false, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.enableServiceLinks: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{runtimeClassName: peapod, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.runtimeClassName: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{nodeName: elsewhere, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.nodeName: ignored: the pod runs on this node (\"node-1\")",
            ),
        ];
        assert_warnings(&cases);
    }
}
