//! Pod manifests: Kubernetes v1/Pod YAML or JSON into the model, validated.
//!
//! The text is deserialized into k8s-openapi's `Pod` (peapod keeps no Pod schema
//! of its own), checked the way the API server and the kubelet would check it,
//! and turned into [`model::Pod`] with Kubernetes' defaults applied and `$(VAR)`
//! references expanded. A field peapod does not act on is refused or reported in
//! [`Admitted::warnings`]; none is dropped silently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::model;

/// Kubernetes' default for spec.terminationGracePeriodSeconds.
const DEFAULT_GRACE_SECONDS: i64 = 30;
const SCHEDULING_IGNORED: &str = "ignored (no scheduler/API server on a single node)";
const NOT_ENFORCED: &str = "not enforced yet";
const NO_API_SERVER: &str = "unsupported: no API server";
/// The divisors Kubernetes accepts in a resourceFieldRef.
const CPU_DIVISORS: &[&str] = &["1m", "1"];
const MEMORY_DIVISORS: &[&str] = &[
    "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
];

/// A manifest accepted for this node.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub pod: model::Pod,
    /// One line per field peapod accepts but does not act on:
    /// "<file>: <field path>: <what is not done>".
    pub warnings: Vec<String>,
}

/// Why a manifest was refused. Every message starts with the file name, then the
/// field path when there is one: "web.yaml: spec.containers[0].image: required".
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read (or /dev/urandom, for a fresh uid).
    #[error("{file}: cannot read: {cause}")]
    Read { file: String, cause: std::io::Error },
    /// Not YAML/JSON, not an object, or a value of the wrong type. The message is
    /// serde's, with its field path, line and column when it knows them.
    #[error("{file}: {message}")]
    Malformed {
        file: String,
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    #[error("{file}: more than one YAML document (one pod per file)")]
    MultipleDocuments { file: String },
    /// A field Kubernetes itself would refuse.
    #[error("{file}: {field}: {problem}")]
    Invalid {
        file: String,
        field: String,
        problem: String,
    },
    /// Valid Kubernetes that peapod cannot run on a single node.
    #[error("{file}: {field}: {problem}")]
    Unsupported {
        file: String,
        field: String,
        problem: String,
    },
}

impl ManifestError {
    /// The field path the error is about, when it is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } | Self::Unsupported { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Reads and admits a manifest file. Any extension is read as YAML, which
/// covers JSON too.
pub fn load(path: &Path) -> Result<Admitted, ManifestError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|cause| ManifestError::Read {
        file: file.clone(),
        cause,
    })?;
    parse(&text, &file)
}

/// Admits a manifest given as text; `source` names it in messages.
pub fn parse(text: &str, source: &str) -> Result<Admitted, ManifestError> {
    admit(text, source, &Node::this())
}

/// Admits a manifest after `adjust` has changed the decoded pod (the static-pod
/// daemon names it and gives it a uid before admission, so that `$(VAR)` and
/// fieldRef values see the final name); `adjust` may add warnings.
pub fn parse_adjusted(
    text: &str,
    source: &str,
    adjust: impl FnOnce(&mut k8s::Pod, &mut Vec<String>),
) -> Result<Admitted, ManifestError> {
    let mut pod = decode(text, source)?;
    let mut warnings = Vec::new();
    adjust(&mut pod, &mut warnings);
    let mut admitted = admit_decoded(pod, source, &Node::this())?;
    warnings.append(&mut admitted.warnings);
    admitted.warnings = warnings;
    Ok(admitted)
}

fn admit(text: &str, file: &str, node: &Node) -> Result<Admitted, ManifestError> {
    admit_decoded(decode(text, file)?, file, node)
}

fn admit_decoded(pod: k8s::Pod, file: &str, node: &Node) -> Result<Admitted, ManifestError> {
    let mut admission = Admission {
        file,
        node,
        warnings: Vec::new(),
    };
    let pod = admission.pod(pod)?;
    Ok(Admitted {
        pod,
        warnings: admission.warnings,
    })
}

// ---------------------------------------------------------------------------
// Text to k8s-openapi's Pod

fn decode(text: &str, file: &str) -> Result<k8s::Pod, ManifestError> {
    let malformed = |error: serde_yaml_ng::Error| {
        let location = error.location();
        ManifestError::Malformed {
            file: file.to_owned(),
            message: error.to_string(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
        }
    };
    let mut found = None;
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        // Returning on the first error matters: the iterator repeats it forever.
        let value = Value::deserialize(document).map_err(malformed)?;
        // Empty documents ("---" at the end, comments only) are skipped, as kubectl does.
        if value.is_null() {
            continue;
        }
        if found.is_some() {
            return Err(ManifestError::MultipleDocuments {
                file: file.to_owned(),
            });
        }
        found = Some((index, value));
    }
    let Some((index, mut raw)) = found else {
        return Err(malformed_message(file, "empty manifest: expected a v1 Pod"));
    };
    check_type(&raw, file)?;
    let pod = if has_merge_key(&raw) {
        raw.apply_merge().map_err(malformed)?;
        serde_yaml_ng::from_value(raw.clone())
    } else {
        // From the text rather than the value, so errors keep their line and column.
        let document = serde_yaml_ng::Deserializer::from_str(text)
            .nth(index)
            .expect("the document was read above");
        k8s::Pod::deserialize(document)
    }
    .map_err(malformed)?;
    let known = serde_yaml_ng::to_value(&pod).map_err(malformed)?;
    if let Some(field) = unknown_field(&raw, &known, "") {
        return Err(ManifestError::Invalid {
            file: file.to_owned(),
            field,
            problem: "unknown field".to_owned(),
        });
    }
    Ok(pod)
}

fn malformed_message(file: &str, message: &str) -> ManifestError {
    ManifestError::Malformed {
        file: file.to_owned(),
        message: message.to_owned(),
        line: None,
        column: None,
    }
}

/// apiVersion and kind, checked before the typed decoding for a clear message.
fn check_type(raw: &Value, file: &str) -> Result<(), ManifestError> {
    let Value::Mapping(map) = raw else {
        return Err(malformed_message(
            file,
            "expected a v1 Pod object at the top level",
        ));
    };
    for (field, wanted) in [("apiVersion", "v1"), ("kind", "Pod")] {
        let problem = match map.get(field) {
            None | Some(Value::Null) => format!("required (must be {wanted:?})"),
            Some(Value::String(found)) if found == wanted => continue,
            Some(Value::String(found)) => format!("must be {wanted:?}, not {found:?}"),
            Some(other) => format!(
                "must be {wanted:?}, not {}",
                serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .trim_end()
            ),
        };
        return Err(ManifestError::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            problem,
        });
    }
    Ok(())
}

fn has_merge_key(value: &Value) -> bool {
    match value {
        Value::Mapping(map) => map
            .iter()
            .any(|(key, value)| key.as_str() == Some("<<") || has_merge_key(value)),
        Value::Sequence(items) => items.iter().any(has_merge_key),
        Value::Tagged(tagged) => has_merge_key(&tagged.value),
        _ => false,
    }
}

/// The first field of the manifest that k8s-openapi did not keep, i.e. one
/// Kubernetes does not know (a typo would otherwise be dropped silently).
fn unknown_field(raw: &Value, known: &Value, path: &str) -> Option<String> {
    let raw = match raw {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    };
    match (raw, known) {
        (Value::Mapping(raw), Value::Mapping(known)) => {
            for (key, value) in raw {
                let key = match key {
                    Value::String(key) => key.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim_end()
                        .to_owned(),
                };
                // status belongs to an API server; null means "not set".
                if value.is_null() || (path.is_empty() && key == "status") {
                    continue;
                }
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match known.get(key.as_str()) {
                    None => return Some(at),
                    Some(inner) => {
                        if let Some(found) = unknown_field(value, inner, &at) {
                            return Some(found);
                        }
                    }
                }
            }
            None
        }
        (Value::Sequence(raw), Value::Sequence(known)) => raw
            .iter()
            .zip(known)
            .enumerate()
            .find_map(|(i, (raw, known))| unknown_field(raw, known, &format!("{path}[{i}]"))),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// k8s-openapi's Pod to the model

/// What admission needs to know about this node.
struct Node {
    name: String,
    /// Allocatable CPU, for resourceFieldRef when a container sets no limit.
    cpu_millis: Option<u64>,
    /// Allocatable memory, likewise.
    memory_bytes: Option<i64>,
}

impl Node {
    fn this() -> Self {
        let name = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| "localhost".to_owned());
        let cpu_millis = std::thread::available_parallelism()
            .ok()
            .and_then(|cpus| u64::try_from(cpus.get()).ok())
            .map(|cpus| cpus * 1000);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| mem_total(&text));
        Self {
            name,
            cpu_millis,
            memory_bytes,
        }
    }
}

fn mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Pod-level securityContext, validated, for merging under each container's.
#[derive(Default)]
struct PodSecurity {
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
    run_as_non_root: Option<bool>,
    supplemental_groups: Vec<u32>,
}

/// The pod as seen while converting one of its containers.
struct Scope<'a> {
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    service_account: &'a str,
    /// Every container's resources by name, for resourceFieldRef.containerName.
    resources: &'a [(String, model::Resources)],
    security: &'a PodSecurity,
    volumes: &'a BTreeSet<String>,
}

struct Metadata {
    name: String,
    namespace: String,
    uid: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

struct Admission<'a> {
    file: &'a str,
    node: &'a Node,
    warnings: Vec<String>,
}

impl Admission<'_> {
    fn invalid(&self, field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.to_owned(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn unsupported(&self, field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
        ManifestError::Unsupported {
            file: self.file.to_owned(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn warn(&mut self, field: &str, message: impl Display) {
        self.warnings
            .push(format!("{}: {field}: {message}", self.file));
    }

    fn pod(&mut self, pod: k8s::Pod) -> Result<model::Pod, ManifestError> {
        // status is written by an API server: ignored.
        let k8s::Pod {
            metadata,
            spec,
            status: _,
        } = pod;
        let metadata = self.metadata(metadata)?;
        let Some(spec) = spec else {
            return Err(self.invalid("spec", "required"));
        };
        // Destructured in full so that a field added to k8s-openapi cannot slip through.
        let k8s::PodSpec {
            active_deadline_seconds,
            affinity,
            automount_service_account_token,
            containers,
            dns_config,
            dns_policy,
            enable_service_links,
            ephemeral_containers,
            host_aliases,
            host_ipc,
            host_network,
            host_pid,
            host_users,
            hostname,
            hostname_override,
            image_pull_secrets,
            init_containers,
            node_name,
            node_selector,
            os,
            overhead,
            preemption_policy,
            priority,
            priority_class_name,
            readiness_gates,
            resource_claims,
            resources,
            restart_policy,
            runtime_class_name,
            scheduler_name,
            scheduling_gates,
            security_context,
            service_account,
            service_account_name,
            set_hostname_as_fqdn,
            share_process_namespace,
            subdomain,
            termination_grace_period_seconds,
            tolerations,
            topology_spread_constraints,
            volumes,
        } = spec;

        for (field, shared) in [
            ("spec.hostNetwork", host_network),
            ("spec.hostPID", host_pid),
            ("spec.hostIPC", host_ipc),
        ] {
            if shared == Some(true) {
                return Err(
                    self.unsupported(field, "unsupported: a pod always gets its own namespaces")
                );
            }
        }
        if host_users == Some(false) {
            return Err(self.unsupported("spec.hostUsers", "unsupported: user namespaces"));
        }
        if let Some(os) = os {
            if os.name != "linux" {
                return Err(self.unsupported(
                    "spec.os.name",
                    format!("unsupported value {:?}: peapod runs Linux pods", os.name),
                ));
            }
        }
        if ephemeral_containers.is_some_and(|list| !list.is_empty()) {
            return Err(self.unsupported(
                "spec.ephemeralContainers",
                "unsupported: ephemeral containers",
            ));
        }
        if resource_claims.is_some_and(|list| !list.is_empty()) {
            return Err(self.unsupported("spec.resourceClaims", NO_API_SERVER));
        }

        let service_account_ref = service_account_name
            .clone()
            .or_else(|| service_account.clone())
            .filter(|name| !name.is_empty())
            // What the ServiceAccount admission plugin would set.
            .unwrap_or_else(|| "default".to_owned());
        for (field, set) in [
            ("spec.affinity", affinity.is_some()),
            (
                "spec.automountServiceAccountToken",
                automount_service_account_token.is_some(),
            ),
            ("spec.dnsConfig", dns_config.is_some()),
            ("spec.dnsPolicy", dns_policy.is_some()),
            ("spec.enableServiceLinks", enable_service_links.is_some()),
            (
                "spec.nodeSelector",
                node_selector.is_some_and(|m| !m.is_empty()),
            ),
            ("spec.overhead", overhead.is_some_and(|m| !m.is_empty())),
            ("spec.preemptionPolicy", preemption_policy.is_some()),
            ("spec.priority", priority.is_some()),
            ("spec.priorityClassName", priority_class_name.is_some()),
            (
                "spec.readinessGates",
                readiness_gates.is_some_and(|l| !l.is_empty()),
            ),
            ("spec.runtimeClassName", runtime_class_name.is_some()),
            ("spec.schedulerName", scheduler_name.is_some()),
            (
                "spec.schedulingGates",
                scheduling_gates.is_some_and(|l| !l.is_empty()),
            ),
            ("spec.serviceAccount", service_account.is_some()),
            ("spec.serviceAccountName", service_account_name.is_some()),
            (
                "spec.tolerations",
                tolerations.is_some_and(|l| !l.is_empty()),
            ),
            (
                "spec.topologySpreadConstraints",
                topology_spread_constraints.is_some_and(|l| !l.is_empty()),
            ),
        ] {
            if set {
                self.warn(field, SCHEDULING_IGNORED);
            }
        }
        if image_pull_secrets.is_some_and(|list| !list.is_empty()) {
            self.warn("spec.imagePullSecrets", "ignored (images are local)");
        }
        if let Some(node_name) = node_name.filter(|name| !name.is_empty()) {
            if node_name != self.node.name {
                let message = format!(
                    "ignored: the pod runs on this node ({:?}), not {node_name:?}",
                    self.node.name
                );
                self.warn("spec.nodeName", message);
            }
        }
        if active_deadline_seconds.is_some() {
            self.warn("spec.activeDeadlineSeconds", NOT_ENFORCED);
        }
        if resources.is_some() {
            self.warn("spec.resources", NOT_ENFORCED);
        }
        for (field, set) in [
            ("spec.subdomain", subdomain.is_some_and(|s| !s.is_empty())),
            ("spec.setHostnameAsFQDN", set_hostname_as_fqdn == Some(true)),
            ("spec.hostnameOverride", hostname_override.is_some()),
        ] {
            if set {
                self.warn(field, "ignored (not supported)");
            }
        }

        let restart_policy = match restart_policy.as_deref() {
            None | Some("Always") => model::RestartPolicy::Always,
            Some("OnFailure") => model::RestartPolicy::OnFailure,
            Some("Never") => model::RestartPolicy::Never,
            Some(other) => {
                return Err(self.invalid(
                    "spec.restartPolicy",
                    not_one_of(other, &["Always", "OnFailure", "Never"]),
                ))
            }
        };
        let grace = termination_grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
        let Ok(grace) = u64::try_from(grace) else {
            return Err(self.invalid("spec.terminationGracePeriodSeconds", "must be >= 0"));
        };
        let hostname = match hostname.filter(|name| !name.is_empty()) {
            Some(hostname) => {
                self.dns_label("spec.hostname", &hostname)?;
                hostname
            }
            None => pod_hostname(&metadata.name),
        };
        let host_aliases = self.host_aliases(host_aliases)?;
        let security = self.pod_security(security_context)?;
        let volumes = self.volumes(volumes)?;
        let volume_names: BTreeSet<String> = volumes.iter().map(|v| v.name.clone()).collect();

        if containers.is_empty() {
            return Err(self.invalid("spec.containers", "required (at least one container)"));
        }
        let mut members: Vec<(String, bool, k8s::Container)> = init_containers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| (format!("spec.initContainers[{i}]"), true, c))
            .chain(
                containers
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| (format!("spec.containers[{i}]"), false, c)),
            )
            .collect();
        // Names and resources first: env may refer to any container's resources.
        let mut names = BTreeSet::new();
        let mut resources = Vec::with_capacity(members.len());
        for (field, _, container) in &mut members {
            let name_field = format!("{field}.name");
            self.dns_label(&name_field, &container.name)?;
            if !names.insert(container.name.clone()) {
                return Err(
                    self.invalid(name_field, format!("duplicate name {:?}", container.name))
                );
            }
            let amounts = self.resources(field, container.resources.take())?;
            resources.push((container.name.clone(), amounts));
        }
        let scope = Scope {
            name: &metadata.name,
            namespace: &metadata.namespace,
            uid: &metadata.uid,
            labels: &metadata.labels,
            annotations: &metadata.annotations,
            service_account: &service_account_ref,
            resources: &resources,
            security: &security,
            volumes: &volume_names,
        };
        let mut init = Vec::new();
        let mut app = Vec::new();
        for ((field, is_init, container), (_, amounts)) in members.into_iter().zip(&resources) {
            let container = self.container(&field, container, is_init, amounts, &scope)?;
            if is_init {
                init.push(container);
            } else {
                app.push(container);
            }
        }

        Ok(model::Pod {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            hostname,
            restart_policy,
            termination_grace: Duration::from_secs(grace),
            share_process_namespace: share_process_namespace.unwrap_or(false),
            init_containers: init,
            containers: app,
            volumes,
            labels: metadata.labels,
            annotations: metadata.annotations,
            host_aliases,
        })
    }

    fn metadata(&mut self, metadata: ObjectMeta) -> Result<Metadata, ManifestError> {
        let ObjectMeta {
            annotations,
            // Bookkeeping an API server writes: meaningless here, ignored like status.
            creation_timestamp: _,
            deletion_grace_period_seconds: _,
            deletion_timestamp: _,
            finalizers,
            generate_name,
            generation: _,
            labels,
            managed_fields: _,
            name,
            namespace,
            owner_references,
            resource_version: _,
            self_link: _,
            uid,
        } = metadata;
        let Some(name) = name.filter(|name| !name.is_empty()) else {
            return Err(self.invalid("metadata.name", "required"));
        };
        if !is_dns_subdomain(&name) {
            return Err(self.invalid(
                "metadata.name",
                format!(
                    "invalid name {name:?}: must be a DNS-1123 subdomain (at most 253 lowercase \
                     letters, digits, '-' and '.', starting and ending with a letter or digit)"
                ),
            ));
        }
        if generate_name.is_some() {
            self.warn("metadata.generateName", "ignored (metadata.name is used)");
        }
        let namespace = namespace
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        self.dns_label("metadata.namespace", &namespace)?;
        let uid = match uid.filter(|uid| !uid.is_empty()) {
            Some(uid) if is_safe_uid(&uid) => uid,
            // The uid names cgroups and folders: nothing that could leave them.
            Some(uid) => {
                return Err(self.invalid(
                    "metadata.uid",
                    format!(
                        "invalid uid {uid:?}: must be at most 128 letters, digits, '-', '_' and '.'"
                    ),
                ))
            }
            None => fresh_uid().map_err(|cause| ManifestError::Read {
                file: "/dev/urandom".to_owned(),
                cause,
            })?,
        };
        let labels = labels.unwrap_or_default();
        for (key, value) in &labels {
            if let Err(problem) = check_qualified_name(key) {
                return Err(
                    self.invalid("metadata.labels", format!("invalid key {key:?}: {problem}"))
                );
            }
            if !is_label_value(value) {
                return Err(self.invalid(
                    format!("metadata.labels[{key}]"),
                    format!(
                        "invalid value {value:?}: at most 63 letters, digits, '-', '_' and '.', \
                         starting and ending with a letter or digit"
                    ),
                ));
            }
        }
        let annotations = annotations.unwrap_or_default();
        for key in annotations.keys() {
            if let Err(problem) = check_qualified_name(key) {
                return Err(self.invalid(
                    "metadata.annotations",
                    format!("invalid key {key:?}: {problem}"),
                ));
            }
        }
        let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > 256 * 1024 {
            return Err(self.invalid("metadata.annotations", "may not be larger than 256 KiB"));
        }
        if owner_references.is_some_and(|list| !list.is_empty()) {
            self.warn("metadata.ownerReferences", "ignored (no API server)");
        }
        if finalizers.is_some_and(|list| !list.is_empty()) {
            self.warn("metadata.finalizers", "ignored (no API server)");
        }
        Ok(Metadata {
            name,
            namespace,
            uid,
            labels,
            annotations,
        })
    }

    fn host_aliases(
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

    fn pod_security(
        &mut self,
        context: Option<k8s::PodSecurityContext>,
    ) -> Result<PodSecurity, ManifestError> {
        let Some(context) = context else {
            return Ok(PodSecurity::default());
        };
        let field = "spec.securityContext";
        let k8s::PodSecurityContext {
            app_armor_profile,
            fs_group,
            fs_group_change_policy,
            run_as_group,
            run_as_non_root,
            run_as_user,
            se_linux_change_policy,
            se_linux_options,
            seccomp_profile,
            supplemental_groups,
            supplemental_groups_policy,
            sysctls,
            windows_options,
        } = context;
        let run_as_user = self.id(&format!("{field}.runAsUser"), run_as_user)?;
        let run_as_group = self.id(&format!("{field}.runAsGroup"), run_as_group)?;
        if run_as_non_root == Some(true) && run_as_user == Some(0) {
            return Err(self.invalid(
                format!("{field}.runAsUser"),
                "is 0 (root) but runAsNonRoot is true",
            ));
        }
        let mut groups = Vec::new();
        for (i, group) in supplemental_groups
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if let Some(group) =
                self.id(&format!("{field}.supplementalGroups[{i}]"), Some(group))?
            {
                groups.push(group);
            }
        }
        if fs_group.is_some() {
            self.warn(
                &format!("{field}.fsGroup"),
                "not supported (volume ownership is not changed)",
            );
        }
        match supplemental_groups_policy.as_deref() {
            None | Some("Merge") => {}
            Some("Strict") => self.warn(&format!("{field}.supplementalGroupsPolicy"), NOT_ENFORCED),
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.supplementalGroupsPolicy"),
                    not_one_of(other, &["Merge", "Strict"]),
                ))
            }
        }
        if sysctls.is_some_and(|list| !list.is_empty()) {
            self.warn(&format!("{field}.sysctls"), "ignored (not applied yet)");
        }
        for (name, set) in [
            ("fsGroupChangePolicy", fs_group_change_policy.is_some()),
            ("seLinuxChangePolicy", se_linux_change_policy.is_some()),
            ("seLinuxOptions", se_linux_options.is_some()),
            ("windowsOptions", windows_options.is_some()),
        ] {
            if set {
                self.warn(&format!("{field}.{name}"), "ignored");
            }
        }
        self.seccomp(&format!("{field}.seccompProfile"), seccomp_profile)?;
        self.app_armor(&format!("{field}.appArmorProfile"), app_armor_profile)?;
        Ok(PodSecurity {
            run_as_user,
            run_as_group,
            run_as_non_root,
            supplemental_groups: groups,
        })
    }

    fn volumes(
        &mut self,
        volumes: Option<Vec<k8s::Volume>>,
    ) -> Result<Vec<model::Volume>, ManifestError> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, volume) in volumes.unwrap_or_default().into_iter().enumerate() {
            let field = format!("spec.volumes[{i}]");
            self.dns_label(&format!("{field}.name"), &volume.name)?;
            if !names.insert(volume.name.clone()) {
                return Err(self.invalid(
                    format!("{field}.name"),
                    format!("duplicate name {:?}", volume.name),
                ));
            }
            // The serialized form names the source as the manifest did ("configMap", ...).
            let kinds: Vec<String> = match serde_json::to_value(&volume) {
                Ok(serde_json::Value::Object(map)) => map
                    .into_iter()
                    .map(|(key, _)| key)
                    .filter(|key| key != "name")
                    .collect(),
                _ => Vec::new(),
            };
            let source = match kinds.as_slice() {
                // Kubernetes defaults a volume without a source to an emptyDir.
                [] => model::VolumeSource::EmptyDir {
                    memory: false,
                    size_limit_bytes: None,
                },
                [kind] if kind == "emptyDir" => {
                    self.empty_dir(&field, volume.empty_dir.unwrap_or_default())?
                }
                [kind] if kind == "hostPath" => {
                    self.host_path(&field, volume.host_path.unwrap_or_default())?
                }
                [kind] => {
                    return Err(self.unsupported(field, format!("unsupported volume type {kind:?}")))
                }
                _ => {
                    return Err(self.invalid(
                        field,
                        format!(
                            "may not specify more than 1 volume type ({})",
                            kinds.join(", ")
                        ),
                    ))
                }
            };
            out.push(model::Volume {
                name: volume.name,
                source,
            });
        }
        Ok(out)
    }

    fn empty_dir(
        &self,
        field: &str,
        source: k8s::EmptyDirVolumeSource,
    ) -> Result<model::VolumeSource, ManifestError> {
        let k8s::EmptyDirVolumeSource { medium, size_limit } = source;
        let memory = match medium.as_deref() {
            None | Some("") => false,
            Some("Memory") => true,
            Some(medium) if medium.starts_with("HugePages") => {
                return Err(self.unsupported(
                    format!("{field}.emptyDir.medium"),
                    format!("unsupported value {medium:?}: huge pages"),
                ))
            }
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.emptyDir.medium"),
                    not_one_of(other, &["", "Memory"]),
                ))
            }
        };
        let size_limit_bytes = size_limit
            .map(|limit| self.bytes(&format!("{field}.emptyDir.sizeLimit"), &limit))
            .transpose()?;
        Ok(model::VolumeSource::EmptyDir {
            memory,
            size_limit_bytes,
        })
    }

    fn host_path(
        &self,
        field: &str,
        source: k8s::HostPathVolumeSource,
    ) -> Result<model::VolumeSource, ManifestError> {
        let k8s::HostPathVolumeSource { path, type_ } = source;
        let path_field = format!("{field}.hostPath.path");
        if path.is_empty() {
            return Err(self.invalid(path_field, "required"));
        }
        if !path.starts_with('/') {
            return Err(self.invalid(
                path_field,
                format!("must be an absolute path, not {path:?}"),
            ));
        }
        if path.split('/').any(|part| part == "..") {
            return Err(self.invalid(path_field, "must not contain '..'"));
        }
        let kind = match type_.as_deref().unwrap_or("") {
            "" => model::HostPathType::Unset,
            "DirectoryOrCreate" => model::HostPathType::DirectoryOrCreate,
            "Directory" => model::HostPathType::Directory,
            "FileOrCreate" => model::HostPathType::FileOrCreate,
            "File" => model::HostPathType::File,
            "Socket" => model::HostPathType::Socket,
            "CharDevice" => model::HostPathType::CharDevice,
            "BlockDevice" => model::HostPathType::BlockDevice,
            other => {
                return Err(self.invalid(
                    format!("{field}.hostPath.type"),
                    not_one_of(
                        other,
                        &[
                            "",
                            "DirectoryOrCreate",
                            "Directory",
                            "FileOrCreate",
                            "File",
                            "Socket",
                            "CharDevice",
                            "BlockDevice",
                        ],
                    ),
                ))
            }
        };
        Ok(model::VolumeSource::HostPath { path, kind })
    }

    fn resources(
        &mut self,
        field: &str,
        requirements: Option<k8s::ResourceRequirements>,
    ) -> Result<model::Resources, ManifestError> {
        let k8s::ResourceRequirements {
            claims,
            limits,
            requests,
        } = requirements.unwrap_or_default();
        if claims.is_some_and(|list| !list.is_empty()) {
            return Err(self.unsupported(format!("{field}.resources.claims"), NO_API_SERVER));
        }
        let (cpu_limit, memory_limit) = self.amounts(field, "limits", limits)?;
        let (cpu_request, memory_request) = self.amounts(field, "requests", requests)?;
        // Kubernetes defaults a missing request to the limit.
        let cpu_request = cpu_request.or(cpu_limit);
        let memory_request = memory_request.or(memory_limit);
        if cpu_request.zip(cpu_limit).is_some_and(|(r, l)| r > l) {
            return Err(self.invalid(
                format!("{field}.resources.requests.cpu"),
                "must be less than or equal to the cpu limit",
            ));
        }
        if memory_request.zip(memory_limit).is_some_and(|(r, l)| r > l) {
            return Err(self.invalid(
                format!("{field}.resources.requests.memory"),
                "must be less than or equal to the memory limit",
            ));
        }
        Ok(model::Resources {
            cpu_limit_millis: cpu_limit,
            memory_limit_bytes: memory_limit,
            cpu_request_millis: cpu_request,
            memory_request_bytes: memory_request,
        })
    }

    /// cpu and memory of one of limits/requests.
    fn amounts(
        &mut self,
        field: &str,
        kind: &str,
        amounts: Option<BTreeMap<String, Quantity>>,
    ) -> Result<(Option<u64>, Option<i64>), ManifestError> {
        let (mut cpu, mut memory) = (None, None);
        for (name, quantity) in amounts.unwrap_or_default() {
            let at = format!("{field}.resources.{kind}.{name}");
            match name.as_str() {
                "cpu" => cpu = Some(self.millicores(&at, &quantity)?),
                "memory" => memory = Some(self.bytes(&at, &quantity)?),
                _ => self.warn(&at, "ignored (not enforced)"),
            }
        }
        Ok((cpu, memory))
    }

    fn amount(&self, field: &str, quantity: &Quantity) -> Result<Amount, ManifestError> {
        let amount: Amount = quantity
            .0
            .parse()
            .map_err(|()| self.invalid(field, format!("invalid quantity {:?}", quantity.0)))?;
        if amount.negative && amount.numerator != 0 {
            return Err(self.invalid(field, "must be greater than or equal to 0"));
        }
        Ok(amount)
    }

    fn millicores(&self, field: &str, quantity: &Quantity) -> Result<u64, ManifestError> {
        self.amount(field, quantity)?
            .ceil_scaled(1000)
            .and_then(|millis| u64::try_from(millis).ok())
            .ok_or_else(|| self.invalid(field, format!("quantity {:?} is too large", quantity.0)))
    }

    fn bytes(&self, field: &str, quantity: &Quantity) -> Result<i64, ManifestError> {
        self.amount(field, quantity)?
            .ceil_scaled(1)
            .and_then(|bytes| i64::try_from(bytes).ok())
            .ok_or_else(|| self.invalid(field, format!("quantity {:?} is too large", quantity.0)))
    }

    fn container(
        &mut self,
        field: &str,
        container: k8s::Container,
        init: bool,
        resources: &model::Resources,
        scope: &Scope,
    ) -> Result<model::Container, ManifestError> {
        let k8s::Container {
            args,
            command,
            env,
            env_from,
            image,
            // Images are local: there is nothing to pull.
            image_pull_policy,
            lifecycle,
            liveness_probe,
            name,
            ports,
            readiness_probe,
            resize_policy,
            // Converted by the caller, before any container.
            resources: _,
            restart_policy,
            restart_policy_rules,
            security_context,
            startup_probe,
            stdin,
            stdin_once,
            termination_message_path,
            termination_message_policy,
            tty,
            volume_devices,
            volume_mounts,
            working_dir,
        } = container;

        let image = image.unwrap_or_default();
        if image.is_empty() {
            return Err(self.invalid(format!("{field}.image"), "required"));
        }
        if image.trim() != image {
            return Err(self.invalid(
                format!("{field}.image"),
                "must not have leading or trailing whitespace",
            ));
        }
        match image_pull_policy.as_deref() {
            None | Some("Always" | "IfNotPresent" | "Never") => {}
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.imagePullPolicy"),
                    not_one_of(other, &["Always", "IfNotPresent", "Never"]),
                ))
            }
        }
        let restart_policy = match (init, restart_policy.as_deref()) {
            (_, None) => None,
            (true, Some("Always")) => Some(model::RestartPolicy::Always),
            (true, Some(other)) => {
                return Err(self.invalid(
                    format!("{field}.restartPolicy"),
                    not_one_of(other, &["Always"]),
                ))
            }
            (false, Some(_)) => return Err(self.invalid(
                format!("{field}.restartPolicy"),
                "not supported on app containers (only init containers may set it, to \"Always\")",
            )),
        };
        if restart_policy_rules.is_some_and(|rules| !rules.is_empty()) {
            return Err(self.unsupported(format!("{field}.restartPolicyRules"), "unsupported"));
        }
        let sidecar = restart_policy.is_some();
        for (name, set) in [
            ("livenessProbe", liveness_probe.is_some()),
            ("readinessProbe", readiness_probe.is_some()),
            ("startupProbe", startup_probe.is_some()),
            ("lifecycle", lifecycle.is_some()),
        ] {
            if !set {
                continue;
            }
            let at = format!("{field}.{name}");
            if init && !sidecar {
                return Err(self.invalid(
                    at,
                    "must not be set for init containers without restartPolicy: Always",
                ));
            }
            self.warn(&at, NOT_ENFORCED);
        }
        if env_from.is_some_and(|list| !list.is_empty()) {
            return Err(self.unsupported(format!("{field}.envFrom"), NO_API_SERVER));
        }
        if volume_devices.is_some_and(|list| !list.is_empty()) {
            return Err(self.unsupported(
                format!("{field}.volumeDevices"),
                "unsupported: raw block volumes",
            ));
        }
        for (i, port) in ports.unwrap_or_default().iter().enumerate() {
            let at = format!("{field}.ports[{i}]");
            if !(1..=65535).contains(&port.container_port) {
                return Err(
                    self.invalid(format!("{at}.containerPort"), "must be between 1 and 65535")
                );
            }
            match port.protocol.as_deref() {
                None | Some("TCP" | "UDP" | "SCTP") => {}
                Some(other) => {
                    return Err(self.invalid(
                        format!("{at}.protocol"),
                        not_one_of(other, &["TCP", "UDP", "SCTP"]),
                    ))
                }
            }
            if port.host_port.is_some_and(|port| port != 0) {
                self.warn(
                    &format!("{at}.hostPort"),
                    "not enforced yet (no port mapping)",
                );
            }
        }
        if resize_policy.is_some_and(|list| !list.is_empty()) {
            self.warn(
                &format!("{field}.resizePolicy"),
                "ignored (no in-place resize)",
            );
        }
        if stdin_once == Some(true) {
            self.warn(&format!("{field}.stdinOnce"), "ignored");
        }
        let termination_message_path = termination_message_path
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| model::DEFAULT_TERMINATION_MESSAGE_PATH.to_string());
        if !termination_message_path.starts_with('/')
            || termination_message_path.split('/').any(|part| part == "..")
        {
            return Err(self.invalid(
                format!("{field}.terminationMessagePath"),
                "must be an absolute path without \"..\"",
            ));
        }
        let termination_message_from_logs = match termination_message_policy.as_deref() {
            None | Some("File") => false,
            Some("FallbackToLogsOnError") => true,
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.terminationMessagePolicy"),
                    format!("unsupported value {other:?}: \"File\" or \"FallbackToLogsOnError\""),
                ))
            }
        };
        let working_dir = working_dir.filter(|dir| !dir.is_empty());
        if let Some(dir) = &working_dir {
            if !dir.starts_with('/') {
                return Err(self.invalid(
                    format!("{field}.workingDir"),
                    format!("must be an absolute path, not {dir:?}"),
                ));
            }
        }

        let security = self.security(field, security_context, scope.security)?;
        let mounts = self.mounts(field, volume_mounts, scope.volumes)?;
        let env = self.env(field, env, resources, scope)?;
        let vars: HashMap<&str, &str> = env
            .iter()
            .map(|var| (var.name.as_str(), var.value.as_str()))
            .collect();
        let lookup = |name: &str| vars.get(name).copied();
        let command = command
            .unwrap_or_default()
            .iter()
            .map(|word| expand(word, lookup))
            .collect();
        let args = args
            .unwrap_or_default()
            .iter()
            .map(|word| expand(word, lookup))
            .collect();

        Ok(model::Container {
            name,
            image,
            command,
            args,
            env,
            working_dir,
            security,
            resources: resources.clone(),
            mounts,
            restart_policy,
            tty: tty.unwrap_or(false),
            stdin: stdin.unwrap_or(false),
            termination_message_path,
            termination_message_from_logs,
        })
    }

    fn security(
        &mut self,
        field: &str,
        context: Option<k8s::SecurityContext>,
        pod: &PodSecurity,
    ) -> Result<model::Security, ManifestError> {
        let field = format!("{field}.securityContext");
        let k8s::SecurityContext {
            allow_privilege_escalation,
            app_armor_profile,
            capabilities,
            privileged,
            proc_mount,
            read_only_root_filesystem,
            run_as_group,
            run_as_non_root,
            run_as_user,
            se_linux_options,
            seccomp_profile,
            windows_options,
        } = context.unwrap_or_default();
        let user_field = if run_as_user.is_some() {
            format!("{field}.runAsUser")
        } else {
            "spec.securityContext.runAsUser".to_owned()
        };
        let run_as_user = self.id(&format!("{field}.runAsUser"), run_as_user)?;
        let run_as_group = self.id(&format!("{field}.runAsGroup"), run_as_group)?;
        self.seccomp(&format!("{field}.seccompProfile"), seccomp_profile)?;
        self.app_armor(&format!("{field}.appArmorProfile"), app_armor_profile)?;
        for (name, set) in [
            ("seLinuxOptions", se_linux_options.is_some()),
            ("windowsOptions", windows_options.is_some()),
        ] {
            if set {
                self.warn(&format!("{field}.{name}"), "ignored");
            }
        }
        match proc_mount.as_deref() {
            None | Some("Default") => {}
            Some("Unmasked") => {
                return Err(self.unsupported(
                    format!("{field}.procMount"),
                    "unsupported: Unmasked needs hostUsers: false",
                ))
            }
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.procMount"),
                    not_one_of(other, &["Default", "Unmasked"]),
                ))
            }
        }
        let k8s::Capabilities { add, drop } = capabilities.unwrap_or_default();
        let caps_add = self.capabilities(&format!("{field}.capabilities.add"), add)?;
        let caps_drop = self.capabilities(&format!("{field}.capabilities.drop"), drop)?;
        let privileged = privileged.unwrap_or(false);
        if allow_privilege_escalation == Some(false) {
            if privileged {
                return Err(self.invalid(
                    format!("{field}.allowPrivilegeEscalation"),
                    "cannot be false when privileged is true",
                ));
            }
            if caps_add
                .iter()
                .any(|cap| cap == "CAP_SYS_ADMIN" || cap == "ALL")
            {
                return Err(self.invalid(
                    format!("{field}.allowPrivilegeEscalation"),
                    "cannot be false when capabilities.add has CAP_SYS_ADMIN",
                ));
            }
        }
        // The container's settings win over the pod's.
        let run_as_user = run_as_user.or(pod.run_as_user);
        let run_as_non_root = run_as_non_root.or(pod.run_as_non_root);
        if run_as_non_root == Some(true) && run_as_user == Some(0) {
            return Err(self.invalid(user_field, "is 0 (root) but runAsNonRoot is true"));
        }
        Ok(model::Security {
            run_as_user,
            run_as_group: run_as_group.or(pod.run_as_group),
            run_as_non_root,
            supplemental_groups: pod.supplemental_groups.clone(),
            caps_add,
            caps_drop,
            privileged,
            read_only_root_filesystem: read_only_root_filesystem.unwrap_or(false),
            allow_privilege_escalation,
        })
    }

    /// Capability names as CAP_XXX (Kubernetes writes them without the prefix).
    fn capabilities(
        &self,
        field: &str,
        names: Option<Vec<String>>,
    ) -> Result<Vec<String>, ManifestError> {
        let mut out: Vec<String> = Vec::new();
        for (i, name) in names.unwrap_or_default().iter().enumerate() {
            let upper = name.trim().to_ascii_uppercase();
            let full = if upper == "ALL" {
                upper
            } else {
                let full = if upper.starts_with("CAP_") {
                    upper
                } else {
                    format!("CAP_{upper}")
                };
                if caps::Capability::from_str(&full).is_err() {
                    return Err(self.invalid(
                        format!("{field}[{i}]"),
                        format!("unknown capability {name:?}"),
                    ));
                }
                full
            };
            if !out.contains(&full) {
                out.push(full);
            }
        }
        Ok(out)
    }

    fn seccomp(
        &mut self,
        field: &str,
        profile: Option<k8s::SeccompProfile>,
    ) -> Result<(), ManifestError> {
        let Some(k8s::SeccompProfile {
            localhost_profile,
            type_,
        }) = profile
        else {
            return Ok(());
        };
        match type_.as_str() {
            "RuntimeDefault" => {
                self.warn(field, "not applied: peapod applies no seccomp profile yet")
            }
            // Exactly what peapod does.
            "Unconfined" => {}
            "Localhost" => {
                return Err(self.unsupported(
                    format!("{field}.type"),
                    "unsupported: Localhost seccomp profiles",
                ))
            }
            "" => return Err(self.invalid(format!("{field}.type"), "required")),
            other => {
                return Err(self.invalid(
                    format!("{field}.type"),
                    not_one_of(other, &["RuntimeDefault", "Unconfined", "Localhost"]),
                ))
            }
        }
        if localhost_profile.is_some() {
            return Err(self.invalid(
                format!("{field}.localhostProfile"),
                "may only be set when type is Localhost",
            ));
        }
        Ok(())
    }

    fn app_armor(
        &mut self,
        field: &str,
        profile: Option<k8s::AppArmorProfile>,
    ) -> Result<(), ManifestError> {
        let Some(k8s::AppArmorProfile {
            localhost_profile,
            type_,
        }) = profile
        else {
            return Ok(());
        };
        match type_.as_str() {
            "RuntimeDefault" | "Localhost" => {
                self.warn(field, "ignored: peapod applies no AppArmor profile")
            }
            // Exactly what peapod does.
            "Unconfined" => {}
            "" => return Err(self.invalid(format!("{field}.type"), "required")),
            other => {
                return Err(self.invalid(
                    format!("{field}.type"),
                    not_one_of(other, &["RuntimeDefault", "Unconfined", "Localhost"]),
                ))
            }
        }
        if localhost_profile.is_some() && type_ != "Localhost" {
            return Err(self.invalid(
                format!("{field}.localhostProfile"),
                "may only be set when type is Localhost",
            ));
        }
        Ok(())
    }

    /// A uid or gid as Kubernetes allows them.
    fn id(&self, field: &str, value: Option<i64>) -> Result<Option<u32>, ManifestError> {
        let Some(value) = value else {
            return Ok(None);
        };
        match u32::try_from(value) {
            Ok(id) if value <= i64::from(i32::MAX) => Ok(Some(id)),
            _ => Err(self.invalid(
                field,
                format!("must be between 0 and 2147483647, not {value}"),
            )),
        }
    }

    fn mounts(
        &mut self,
        field: &str,
        mounts: Option<Vec<k8s::VolumeMount>>,
        volumes: &BTreeSet<String>,
    ) -> Result<Vec<model::VolumeMount>, ManifestError> {
        let mut paths = BTreeSet::new();
        let mut out = Vec::new();
        for (i, mount) in mounts.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{field}.volumeMounts[{i}]");
            let k8s::VolumeMount {
                mount_path,
                mount_propagation,
                name,
                read_only,
                recursive_read_only,
                sub_path,
                sub_path_expr,
            } = mount;
            if name.is_empty() {
                return Err(self.invalid(format!("{at}.name"), "required"));
            }
            if !volumes.contains(&name) {
                return Err(self.invalid(format!("{at}.name"), format!("no volume {name:?}")));
            }
            if mount_path.is_empty() {
                return Err(self.invalid(format!("{at}.mountPath"), "required"));
            }
            if !mount_path.starts_with('/') {
                return Err(self.invalid(
                    format!("{at}.mountPath"),
                    format!("must be an absolute path, not {mount_path:?}"),
                ));
            }
            let normalized = match mount_path.trim_end_matches('/') {
                "" => "/",
                path => path,
            };
            if !paths.insert(normalized.to_owned()) {
                return Err(self.invalid(
                    format!("{at}.mountPath"),
                    format!("duplicate mount path {mount_path:?}"),
                ));
            }
            if sub_path_expr.is_some_and(|expr| !expr.is_empty()) {
                return Err(self.unsupported(format!("{at}.subPathExpr"), "unsupported"));
            }
            let sub_path = sub_path.filter(|path| !path.is_empty());
            if let Some(path) = &sub_path {
                if path.starts_with('/') {
                    return Err(self.invalid(
                        format!("{at}.subPath"),
                        format!("must be a relative path, not {path:?}"),
                    ));
                }
                if path.split('/').any(|part| part == "..") {
                    return Err(self.invalid(format!("{at}.subPath"), "must not contain '..'"));
                }
            }
            match mount_propagation.as_deref() {
                None | Some("None") => {}
                Some(mode @ ("HostToContainer" | "Bidirectional")) => self.warn(
                    &format!("{at}.mountPropagation"),
                    format!("{mode} is not applied yet (mounts are private)"),
                ),
                Some(other) => {
                    return Err(self.invalid(
                        format!("{at}.mountPropagation"),
                        not_one_of(other, &["None", "HostToContainer", "Bidirectional"]),
                    ))
                }
            }
            let read_only = read_only.unwrap_or(false);
            match recursive_read_only.as_deref() {
                None | Some("Disabled") => {}
                Some("Enabled" | "IfPossible") if !read_only => {
                    return Err(self.invalid(
                        format!("{at}.recursiveReadOnly"),
                        "may only be set when readOnly is true",
                    ))
                }
                Some("Enabled" | "IfPossible") => {
                    self.warn(&format!("{at}.recursiveReadOnly"), NOT_ENFORCED)
                }
                Some(other) => {
                    return Err(self.invalid(
                        format!("{at}.recursiveReadOnly"),
                        not_one_of(other, &["Disabled", "Enabled", "IfPossible"]),
                    ))
                }
            }
            out.push(model::VolumeMount {
                volume: name,
                mount_path,
                read_only,
                sub_path,
            });
        }
        Ok(out)
    }

    /// The container's environment in order, values resolved and expanded the
    /// way the kubelet does it.
    fn env(
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
            "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
                return Err(self.unsupported(
                    path_field,
                    format!("unsupported: {field_path} is not known when the pod is admitted"),
                ))
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

    fn dns_label(&self, field: &str, value: &str) -> Result<(), ManifestError> {
        if value.is_empty() {
            return Err(self.invalid(field, "required"));
        }
        if !is_dns_label(value) {
            return Err(self.invalid(
                field,
                format!(
                    "invalid name {value:?}: must be a DNS-1123 label (at most 63 lowercase \
                     letters, digits and '-', starting and ending with a letter or digit)"
                ),
            ));
        }
        Ok(())
    }
}

/// Kubernetes' wording for a value outside a fixed set.
fn not_one_of(value: &str, supported: &[&str]) -> String {
    let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "unsupported value {value:?}: supported values: {}",
        supported.join(", ")
    )
}

/// The pod's hostname when spec.hostname is not set: the kubelet's rule.
fn pod_hostname(name: &str) -> String {
    let truncated = &name[..name.len().min(63)];
    truncated.trim_end_matches(['-', '.']).to_owned()
}

/// "metadata.labels['app']" as ("metadata.labels", "app").
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (base, rest) = path.split_once("['")?;
    Some((base, rest.strip_suffix("']")?))
}

fn fresh_uid() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    // RFC 9562 version 4 (random) and variant 10.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

fn is_safe_uid(uid: &str) -> bool {
    uid.len() <= 128
        && uid != "."
        && uid != ".."
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns_label(value: &str) -> bool {
    value.len() <= 63 && is_dns_part(value)
}

fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_dns_part)
}

/// [a-z0-9]([-a-z0-9]*[a-z0-9])?
fn is_dns_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    let end = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.first().is_some_and(end)
        && bytes.last().is_some_and(end)
        && bytes.iter().all(|b| end(b) || *b == b'-')
}

/// ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at most 63 characters.
fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let end = |b: &u8| b.is_ascii_alphanumeric();
    name.len() <= 63
        && bytes.first().is_some_and(end)
        && bytes.last().is_some_and(end)
        && bytes
            .iter()
            .all(|b| end(b) || matches!(b, b'-' | b'_' | b'.'))
}

fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

/// A label or annotation key: an optional DNS subdomain prefix and '/', then a name.
fn check_qualified_name(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if !is_dns_subdomain(prefix) {
                return Err("the prefix must be a DNS-1123 subdomain");
            }
            name
        }
        None => key,
    };
    if !is_label_name(name) {
        return Err(
            "the name must be at most 63 letters, digits, '-', '_' and '.', \
                    starting and ending with a letter or digit",
        );
    }
    Ok(())
}

/// Kubernetes' `$(VAR)` expansion: a defined name is replaced, an undefined one
/// stays as written, `$$` is a literal `$` (so `$$(VAR)` gives `$(VAR)`).
fn expand<'v>(input: &str, lookup: impl Fn(&str) -> Option<&'v str>) -> String {
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

/// A Kubernetes quantity as an exact fraction: "1.5Gi", "500m", "129e6".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Amount {
    negative: bool,
    numerator: u128,
    denominator: u128,
}

impl Amount {
    /// value × scale, rounded up, as Kubernetes rounds MilliValue() and Value().
    fn ceil_scaled(&self, scale: u128) -> Option<u128> {
        Some(
            self.numerator
                .checked_mul(scale)?
                .div_ceil(self.denominator),
        )
    }

    /// value × scale when that is a whole number.
    fn exact_scaled(&self, scale: u128) -> Option<u128> {
        let scaled = self.numerator.checked_mul(scale)?;
        (scaled % self.denominator == 0).then(|| scaled / self.denominator)
    }
}

impl FromStr for Amount {
    type Err = ();

    /// `<sign>? <digits>(.<digits>)? <suffix>`, the suffix one of the binary
    /// (Ki … Ei), decimal (n u m "" k M G T P E) or exponent (e3, E-2) forms.
    fn from_str(text: &str) -> Result<Self, ()> {
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(split);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(());
        }
        let mut numerator: u128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            numerator = numerator
                .checked_mul(10)
                .and_then(|n| n.checked_add(u128::from(digit - b'0')))
                .ok_or(())?;
        }
        let fraction_digits = u32::try_from(fraction.len()).map_err(|_| ())?;
        let mut denominator = 10u128.checked_pow(fraction_digits).ok_or(())?;
        let (base, exponent): (u128, i32) = match suffix {
            "" => (10, 0),
            "n" => (10, -9),
            "u" => (10, -6),
            "m" => (10, -3),
            "k" => (10, 3),
            "M" => (10, 6),
            "G" => (10, 9),
            "T" => (10, 12),
            "P" => (10, 15),
            "E" => (10, 18),
            "Ki" => (2, 10),
            "Mi" => (2, 20),
            "Gi" => (2, 30),
            "Ti" => (2, 40),
            "Pi" => (2, 50),
            "Ei" => (2, 60),
            exponent if exponent.starts_with(['e', 'E']) => {
                let digits = &exponent[1..];
                let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(());
                }
                (10, digits.parse().map_err(|_| ())?)
            }
            _ => return Err(()),
        };
        let factor = base.checked_pow(exponent.unsigned_abs()).ok_or(())?;
        if exponent >= 0 {
            numerator = numerator.checked_mul(factor).ok_or(())?;
        } else {
            denominator = denominator.checked_mul(factor).ok_or(())?;
        }
        Ok(Self {
            negative,
            numerator,
            denominator,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            name: "node-1".to_owned(),
            cpu_millis: Some(4000),
            memory_bytes: Some(8 << 30),
        }
    }

    fn admit_ok(text: &str) -> Admitted {
        match admit(text, "web.yaml", &node()) {
            Ok(admitted) => admitted,
            Err(error) => panic!("refused: {error}\n{text}"),
        }
    }

    fn refusal(text: &str) -> String {
        match admit(text, "web.yaml", &node()) {
            Ok(admitted) => panic!("admitted: {admitted:?}\n{text}"),
            Err(error) => error.to_string(),
        }
    }

    const HEAD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, uid: u-1}\n";

    /// A pod with this spec (YAML flow style).
    fn pod(spec: &str) -> String {
        format!("{HEAD}spec: {spec}\n")
    }

    /// A pod with one container "app", plus `extra` (", key: value ...") on it.
    fn app(extra: &str) -> String {
        pod(&format!(
            "{{containers: [{{name: app, image: busybox{extra}}}]}}"
        ))
    }

    /// A pod with one container and these volumes, the container with `extra`.
    fn with_volumes(volumes: &str, extra: &str) -> String {
        pod(&format!(
            "{{volumes: {volumes}, containers: [{{name: app, image: busybox{extra}}}]}}"
        ))
    }

    fn env_of(container: &model::Container) -> Vec<(&str, &str)> {
        container
            .env
            .iter()
            .map(|var| (var.name.as_str(), var.value.as_str()))
            .collect()
    }

    const FULL: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  uid: 6f1c2b9e-0000-4000-8000-000000000001
  labels: {app: web, app.kubernetes.io/part-of: shop}
  annotations: {note: hello}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  shareProcessNamespace: true
  hostAliases:
  - ip: 10.0.0.1
    hostnames: [db, db.local]
  securityContext:
    runAsUser: 1000
    runAsGroup: 1000
    runAsNonRoot: true
    supplementalGroups: [5, 6]
  volumes:
  - name: scratch
    emptyDir: {medium: Memory, sizeLimit: 64Mi}
  - name: logs
    hostPath: {path: /var/log/web, type: DirectoryOrCreate}
  - name: plain
  initContainers:
  - name: setup
    image: busybox
    command: [sh, -c, "echo $(GREETING) > /scratch/hello"]
    env:
    - name: GREETING
      value: hi
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
  - name: proxy
    image: envoy:1.0
    restartPolicy: Always
    readinessProbe: {tcpSocket: {port: 9901}}
  containers:
  - name: app
    image: registry.local/web:2
    imagePullPolicy: IfNotPresent
    workingDir: /srv
    args: ["--name=$(POD_NAME)", "$$(POD_NAME)", "$(MISSING)"]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NS, valueFrom: {fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}}
    - {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: NOTE, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['note']"}}}
    - {name: NOPE, valueFrom: {fieldRef: {fieldPath: "metadata.labels['nope']"}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: CORES, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    - {name: REQ, valueFrom: {resourceFieldRef: {resource: requests.memory}}}
    - {name: SIDECAR_MEM, valueFrom: {resourceFieldRef: {containerName: proxy, resource: limits.memory}}}
    - {name: URL, value: "http://$(POD_NAME).$(NS):8080/$(LATER)"}
    - {name: LATER, value: x}
    - {name: ESCAPED, value: "$$(POD_NAME) $$ $5 $(UNCLOSED"}
    - {name: EMPTY}
    resources:
      limits: {cpu: 500m, memory: 128Mi}
      requests: {cpu: "0.25", memory: 1e6}
    securityContext:
      runAsUser: 2000
      capabilities: {add: [NET_ADMIN, cap_sys_time, NET_ADMIN], drop: [all]}
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: logs, mountPath: /logs/, subPath: web/current, readOnly: true}
    - {name: plain, mountPath: /plain}
    ports:
    - {containerPort: 8080, protocol: TCP}
    tty: true
    stdin: true
status:
  phase: Running
"#;

    #[test]
    fn admits_a_full_pod() {
        let Admitted { pod, warnings } = admit_ok(FULL);
        assert_eq!(pod.name, "web");
        assert_eq!(pod.namespace, "shop");
        assert_eq!(pod.uid, "6f1c2b9e-0000-4000-8000-000000000001");
        assert_eq!(pod.hostname, "web");
        assert_eq!(pod.restart_policy, model::RestartPolicy::OnFailure);
        assert_eq!(pod.termination_grace, Duration::from_secs(5));
        assert!(pod.share_process_namespace);
        assert_eq!(pod.labels["app.kubernetes.io/part-of"], "shop");
        assert_eq!(pod.annotations["note"], "hello");
        assert_eq!(
            pod.host_aliases,
            vec![(
                "10.0.0.1".to_owned(),
                vec!["db".to_owned(), "db.local".to_owned()]
            )]
        );
        assert_eq!(
            pod.volumes,
            vec![
                model::Volume {
                    name: "scratch".to_owned(),
                    source: model::VolumeSource::EmptyDir {
                        memory: true,
                        size_limit_bytes: Some(64 << 20)
                    },
                },
                model::Volume {
                    name: "logs".to_owned(),
                    source: model::VolumeSource::HostPath {
                        path: "/var/log/web".to_owned(),
                        kind: model::HostPathType::DirectoryOrCreate
                    },
                },
                model::Volume {
                    name: "plain".to_owned(),
                    source: model::VolumeSource::EmptyDir {
                        memory: false,
                        size_limit_bytes: None
                    },
                },
            ]
        );

        let [setup, proxy] = pod.init_containers.as_slice() else {
            panic!("{:?}", pod.init_containers);
        };
        assert_eq!(setup.name, "setup");
        assert_eq!(setup.command, ["sh", "-c", "echo hi > /scratch/hello"]);
        assert!(!setup.is_sidecar());
        assert_eq!(setup.restart_policy, None);
        assert_eq!(setup.security.run_as_user, Some(1000));
        assert!(proxy.is_sidecar());
        assert_eq!(proxy.image, "envoy:1.0");

        let [app] = pod.containers.as_slice() else {
            panic!("{:?}", pod.containers);
        };
        assert_eq!(app.image, "registry.local/web:2");
        assert_eq!(app.working_dir.as_deref(), Some("/srv"));
        assert!(app.command.is_empty());
        assert_eq!(app.args, ["--name=web", "$(POD_NAME)", "$(MISSING)"]);
        assert_eq!(
            env_of(app),
            [
                ("POD_NAME", "web"),
                ("NS", "shop"),
                ("UID", "6f1c2b9e-0000-4000-8000-000000000001"),
                ("APP", "web"),
                ("NOTE", "hello"),
                ("NOPE", ""),
                ("NODE", "node-1"),
                ("SA", "default"),
                ("MEM", "128"),
                ("CPU", "500"),
                ("CORES", "1"),
                ("REQ", "1000000"),
                ("SIDECAR_MEM", "8589934592"),
                ("URL", "http://web.shop:8080/$(LATER)"),
                ("LATER", "x"),
                ("ESCAPED", "$(POD_NAME) $ $5 $(UNCLOSED"),
                ("EMPTY", ""),
            ]
        );
        assert_eq!(
            app.resources,
            model::Resources {
                cpu_limit_millis: Some(500),
                memory_limit_bytes: Some(128 << 20),
                cpu_request_millis: Some(250),
                memory_request_bytes: Some(1_000_000),
            }
        );
        assert_eq!(
            app.security,
            model::Security {
                run_as_user: Some(2000),
                run_as_group: Some(1000),
                run_as_non_root: Some(true),
                supplemental_groups: vec![5, 6],
                caps_add: vec!["CAP_NET_ADMIN".to_owned(), "CAP_SYS_TIME".to_owned()],
                caps_drop: vec!["ALL".to_owned()],
                privileged: false,
                read_only_root_filesystem: true,
                allow_privilege_escalation: Some(false),
            }
        );
        assert_eq!(
            app.mounts,
            vec![
                model::VolumeMount {
                    volume: "scratch".to_owned(),
                    mount_path: "/scratch".to_owned(),
                    read_only: false,
                    sub_path: None,
                },
                model::VolumeMount {
                    volume: "logs".to_owned(),
                    mount_path: "/logs/".to_owned(),
                    read_only: true,
                    sub_path: Some("web/current".to_owned()),
                },
                model::VolumeMount {
                    volume: "plain".to_owned(),
                    mount_path: "/plain".to_owned(),
                    read_only: false,
                    sub_path: None,
                },
            ]
        );
        assert!(app.tty && app.stdin);
        assert_eq!(
            warnings,
            ["web.yaml: spec.initContainers[1].readinessProbe: not enforced yet"]
        );
    }

    #[test]
    fn admits_json_with_tabs() {
        let text = "{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Pod\",\n\t\"metadata\": {\"name\": \"api\"},\n\
                    \t\"spec\": {\n\t\t\"containers\": [{\"name\": \"c\", \"image\": \"busybox\",\n\
                    \t\t\t\"env\": [{\"name\": \"A\", \"value\": \"1\"}, {\"name\": \"B\", \"value\": \"$(A)$(A)\"}],\n\
                    \t\t\t\"resources\": {\"limits\": {\"cpu\": \"2.5\", \"memory\": \"129e6\"}}}]\n\t}\n}\n";
        let Admitted { pod, warnings } = admit_ok(text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(pod.name, "api");
        assert_eq!(pod.namespace, "default");
        assert_eq!(pod.restart_policy, model::RestartPolicy::Always);
        assert_eq!(pod.termination_grace, Duration::from_secs(30));
        let container = &pod.containers[0];
        assert_eq!(env_of(container), [("A", "1"), ("B", "11")]);
        assert_eq!(container.resources.cpu_limit_millis, Some(2500));
        assert_eq!(container.resources.cpu_request_millis, Some(2500));
        assert_eq!(container.resources.memory_limit_bytes, Some(129_000_000));
        assert!(container.security == model::Security::default());
    }

    /// What `kubectl get pod -o yaml` prints: server-written fields are no unknown fields.
    const KUBECTL_OUTPUT: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: "2024-05-01T10:00:00Z"
  generation: 1
  labels:
    run: web
  name: web
  namespace: default
  resourceVersion: "12345"
  uid: 0b7d3c55-8f4e-4a8e-9d7e-2f1c7a6b9e10
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:labels:
          .: {}
          f:run: {}
    manager: kubectl-run
    operation: Update
    time: "2024-05-01T10:00:00Z"
spec:
  containers:
  - image: nginx
    imagePullPolicy: Always
    name: web
    resources: {}
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
  dnsPolicy: ClusterFirst
  enableServiceLinks: true
  nodeName: node-1
  preemptionPolicy: PreemptLowerPriority
  priority: 0
  restartPolicy: Always
  schedulerName: default-scheduler
  securityContext: {}
  serviceAccount: default
  serviceAccountName: default
  terminationGracePeriodSeconds: 30
  tolerations:
  - effect: NoExecute
    key: node.kubernetes.io/not-ready
    operator: Exists
    tolerationSeconds: 300
status:
  conditions:
  - lastProbeTime: null
    lastTransitionTime: "2024-05-01T10:00:00Z"
    status: "True"
    type: Initialized
  containerStatuses:
  - containerID: containerd://abc
    image: docker.io/library/nginx:latest
    imageID: docker.io/library/nginx@sha256:abc
    lastState: {}
    name: web
    ready: true
    restartCount: 0
    started: true
    state:
      running:
        startedAt: "2024-05-01T10:00:01Z"
  hostIP: 192.168.1.10
  phase: Running
  podIP: 10.244.0.5
  podIPs:
  - ip: 10.244.0.5
  qosClass: BestEffort
  startTime: "2024-05-01T10:00:00Z"
"#;

    #[test]
    fn admits_kubectl_output() {
        let Admitted { pod, warnings } = admit_ok(KUBECTL_OUTPUT);
        assert_eq!(pod.uid, "0b7d3c55-8f4e-4a8e-9d7e-2f1c7a6b9e10");
        let fields: Vec<&str> = warnings
            .iter()
            .map(|w| w.split(": ").nth(1).unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.dnsPolicy",
                "spec.enableServiceLinks",
                "spec.preemptionPolicy",
                "spec.priority",
                "spec.schedulerName",
                "spec.serviceAccount",
                "spec.serviceAccountName",
                "spec.tolerations",
            ]
        );
    }

    #[test]
    fn fresh_uid_when_none_is_given() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n\
                    spec: {containers: [{name: app, image: busybox}]}\n";
        let first = admit_ok(text).pod.uid;
        let second = admit_ok(text).pod.uid;
        assert_ne!(first, second);
        for uid in [&first, &second] {
            let groups: Vec<usize> = uid.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{uid}");
            assert!(
                uid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()),
                "{uid}"
            );
            assert_eq!(&uid[14..15], "4", "{uid}");
            assert!("89ab".contains(&uid[19..20]), "{uid}");
        }
    }

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
    fn merge_keys_and_empty_documents_are_accepted() {
        let text = "---\n# the pod\napiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  \
                    - &base {name: a, image: busybox, tty: true}\n  - <<: *base\n    name: b\n---\n";
        let pod = admit_ok(text).pod;
        assert_eq!(pod.containers[1].name, "b");
        assert_eq!(pod.containers[1].image, "busybox");
        assert!(pod.containers[1].tty);
    }

    #[test]
    fn security_merges_container_over_pod() {
        let text = pod(
            "{securityContext: {runAsUser: 1, runAsGroup: 2, runAsNonRoot: false, supplementalGroups: [3]}, \
             containers: [{name: a, image: i}, \
             {name: b, image: i, securityContext: {runAsUser: 0, runAsGroup: 0, privileged: true, \
             capabilities: {add: [CAP_SYS_ADMIN, ALL], drop: [KILL]}}}, \
             {name: c, image: i, securityContext: {runAsUser: 7, runAsNonRoot: true}}]}",
        );
        let pod = admit_ok(&text).pod;
        let [a, b, c] = pod.containers.as_slice() else {
            panic!()
        };
        assert_eq!(
            (
                a.security.run_as_user,
                a.security.run_as_group,
                a.security.run_as_non_root
            ),
            (Some(1), Some(2), Some(false))
        );
        assert_eq!(a.security.supplemental_groups, [3]);
        assert_eq!(
            (
                b.security.run_as_user,
                b.security.run_as_group,
                b.security.privileged
            ),
            (Some(0), Some(0), true)
        );
        assert_eq!(b.security.caps_add, ["CAP_SYS_ADMIN", "ALL"]);
        assert_eq!(b.security.caps_drop, ["CAP_KILL"]);
        assert_eq!(b.security.supplemental_groups, [3]);
        assert_eq!(
            (c.security.run_as_user, c.security.run_as_non_root),
            (Some(7), Some(true))
        );
    }

    #[test]
    fn volume_and_mount_forms() {
        let text = with_volumes(
            "[{name: a, hostPath: {path: /srv}}, {name: b, hostPath: {path: /dev/kvm, type: CharDevice}}, \
             {name: c, emptyDir: {}}, {name: d, emptyDir: {medium: \"\", sizeLimit: 1Gi}}]",
            ", volumeMounts: [{name: a, mountPath: /a, subPath: \"\", mountPropagation: None}, \
             {name: a, mountPath: /a2, readOnly: true, recursiveReadOnly: Disabled}, \
             {name: d, mountPath: /, subPathExpr: \"\"}]",
        );
        let Admitted { pod, warnings } = admit_ok(&text);
        assert!(warnings.is_empty(), "{warnings:?}");
        let sources: Vec<_> = pod.volumes.iter().map(|v| v.source.clone()).collect();
        assert_eq!(
            sources,
            [
                model::VolumeSource::HostPath {
                    path: "/srv".to_owned(),
                    kind: model::HostPathType::Unset
                },
                model::VolumeSource::HostPath {
                    path: "/dev/kvm".to_owned(),
                    kind: model::HostPathType::CharDevice
                },
                model::VolumeSource::EmptyDir {
                    memory: false,
                    size_limit_bytes: None
                },
                model::VolumeSource::EmptyDir {
                    memory: false,
                    size_limit_bytes: Some(1 << 30)
                },
            ]
        );
        let mounts = &pod.containers[0].mounts;
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].sub_path, None);
        assert!(mounts[1].read_only);
        assert_eq!(mounts[2].mount_path, "/");
    }

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
    fn warnings_name_the_field() {
        let cases = [
            (
                pod("{nodeSelector: {disk: ssd}, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.nodeSelector: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{tolerations: [{operator: Exists}], containers: [{name: a, image: i}]}"),
                "web.yaml: spec.tolerations: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{serviceAccountName: robot, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.serviceAccountName: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{dnsPolicy: ClusterFirst, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.dnsPolicy: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{priority: 5, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.priority: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{affinity: {}, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.affinity: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{enableServiceLinks: false, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.enableServiceLinks: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{runtimeClassName: peapod, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.runtimeClassName: ignored (no scheduler/API server on a single node)",
            ),
            (
                pod("{nodeName: elsewhere, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.nodeName: ignored: the pod runs on this node (\"node-1\")",
            ),
            (
                pod("{activeDeadlineSeconds: 5, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.activeDeadlineSeconds: not enforced yet",
            ),
            (
                pod("{securityContext: {fsGroup: 5}, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.securityContext.fsGroup: not supported",
            ),
            (
                pod("{securityContext: {seccompProfile: {type: RuntimeDefault}}, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.securityContext.seccompProfile: not applied",
            ),
            (
                pod("{securityContext: {sysctls: [{name: net.ipv4.ip_forward, value: \"1\"}]}, containers: [{name: a, image: i}]}"),
                "web.yaml: spec.securityContext.sysctls: ignored",
            ),
            (
                app(", securityContext: {seLinuxOptions: {level: \"s0:c1\"}}"),
                "web.yaml: spec.containers[0].securityContext.seLinuxOptions: ignored",
            ),
            (
                app(", securityContext: {appArmorProfile: {type: RuntimeDefault}}"),
                "web.yaml: spec.containers[0].securityContext.appArmorProfile: ignored",
            ),
            (
                app(", securityContext: {seccompProfile: {type: RuntimeDefault}}"),
                "web.yaml: spec.containers[0].securityContext.seccompProfile: not applied",
            ),
            (
                app(", livenessProbe: {exec: {command: [\"true\"]}}"),
                "web.yaml: spec.containers[0].livenessProbe: not enforced yet",
            ),
            (
                app(", startupProbe: {httpGet: {port: 80}}"),
                "web.yaml: spec.containers[0].startupProbe: not enforced yet",
            ),
            (
                app(", lifecycle: {preStop: {exec: {command: [\"true\"]}}}"),
                "web.yaml: spec.containers[0].lifecycle: not enforced yet",
            ),
            (
                app(", ports: [{containerPort: 80, hostPort: 8080}]"),
                "web.yaml: spec.containers[0].ports[0].hostPort: not enforced yet",
            ),
            (
                app(", resources: {limits: {ephemeral-storage: 1Gi}}"),
                "web.yaml: spec.containers[0].resources.limits.ephemeral-storage: ignored",
            ),
            (
                app(", resources: {requests: {hugepages-2Mi: 2Mi}}"),
                "web.yaml: spec.containers[0].resources.requests.hugepages-2Mi: ignored",
            ),
            (
                with_volumes(
                    "[{name: v, emptyDir: {}}]",
                    ", volumeMounts: [{name: v, mountPath: /v, mountPropagation: HostToContainer}]",
                ),
                "web.yaml: spec.containers[0].volumeMounts[0].mountPropagation: HostToContainer is not applied",
            ),
        ];
        for (text, expected) in cases {
            let warnings = admit_ok(&text).warnings;
            assert!(
                warnings.iter().any(|w| w.starts_with(expected)),
                "expected {expected:?} in {warnings:?}"
            );
        }
    }

    #[test]
    fn quiet_fields_give_no_warning() {
        let text = format!(
            "{HEAD}spec:\n  hostNetwork: false\n  nodeName: node-1\n  securityContext: {{seccompProfile: {{type: Unconfined}}}}\n  \
             containers:\n  - {{name: a, image: i, imagePullPolicy: Always, terminationMessagePath: /dev/termination-log, \
             terminationMessagePolicy: File, ports: [{{containerPort: 80, name: http}}]}}\n\
             status: {{phase: Running, podIP: 10.1.1.1}}\n"
        );
        assert_eq!(admit_ok(&text).warnings, Vec::<String>::new());
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let volumes3 = |third: &str| {
            with_volumes(
                &format!("[{{name: a, emptyDir: {{}}}}, {{name: b, emptyDir: {{}}}}, {{name: c, {third}}}]"),
                "",
            )
        };
        let env = |source: &str| app(&format!(", env: [{{name: X, valueFrom: {source}}}]"));
        let cases: Vec<(String, &str)> = vec![
            // The document
            ("a: [b\n".into(), "web.yaml: did not find expected ',' or ']' at line 2 column 1"),
            ("".into(), "web.yaml: empty manifest"),
            ("- a\n".into(), "web.yaml: expected a v1 Pod object"),
            (format!("{}---\n{}", app(""), app("")), "web.yaml: more than one YAML document"),
            ("apiVersion: apps/v1\nkind: Pod\n".into(), "web.yaml: apiVersion: must be \"v1\", not \"apps/v1\""),
            ("kind: Pod\n".into(), "web.yaml: apiVersion: required"),
            ("apiVersion: v1\nkind: Deployment\n".into(), "web.yaml: kind: must be \"Pod\", not \"Deployment\""),
            ("apiVersion: v1\n".into(), "web.yaml: kind: required"),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: a, name: b}\n".into(), "web.yaml: metadata: duplicate entry"),
            (pod("{containers: [{name: [x], image: i}]}"), "web.yaml: spec.containers[0].name: invalid type: sequence, expected a string at line 4"),
            (app(", terminationMessagePath: end.log"), "web.yaml: spec.containers[0].terminationMessagePath: must be an absolute path"),
            (app(", terminationMessagePolicy: Always"), "web.yaml: spec.containers[0].terminationMessagePolicy: unsupported value \"Always\""),
            (app(", tty: \"yes\""), "web.yaml: spec.containers[0].tty: invalid type: string \"yes\", expected a boolean"),
            (app(", comand: [x]"), "web.yaml: spec.containers[0].comand: unknown field"),
            (format!("{HEAD}specs: {{}}\n"), "web.yaml: specs: unknown field"),
            // metadata
            ("apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, image: i}]}\n".into(), "web.yaml: metadata.name: required"),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: Web}\n".into(), "web.yaml: metadata.name: invalid name \"Web\""),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: web.}\n".into(), "web.yaml: metadata.name: invalid name"),
            (format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {}}}\n", "a".repeat(254)), "web.yaml: metadata.name: invalid name"),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a.b}\n".into(), "web.yaml: metadata.namespace: invalid name \"a.b\""),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: web, uid: ../../etc}\n".into(), "web.yaml: metadata.uid: invalid uid"),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {\"a b\": x}}\n".into(), "web.yaml: metadata.labels: invalid key \"a b\""),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {a: \"-x\"}}\n".into(), "web.yaml: metadata.labels[a]: invalid value"),
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: web, annotations: {\"Bad_/x\": y}}\n".into(), "web.yaml: metadata.annotations: invalid key"),
            (HEAD.into(), "web.yaml: spec: required"),
            // pod-level
            (pod("{containers: []}"), "web.yaml: spec.containers: required"),
            (pod("{}"), "web.yaml: spec.containers: required"),
            (pod("{hostNetwork: true, containers: [{name: a, image: i}]}"), "web.yaml: spec.hostNetwork: unsupported"),
            (pod("{hostPID: true, containers: [{name: a, image: i}]}"), "web.yaml: spec.hostPID: unsupported"),
            (pod("{hostIPC: true, containers: [{name: a, image: i}]}"), "web.yaml: spec.hostIPC: unsupported"),
            (pod("{hostUsers: false, containers: [{name: a, image: i}]}"), "web.yaml: spec.hostUsers: unsupported"),
            (pod("{os: {name: windows}, containers: [{name: a, image: i}]}"), "web.yaml: spec.os.name: unsupported value \"windows\""),
            (pod("{ephemeralContainers: [{name: dbg, image: i}], containers: [{name: a, image: i}]}"), "web.yaml: spec.ephemeralContainers: unsupported"),
            (pod("{resourceClaims: [{name: gpu}], containers: [{name: a, image: i}]}"), "web.yaml: spec.resourceClaims: unsupported: no API server"),
            (pod("{restartPolicy: Sometimes, containers: [{name: a, image: i}]}"), "web.yaml: spec.restartPolicy: unsupported value \"Sometimes\""),
            (pod("{terminationGracePeriodSeconds: -1, containers: [{name: a, image: i}]}"), "web.yaml: spec.terminationGracePeriodSeconds: must be >= 0"),
            (pod("{hostname: my_host, containers: [{name: a, image: i}]}"), "web.yaml: spec.hostname: invalid name \"my_host\""),
            (pod("{hostAliases: [{ip: 10.0.0.300, hostnames: [a]}], containers: [{name: a, image: i}]}"), "web.yaml: spec.hostAliases[0].ip: invalid IP address \"10.0.0.300\""),
            (pod("{hostAliases: [{ip: \"::1\", hostnames: [ok, Not_OK]}], containers: [{name: a, image: i}]}"), "web.yaml: spec.hostAliases[0].hostnames[1]: invalid hostname"),
            // containers
            (pod("{containers: [{image: i}]}"), "web.yaml: spec.containers[0].name: required"),
            (pod("{containers: [{name: App_1, image: i}]}"), "web.yaml: spec.containers[0].name: invalid name \"App_1\""),
            (pod(&format!("{{containers: [{{name: {}, image: i}}]}}", "a".repeat(64))), "web.yaml: spec.containers[0].name: invalid name"),
            (pod("{containers: [{name: a}]}"), "web.yaml: spec.containers[0].image: required"),
            (pod("{containers: [{name: a, image: \"\"}]}"), "web.yaml: spec.containers[0].image: required"),
            (pod("{containers: [{name: a, image: \" busybox\"}]}"), "web.yaml: spec.containers[0].image: must not have leading or trailing whitespace"),
            (pod("{initContainers: [{name: x, image: i}, {name: y}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[1].image: required"),
            (pod("{initContainers: [{name: x, image: i}, {name: x, image: i}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[1].name: duplicate name \"x\""),
            (pod("{initContainers: [{name: x, image: i}], containers: [{name: a, image: i}, {name: x, image: i}]}"), "web.yaml: spec.containers[1].name: duplicate name \"x\""),
            (app(", workingDir: srv"), "web.yaml: spec.containers[0].workingDir: must be an absolute path, not \"srv\""),
            (app(", imagePullPolicy: Sometimes"), "web.yaml: spec.containers[0].imagePullPolicy: unsupported value"),
            (app(", restartPolicy: Always"), "web.yaml: spec.containers[0].restartPolicy: not supported on app containers"),
            (pod("{initContainers: [{name: x, image: i, restartPolicy: Never}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[0].restartPolicy: unsupported value \"Never\""),
            (app(", restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42]}}]"), "web.yaml: spec.containers[0].restartPolicyRules: unsupported"),
            (pod("{initContainers: [{name: x, image: i, livenessProbe: {exec: {command: [\"true\"]}}}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[0].livenessProbe: must not be set for init containers"),
            (pod("{initContainers: [{name: x, image: i, lifecycle: {postStart: {exec: {command: [\"true\"]}}}}], containers: [{name: a, image: i}]}"), "web.yaml: spec.initContainers[0].lifecycle: must not be set for init containers"),
            (app(", volumeDevices: [{name: v, devicePath: /dev/xvda}]"), "web.yaml: spec.containers[0].volumeDevices: unsupported"),
            (app(", ports: [{containerPort: 0}]"), "web.yaml: spec.containers[0].ports[0].containerPort: must be between 1 and 65535"),
            (app(", ports: [{containerPort: 80, protocol: ICMP}]"), "web.yaml: spec.containers[0].ports[0].protocol: unsupported value"),
            // env
            (app(", env: [{value: x}]"), "web.yaml: spec.containers[0].env[0].name: required"),
            (app(", env: [{name: \"A=B\"}]"), "web.yaml: spec.containers[0].env[0].name: invalid name \"A=B\""),
            (app(", env: [{name: A, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]"), "web.yaml: spec.containers[0].env[0].valueFrom: may not be set when value is not empty"),
            (env("{}"), "web.yaml: spec.containers[0].env[0].valueFrom: must specify one of"),
            (env("{secretKeyRef: {name: s, key: k}}"), "web.yaml: spec.containers[0].env[0].valueFrom.secretKeyRef: unsupported: no API server"),
            (env("{configMapKeyRef: {name: s, key: k}}"), "web.yaml: spec.containers[0].env[0].valueFrom.configMapKeyRef: unsupported: no API server"),
            (env("{fieldRef: {fieldPath: metadata.name}, configMapKeyRef: {name: s, key: k}}"), "web.yaml: spec.containers[0].env[0].valueFrom: may not have more than one field"),
            (env("{fieldRef: {fieldPath: status.podIP}}"), "web.yaml: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: unsupported: status.podIP"),
            (env("{fieldRef: {fieldPath: status.hostIP}}"), "web.yaml: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: unsupported"),
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
            (app(", envFrom: [{configMapRef: {name: c}}]"), "web.yaml: spec.containers[0].envFrom: unsupported"),
            // security
            (pod("{securityContext: {runAsUser: -1}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.runAsUser: must be between 0 and 2147483647"),
            (pod("{securityContext: {supplementalGroups: [1, 4294967296]}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.supplementalGroups[1]: must be between 0 and 2147483647"),
            (pod("{securityContext: {supplementalGroupsPolicy: Loose}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.supplementalGroupsPolicy: unsupported value"),
            (app(", securityContext: {runAsGroup: 2147483648}"), "web.yaml: spec.containers[0].securityContext.runAsGroup: must be between 0 and 2147483647"),
            (app(", securityContext: {capabilities: {add: [NET_FOO]}}"), "web.yaml: spec.containers[0].securityContext.capabilities.add[0]: unknown capability \"NET_FOO\""),
            (app(", securityContext: {capabilities: {drop: [KILL, CAP_]}}"), "web.yaml: spec.containers[0].securityContext.capabilities.drop[1]: unknown capability \"CAP_\""),
            (app(", securityContext: {seccompProfile: {type: Localhost, localhostProfile: p.json}}"), "web.yaml: spec.containers[0].securityContext.seccompProfile.type: unsupported"),
            (pod("{securityContext: {seccompProfile: {type: Localhost}}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.seccompProfile.type: unsupported"),
            (app(", securityContext: {seccompProfile: {type: Strict}}"), "web.yaml: spec.containers[0].securityContext.seccompProfile.type: unsupported value \"Strict\""),
            (app(", securityContext: {seccompProfile: {type: Unconfined, localhostProfile: p}}"), "web.yaml: spec.containers[0].securityContext.seccompProfile.localhostProfile: may only be set"),
            (app(", securityContext: {appArmorProfile: {type: Other}}"), "web.yaml: spec.containers[0].securityContext.appArmorProfile.type: unsupported value"),
            (app(", securityContext: {privileged: true, allowPrivilegeEscalation: false}"), "web.yaml: spec.containers[0].securityContext.allowPrivilegeEscalation: cannot be false when privileged is true"),
            (app(", securityContext: {capabilities: {add: [SYS_ADMIN]}, allowPrivilegeEscalation: false}"), "web.yaml: spec.containers[0].securityContext.allowPrivilegeEscalation: cannot be false"),
            (app(", securityContext: {runAsUser: 0, runAsNonRoot: true}"), "web.yaml: spec.containers[0].securityContext.runAsUser: is 0 (root) but runAsNonRoot is true"),
            (pod("{securityContext: {runAsUser: 0}, containers: [{name: a, image: i, securityContext: {runAsNonRoot: true}}]}"), "web.yaml: spec.securityContext.runAsUser: is 0 (root)"),
            (pod("{securityContext: {runAsUser: 0, runAsNonRoot: true}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.runAsUser: is 0 (root)"),
            (app(", securityContext: {procMount: Unmasked}"), "web.yaml: spec.containers[0].securityContext.procMount: unsupported"),
            // resources
            (app(", resources: {limits: {memory: 12Q}}"), "web.yaml: spec.containers[0].resources.limits.memory: invalid quantity \"12Q\""),
            (app(", resources: {requests: {cpu: 1.2.3}}"), "web.yaml: spec.containers[0].resources.requests.cpu: invalid quantity \"1.2.3\""),
            (app(", resources: {limits: {memory: \"-1\"}}"), "web.yaml: spec.containers[0].resources.limits.memory: must be greater than or equal to 0"),
            (app(", resources: {limits: {memory: 9Ei}}"), "web.yaml: spec.containers[0].resources.limits.memory: quantity \"9Ei\" is too large"),
            (app(", resources: {limits: {cpu: 1}, requests: {cpu: 2}}"), "web.yaml: spec.containers[0].resources.requests.cpu: must be less than or equal to the cpu limit"),
            (app(", resources: {limits: {memory: 1Mi}, requests: {memory: 1Gi}}"), "web.yaml: spec.containers[0].resources.requests.memory: must be less than or equal to the memory limit"),
            (app(", resources: {claims: [{name: gpu}]}"), "web.yaml: spec.containers[0].resources.claims: unsupported: no API server"),
            // volumes
            (volumes3("configMap: {name: cm}"), "web.yaml: spec.volumes[2]: unsupported volume type \"configMap\""),
            (volumes3("secret: {secretName: s}"), "web.yaml: spec.volumes[2]: unsupported volume type \"secret\""),
            (volumes3("persistentVolumeClaim: {claimName: c}"), "web.yaml: spec.volumes[2]: unsupported volume type \"persistentVolumeClaim\""),
            (volumes3("projected: {sources: []}"), "web.yaml: spec.volumes[2]: unsupported volume type \"projected\""),
            (volumes3("downwardAPI: {items: []}"), "web.yaml: spec.volumes[2]: unsupported volume type \"downwardAPI\""),
            (volumes3("nfs: {server: s, path: /}"), "web.yaml: spec.volumes[2]: unsupported volume type \"nfs\""),
            (volumes3("emptyDir: {}, hostPath: {path: /x}"), "web.yaml: spec.volumes[2]: may not specify more than 1 volume type"),
            (volumes3("emptyDir: {medium: Disk}"), "web.yaml: spec.volumes[2].emptyDir.medium: unsupported value \"Disk\""),
            (volumes3("emptyDir: {medium: HugePages}"), "web.yaml: spec.volumes[2].emptyDir.medium: unsupported value \"HugePages\": huge pages"),
            (volumes3("emptyDir: {sizeLimit: lots}"), "web.yaml: spec.volumes[2].emptyDir.sizeLimit: invalid quantity \"lots\""),
            (volumes3("hostPath: {path: var/log}"), "web.yaml: spec.volumes[2].hostPath.path: must be an absolute path"),
            (volumes3("hostPath: {path: \"\"}"), "web.yaml: spec.volumes[2].hostPath.path: required"),
            (volumes3("hostPath: {path: /var/../etc}"), "web.yaml: spec.volumes[2].hostPath.path: must not contain '..'"),
            (volumes3("hostPath: {path: /x, type: Folder}"), "web.yaml: spec.volumes[2].hostPath.type: unsupported value \"Folder\""),
            (with_volumes("[{name: Data}]", ""), "web.yaml: spec.volumes[0].name: invalid name \"Data\""),
            (with_volumes("[{name: d}, {name: d}]", ""), "web.yaml: spec.volumes[1].name: duplicate name \"d\""),
            // mounts
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /v}, {name: x, mountPath: /x}]"), "web.yaml: spec.containers[0].volumeMounts[1].name: no volume \"x\""),
            (with_volumes("[{name: v}]", ", volumeMounts: [{mountPath: /v}]"), "web.yaml: spec.containers[0].volumeMounts[0].name: required"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: data}]"), "web.yaml: spec.containers[0].volumeMounts[0].mountPath: must be an absolute path"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v}]"), "web.yaml: spec.containers[0].volumeMounts[0].mountPath: required"),
            (with_volumes("[{name: v}, {name: w}]", ", volumeMounts: [{name: v, mountPath: /d}, {name: w, mountPath: /d/}]"), "web.yaml: spec.containers[0].volumeMounts[1].mountPath: duplicate mount path \"/d/\""),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, subPath: /abs}]"), "web.yaml: spec.containers[0].volumeMounts[0].subPath: must be a relative path"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, subPath: a/../../b}]"), "web.yaml: spec.containers[0].volumeMounts[0].subPath: must not contain '..'"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, subPathExpr: \"$(POD)\"}]"), "web.yaml: spec.containers[0].volumeMounts[0].subPathExpr: unsupported"),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, mountPropagation: Sideways}]"), "web.yaml: spec.containers[0].volumeMounts[0].mountPropagation: unsupported value \"Sideways\""),
            (with_volumes("[{name: v}]", ", volumeMounts: [{name: v, mountPath: /d, recursiveReadOnly: Enabled}]"), "web.yaml: spec.containers[0].volumeMounts[0].recursiveReadOnly: may only be set when readOnly is true"),
        ];
        for (text, expected) in cases {
            let message = refusal(&text);
            assert!(
                message.starts_with(expected),
                "expected a message starting {expected:?}\n got {message:?}\n for {text}"
            );
        }
    }

    #[test]
    fn error_variants_carry_their_parts() {
        let error = admit("a:\n  - [\n", "x.yaml", &node()).unwrap_err();
        let ManifestError::Malformed { line, column, .. } = error else {
            panic!("{error:?}")
        };
        assert!(line.is_some() && column.is_some());
        let error = admit(
            &pod("{containers: [{name: a, image: \"\"}]}"),
            "x.yaml",
            &node(),
        )
        .unwrap_err();
        assert!(matches!(error, ManifestError::Invalid { .. }), "{error:?}");
        assert_eq!(error.field(), Some("spec.containers[0].image"));
        let error = admit(
            &app(", envFrom: [{secretRef: {name: s}}]"),
            "x.yaml",
            &node(),
        )
        .unwrap_err();
        assert!(
            matches!(error, ManifestError::Unsupported { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn load_reads_yaml_and_json_files() {
        let folder = tempfile::tempdir().unwrap();
        let yaml = folder.path().join("web.yaml");
        std::fs::write(&yaml, app("")).unwrap();
        assert_eq!(load(&yaml).unwrap().pod.containers[0].name, "app");
        let json = folder.path().join("web.json");
        std::fs::write(
            &json,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
        )
        .unwrap();
        assert_eq!(load(&json).unwrap().pod.name, "j");
        let bad = folder.path().join("bad.json");
        std::fs::write(&bad, "{\"apiVersion\": \"v1\",\n \"kind\": [}\n").unwrap();
        let message = load(&bad).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}: ", bad.display())),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
        let missing = folder.path().join("missing.yaml");
        let message = load(&missing).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}: cannot read: ", missing.display())),
            "{message}"
        );
    }

    #[test]
    fn quantities() {
        let cpu = [
            ("500m", 500),
            ("1", 1000),
            ("0.5", 500),
            ("2.5", 2500),
            ("0.0001", 1),
            ("100u", 1),
            ("+2", 2000),
            ("1e3", 1_000_000),
            (".5", 500),
            ("1.", 1000),
            ("0", 0),
            ("-0", 0),
        ];
        for (text, millis) in cpu {
            let amount: Amount = text.parse().unwrap();
            assert_eq!(amount.ceil_scaled(1000), Some(millis), "{text}");
        }
        let memory = [
            ("128Mi", 128u128 << 20),
            ("1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("500M", 500_000_000),
            ("1e6", 1_000_000),
            ("1E6", 1_000_000),
            ("129e6", 129_000_000),
            ("1e+3", 1000),
            ("1e-3", 1),
            ("123456", 123_456),
            ("1500m", 2),
            ("1k", 1000),
            ("1Ki", 1024),
            (".5Ki", 512),
            ("1T", 1_000_000_000_000),
            ("1Ti", 1 << 40),
            ("1P", 1_000_000_000_000_000),
            ("1Pi", 1 << 50),
            ("1E", 1_000_000_000_000_000_000),
            ("1Ei", 1 << 60),
            ("1n", 1),
        ];
        for (text, bytes) in memory {
            let amount: Amount = text.parse().unwrap();
            assert_eq!(amount.ceil_scaled(1), Some(bytes), "{text}");
        }
        let negative: Amount = "-1Mi".parse().unwrap();
        assert!(negative.negative);
        for text in [
            "", ".", "1.2.3", "Mi", "1mi", "1K", "1e", "1e1.5", "--1", "1 Mi", "abc", "1Gi ",
            "1e+", "+", "1ee3", "0x10",
        ] {
            assert_eq!(text.parse::<Amount>(), Err(()), "{text:?}");
        }
        let huge: Amount = "1e40".parse().unwrap_or(Amount {
            negative: false,
            numerator: u128::MAX,
            denominator: 1,
        });
        assert_eq!(huge.ceil_scaled(1000), None);
    }

    #[test]
    fn quantities_written_as_yaml_numbers() {
        let text = app(
            ", resources: {limits: {cpu: 2, memory: 1e6}, requests: {cpu: 0.5, memory: 123456}}",
        );
        let resources = admit_ok(&text).pod.containers[0].resources.clone();
        assert_eq!(
            resources,
            model::Resources {
                cpu_limit_millis: Some(2000),
                memory_limit_bytes: Some(1_000_000),
                cpu_request_millis: Some(500),
                memory_request_bytes: Some(123_456),
            }
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
    fn names() {
        for good in ["a", "web", "a-b", "0", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
            assert!(is_dns_subdomain(good), "{good}");
        }
        for bad in ["", "A", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        for good in ["a.b", "web-1.example.com", &"a".repeat(64)] {
            assert!(is_dns_subdomain(good), "{good}");
        }
        for bad in ["a..b", ".a", "a.", "a.-b", "a_b.c", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
        for good in ["app", "app.kubernetes.io/name", "A_b.c-D", "example.com/X"] {
            assert!(check_qualified_name(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "Ex.com/a", "a/b/c", "_a", "a b"] {
            assert!(check_qualified_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:       16310856 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total(text), Some(16_310_856 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }
}
