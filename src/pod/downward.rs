//! Downward API values known only once the pod's network exists:
//! `status.podIP`, `status.podIPs`, `status.hostIP`, `status.hostIPs`. The
//! kubelet resolves them when it starts a container; so does peapod.
//!
//! Admission resolves and `$(VAR)`-expands everything else, and leaves a
//! placeholder for each of these values wherever it lands (an env value, or
//! through `$(VAR)` in a later value, the command or the args). The
//! supervisor replaces the placeholders at container start
//! ([`resolve`]). Expansion is a plain substitution that never rescans its
//! output, so expanding a placeholder and replacing it afterwards gives what
//! expanding the value would. A placeholder holds NUL, which no process's
//! argument or environment can: one can never reach a container unreplaced.

use std::net::IpAddr;

use super::model::Container;

/// The fields the kubelet's podFieldSelectorRuntimeValue fills in at start.
pub const FIELDS: [&str; 4] = [
    "status.podIP",
    "status.podIPs",
    "status.hostIP",
    "status.hostIPs",
];

/// The placeholder admission writes for `field` (one of [`FIELDS`]).
pub fn placeholder(field: &str) -> Option<String> {
    FIELDS
        .contains(&field)
        .then(|| format!("\0peapod:{field}\0"))
}

/// The pod's addresses at container start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeValues {
    pub pod_ips: Vec<IpAddr>,
    pub host_ips: Vec<IpAddr>,
}

impl RuntimeValues {
    /// The kubelet's values: the first IP, or all of them joined with ","
    /// (empty when there are none).
    fn value(&self, field: &str) -> String {
        let join = |ips: &[IpAddr]| {
            ips.iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let first = |ips: &[IpAddr]| ips.first().map(IpAddr::to_string).unwrap_or_default();
        match field {
            "status.podIP" => first(&self.pod_ips),
            "status.podIPs" => join(&self.pod_ips),
            "status.hostIP" => first(&self.host_ips),
            "status.hostIPs" => join(&self.host_ips),
            _ => String::new(),
        }
    }
}

/// `c` with every placeholder in its env, command and args replaced.
pub fn resolve(c: &Container, values: &RuntimeValues) -> Container {
    let mut c = c.clone();
    let replace = |text: &mut String| {
        if text.contains('\0') {
            for field in FIELDS {
                if let Some(mark) = placeholder(field) {
                    *text = text.replace(&mark, &values.value(field));
                }
            }
        }
    };
    c.env.iter_mut().for_each(|var| replace(&mut var.value));
    c.command.iter_mut().for_each(replace);
    c.args.iter_mut().for_each(replace);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::admission;

    fn values() -> RuntimeValues {
        RuntimeValues {
            pod_ips: vec!["10.86.0.12".parse().unwrap(), "fd00:86::c".parse().unwrap()],
            host_ips: vec!["192.0.2.2".parse().unwrap()],
        }
    }

    /// makeEnvironmentVariables: a status value lands where `$(VAR)` refers
    /// to it, in later values, the command and the args; `$$` stays escaped.
    #[test]
    fn status_values_are_filled_in_at_start_wherever_they_went() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    command: [sh, -c, 'echo $(POD_IP) $$(POD_IP)']\n    args: [--bind=$(POD_IP):80]\n    env:\n    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}\n    - {name: POD_IPS, valueFrom: {fieldRef: {fieldPath: status.podIPs}}}\n    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}\n    - {name: HOST_IPS, valueFrom: {fieldRef: {fieldPath: status.hostIPs}}}\n    - {name: URL, value: 'http://$(POD_IP):80/'}\n";
        let pod = admission::parse(text, "web.yaml").unwrap().pod;
        let c = resolve(&pod.containers[0], &values());
        let env: Vec<(&str, &str)> = c
            .env
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("POD_IP", "10.86.0.12"),
                ("POD_IPS", "10.86.0.12,fd00:86::c"),
                ("HOST_IP", "192.0.2.2"),
                ("HOST_IPS", "192.0.2.2"),
                ("URL", "http://10.86.0.12:80/"),
            ]
        );
        assert_eq!(c.command, ["sh", "-c", "echo 10.86.0.12 $(POD_IP)"]);
        assert_eq!(c.args, ["--bind=10.86.0.12:80"]);
        // A pod without addresses (loopback only) gets empty values.
        let c = resolve(&pod.containers[0], &RuntimeValues::default());
        assert_eq!(c.env[0].value, "");
        assert_eq!(c.env[4].value, "http://:80/");
        assert!(!format!("{c:?}").contains("peapod:"));
    }
}
