//! A container's probes and lifecycle hooks: checked where Kubernetes would
//! refuse them, not run yet.

use k8s_openapi::api::core::v1 as k8s;

use super::{Admission, ManifestError, NOT_ENFORCED};

/// A container's liveness, readiness and startup probes and lifecycle hooks.
pub(super) struct Probes {
    pub liveness: Option<k8s::Probe>,
    pub readiness: Option<k8s::Probe>,
    pub startup: Option<k8s::Probe>,
    pub lifecycle: Option<k8s::Lifecycle>,
}

impl Admission<'_> {
    /// `regular_init`: an init container that is not a sidecar, which may have none.
    pub(super) fn probes(
        &mut self,
        field: &str,
        regular_init: bool,
        probes: Probes,
    ) -> Result<(), ManifestError> {
        let Probes {
            liveness,
            readiness,
            startup,
            lifecycle,
        } = probes;
        for (name, set) in [
            ("livenessProbe", liveness.is_some()),
            ("readinessProbe", readiness.is_some()),
            ("startupProbe", startup.is_some()),
            ("lifecycle", lifecycle.is_some()),
        ] {
            if !set {
                continue;
            }
            let at = format!("{field}.{name}");
            if regular_init {
                return Err(self.invalid(
                    at,
                    "must not be set for init containers without restartPolicy: Always",
                ));
            }
            self.warn(&at, NOT_ENFORCED);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::pod::admission::tests::*;

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (pod("{initContainers: [{name: x, image: i, livenessProbe: {exec: {command: [\"true\"]}}}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[0].livenessProbe: must not be set for init containers"),
            (pod("{initContainers: [{name: x, image: i, lifecycle: {postStart: {exec: {command: [\"true\"]}}}}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[0].lifecycle: must not be set for init containers"),
        ];
        assert_refusals(&cases);
    }

    #[test]
    fn warnings_name_the_field() {
        let cases = [
            (
                app(", livenessProbe: {exec: {command: [\"true\"]}}"),
                "web.yaml: spec.containers[0].livenessProbe: not enforced yet",
            ),
            (
                app(", startupProbe: {httpGet: {port: 80}}"),
                "web.yaml: spec.containers[0].startupProbe: not enforced yet",
            ),
            (
                app(", lifecycle: {preStop: {exec: {command: [\"true\"]}}}"),
                "web.yaml: spec.containers[0].lifecycle: not enforced yet",
            ),
        ];
        assert_warnings(&cases);
    }
}
