//! A container's environment: names, values, values from the pod's fields and
//! resources (fieldRef, resourceFieldRef), and Kubernetes' `$(VAR)` expansion.

use std::collections::HashMap;

use k8s_openapi::api::core::v1 as k8s;

use super::containers::Scope;
use super::names::check_qualified_name;
use super::resources::Amount;
use super::{model, not_one_of, Admission, ManifestError, NO_API_SERVER};

/// The divisors Kubernetes accepts in a resourceFieldRef.
const CPU_DIVISORS: &[&str] = &["1m", "1"];
const MEMORY_DIVISORS: &[&str] = &[
    "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
];

impl Admission<'_> {
    /// The container's environment in order, values resolved and expanded the
    /// way the kubelet does it.
    pub(super) fn env(
        &mut self,
        field: &str,
        vars: Option<Vec<k8s::EnvVar>>,
        own: &model::Resources,
        scope: &Scope,
    ) -> Result<Vec<model::EnvVar>, ManifestError> {
        let mut env: Vec<model::EnvVar> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, var) in vars.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{field}.env[{i}]");
            let k8s::EnvVar {
                name,
                value,
                value_from,
            } = var;
            if name.is_empty() {
                return Err(self.invalid(format!("{at}.name"), "required"));
            }
            if !name
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
            {
                return Err(self.invalid(
                    format!("{at}.name"),
                    format!("invalid name {name:?}: must be printable ASCII without '='"),
                ));
            }
            let value = match value_from {
                Some(_) if value.as_deref().is_some_and(|value| !value.is_empty()) => {
                    return Err(self.invalid(
                        format!("{at}.valueFrom"),
                        "may not be set when value is not empty",
                    ))
                }
                // Resolved values are not expanded, as in the kubelet.
                Some(source) => self.env_source(&format!("{at}.valueFrom"), source, own, scope)?,
                None => expand(value.as_deref().unwrap_or(""), |reference| {
                    index.get(reference).map(|&j| env[j].value.as_str())
                }),
            };
            match index.get(&name) {
                Some(&j) => {
                    self.warn(
                        &format!("{at}.name"),
                        format!("duplicate name {name:?} hides the earlier definition"),
                    );
                    env[j].value = value;
                }
                None => {
                    index.insert(name.clone(), env.len());
                    env.push(model::EnvVar { name, value });
                }
            }
        }
        Ok(env)
    }

    fn env_source(
        &self,
        at: &str,
        source: k8s::EnvVarSource,
        own: &model::Resources,
        scope: &Scope,
    ) -> Result<String, ManifestError> {
        let k8s::EnvVarSource {
            config_map_key_ref,
            field_ref,
            file_key_ref,
            resource_field_ref,
            secret_key_ref,
        } = source;
        let set = [
            config_map_key_ref.is_some(),
            field_ref.is_some(),
            file_key_ref.is_some(),
            resource_field_ref.is_some(),
            secret_key_ref.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if set > 1 {
            return Err(self.invalid(at, "may not have more than one field specified at a time"));
        }
        if secret_key_ref.is_some() {
            return Err(self.unsupported(format!("{at}.secretKeyRef"), NO_API_SERVER));
        }
        if config_map_key_ref.is_some() {
            return Err(self.unsupported(format!("{at}.configMapKeyRef"), NO_API_SERVER));
        }
        if file_key_ref.is_some() {
            return Err(self.unsupported(format!("{at}.fileKeyRef"), "unsupported"));
        }
        match (field_ref, resource_field_ref) {
            (Some(selector), _) => self.field_ref(&format!("{at}.fieldRef"), selector, scope),
            (_, Some(selector)) => {
                self.resource_field_ref(&format!("{at}.resourceFieldRef"), selector, own, scope)
            }
            (None, None) => Err(self.invalid(
                at,
                "must specify one of: fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef",
            )),
        }
    }

    fn field_ref(
        &self,
        at: &str,
        selector: k8s::ObjectFieldSelector,
        scope: &Scope,
    ) -> Result<String, ManifestError> {
        let k8s::ObjectFieldSelector {
            api_version,
            field_path,
        } = selector;
        if let Some(version) = api_version.filter(|v| !v.is_empty() && v != "v1") {
            return Err(self.invalid(format!("{at}.apiVersion"), not_one_of(&version, &["v1"])));
        }
        let path_field = format!("{at}.fieldPath");
        let value = match field_path.as_str() {
            "" => return Err(self.invalid(path_field, "required")),
            "metadata.name" => scope.name.to_owned(),
            "metadata.namespace" => scope.namespace.to_owned(),
            "metadata.uid" => scope.uid.to_owned(),
            "spec.nodeName" => self.node.name.clone(),
            "spec.serviceAccountName" => scope.service_account.to_owned(),
            // Known once the pod's network exists: filled in at container start.
            status if crate::pod::downward::FIELDS.contains(&status) => {
                crate::pod::downward::placeholder(status).unwrap_or_default()
            }
            other => {
                let (map, key) = match subscript(other) {
                    Some(("metadata.labels", key)) => (scope.labels, key),
                    Some(("metadata.annotations", key)) => (scope.annotations, key),
                    _ => {
                        return Err(self.invalid(
                            path_field,
                            not_one_of(
                                other,
                                &[
                                    "metadata.name",
                                    "metadata.namespace",
                                    "metadata.uid",
                                    "metadata.labels['<key>']",
                                    "metadata.annotations['<key>']",
                                    "spec.nodeName",
                                    "spec.serviceAccountName",
                                    "status.podIP",
                                    "status.podIPs",
                                    "status.hostIP",
                                    "status.hostIPs",
                                ],
                            ),
                        ))
                    }
                };
                if let Err(problem) = check_qualified_name(key) {
                    return Err(self.invalid(path_field, format!("invalid key {key:?}: {problem}")));
                }
                // A missing label reads as "", as in the kubelet.
                map.get(key).cloned().unwrap_or_default()
            }
        };
        Ok(value)
    }

    fn resource_field_ref(
        &self,
        at: &str,
        selector: k8s::ResourceFieldSelector,
        own: &model::Resources,
        scope: &Scope,
    ) -> Result<String, ManifestError> {
        let k8s::ResourceFieldSelector {
            container_name,
            divisor,
            resource,
        } = selector;
        let target = match container_name.as_deref().filter(|name| !name.is_empty()) {
            None => own,
            Some(name) => match scope.resources.iter().find(|(n, _)| n == name) {
                Some((_, resources)) => resources,
                None => {
                    return Err(self.invalid(
                        format!("{at}.containerName"),
                        format!("no container {name:?}"),
                    ))
                }
            },
        };
        let resource_field = format!("{at}.resource");
        // Without a limit, Kubernetes reports the node's allocatable amount.
        let (amount, cpu) = match resource.as_str() {
            "limits.cpu" => (
                target
                    .cpu_limit_millis
                    .or(self.node.cpu_millis)
                    .map(u128::from),
                true,
            ),
            "requests.cpu" => (
                Some(u128::from(target.cpu_request_millis.unwrap_or(0))),
                true,
            ),
            "limits.memory" => (
                target
                    .memory_limit_bytes
                    .or(self.node.memory_bytes)
                    .and_then(|bytes| u128::try_from(bytes).ok()),
                false,
            ),
            "requests.memory" => (
                u128::try_from(target.memory_request_bytes.unwrap_or(0)).ok(),
                false,
            ),
            "" => return Err(self.invalid(resource_field, "required")),
            other if other.ends_with(".ephemeral-storage") || other.contains(".hugepages-") => {
                return Err(self.unsupported(
                    resource_field,
                    format!("unsupported: {other} is not tracked"),
                ))
            }
            other => {
                return Err(self.invalid(
                    resource_field,
                    not_one_of(
                        other,
                        &[
                            "limits.cpu",
                            "limits.memory",
                            "requests.cpu",
                            "requests.memory",
                        ],
                    ),
                ))
            }
        };
        let Some(amount) = amount else {
            return Err(self.unsupported(
                resource_field,
                format!(
                    "unsupported: no {resource} set and this node's allocatable amount is unknown"
                ),
            ));
        };
        // Amounts are in millicores and bytes; divisors are checked in the same units.
        let (scale, supported) = if cpu {
            (1000, CPU_DIVISORS)
        } else {
            (1, MEMORY_DIVISORS)
        };
        let divisor = match divisor {
            None => scale,
            Some(quantity) => {
                let divisor_field = format!("{at}.divisor");
                let value = self.amount(&divisor_field, &quantity)?.exact_scaled(scale);
                let mut allowed = supported
                    .iter()
                    .filter_map(|text| text.parse::<Amount>().ok()?.exact_scaled(scale));
                match value {
                    Some(value) if allowed.any(|allowed| allowed == value) => value,
                    _ => {
                        return Err(self.invalid(divisor_field, not_one_of(&quantity.0, supported)))
                    }
                }
            }
        };
        Ok(amount.div_ceil(divisor).to_string())
    }
}

/// "metadata.labels['app']" as ("metadata.labels", "app").
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (base, rest) = path.split_once("['")?;
    Some((base, rest.strip_suffix("']")?))
}

/// Kubernetes' `$(VAR)` expansion: a defined name is replaced, an undefined one
/// stays as written, `$$` is a literal `$` (so `$$(VAR)` gives `$(VAR)`).
pub(super) fn expand<'v>(input: &str, lookup: impl Fn(&str) -> Option<&'v str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.as_bytes().first() {
            Some(b'$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some(b'(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                // An unclosed reference is kept as written.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::admission::tests::*;
    use std::collections::HashMap;

    #[test]
    fn resource_field_ref_without_limit_reads_the_node() {
        let text = app(
            ", env: [{name: C, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}, \
             {name: M, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Gi}}}, \
             {name: R, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}, \
             {name: H, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1k}}}], \
             resources: {requests: {cpu: 100m}}",
        );
        let pod = admit_ok(&text).pod;
        assert_eq!(
            env_of(&pod.containers[0]),
            [("C", "4"), ("M", "8"), ("R", "100"), ("H", "8589935")]
        );
    }

    #[test]
    fn duplicate_env_names_keep_the_last_value() {
        let text = app(
            ", env: [{name: A, value: one}, {name: B, value: \"$(A)\"}, {name: A, value: two}, \
             {name: C, value: \"$(A)\"}], command: [\"$(A)\"]",
        );
        let Admitted { pod, warnings } = admit_ok(&text);
        assert_eq!(
            env_of(&pod.containers[0]),
            [("A", "two"), ("B", "one"), ("C", "two")]
        );
        assert_eq!(pod.containers[0].command, ["two"]);
        assert_eq!(
            warnings,
            ["web.yaml: spec.containers[0].env[2].name: duplicate name \"A\" hides the earlier definition"]
        );
    }

    #[test]
    fn expansion() {
        let vars: HashMap<&str, &str> = [("A", "a"), ("EMPTY", ""), ("X_Y", "xy")].into();
        let lookup = |name: &str| vars.get(name).copied();
        let cases = [
            ("plain", "plain"),
            ("$(A)", "a"),
            ("-$(A)-$(A)-", "-a-a-"),
            ("$(EMPTY)x", "x"),
            ("$(X_Y)", "xy"),
            ("$(MISSING)", "$(MISSING)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$a"),
            ("$$$$(A)", "$$(A)"),
            ("$$", "$"),
            ("$", "$"),
            ("a$", "a$"),
            ("$A", "$A"),
            ("$(A", "$(A"),
            ("$(A$(A)", "$(A$(A)"),
            ("$()", "$()"),
            ("é$(A)é", "éaé"),
            ("$é", "$é"),
            ("($(A))", "(a)"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, lookup), expected, "{input:?}");
        }
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let env = |source: &str| app(&format!(", env: [{{name: X, valueFrom: {source}}}]"));
        let cases: Vec<(String, &str)> = vec![
            (app(", env: [{value: x}]"), "web.yaml: spec.containers[0].env[0].name: required"),
            (app(", env: [{name: \"A=B\"}]"), "web.yaml: spec.containers[0].env[0].name: invalid name \"A=B\""),
            (app(", env: [{name: A, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]"), "web.yaml: spec.containers[0].env[0].valueFrom: may not be set when value is not empty"),
            (env("{}"), "web.yaml: spec.containers[0].env[0].valueFrom: must specify one of"),
            (env("{secretKeyRef: {name: s, key: k}}"), "web.yaml: spec.containers[0].env[0].valueFrom.secretKeyRef: unsupported: no API server"),
            (env("{configMapKeyRef: {name: s, key: k}}"), "web.yaml: spec.containers[0].env[0].valueFrom.configMapKeyRef: unsupported: no API server"),
            (env("{fieldRef: {fieldPath: metadata.name}, configMapKeyRef: {name: s, key: k}}"), "web.yaml: spec.containers[0].env[0].valueFrom: may not have more than one field"),
            (env("{fieldRef: {fieldPath: status.podIPx}}"), "web.yaml: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: unsupported value \"status.podIPx\""),
            (env("{fieldRef: {fieldPath: metadata.generation}}"), "web.yaml: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: unsupported value \"metadata.generation\""),
            (env("{fieldRef: {fieldPath: metadata.labels}}"), "web.yaml: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: unsupported value"),
            (env("{fieldRef: {fieldPath: \"metadata.labels['a b']\"}}"), "web.yaml: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: invalid key \"a b\""),
            (env("{fieldRef: {apiVersion: v2, fieldPath: metadata.name}}"), "web.yaml: spec.containers[0].env[0].valueFrom.fieldRef.apiVersion: unsupported value \"v2\""),
            (env("{resourceFieldRef: {resource: limits.gpu}}"), "web.yaml: spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: unsupported value \"limits.gpu\""),
            (env("{resourceFieldRef: {resource: limits.ephemeral-storage}}"), "web.yaml: spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: unsupported"),
            (env("{resourceFieldRef: {containerName: other, resource: limits.cpu}}"), "web.yaml: spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName: no container \"other\""),
            (env("{resourceFieldRef: {resource: limits.cpu, divisor: \"3\"}}"), "web.yaml: spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: unsupported value \"3\""),
            (env("{resourceFieldRef: {resource: limits.memory, divisor: 2Mi}}"), "web.yaml: spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: unsupported value \"2Mi\""),
            (env("{fileKeyRef: {volumeName: v, path: p, key: k}}"), "web.yaml: spec.containers[0].env[0].valueFrom.fileKeyRef: unsupported"),
        ];
        assert_refusals(&cases);
    }
}
