//! The pod's names on the network: its hostname and the extra /etc/hosts
//! entries of spec.hostAliases.

use k8s_openapi::api::core::v1 as k8s;

use super::names::is_dns_subdomain;
use super::{Admission, ManifestError};

impl Admission<'_> {
    /// spec.hostname, else the kubelet's default from the pod's name.
    pub(super) fn hostname(
        &self,
        hostname: Option<String>,
        pod_name: &str,
    ) -> Result<String, ManifestError> {
        Ok(match hostname.filter(|name| !name.is_empty()) {
            Some(hostname) => {
                self.dns_label("spec.hostname", &hostname)?;
                hostname
            }
            None => pod_hostname(pod_name),
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
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (pod("{hostname: my_host, containers: [{name: a, image: i}]}"), "web.yaml: spec.hostname: invalid name \"my_host\""),
            (pod("{hostAliases: [{ip: 10.0.0.300, hostnames: [a]}], containers: [{name: a, image: i}]}"), "web.yaml: spec.hostAliases[0].ip: invalid IP address \"10.0.0.300\""),
            (pod("{hostAliases: [{ip: \"::1\", hostnames: [ok, Not_OK]}], containers: [{name: a, image: i}]}"), "web.yaml: spec.hostAliases[0].hostnames[1]: invalid hostname"),
        ];
        assert_refusals(&cases);
    }
}
