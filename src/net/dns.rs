//! A pod's `/etc/resolv.conf`, as the kubelet computes it
//! (pkg/kubelet/network/dns/dns.go, `GetPodDNS`) and containerd writes it
//! (`parseDNSOptions`: search, nameservers, options), and the API server's
//! checks of `dnsPolicy`/`dnsConfig` (pkg/apis/core/validation,
//! `validateDNSPolicy`/`validatePodDNSConfig`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as k8s;
use serde::{Deserialize, Serialize};

use super::NetworkSettings;

/// validation.MaxDNSNameservers.
pub const MAX_NAMESERVERS: usize = 3;
/// validation.MaxDNSSearchPaths (ExpandedDNSConfig, GA).
pub const MAX_SEARCH_PATHS: usize = 32;
/// validation.MaxDNSSearchListChars, spaces included.
pub const MAX_SEARCH_LIST_CHARS: usize = 2048;
/// A longer search path makes glibc 2.28 abort; the kubelet drops it.
const MAX_SEARCH_PATH_CHARS: usize = 253;
/// The kubelet's defaultDNSOptions for cluster DNS.
const CLUSTER_OPTIONS: &str = "ndots:5";
/// systemd-resolved's stub listener, and the file with the real upstreams;
/// kubeadm points the kubelet at the latter when resolved runs.
const RESOLVED_STUB: &str = "127.0.0.53";
pub const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DnsPolicy {
    /// The API server's default.
    #[default]
    ClusterFirst,
    ClusterFirstWithHostNet,
    Default,
    None,
}

impl DnsPolicy {
    const NAMES: [(&'static str, DnsPolicy); 4] = [
        (
            "ClusterFirstWithHostNet",
            DnsPolicy::ClusterFirstWithHostNet,
        ),
        ("ClusterFirst", DnsPolicy::ClusterFirst),
        ("Default", DnsPolicy::Default),
        ("None", DnsPolicy::None),
    ];
}

/// `spec.dnsConfig`, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodDnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<DnsOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsOption {
    pub name: String,
    pub value: Option<String>,
}

/// A field Kubernetes would refuse, named as `kubectl` shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct DnsError {
    pub field: String,
    pub problem: String,
}

fn refuse(field: impl Into<String>, problem: impl Into<String>) -> DnsError {
    DnsError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The API server's checks of `spec.dnsPolicy` and `spec.dnsConfig`, with its
/// default (ClusterFirst) applied.
pub fn admit(
    policy: Option<&str>,
    config: Option<&k8s::PodDNSConfig>,
) -> Result<(DnsPolicy, Option<PodDnsConfig>), DnsError> {
    let policy = match policy {
        None => DnsPolicy::ClusterFirst,
        Some(name) => DnsPolicy::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                let names: Vec<String> = DnsPolicy::NAMES
                    .iter()
                    .map(|(n, _)| format!("{n:?}"))
                    .collect();
                refuse(
                    "spec.dnsPolicy",
                    format!(
                        "unsupported value {name:?}: supported values: {}",
                        names.join(", ")
                    ),
                )
            })?,
    };
    const FIELD: &str = "spec.dnsConfig";
    // validatePodDNSConfig: None needs a config with at least one nameserver.
    if policy == DnsPolicy::None {
        match config {
            None => {
                return Err(refuse(
                    FIELD,
                    "required: must provide `dnsConfig` when `dnsPolicy` is None",
                ))
            }
            Some(c) if c.nameservers.as_ref().is_none_or(Vec::is_empty) => {
                return Err(refuse(
                    format!("{FIELD}.nameservers"),
                    "required: must provide at least one DNS nameserver when `dnsPolicy` is None",
                ))
            }
            Some(_) => {}
        }
    }
    let Some(config) = config else {
        return Ok((policy, None));
    };
    let nameservers = config.nameservers.clone().unwrap_or_default();
    if nameservers.len() > MAX_NAMESERVERS {
        return Err(refuse(
            format!("{FIELD}.nameservers"),
            format!("must not have more than {MAX_NAMESERVERS} nameservers"),
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        if ns.parse::<IpAddr>().is_err() {
            return Err(refuse(
                format!("{FIELD}.nameservers[{i}]"),
                format!("invalid value {ns:?}: must be a valid IP address"),
            ));
        }
    }
    let searches = config.searches.clone().unwrap_or_default();
    if searches.len() > MAX_SEARCH_PATHS {
        return Err(refuse(
            format!("{FIELD}.searches"),
            format!("must not have more than {MAX_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_SEARCH_LIST_CHARS {
        return Err(refuse(
            format!("{FIELD}.searches"),
            format!("must not have more than {MAX_SEARCH_LIST_CHARS} characters (including spaces) in the search list"),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        // RelaxedDNSSearchValidation: "." alone, and '_', are allowed; a
        // trailing dot is fine.
        if search != "." && !is_search_domain(search.strip_suffix('.').unwrap_or(search)) {
            return Err(refuse(
                format!("{FIELD}.searches[{i}]"),
                format!(
                    "invalid value {search:?}: must be a DNS subdomain (lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit)"
                ),
            ));
        }
    }
    let mut options = Vec::new();
    for (i, option) in config.options.iter().flatten().enumerate() {
        let name = option.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(refuse(
                format!("{FIELD}.options[{i}].name"),
                "required: must not be empty",
            ));
        }
        // Not the API server's checks: such options would not survive
        // resolv.conf's syntax.
        if name.chars().any(|c| c.is_whitespace() || c == ':') {
            return Err(refuse(
                format!("{FIELD}.options[{i}].name"),
                format!("invalid value {name:?}: must not hold spaces or ':'"),
            ));
        }
        let value = option.value.clone();
        if value
            .as_deref()
            .is_some_and(|v| v.chars().any(char::is_whitespace))
        {
            return Err(refuse(
                format!("{FIELD}.options[{i}].value"),
                format!(
                    "invalid value {:?}: must not hold spaces",
                    value.unwrap_or_default()
                ),
            ));
        }
        options.push(DnsOption { name, value });
    }
    Ok((
        policy,
        Some(PodDnsConfig {
            nameservers,
            searches,
            options,
        }),
    ))
}

/// A DNS-1123 subdomain that may also hold '_' (IsDNS1123SubdomainWithUnderScore).
pub fn is_search_domain(name: &str) -> bool {
    let label = |l: &str| {
        let b = l.as_bytes();
        let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_';
        !b.is_empty()
            && inner(&b[0])
            && inner(&b[b.len() - 1])
            && b.iter().all(|c| inner(c) || *c == b'-')
    };
    !name.is_empty() && name.len() <= MAX_SEARCH_PATH_CHARS && name.split('.').all(label)
}

/// A resolv.conf's parts (also the pod's, before it is written).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolv {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl Resolv {
    /// The kubelet's parseResolvConf: `nameserver` lines accumulate, the last
    /// `search` and `options` lines win, search domains lose a trailing dot.
    pub fn parse(text: &str) -> Self {
        let mut resolv = Resolv::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => resolv.nameservers.extend(fields.next().map(str::to_string)),
                Some("search") => {
                    resolv.searches = fields
                        .map(|s| s.strip_suffix('.').unwrap_or(s).to_string())
                        .collect()
                }
                Some("options") => resolv.options = fields.map(str::to_string).collect(),
                _ => {}
            }
        }
        resolv
    }

    /// As containerd writes it: search, nameservers, options; empty parts left out.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.nameservers {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// The node's side: the kubelet's clusterDNS, clusterDomain and what its
/// resolvConf holds (None for `resolvConf: ""`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeDns {
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub host: Option<Resolv>,
}

/// What a pod gets, and the warnings the kubelet would record as events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodDns {
    pub resolv: Resolv,
    pub warnings: Vec<String>,
}

/// GetPodDNS: the pod's resolver configuration from its policy, its network
/// mode, its namespace and its dnsConfig.
pub fn pod_dns(
    policy: DnsPolicy,
    host_network: bool,
    namespace: &str,
    config: Option<&PodDnsConfig>,
    node: &NodeDns,
) -> PodDns {
    let mut warnings = Vec::new();
    let host = || match &node.host {
        Some(resolv) => resolv.clone(),
        // resolvConf "": effectively no DNS, as a local nameserver (the kubelet
        // uses ::1 on an IPv6 node; peapod does not know the node's IPs).
        None => Resolv {
            nameservers: vec!["127.0.0.1".into()],
            searches: vec![".".into()],
            options: Vec::new(),
        },
    };
    // getPodDNSType: ClusterFirst falls back to Default on the host network.
    let cluster = match policy {
        DnsPolicy::None => None,
        DnsPolicy::ClusterFirstWithHostNet => Some(true),
        DnsPolicy::ClusterFirst => Some(!host_network),
        DnsPolicy::Default => Some(false),
    };
    let mut resolv = match cluster {
        None => Resolv::default(),
        Some(true) if !node.cluster_dns.is_empty() => {
            let host = node.host.clone().unwrap_or_default();
            Resolv {
                nameservers: node.cluster_dns.iter().map(IpAddr::to_string).collect(),
                searches: cluster_searches(&host.searches, namespace, &node.cluster_domain),
                options: vec![CLUSTER_OPTIONS.into()],
            }
        }
        Some(true) => {
            warnings.push(format!(
                "no clusterDNS is configured: cannot create Pod using {:?} policy; falling back to \"Default\" policy",
                "ClusterFirst"
            ));
            host()
        }
        Some(false) => host(),
    };
    if let Some(config) = config {
        // appendDNSConfig: duplicates dropped, options merged.
        resolv.nameservers = dedup(
            resolv
                .nameservers
                .into_iter()
                .chain(config.nameservers.iter().cloned()),
        );
        resolv.searches = dedup(
            resolv
                .searches
                .into_iter()
                .chain(config.searches.iter().cloned()),
        );
        resolv.options = merge_options(&resolv.options, &config.options);
    }
    // formDNSConfigFitsLimits.
    if resolv.nameservers.len() > MAX_NAMESERVERS {
        resolv.nameservers.truncate(MAX_NAMESERVERS);
        warnings.push(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
            resolv.nameservers.join(" ")
        ));
    }
    let (searches, cut) = fit_searches(resolv.searches);
    resolv.searches = searches;
    if cut {
        warnings.push(format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
            resolv.searches.join(" ")
        ));
    }
    PodDns { resolv, warnings }
}

/// generateSearchesForDNSClusterFirst: `<ns>.svc.<domain> svc.<domain>
/// <domain>`, then the host's, without duplicates; none without a domain.
fn cluster_searches(host: &[String], namespace: &str, domain: &str) -> Vec<String> {
    if domain.is_empty() {
        return host.to_vec();
    }
    let cluster = [
        format!("{namespace}.svc.{domain}"),
        format!("svc.{domain}"),
        domain.to_string(),
    ];
    dedup(cluster.into_iter().chain(host.iter().cloned()))
}

/// formDNSSearchFitsLimits: at most 32 paths, none longer than 253, at most
/// 2048 characters with spaces (cut from the end). True if anything was cut.
fn fit_searches(mut searches: Vec<String>) -> (Vec<String>, bool) {
    let mut cut = false;
    if searches.len() > MAX_SEARCH_PATHS {
        searches.truncate(MAX_SEARCH_PATHS);
        cut = true;
    }
    let before = searches.len();
    searches.retain(|s| s.len() <= MAX_SEARCH_PATH_CHARS);
    cut |= searches.len() != before;
    while searches.join(" ").len() > MAX_SEARCH_LIST_CHARS {
        searches.pop();
        cut = true;
    }
    (searches, cut)
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// mergeDNSOptions: the pod's options override the base ones of the same
/// name. The kubelet's order is a Go map's (random); here the first
/// appearance keeps its place.
fn merge_options(base: &[String], pod: &[DnsOption]) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match merged.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => merged.push((name.to_string(), value.to_string())),
    };
    for option in base {
        let (name, value) = option.split_once(':').unwrap_or((option, ""));
        set(name, value);
    }
    for option in pod {
        set(&option.name, option.value.as_deref().unwrap_or(""));
    }
    merged
        .into_iter()
        .map(|(name, value)| {
            if value.is_empty() {
                name
            } else {
                format!("{name}:{value}")
            }
        })
        .collect()
}

/// The host's resolver configuration from `path`. When it only points at
/// systemd-resolved's stub (127.0.0.53, unreachable from a pod's own network),
/// `upstream` (resolved's list of real servers) is used instead, as kubeadm
/// configures the kubelet on such hosts.
pub fn host_resolv(path: &Path, upstream: &Path) -> Result<(PathBuf, Resolv), std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    let resolv = Resolv::parse(&text);
    let stub_only =
        !resolv.nameservers.is_empty() && resolv.nameservers.iter().all(|ns| ns == RESOLVED_STUB);
    if stub_only {
        if let Ok(text) = std::fs::read_to_string(upstream) {
            return Ok((upstream.to_path_buf(), Resolv::parse(&text)));
        }
    }
    Ok((path.to_path_buf(), resolv))
}

/// The pod's resolv.conf text from the node settings, reading the host's file
/// only when the policy needs it. Errors name the file.
pub fn resolv_conf(
    settings: &NetworkSettings,
    policy: DnsPolicy,
    host_network: bool,
    namespace: &str,
    config: Option<&PodDnsConfig>,
) -> Result<PodDns, String> {
    let host = match (&settings.resolv_conf, policy) {
        (_, DnsPolicy::None) | (None, _) => None,
        (Some(path), _) => Some(
            host_resolv(path, Path::new(RESOLVED_UPSTREAM))
                .map_err(|e| format!("{}: {e}", path.display()))?
                .1,
        ),
    };
    let node = NodeDns {
        cluster_dns: settings.cluster_dns.clone(),
        cluster_domain: settings.cluster_domain.clone(),
        host,
    };
    Ok(pod_dns(policy, host_network, namespace, config, &node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cluster_dns: &[&str], domain: &str, host: &str) -> NodeDns {
        NodeDns {
            cluster_dns: cluster_dns.iter().map(|s| s.parse().unwrap()).collect(),
            cluster_domain: domain.into(),
            host: Some(Resolv::parse(host)),
        }
    }

    const HOST: &str = "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example. lab.example\noptions timeout:2 rotate\n";

    fn config(
        nameservers: &[&str],
        searches: &[&str],
        options: &[(&str, Option<&str>)],
    ) -> PodDnsConfig {
        PodDnsConfig {
            nameservers: nameservers.iter().map(|s| s.to_string()).collect(),
            searches: searches.iter().map(|s| s.to_string()).collect(),
            options: options
                .iter()
                .map(|(n, v)| DnsOption {
                    name: n.to_string(),
                    value: v.map(str::to_string),
                })
                .collect(),
        }
    }

    /// parseResolvConf: nameservers accumulate, the last search/options win,
    /// comments are skipped, a trailing dot goes.
    #[test]
    fn host_files_parse_as_the_kubelet_reads_them() {
        let r = Resolv::parse("nameserver 1.1.1.1\nsearch a.\nsearch b c.\n# nameserver 9.9.9.9\noptions x\noptions ndots:2 edns0\nnameserver 8.8.8.8 extra\nnameserver\n");
        assert_eq!(r.nameservers, ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(r.searches, ["b", "c"]);
        assert_eq!(r.options, ["ndots:2", "edns0"]);
    }

    /// Each row is one rule of GetPodDNS (pkg/kubelet/network/dns/dns.go).
    #[test]
    fn pod_dns_follows_the_kubelet() {
        let cluster = node(&["10.96.0.10"], "cluster.local", HOST);
        let bare = node(&[], "cluster.local", HOST);
        let no_domain = node(&["10.96.0.10"], "", HOST);
        let no_host = NodeDns {
            host: None,
            ..node(&[], "cluster.local", "")
        };
        // (rule, policy, hostNetwork, node, dnsConfig, resolv.conf, warnings)
        type Row<'a> = (
            &'a str,
            DnsPolicy,
            bool,
            &'a NodeDns,
            Option<PodDnsConfig>,
            &'a str,
            usize,
        );
        let rows: Vec<Row> = vec![
            (
                "ClusterFirst: cluster servers only, cluster searches then the host's, ndots:5",
                DnsPolicy::ClusterFirst, false, &cluster, None,
                "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.96.0.10\noptions ndots:5\n",
                0,
            ),
            (
                "getPodDNSType: ClusterFirst on the host network falls back to Default",
                DnsPolicy::ClusterFirst, true, &cluster, None,
                "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:2 rotate\n",
                0,
            ),
            (
                "ClusterFirstWithHostNet keeps cluster DNS on the host network",
                DnsPolicy::ClusterFirstWithHostNet, true, &cluster, None,
                "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.96.0.10\noptions ndots:5\n",
                0,
            ),
            (
                "Default: the host's file",
                DnsPolicy::Default, false, &cluster, None,
                "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:2 rotate\n",
                0,
            ),
            (
                "MissingClusterDNS: ClusterFirst without clusterDNS falls back to Default, with a warning",
                DnsPolicy::ClusterFirst, false, &bare, None,
                "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:2 rotate\n",
                1,
            ),
            (
                "None: only the pod's dnsConfig",
                DnsPolicy::None, false, &cluster,
                Some(config(&["1.2.3.4"], &["my.dns.search"], &[("ndots", Some("2")), ("edns0", None)])),
                "search my.dns.search\nnameserver 1.2.3.4\noptions ndots:2 edns0\n",
                0,
            ),
            (
                "appendDNSConfig + mergeDNSOptions: appended without duplicates, the pod's option wins",
                DnsPolicy::ClusterFirst, false, &cluster,
                Some(config(&["10.96.0.10", "1.2.3.4"], &["cluster.local", "extra.example"], &[("ndots", Some("1")), ("single-request", None)])),
                "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example extra.example\nnameserver 10.96.0.10\nnameserver 1.2.3.4\noptions ndots:1 single-request\n",
                0,
            ),
            (
                "formDNSNameserversFitsLimits: at most 3 nameservers, with a warning",
                DnsPolicy::Default, false, &cluster,
                Some(config(&["1.1.1.1", "2.2.2.2"], &[], &[])),
                "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nnameserver 1.1.1.1\noptions timeout:2 rotate\n",
                1,
            ),
            (
                "generateSearchesForDNSClusterFirst: no cluster domain, only the host's searches",
                DnsPolicy::ClusterFirst, false, &no_domain, None,
                "search corp.example lab.example\nnameserver 10.96.0.10\noptions ndots:5\n",
                0,
            ),
            (
                "resolvConf \"\": a local nameserver and search \".\"",
                DnsPolicy::Default, false, &no_host, None,
                "search .\nnameserver 127.0.0.1\n",
                0,
            ),
        ];
        for (rule, policy, host_network, node, config, want, warnings) in rows {
            let got = pod_dns(policy, host_network, "ns1", config.as_ref(), node);
            assert_eq!(got.resolv.render(), want, "{rule}");
            assert_eq!(got.warnings.len(), warnings, "{rule}: {:?}", got.warnings);
        }
    }

    /// formDNSSearchFitsLimits: 32 paths, 253 characters each, 2048 in all.
    #[test]
    fn search_limits_cut_as_the_kubelet_does() {
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let (fit, cut) = fit_searches(many.clone());
        assert!(cut);
        assert_eq!(fit, many[..32]);
        let long = "a".repeat(254);
        let (fit, cut) = fit_searches(vec!["ok.example".into(), long, "fine.example".into()]);
        assert!(cut);
        assert_eq!(fit, ["ok.example", "fine.example"]);
        let wide: Vec<String> = (0..20)
            .map(|i| format!("{i:02}{}", "x".repeat(198)))
            .collect();
        let (fit, cut) = fit_searches(wide);
        assert!(cut && fit.len() == 10 && fit.join(" ").len() <= MAX_SEARCH_LIST_CHARS);
        let (fit, cut) = fit_searches(vec!["a".into(), "b".into()]);
        assert!(!cut && fit.len() == 2);
        let dns = pod_dns(
            DnsPolicy::None,
            false,
            "ns",
            Some(&config(
                &["1.1.1.1"],
                &many.iter().map(String::as_str).collect::<Vec<_>>(),
                &[],
            )),
            &NodeDns::default(),
        );
        assert!(
            dns.warnings[0].starts_with("Search Line limits were exceeded"),
            "{:?}",
            dns.warnings
        );
    }

    fn k8s_config(text: &str) -> k8s::PodDNSConfig {
        serde_yaml_ng::from_str(text).unwrap()
    }

    /// validateDNSPolicy and validatePodDNSConfig (pkg/apis/core/validation).
    #[test]
    fn admission_refuses_what_the_api_server_refuses() {
        let cases: Vec<(Option<&str>, Option<&str>, &str)> = vec![
            (Some("Cluster"), None, "spec.dnsPolicy: unsupported value \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""),
            (Some("None"), None, "spec.dnsConfig: required: must provide `dnsConfig` when `dnsPolicy` is None"),
            (Some("None"), Some("{searches: [a.example]}"), "spec.dnsConfig.nameservers: required"),
            (None, Some("{nameservers: [1.1.1.1, 2.2.2.2, 3.3.3.3, 4.4.4.4]}"), "spec.dnsConfig.nameservers: must not have more than 3 nameservers"),
            (None, Some("{nameservers: [1.1.1.1, dns.example]}"), "spec.dnsConfig.nameservers[1]: invalid value \"dns.example\": must be a valid IP address"),
            (None, Some("{searches: [ok.example, Bad.Example]}"), "spec.dnsConfig.searches[1]: invalid value \"Bad.Example\""),
            (None, Some("{searches: [-a.example]}"), "spec.dnsConfig.searches[0]"),
            (None, Some("{options: [{name: ndots, value: '2'}, {value: '1'}]}"), "spec.dnsConfig.options[1].name: required"),
            (None, Some("{options: [{name: 'a b'}]}"), "spec.dnsConfig.options[0].name: invalid value \"a b\""),
        ];
        for (policy, config, want) in cases {
            let config = config.map(k8s_config);
            let err = admit(policy, config.as_ref()).unwrap_err();
            assert!(
                err.to_string().starts_with(want),
                "{policy:?} {config:?}: {err}"
            );
        }
        let too_many: Vec<String> = (0..33).map(|i| format!("d{i}.example")).collect();
        let config = k8s::PodDNSConfig {
            searches: Some(too_many),
            ..Default::default()
        };
        assert_eq!(
            admit(None, Some(&config)).unwrap_err().to_string(),
            "spec.dnsConfig.searches: must not have more than 32 search paths"
        );
    }

    #[test]
    fn admission_accepts_and_defaults() {
        assert_eq!(admit(None, None).unwrap(), (DnsPolicy::ClusterFirst, None));
        let config = k8s_config(
            "{nameservers: ['fd00::53', 10.0.0.53], searches: [., ns.svc.cluster.local., _srv.example], options: [{name: ndots, value: '2'}, {name: edns0}]}",
        );
        let (policy, config) = admit(Some("None"), Some(&config)).unwrap();
        assert_eq!(policy, DnsPolicy::None);
        let config = config.unwrap();
        assert_eq!(config.nameservers, ["fd00::53", "10.0.0.53"]);
        assert_eq!(
            config.searches,
            [".", "ns.svc.cluster.local.", "_srv.example"]
        );
        assert_eq!(
            config.options[1],
            DnsOption {
                name: "edns0".into(),
                value: None
            }
        );
        for name in ["ClusterFirstWithHostNet", "ClusterFirst", "Default"] {
            admit(Some(name), None).unwrap();
        }
    }

    #[test]
    fn a_systemd_resolved_stub_is_replaced_by_its_upstreams() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("resolv.conf");
        let upstream = dir.path().join("upstream.conf");
        std::fs::write(
            &etc,
            "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
        )
        .unwrap();
        std::fs::write(&upstream, "nameserver 192.0.2.1\nsearch lan\n").unwrap();
        let (used, resolv) = host_resolv(&etc, &upstream).unwrap();
        assert_eq!(used, upstream);
        assert_eq!(resolv.nameservers, ["192.0.2.1"]);
        // Without resolved's file, the stub stays; a real server is kept as is.
        let (used, _) = host_resolv(&etc, &dir.path().join("none")).unwrap();
        assert_eq!(used, etc);
        std::fs::write(&etc, "nameserver 127.0.0.53\nnameserver 192.0.2.9\n").unwrap();
        assert_eq!(host_resolv(&etc, &upstream).unwrap().0, etc);
    }

    #[test]
    fn settings_drive_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("resolv.conf");
        std::fs::write(&host, HOST).unwrap();
        let settings = NetworkSettings {
            resolv_conf: Some(host.clone()),
            cluster_dns: vec!["10.96.0.10".parse().unwrap()],
            ..Default::default()
        };
        let dns = resolv_conf(&settings, DnsPolicy::ClusterFirst, false, "web", None).unwrap();
        assert_eq!(
            dns.resolv.render(),
            "search web.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let missing = NetworkSettings {
            resolv_conf: Some(dir.path().join("missing")),
            ..Default::default()
        };
        let err = resolv_conf(&missing, DnsPolicy::Default, false, "web", None).unwrap_err();
        assert!(
            err.starts_with(&dir.path().join("missing").display().to_string()),
            "{err}"
        );
        // None never reads the host's file.
        let none = config(&["1.1.1.1"], &[], &[]);
        resolv_conf(&missing, DnsPolicy::None, false, "web", Some(&none)).unwrap();
    }
}
