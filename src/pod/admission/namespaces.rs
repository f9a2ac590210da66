//! What a pod shares with the host: its network, PID and IPC namespaces
//! (`hostNetwork`, `hostPID`, `hostIPC`, as the kubelet applies them), and
//! the host ports its containers ask for, and whether it has a user namespace
//! of its own (`hostUsers: false`).

use std::collections::BTreeSet;

use super::{model, Admission, ManifestError};

impl Admission<'_> {
    pub(super) fn host_namespaces(
        &self,
        host_network: Option<bool>,
        host_pid: Option<bool>,
        host_ipc: Option<bool>,
        host_users: Option<bool>,
        share_process_namespace: Option<bool>,
    ) -> Result<model::HostNamespaces, ManifestError> {
        let host = model::HostNamespaces {
            network: host_network.unwrap_or(false),
            pid: host_pid.unwrap_or(false),
            ipc: host_ipc.unwrap_or(false),
            users: host_users.unwrap_or(true),
        };
        // validatePodSpecSecurityContext (validateHostUsers): a pod's own user
        // namespace cannot hold the host's network, PID or IPC namespace.
        if !host.users {
            for (name, shared) in [
                ("hostNetwork", host.network),
                ("hostPID", host.pid),
                ("hostIPC", host.ipc),
            ] {
                if shared {
                    return Err(self.forbidden_with_users(name));
                }
            }
        }
        // validatePodSpec: both cannot hold at once.
        if host.pid && share_process_namespace == Some(true) {
            return Err(self.invalid(
                "spec.shareProcessNamespace",
                "ShareProcessNamespace and HostPID cannot both be enabled",
            ));
        }
        Ok(host)
    }

    fn forbidden_with_users(&self, name: &str) -> ManifestError {
        self.invalid(
            format!("spec.{name}"),
            format!("when `hostUsers` is false, `{name}` must be false"),
        )
    }

    /// AccumulateUniqueHostPorts: a host port (with its protocol and IP) is
    /// taken by one container port of the pod only.
    pub(super) fn unique_host_ports(
        &self,
        containers: &[(String, &model::Container)],
    ) -> Result<(), ManifestError> {
        let mut taken = BTreeSet::new();
        for (field, container) in containers {
            for (i, port) in container.ports.iter().enumerate() {
                let Some(host_port) = port.host_port else {
                    continue;
                };
                let key = (host_port, port.protocol, port.host_ip.clone());
                if !taken.insert(key) {
                    return Err(self.invalid(
                        format!("{field}.ports[{i}].hostPort"),
                        format!(
                            "duplicate value \"{host_port}/{}\"",
                            protocol_name(port.protocol)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

pub(super) fn protocol_name(protocol: model::Protocol) -> &'static str {
    match protocol {
        model::Protocol::Tcp => "TCP",
        model::Protocol::Udp => "UDP",
        model::Protocol::Sctp => "SCTP",
    }
}

#[cfg(test)]
mod tests {
    use crate::pod::admission::tests::*;
    use crate::pod::model;

    #[test]
    fn host_namespaces_are_taken_as_asked() {
        let shared = admit_ok(&pod(
            "{hostNetwork: true, hostPID: true, hostIPC: true, containers: [{name: a, image: i}]}",
        ))
        .pod;
        assert_eq!(
            shared.host,
            model::HostNamespaces {
                network: true,
                pid: true,
                ipc: true,
                users: true,
            }
        );
        let own = admit_ok(&pod(
            "{hostNetwork: false, containers: [{name: a, image: i}]}",
        ))
        .pod;
        assert_eq!(own.host, model::HostNamespaces::default());
    }

    /// A hostNetwork pod's ports are the host's: hostPort defaults to the
    /// containerPort and must equal it (validateHostNetwork).
    #[test]
    fn host_network_ports_are_host_ports() {
        let text = pod(
            "{hostNetwork: true, containers: [{name: a, image: i, ports: [{containerPort: 8080}, {containerPort: 53, hostPort: 53, protocol: UDP}]}]}",
        );
        let ports = &admit_ok(&text).pod.containers[0].ports;
        assert_eq!(ports[0].host_port, Some(8080));
        assert_eq!(ports[1].host_port, Some(53));
        assert_eq!(ports[1].protocol, model::Protocol::Udp);
        let text = pod("{containers: [{name: a, image: i, ports: [{containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}, {containerPort: 81}]}]}");
        let ports = &admit_ok(&text).pod.containers[0].ports;
        assert_eq!(
            ports[0],
            model::Port {
                container_port: 80,
                host_port: Some(8080),
                protocol: model::Protocol::Tcp,
                host_ip: Some("127.0.0.1".into())
            }
        );
        assert_eq!(ports[1].host_port, None);
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (
                pod("{hostUsers: false, hostNetwork: true, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.hostNetwork: when `hostUsers` is false, `hostNetwork` must be false",
            ),
            (
                pod("{hostUsers: false, hostPID: true, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.hostPID: when `hostUsers` is false, `hostPID` must be false",
            ),
            (
                pod("{hostUsers: false, hostIPC: true, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.hostIPC: when `hostUsers` is false, `hostIPC` must be false",
            ),
            (
                pod("{hostPID: true, shareProcessNamespace: true, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.shareProcessNamespace: ShareProcessNamespace and HostPID cannot both be enabled",
            ),
            (
                pod("{hostNetwork: true, containers: [{name: a, image: i, ports: [{containerPort: 80, hostPort: 8080}]}]}"),
                "web.yaml: spec.containers[0].ports[0].hostPort: must match `containerPort` when `hostNetwork` is true",
            ),
            (
                pod("{containers: [{name: a, image: i, ports: [{containerPort: 80, hostPort: 8080}]}, {name: b, image: i, ports: [{containerPort: 81, hostPort: 8080}]}]}"),
                "web.yaml: spec.containers[1].ports[0].hostPort: duplicate value \"8080/TCP\"",
            ),
            (
                pod("{containers: [{name: a, image: i, ports: [{containerPort: 80, hostPort: 70000}]}]}"),
                "web.yaml: spec.containers[0].ports[0].hostPort: must be between 0 and 65535",
            ),
            (
                pod("{containers: [{name: a, image: i, ports: [{containerPort: 80, hostPort: 80, hostIP: nowhere}]}]}"),
                "web.yaml: spec.containers[0].ports[0].hostIP: invalid IP address \"nowhere\"",
            ),
        ];
        assert_refusals(&cases);
    }
}
