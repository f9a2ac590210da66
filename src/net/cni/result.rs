//! The result of an ADD (spec section 5), read leniently: 0.3.x, 0.4.0 and
//! 1.x results share this shape (0.3's `ips[].version` is ignored). The raw
//! JSON is what is passed on as `prevResult` and cached; this is what the
//! engine reads from it.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The netns path for an interface in the pod; empty on the host.
    #[serde(default)]
    pub sandbox: Option<String>,
}

impl Interface {
    pub fn in_pod(&self) -> bool {
        self.sandbox.as_deref().is_some_and(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// `dst` in CIDR notation, as written.
    pub dst: String,
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Deserialize)]
struct RawResult {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<RawIp>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    dns: Option<Dns>,
}

#[derive(Deserialize)]
struct RawIp {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct RawRoute {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

impl CniResult {
    /// Reads a result; the error says which part is malformed.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let raw: RawResult = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let mut ips = Vec::with_capacity(raw.ips.len());
        for (i, ip) in raw.ips.into_iter().enumerate() {
            let (address, prefix_len) = parse_cidr(&ip.address).ok_or_else(|| {
                format!("ips[{i}].address: {:?}: not an address/prefix", ip.address)
            })?;
            let gateway = match ip.gateway.as_deref() {
                None | Some("") => None,
                Some(text) => Some(
                    text.parse()
                        .map_err(|_| format!("ips[{i}].gateway: {text:?}: not an IP address"))?,
                ),
            };
            if let Some(index) = ip.interface {
                if index >= raw.interfaces.len() {
                    return Err(format!(
                        "ips[{i}].interface: {index}: there are {} interfaces",
                        raw.interfaces.len()
                    ));
                }
            }
            ips.push(IpConfig {
                address,
                prefix_len,
                gateway,
                interface: ip.interface,
            });
        }
        let routes = raw
            .routes
            .into_iter()
            .map(|r| Route {
                dst: r.dst,
                gw: r.gw.and_then(|g| g.parse().ok()),
            })
            .collect();
        Ok(Self {
            interfaces: raw.interfaces,
            ips,
            routes,
            dns: raw.dns.unwrap_or_default(),
        })
    }

    /// The pod's IPs for `status.podIPs`: the addresses on the pod's side (an
    /// IP whose interface is in the sandbox, or that names no interface), at
    /// most one per family (what Kubernetes validates), IPv4 first as
    /// containerd's CRI picks them by default (`ip_pref` "ipv4").
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let on_pod_side = |ip: &&IpConfig| match ip.interface {
            Some(index) => self.interfaces.get(index).is_some_and(Interface::in_pod),
            None => true,
        };
        let pod: Vec<IpAddr> = self
            .ips
            .iter()
            .filter(on_pod_side)
            .map(|ip| ip.address)
            .collect();
        let v4 = pod.iter().find(|ip| ip.is_ipv4());
        let v6 = pod.iter().find(|ip| ip.is_ipv6());
        v4.into_iter().chain(v6).copied().collect()
    }
}

/// "10.1.0.5/16" or "fd00::5/64".
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((address, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The bridge plugin's 1.0.0 answer, as the spec's appendix shows it.
    fn bridge_result() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "00:11:22:33:44:55"},
                {"name": "veth3243", "mac": "55:44:33:22:11:11"},
                {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
            ],
            "ips": [
                {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2},
                {"address": "fd00::5/64", "interface": 2}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
            "dns": {"nameservers": ["10.1.0.1"]}
        })
    }

    #[test]
    fn a_bridge_result_reads_whole() {
        let r = CniResult::parse(&bridge_result()).unwrap();
        assert_eq!(r.interfaces.len(), 3);
        assert!(r.interfaces[2].in_pod() && !r.interfaces[0].in_pod());
        assert_eq!(r.ips[0].address, "10.1.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(r.ips[0].prefix_len, 16);
        assert_eq!(r.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(r.routes[1].gw, Some("fd00::1".parse().unwrap()));
        assert_eq!(r.dns.nameservers, ["10.1.0.1"]);
        assert_eq!(
            r.pod_ips(),
            [
                "10.1.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
    }

    /// containerd's selectPodIPs with ip_pref "ipv4": the first IPv4 leads even
    /// when an IPv6 address comes first; host-side addresses are not the pod's.
    #[test]
    fn pod_ips_are_one_per_family_ipv4_first_pod_side_only() {
        let cases = [
            (
                json!({"interfaces": [{"name": "eth0", "sandbox": "/n"}],
                       "ips": [{"address": "fd00::2/64", "interface": 0}, {"address": "10.0.0.2/24", "interface": 0},
                               {"address": "10.0.0.3/24", "interface": 0}]}),
                vec!["10.0.0.2", "fd00::2"],
            ),
            (
                json!({"interfaces": [{"name": "br0"}, {"name": "eth0", "sandbox": "/n"}],
                       "ips": [{"address": "10.0.0.1/24", "interface": 0}, {"address": "10.0.0.9/24", "interface": 1}]}),
                vec!["10.0.0.9"],
            ),
            // An IPAM-style result names no interface: its addresses count.
            (
                json!({"ips": [{"address": "10.0.0.7/24", "version": "4"}]}),
                vec!["10.0.0.7"],
            ),
            (json!({}), vec![]),
        ];
        for (value, want) in cases {
            let got: Vec<String> = CniResult::parse(&value)
                .unwrap()
                .pod_ips()
                .iter()
                .map(IpAddr::to_string)
                .collect();
            assert_eq!(got, want, "{value}");
        }
    }

    #[test]
    fn malformed_results_name_the_part() {
        let cases = [
            (
                json!({"ips": [{"address": "10.0.0.2"}]}),
                "ips[0].address: \"10.0.0.2\"",
            ),
            (
                json!({"ips": [{"address": "10.0.0.2/33"}]}),
                "ips[0].address",
            ),
            (
                json!({"ips": [{"address": "10.0.0.2/24", "gateway": "x"}]}),
                "ips[0].gateway",
            ),
            (
                json!({"ips": [{"address": "10.0.0.2/24", "interface": 3}]}),
                "ips[0].interface: 3",
            ),
            (json!({"interfaces": "eth0"}), "invalid type"),
        ];
        for (value, want) in cases {
            let err = CniResult::parse(&value).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
    }
}
