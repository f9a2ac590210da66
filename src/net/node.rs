//! The node's own side of the network: its primary addresses (a pod's
//! `status.hostIP(s)`, and a hostNetwork pod's `podIP(s)`) and its host name.
//!
//! The kubelet takes the node's InternalIPs, one per family; without a cloud
//! provider those come from `--node-ip` or the address of the default route's
//! interface. peapod does the latter: per family, the first global address of
//! the interface the default route goes through (lowest metric), else the
//! first global address of any interface. IPv4 first, as the kubelet lists
//! them on a single-stack IPv4 or dual-stack node.

use std::net::IpAddr;

/// RTF_UP and RTF_REJECT of the kernel's route flags.
const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;

/// The node's primary addresses, IPv4 first, at most one per family (none if
/// it has no global address).
pub fn node_ips() -> Vec<IpAddr> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let addresses: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()
        .map(|list| {
            list.filter_map(|ifa| {
                let address = ifa.address?;
                let ip = if let Some(v4) = address.as_sockaddr_in() {
                    IpAddr::V4(v4.ip())
                } else {
                    IpAddr::V6(address.as_sockaddr_in6()?.ip())
                };
                Some((ifa.interface_name, ip))
            })
            .collect()
        })
        .unwrap_or_default();
    pick(
        default_interface_v4(&v4).as_deref(),
        default_interface_v6(&v6).as_deref(),
        &addresses,
    )
}

/// The host's name as the kernel has it (what a hostNetwork pod's `hostname`
/// says: it shares the node's UTS namespace).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// One address per family: on the default route's interface, else anywhere.
fn pick(
    v4_iface: Option<&str>,
    v6_iface: Option<&str>,
    addresses: &[(String, IpAddr)],
) -> Vec<IpAddr> {
    let choose = |iface: Option<&str>, family: fn(&IpAddr) -> bool| {
        let global = |(_, ip): &&(String, IpAddr)| family(ip) && is_global(ip);
        iface
            .and_then(|iface| {
                addresses
                    .iter()
                    .filter(global)
                    .find(|(name, _)| name == iface)
            })
            .or_else(|| addresses.iter().find(global))
            .map(|(_, ip)| *ip)
    };
    let v4 = choose(v4_iface, IpAddr::is_ipv4);
    let v6 = choose(v6_iface, IpAddr::is_ipv6);
    v4.into_iter().chain(v6).collect()
}

/// Neither loopback, link-local, unspecified nor multicast.
fn is_global(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast())
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_loopback() || link_local || v6.is_unspecified() || v6.is_multicast())
        }
    }
}

/// /proc/net/route: the interface of the usable default route with the
/// lowest metric.
fn default_interface_v4(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dst, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0;
            let default =
                u32::from_str_radix(dst, 16).ok()? == 0 && u32::from_str_radix(mask, 16).ok()? == 0;
            (usable && default && *iface != "lo")
                .then(|| (metric.parse::<u32>().unwrap_or(u32::MAX), iface.to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// /proc/net/ipv6_route: the same for IPv6 (`::/0`; the kernel's unreachable
/// default on `lo` is a reject route).
fn default_interface_v6(table: &str) -> Option<String> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let default = f[0].parse::<u128>().ok()? == 0 && f[1] == "00";
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0;
            let metric = u32::from_str_radix(f[5], 16).unwrap_or(u32::MAX);
            (default && usable && f[9] != "lo").then(|| (metric, f[9].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth1\t00000000\t010200C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
        eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        eth2\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

    const ROUTE6: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth1
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";

    #[test]
    fn default_routes_are_read_as_the_kernel_lists_them() {
        assert_eq!(default_interface_v4(ROUTE).as_deref(), Some("eth0"));
        assert_eq!(default_interface_v6(ROUTE6).as_deref(), Some("eth1"));
        assert_eq!(default_interface_v4("Iface\tDestination\n"), None);
        // Only the kernel's reject route: no default.
        let reject = ROUTE6.lines().nth(2).unwrap();
        assert_eq!(default_interface_v6(reject), None);
    }

    #[test]
    fn the_default_route_interface_wins_then_any_global_address() {
        let a = |iface: &str, ip: &str| (iface.to_string(), ip.parse::<IpAddr>().unwrap());
        let addresses = [
            a("lo", "127.0.0.1"),
            a("lo", "::1"),
            a("br0", "10.86.0.1"),
            a("eth0", "fe80::1"),
            a("eth0", "192.0.2.2"),
            a("eth0", "fd00::2"),
        ];
        let ips = |v: Vec<IpAddr>| v.iter().map(IpAddr::to_string).collect::<Vec<_>>();
        assert_eq!(
            ips(pick(Some("eth0"), Some("eth0"), &addresses)),
            ["192.0.2.2", "fd00::2"]
        );
        // No default route: the first global address of each family.
        assert_eq!(ips(pick(None, None, &addresses)), ["10.86.0.1", "fd00::2"]);
        // A default route through an interface without an address of that family.
        assert_eq!(
            ips(pick(Some("br0"), Some("br0"), &addresses)),
            ["10.86.0.1", "fd00::2"]
        );
        assert!(pick(None, None, &addresses[..2]).is_empty());
    }

    #[test]
    fn this_node_has_addresses_of_its_own() {
        for ip in node_ips() {
            assert!(is_global(&ip), "{ip}");
        }
        assert!(!host_name().is_empty());
    }
}
