//! A container's probes and lifecycle hooks: checked as the API server and
//! the kubelet would (`probe::admission`), and kept in the model for the
//! supervisor to run.

use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;

use super::{Admission, ManifestError};
use crate::pod::probe::admission::{self as checks, AdmissionError};
use crate::pod::probe::Health;

impl Admission<'_> {
    /// The probes and hooks of `container` (field path `field`) in a pod whose
    /// terminationGracePeriodSeconds is `grace`. `regular_init`: an init
    /// container that is not a sidecar, which may have none.
    pub(super) fn health(
        &mut self,
        field: &str,
        container: &k8s::Container,
        regular_init: bool,
        grace: Duration,
    ) -> Result<Health, ManifestError> {
        if regular_init {
            for (name, set) in [
                ("livenessProbe", container.liveness_probe.is_some()),
                ("readinessProbe", container.readiness_probe.is_some()),
                ("startupProbe", container.startup_probe.is_some()),
                ("lifecycle", container.lifecycle.is_some()),
            ] {
                if set {
                    return Err(self.invalid(
                        format!("{field}.{name}"),
                        "must not be set for init containers without restartPolicy: Always",
                    ));
                }
            }
            return Ok(Health::default());
        }
        checks::container(field, container, grace).map_err(|e| match e {
            AdmissionError::Invalid { field, problem } => self.invalid(field, problem),
            AdmissionError::Unsupported { field, problem } => self.unsupported(field, problem),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::pod::admission::tests::*;
    use crate::pod::probe::{Handler, Hook};

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (pod("{initContainers: [{name: x, image: i, livenessProbe: {exec: {command: [\"true\"]}}}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[0].livenessProbe: must not be set for init containers"),
            (pod("{initContainers: [{name: x, image: i, lifecycle: {postStart: {exec: {command: [\"true\"]}}}}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[0].lifecycle: must not be set for init containers"),
            (app(", livenessProbe: {httpGet: {port: http}}"), "web.yaml: spec.containers[0].livenessProbe.httpGet.port: port name \"http\" is not declared in the container's ports"),
            (app(", readinessProbe: {tcpSocket: {port: 80}, terminationGracePeriodSeconds: 3}"), "web.yaml: spec.containers[0].readinessProbe.terminationGracePeriodSeconds: must not be set for readinessProbes"),
            (app(", lifecycle: {preStop: {tcpSocket: {port: 80}}}"), "web.yaml: spec.containers[0].lifecycle.preStop.tcpSocket: unsupported"),
            (pod("{terminationGracePeriodSeconds: 5, containers: [{name: a, image: i, lifecycle: {preStop: {sleep: {seconds: 6}}}}]}"), "web.yaml: spec.containers[0].lifecycle.preStop.sleep.seconds: must be non-negative and not greater than terminationGracePeriodSeconds (5)"),
        ];
        assert_refusals(&cases);
    }

    #[test]
    fn probes_and_hooks_are_kept_with_commands_expanded() {
        let admitted = admit_ok(&pod(
            "{initContainers: [{name: s, image: i, restartPolicy: Always, startupProbe: {exec: {command: [cat, /ready]}}}],
              containers: [{name: a, image: i, env: [{name: F, value: /tmp/ok}], ports: [{name: web, containerPort: 8080}],
                livenessProbe: {exec: {command: [test, -f, $(F)]}},
                readinessProbe: {httpGet: {port: web, path: /ready}},
                lifecycle: {postStart: {exec: {command: [touch, $(F)]}}, preStop: {sleep: {seconds: 2}}}}]}",
        ));
        assert!(admitted.warnings.is_empty(), "{:?}", admitted.warnings);
        let sidecar = &admitted.pod.init_containers[0].health;
        assert!(sidecar.startup.is_some());
        let app = &admitted.pod.containers[0].health;
        assert_eq!(
            app.liveness.as_ref().unwrap().handler,
            Handler::Exec {
                command: vec!["test".into(), "-f".into(), "/tmp/ok".into()]
            }
        );
        let Handler::HttpGet(get) = &app.readiness.as_ref().unwrap().handler else {
            panic!("an httpGet readiness probe")
        };
        assert_eq!((get.port, get.path.as_str()), (8080, "/ready"));
        assert_eq!(
            app.post_start,
            Some(Hook::Exec {
                command: vec!["touch".into(), "/tmp/ok".into()]
            })
        );
        assert_eq!(
            app.pre_stop,
            Some(Hook::Sleep(std::time::Duration::from_secs(2)))
        );
    }
}
