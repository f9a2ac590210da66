//! A pod's `/etc/hosts`, as the kubelet writes it (pkg/kubelet/kubelet_pods.go:
//! `managedHostsFileContent`, `nodeHostsFileContent`,
//! `hostsEntriesFromHostAliases`, `GeneratePodHostNameAndDomain`).

use std::net::IpAddr;
use std::path::Path;

/// The kubelet's managedHostsHeader.
pub const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
/// The kubelet's managedHostsHeaderWithHostNetwork.
pub const HOST_NETWORK_HEADER: &str = "# Kubernetes-managed hosts file (host network).\n";
pub const NODE_HOSTS: &str = "/etc/hosts";

/// A pod with its own network: localhost lines, each pod IP with the pod's
/// hostname (its FQDN first when it has a subdomain), then the hostAliases.
pub fn managed(
    pod_ips: &[IpAddr],
    hostname: &str,
    domain: Option<&str>,
    aliases: &[(String, Vec<String>)],
) -> String {
    let mut text = String::from(MANAGED_HEADER);
    text.push_str("127.0.0.1\tlocalhost\n");
    text.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    text.push_str("fe00::0\tip6-localnet\n");
    text.push_str("fe00::0\tip6-mcastprefix\n");
    text.push_str("fe00::1\tip6-allnodes\n");
    text.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match domain.filter(|d| !d.is_empty()) {
            Some(domain) => text.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n")),
            None => text.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    text.push_str(&alias_lines(aliases));
    text
}

/// A hostNetwork pod: the node's own hosts file under the host-network header,
/// then the hostAliases.
pub fn host_network(node_hosts: &[u8], aliases: &[(String, Vec<String>)]) -> Vec<u8> {
    let mut text = HOST_NETWORK_HEADER.as_bytes().to_vec();
    text.extend_from_slice(node_hosts);
    text.extend_from_slice(alias_lines(aliases).as_bytes());
    text
}

/// `host_network` over the node's file at `path` (normally /etc/hosts); the
/// error names the file.
pub fn host_network_from(
    path: &Path,
    aliases: &[(String, Vec<String>)],
) -> Result<Vec<u8>, String> {
    let node = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(host_network(&node, aliases))
}

/// hostsEntriesFromHostAliases: a blank line, a header, one line per IP.
fn alias_lines(aliases: &[(String, Vec<String>)]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n# Entries added by HostAliases.\n");
    for (ip, names) in aliases {
        text.push_str(&format!("{ip}\t{}\n", names.join("\t")));
    }
    text
}

/// GeneratePodHostNameAndDomain: with `spec.subdomain`, the pod's domain is
/// `<subdomain>.<namespace>.svc.<cluster domain>`.
pub fn pod_domain(
    subdomain: Option<&str>,
    namespace: &str,
    cluster_domain: &str,
) -> Option<String> {
    subdomain
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}.{namespace}.svc.{cluster_domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> Vec<(String, Vec<String>)> {
        vec![
            (
                "10.1.2.3".into(),
                vec!["foo.local".into(), "bar.local".into()],
            ),
            ("10.1.2.4".into(), vec!["baz".into()]),
        ]
    }

    /// TestManagedHostsFileContent's shape: header, localhost and ip6 lines,
    /// one line per pod IP, the aliases after a blank line and their header.
    #[test]
    fn a_pod_with_its_own_network() {
        let ips: Vec<IpAddr> = vec!["10.88.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        assert_eq!(
            managed(&ips, "web", None, &aliases()),
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             10.88.0.5\tweb\n\
             fd00::5\tweb\n\
             \n\
             # Entries added by HostAliases.\n\
             10.1.2.3\tfoo.local\tbar.local\n\
             10.1.2.4\tbaz\n"
        );
    }

    /// With a subdomain the FQDN comes first, then the short name.
    #[test]
    fn a_subdomain_adds_the_fqdn() {
        let domain = pod_domain(Some("db"), "prod", "cluster.local");
        assert_eq!(domain.as_deref(), Some("db.prod.svc.cluster.local"));
        let text = managed(
            &["10.0.0.9".parse().unwrap()],
            "db-0",
            domain.as_deref(),
            &[],
        );
        assert!(
            text.ends_with(
                "fe00::2\tip6-allrouters\n10.0.0.9\tdb-0.db.prod.svc.cluster.local\tdb-0\n"
            ),
            "{text}"
        );
        assert_eq!(pod_domain(None, "prod", "cluster.local"), None);
        assert_eq!(pod_domain(Some(""), "prod", "cluster.local"), None);
    }

    /// Without IPs (no CNI) there is no pod line; the kubelet would not mount
    /// the file at all then.
    #[test]
    fn no_ips_no_pod_line() {
        let text = managed(&[], "web", None, &[]);
        assert!(text.ends_with("fe00::2\tip6-allrouters\n"), "{text}");
    }

    /// nodeHostsFileContent: the node's file as is, the aliases appended.
    #[test]
    fn a_host_network_pod() {
        let node = b"127.0.0.1 localhost\n192.0.2.7 node1\n";
        let text = host_network(node, &aliases());
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.0.2.7 node1\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n10.1.2.4\tbaz\n"
        );
        assert_eq!(
            host_network(node, &[]),
            [HOST_NETWORK_HEADER.as_bytes(), node].concat()
        );
        let dir = tempfile::tempdir().unwrap();
        let err = host_network_from(&dir.path().join("hosts"), &[]).unwrap_err();
        assert!(err.contains("hosts: No such file"), "{err}");
        std::fs::write(dir.path().join("hosts"), node).unwrap();
        assert!(host_network_from(&dir.path().join("hosts"), &[])
            .unwrap()
            .ends_with(b"node1\n"));
    }
}
