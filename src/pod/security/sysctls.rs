//! Sysctls as the kubelet allows them: its safe set (the ones the running
//! kernel has), plus the node's allowedUnsafeSysctls; only sysctls of a
//! namespace the pod owns, never one shared with the host (hostNetwork,
//! hostIPC). They are set in the sandbox, whose namespaces every container
//! joins (containerd sets the sandbox's `linux.sysctl` the same way).

use crate::pod::model::Pod;

/// The kubelet's safe sysctls (pkg/kubelet/sysctl/safe_sysctls.go), with the
/// kernel (major, minor) that brought each.
const SAFE: [(&str, (u32, u32)); 12] = [
    ("kernel.shm_rmid_forced", (0, 0)),
    ("net.ipv4.ip_local_port_range", (0, 0)),
    ("net.ipv4.tcp_syncookies", (0, 0)),
    ("net.ipv4.ping_group_range", (0, 0)),
    ("net.ipv4.ip_unprivileged_port_start", (0, 0)),
    ("net.ipv4.ip_local_reserved_ports", (3, 16)),
    ("net.ipv4.tcp_keepalive_time", (4, 5)),
    ("net.ipv4.tcp_fin_timeout", (4, 6)),
    ("net.ipv4.tcp_keepalive_intvl", (4, 5)),
    ("net.ipv4.tcp_keepalive_probes", (4, 5)),
    ("net.ipv4.tcp_rmem", (4, 15)),
    ("net.ipv4.tcp_wmem", (4, 15)),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Ipc,
    Net,
}

impl Namespace {
    fn name(self) -> &'static str {
        match self {
            Namespace::Ipc => "IPC",
            Namespace::Net => "net",
        }
    }
}

/// The namespace a sysctl belongs to (pkg/kubelet/sysctl/namespace.go), or
/// None for one that is the whole host's.
pub fn namespace_of(name: &str) -> Option<Namespace> {
    if name == "kernel.sem" {
        return Some(Namespace::Ipc);
    }
    for (prefix, ns) in [
        ("kernel.shm", Namespace::Ipc),
        ("kernel.msg", Namespace::Ipc),
        ("fs.mqueue.", Namespace::Ipc),
        ("net.", Namespace::Net),
    ] {
        if name.starts_with(prefix) {
            return Some(ns);
        }
    }
    None
}

/// An allowedUnsafeSysctls entry: a name or a prefix ending in `*`, of a
/// namespaced sysctl (the kubelet refuses to start otherwise).
pub fn check_allowed_pattern(pattern: &str) -> Result<(), String> {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    if body.is_empty() || body.contains('*') {
        return Err(format!(
            "{pattern:?}: a sysctl name, or a prefix ending in '*'"
        ));
    }
    if namespace_of(body).is_none() {
        return Err(format!("{pattern:?}: not known to be namespaced"));
    }
    Ok(())
}

fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Whether the node lets a pod set `name`: a safe sysctl of this kernel, or
/// one the node's allowedUnsafeSysctls name or match by prefix.
pub fn allowed(name: &str, unsafe_allowed: &[String], kernel: (u32, u32)) -> bool {
    SAFE.iter()
        .any(|(safe, since)| *safe == name && kernel >= *since)
        || unsafe_allowed.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
}

/// The kubelet's sysctl admission: every sysctl allowed, namespaced, and not
/// of a namespace the pod shares with the host. The message names the field.
pub fn check(pod: &Pod, unsafe_allowed: &[String]) -> Result<(), String> {
    let kernel = kernel_version();
    for (i, sysctl) in pod.security.sysctls.iter().enumerate() {
        let field = format!("spec.securityContext.sysctls[{i}].name");
        let name = &sysctl.name;
        let Some(ns) = namespace_of(name) else {
            return Err(format!(
                "{field}: {name:?} not allowed: not a namespaced sysctl (it would change the whole host)"
            ));
        };
        if !allowed(name, unsafe_allowed, kernel) {
            return Err(format!(
                "{field}: {name:?} not allowed: unsafe (the node allows the kubelet's safe sysctls and its allowedUnsafeSysctls)"
            ));
        }
        let shared = match ns {
            Namespace::Net => pod.host.network,
            Namespace::Ipc => pod.host.ipc,
        };
        if shared {
            return Err(format!(
                "{field}: {name:?} not allowed with host {} enabled",
                ns.name()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::model::{HostNamespaces, Sysctl};

    #[test]
    fn namespaces_and_patterns_are_the_kubelets() {
        assert_eq!(namespace_of("kernel.sem"), Some(Namespace::Ipc));
        assert_eq!(namespace_of("kernel.shm_rmid_forced"), Some(Namespace::Ipc));
        assert_eq!(namespace_of("fs.mqueue.msg_max"), Some(Namespace::Ipc));
        assert_eq!(namespace_of("net.core.somaxconn"), Some(Namespace::Net));
        assert_eq!(namespace_of("kernel.semmni"), None);
        assert_eq!(namespace_of("vm.swappiness"), None);
        assert!(check_allowed_pattern("net.core.*").is_ok());
        assert!(check_allowed_pattern("kernel.msg*").is_ok());
        assert!(check_allowed_pattern("kernel.*").is_err());
        assert!(check_allowed_pattern("vm.swappiness").is_err());
        assert!(check_allowed_pattern("*").is_err());
        assert!(check_allowed_pattern("net.*.x").is_err());
    }

    #[test]
    fn safe_unsafe_and_host_namespaces() {
        let six = (6, 1);
        assert!(allowed("net.ipv4.tcp_rmem", &[], six));
        assert!(!allowed("net.ipv4.tcp_rmem", &[], (4, 14)));
        assert!(!allowed("net.core.somaxconn", &[], six));
        assert!(allowed("net.core.somaxconn", &["net.core.*".into()], six));
        assert!(allowed("kernel.msgmax", &["kernel.msgmax".into()], six));
        assert!(!allowed("kernel.msgmnb", &["kernel.msgmax".into()], six));

        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "name": "p", "namespace": "default", "uid": "u", "hostname": "p",
            "restart_policy": "Always", "termination_grace": {"secs": 30, "nanos": 0},
            "share_process_namespace": false, "init_containers": [], "containers": [],
            "volumes": [], "labels": {}, "annotations": {}, "host_aliases": []
        }))
        .unwrap();
        let set = |pod: &mut Pod, names: &[&str]| {
            pod.security.sysctls = (names.iter())
                .map(|n| Sysctl {
                    name: n.to_string(),
                    value: "1".into(),
                })
                .collect();
        };
        set(
            &mut pod,
            &["kernel.shm_rmid_forced", "net.ipv4.tcp_syncookies"],
        );
        assert_eq!(check(&pod, &[]), Ok(()));
        set(&mut pod, &["net.ipv4.tcp_syncookies", "net.core.somaxconn"]);
        let err = check(&pod, &[]).unwrap_err();
        assert!(
            err.starts_with(
                "spec.securityContext.sysctls[1].name: \"net.core.somaxconn\" not allowed: unsafe"
            ),
            "{err}"
        );
        assert_eq!(check(&pod, &["net.core.somaxconn".into()]), Ok(()));
        set(&mut pod, &["vm.swappiness"]);
        assert!(check(&pod, &[])
            .unwrap_err()
            .contains("not a namespaced sysctl"));
        pod.host = HostNamespaces {
            network: true,
            ..Default::default()
        };
        set(
            &mut pod,
            &["kernel.shm_rmid_forced", "net.ipv4.tcp_syncookies"],
        );
        let err = check(&pod, &[]).unwrap_err();
        assert!(
            err.ends_with("\"net.ipv4.tcp_syncookies\" not allowed with host net enabled"),
            "{err}"
        );
        pod.host = HostNamespaces {
            ipc: true,
            ..Default::default()
        };
        let err = check(&pod, &[]).unwrap_err();
        assert!(
            err.contains("sysctls[0]") && err.ends_with("with host IPC enabled"),
            "{err}"
        );
    }
}
