//! One container: image, restart policy (sidecars), ports, termination message,
//! working directory, and its command and args with `$(VAR)` expanded; the
//! concerns it has in common with others are in their own files.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1 as k8s;

use super::env::expand;
use super::security::PodSecurity;
use super::{model, not_one_of, Admission, ManifestError, NO_API_SERVER};

/// The pod as seen while converting one of its containers.
pub(super) struct Scope<'a> {
    pub(super) name: &'a str,
    pub(super) namespace: &'a str,
    pub(super) uid: &'a str,
    pub(super) labels: &'a BTreeMap<String, String>,
    pub(super) annotations: &'a BTreeMap<String, String>,
    pub(super) service_account: &'a str,
    /// Every container's resources by name, for resourceFieldRef.containerName.
    pub(super) resources: &'a [(String, model::Resources)],
    pub(super) security: &'a PodSecurity,
    pub(super) volumes: &'a BTreeSet<String>,
    /// spec.hostNetwork: container ports are host ports.
    pub(super) host_network: bool,
    /// The pod's terminationGracePeriodSeconds (bounds a sleep hook).
    pub(super) grace: std::time::Duration,
}

impl Admission<'_> {
    pub(super) fn container(
        &mut self,
        field: &str,
        container: k8s::Container,
        init: bool,
        resources: &model::Resources,
        scope: &Scope,
    ) -> Result<model::Container, ManifestError> {
        let sidecar = container.restart_policy.as_deref() == Some("Always");
        let mut health = self.health(field, &container, init && !sidecar, scope.grace)?;
        let k8s::Container {
            args,
            command,
            env,
            env_from,
            image,
            image_pull_policy,
            // Probes and hooks: converted above.
            lifecycle: _,
            liveness_probe: _,
            name,
            ports,
            readiness_probe: _,
            resize_policy,
            // Converted by the caller, before any container.
            resources: _,
            restart_policy,
            restart_policy_rules,
            security_context,
            startup_probe: _,
            stdin,
            stdin_once,
            termination_message_path,
            termination_message_policy,
            tty,
            volume_devices,
            volume_mounts,
            working_dir,
        } = container;

        let image = image.unwrap_or_default();
        if image.is_empty() {
            return Err(self.invalid(format!("{field}.image"), "required"));
        }
        if image.trim() != image {
            return Err(self.invalid(
                format!("{field}.image"),
                "must not have leading or trailing whitespace",
            ));
        }
        match image_pull_policy.as_deref() {
            None | Some("Always" | "IfNotPresent" | "Never") => {}
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.imagePullPolicy"),
                    not_one_of(other, &["Always", "IfNotPresent", "Never"]),
                ))
            }
        }
        let restart_policy = match (init, restart_policy.as_deref()) {
            (_, None) => None,
            (true, Some("Always")) => Some(model::RestartPolicy::Always),
            (true, Some(other)) => {
                return Err(self.invalid(
                    format!("{field}.restartPolicy"),
                    not_one_of(other, &["Always"]),
                ))
            }
            (false, Some(_)) => return Err(self.invalid(
                format!("{field}.restartPolicy"),
                "not supported on app containers (only init containers may set it, to \"Always\")",
            )),
        };
        if restart_policy_rules.is_some_and(|rules| !rules.is_empty()) {
            return Err(self.unsupported(format!("{field}.restartPolicyRules"), "unsupported"));
        }
        if env_from.is_some_and(|list| !list.is_empty()) {
            return Err(self.unsupported(format!("{field}.envFrom"), NO_API_SERVER));
        }
        if volume_devices.is_some_and(|list| !list.is_empty()) {
            return Err(self.unsupported(
                format!("{field}.volumeDevices"),
                "unsupported: raw block volumes",
            ));
        }
        let ports = self.ports(field, ports, scope.host_network)?;
        if resize_policy.is_some_and(|list| !list.is_empty()) {
            self.warn(
                &format!("{field}.resizePolicy"),
                "ignored (no in-place resize)",
            );
        }
        if stdin_once == Some(true) {
            self.warn(&format!("{field}.stdinOnce"), "ignored");
        }
        let termination_message_path = termination_message_path
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| model::DEFAULT_TERMINATION_MESSAGE_PATH.to_string());
        if !termination_message_path.starts_with('/')
            || termination_message_path.split('/').any(|part| part == "..")
        {
            return Err(self.invalid(
                format!("{field}.terminationMessagePath"),
                "must be an absolute path without \"..\"",
            ));
        }
        let termination_message_from_logs = match termination_message_policy.as_deref() {
            None | Some("File") => false,
            Some("FallbackToLogsOnError") => true,
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.terminationMessagePolicy"),
                    format!("unsupported value {other:?}: \"File\" or \"FallbackToLogsOnError\""),
                ))
            }
        };
        let working_dir = working_dir.filter(|dir| !dir.is_empty());
        if let Some(dir) = &working_dir {
            if !dir.starts_with('/') {
                return Err(self.invalid(
                    format!("{field}.workingDir"),
                    format!("must be an absolute path, not {dir:?}"),
                ));
            }
        }

        let security = self.security(field, security_context, scope.security)?;
        let mounts = self.mounts(field, volume_mounts, scope.volumes)?;
        let env = self.env(field, env, resources, scope)?;
        let vars: HashMap<&str, &str> = env
            .iter()
            .map(|var| (var.name.as_str(), var.value.as_str()))
            .collect();
        let lookup = |name: &str| vars.get(name).copied();
        let command = command
            .unwrap_or_default()
            .iter()
            .map(|word| expand(word, lookup))
            .collect();
        let args = args
            .unwrap_or_default()
            .iter()
            .map(|word| expand(word, lookup))
            .collect();
        // The kubelet expands probes' and hooks' commands as it does the command.
        health.map_commands(|word| expand(word, lookup));

        Ok(model::Container {
            name,
            image,
            command,
            args,
            env,
            working_dir,
            security,
            resources: resources.clone(),
            mounts,
            restart_policy,
            tty: tty.unwrap_or(false),
            stdin: stdin.unwrap_or(false),
            termination_message_path,
            termination_message_from_logs,
            image_pull_policy,
            ports,
            health,
        })
    }

    /// The container's ports; on a hostNetwork pod each is a host port
    /// (validateHostNetwork, and the API server's defaulting of hostPort).
    fn ports(
        &self,
        field: &str,
        ports: Option<Vec<k8s::ContainerPort>>,
        host_network: bool,
    ) -> Result<Vec<model::Port>, ManifestError> {
        let mut out = Vec::new();
        for (i, port) in ports.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{field}.ports[{i}]");
            let container_port = u16::try_from(port.container_port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    self.invalid(format!("{at}.containerPort"), "must be between 1 and 65535")
                })?;
            let protocol = match port.protocol.as_deref() {
                None | Some("TCP") => model::Protocol::Tcp,
                Some("UDP") => model::Protocol::Udp,
                Some("SCTP") => model::Protocol::Sctp,
                Some(other) => {
                    return Err(self.invalid(
                        format!("{at}.protocol"),
                        not_one_of(other, &["TCP", "UDP", "SCTP"]),
                    ))
                }
            };
            let host_port = match port.host_port.unwrap_or(0) {
                0 => None,
                p => Some(u16::try_from(p).map_err(|_| {
                    self.invalid(format!("{at}.hostPort"), "must be between 0 and 65535")
                })?),
            };
            let host_port = match (host_network, host_port) {
                (false, port) => port,
                (true, None) => Some(container_port),
                (true, Some(p)) if p == container_port => Some(p),
                (true, Some(_)) => {
                    return Err(self.invalid(
                        format!("{at}.hostPort"),
                        "must match `containerPort` when `hostNetwork` is true",
                    ))
                }
            };
            let host_ip = port.host_ip.filter(|ip| !ip.is_empty());
            if let Some(ip) = &host_ip {
                if ip.parse::<std::net::IpAddr>().is_err() {
                    return Err(
                        self.invalid(format!("{at}.hostIP"), format!("invalid IP address {ip:?}"))
                    );
                }
            }
            out.push(model::Port {
                container_port,
                host_port,
                protocol,
                host_ip,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::pod::admission::tests::*;

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (app(", terminationMessagePath: end.log"), "web.yaml: spec.containers[0].terminationMessagePath: must be an absolute path"),
            (app(", terminationMessagePolicy: Always"), "web.yaml: spec.containers[0].terminationMessagePolicy: unsupported value \"Always\""),
            (pod("{containers: [{image: i}]}"), "web.yaml: spec.containers[0].name: required"),
            (pod("{containers: [{name: App_1, image: i}]}"), "web.yaml: spec.containers[0].name: invalid name \"App_1\""),
            (pod(&format!("{{containers: [{{name: {}, image: i}}]}}", "a".repeat(64))), "web.yaml: spec.containers[0].name: invalid name"),
            (pod("{containers: [{name: a}]}"), "web.yaml: spec.containers[0].image: required"),
            (pod("{containers: [{name: a, image: \"\"}]}"), "web.yaml: spec.containers[0].image: required"),
            (pod("{containers: [{name: a, image: \" busybox\"}]}"), "web.yaml: spec.containers[0].image: must not have leading or trailing whitespace"),
            (pod("{initContainers: [{name: x, image: i}, {name: y}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[1].image: required"),
            (pod("{initContainers: [{name: x, image: i}, {name: x, image: i}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[1].name: duplicate name \"x\""),
            (pod("{initContainers: [{name: x, image: i}], containers: [{name: a, image: i}, {name: x, image: i}]}"), "web.yaml: spec.containers[1].name: duplicate name \"x\""),
            (app(", workingDir: srv"), "web.yaml: spec.containers[0].workingDir: must be an absolute path, not \"srv\""),
            (app(", imagePullPolicy: Sometimes"), "web.yaml: spec.containers[0].imagePullPolicy: unsupported value"),
            (app(", restartPolicy: Always"), "web.yaml: spec.containers[0].restartPolicy: not supported on app containers"),
            (pod("{initContainers: [{name: x, image: i, restartPolicy: Never}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[0].restartPolicy: unsupported value \"Never\""),
            (app(", restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42]}}]"), "web.yaml: spec.containers[0].restartPolicyRules: unsupported"),
            (app(", volumeDevices: [{name: v, devicePath: /dev/xvda}]"), "web.yaml: spec.containers[0].volumeDevices: unsupported"),
            (app(", ports: [{containerPort: 0}]"), "web.yaml: spec.containers[0].ports[0].containerPort: must be between 1 and 65535"),
            (app(", ports: [{containerPort: 80, protocol: ICMP}]"), "web.yaml: spec.containers[0].ports[0].protocol: unsupported value"),
            (app(", envFrom: [{configMapRef: {name: c}}]"), "web.yaml: spec.containers[0].envFrom: unsupported"),
        ];
        assert_refusals(&cases);
    }
}
