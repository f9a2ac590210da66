//! The pod's names on the network: its hostname, the extra /etc/hosts
//! entries of spec.hostAliases, and its DNS (dnsPolicy, dnsConfig, checked
//! as the API server does by `net::dns::admit`; subdomain).

use k8s_openapi::api::core::v1 as k8s;

use super::names::is_dns_subdomain;
use super::{model, Admission, ManifestError};

impl Admission<'_> {
    /// spec.hostname, else the kubelet's default from the pod's name. A
    /// hostNetwork pod shares the node's UTS namespace: its hostname is the
    /// node's (containerd writes the host's name for it, the kubelet sends none).
    pub(super) fn hostname(
        &mut self,
        hostname: Option<String>,
        pod_name: &str,
        host_network: bool,
    ) -> Result<String, ManifestError> {
        let hostname = hostname.filter(|name| !name.is_empty());
        if let Some(name) = &hostname {
            self.dns_label("spec.hostname", name)?;
        }
        if host_network {
            if hostname.is_some() {
                self.warn(
                    "spec.hostname",
                    "ignored: a hostNetwork pod has the node's hostname",
                );
            }
            return Ok(self.node.hostname.clone());
        }
        Ok(hostname.unwrap_or_else(|| pod_hostname(pod_name)))
    }

    /// spec.dnsPolicy (default ClusterFirst), spec.dnsConfig and spec.subdomain.
    pub(super) fn pod_dns(
        &self,
        policy: Option<String>,
        config: Option<k8s::PodDNSConfig>,
        subdomain: Option<String>,
    ) -> Result<model::PodDns, ManifestError> {
        let (policy, config) = crate::net::dns::admit(policy.as_deref(), config.as_ref())
            .map_err(|e| self.invalid(e.field, e.problem))?;
        let subdomain = subdomain.filter(|s| !s.is_empty());
        if let Some(subdomain) = &subdomain {
            self.dns_label("spec.subdomain", subdomain)?;
        }
        Ok(model::PodDns {
            policy,
            config,
            subdomain,
        })
    }

    pub(super) fn host_aliases(
        &self,
        aliases: Option<Vec<k8s::HostAlias>>,
    ) -> Result<Vec<(String, Vec<String>)>, ManifestError> {
        let mut out = Vec::new();
        for (i, alias) in aliases.unwrap_or_default().into_iter().enumerate() {
            let field = format!("spec.hostAliases[{i}]");
            let k8s::HostAlias { hostnames, ip } = alias;
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(
                    self.invalid(format!("{field}.ip"), format!("invalid IP address {ip:?}"))
                );
            }
            let hostnames = hostnames.unwrap_or_default();
            for (j, hostname) in hostnames.iter().enumerate() {
                if !is_dns_subdomain(hostname) {
                    return Err(self.invalid(
                        format!("{field}.hostnames[{j}]"),
                        format!("invalid hostname {hostname:?}: must be a DNS-1123 subdomain"),
                    ));
                }
            }
            out.push((ip, hostnames));
        }
        Ok(out)
    }
}

/// The pod's hostname when spec.hostname is not set: the kubelet's rule.
fn pod_hostname(name: &str) -> String {
    let truncated = &name[..name.len().min(63)];
    truncated.trim_end_matches(['-', '.']).to_owned()
}

#[cfg(test)]
mod tests {
    use crate::pod::admission::tests::*;

    #[test]
    fn hostname_defaults_to_the_pod_name_cut_to_63() {
        let cases = [
            ("web", None, "web"),
            ("web", Some("front"), "front"),
            (
                &*format!("{}-{}", "a".repeat(62), "b".repeat(10)),
                None,
                &*"a".repeat(62),
            ),
            (&*format!("{}.xy", "a".repeat(62)), None, &*"a".repeat(62)),
            (&*"a".repeat(100), None, &*"a".repeat(63)),
        ];
        for (name, hostname, expected) in cases {
            let spec_hostname = hostname
                .map(|h| format!("hostname: {h}, "))
                .unwrap_or_default();
            let text = format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, uid: u}}\n\
                 spec: {{{spec_hostname}containers: [{{name: app, image: busybox}}]}}\n"
            );
            assert_eq!(admit_ok(&text).pod.hostname, expected, "{name}");
        }
    }

    #[test]
    fn a_host_network_pod_has_the_node_hostname() {
        let admitted = admit_ok(&pod(
            "{hostNetwork: true, hostname: other, containers: [{name: a, image: i}]}",
        ));
        assert_eq!(admitted.pod.hostname, "Node-1-Host");
        assert_eq!(
            admitted.warnings,
            ["web.yaml: spec.hostname: ignored: a hostNetwork pod has the node's hostname"]
        );
    }

    #[test]
    fn dns_policy_config_and_subdomain_are_kept() {
        use crate::net::dns::DnsPolicy;
        let admitted = admit_ok(&pod(
            "{dnsPolicy: None, dnsConfig: {nameservers: [1.1.1.1], searches: [a.example], options: [{name: ndots, value: '2'}]}, subdomain: db, containers: [{name: a, image: i}]}",
        ));
        assert!(admitted.warnings.is_empty(), "{:?}", admitted.warnings);
        let dns = admitted.pod.dns;
        assert_eq!(dns.policy, DnsPolicy::None);
        assert_eq!(dns.config.unwrap().nameservers, ["1.1.1.1"]);
        assert_eq!(dns.subdomain.as_deref(), Some("db"));
        let dns = admit_ok(&pod("{containers: [{name: a, image: i}]}"))
            .pod
            .dns;
        assert_eq!(
            (dns.policy, dns.config, dns.subdomain),
            (DnsPolicy::ClusterFirst, None, None)
        );
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (pod("{hostname: my_host, containers: [{name: a, image: i}]}"), "web.yaml: spec.hostname: invalid name \"my_host\""),
            (pod("{dnsPolicy: Cluster, containers: [{name: a, image: i}]}"), "web.yaml: spec.dnsPolicy: unsupported value \"Cluster\""),
            (pod("{dnsPolicy: None, containers: [{name: a, image: i}]}"), "web.yaml: spec.dnsConfig: required"),
            (pod("{dnsConfig: {nameservers: [1.1.1.1, dns.example]}, containers: [{name: a, image: i}]}"), "web.yaml: spec.dnsConfig.nameservers[1]: invalid value \"dns.example\": must be a valid IP address"),
            (pod("{dnsConfig: {options: [{value: '1'}]}, containers: [{name: a, image: i}]}"), "web.yaml: spec.dnsConfig.options[0].name: required"),
            (pod("{subdomain: Db, containers: [{name: a, image: i}]}"), "web.yaml: spec.subdomain: invalid name \"Db\""),
            (pod("{hostAliases: [{ip: 10.0.0.300, hostnames: [a]}], containers: [{name: a, image: i}]}"), "web.yaml: spec.hostAliases[0].ip: invalid IP address \"10.0.0.300\""),
            (pod("{hostAliases: [{ip: \"::1\", hostnames: [ok, Not_OK]}], containers: [{name: a, image: i}]}"), "web.yaml: spec.hostAliases[0].hostnames[1]: invalid hostname"),
        ];
        assert_refusals(&cases);
    }
}
