//! Pod manifests: Kubernetes v1/Pod YAML or JSON into the model, validated.
//!
//! The text is deserialized into k8s-openapi's `Pod` (peapod keeps no Pod schema
//! of its own), checked the way the API server and the kubelet would check it,
//! and turned into [`model::Pod`] with Kubernetes' defaults applied and `$(VAR)`
//! references expanded. A field peapod does not act on is refused or reported in
//! [`Admitted::warnings`]; none is dropped silently.
//!
//! Here: the entry points, and the walk of the pod spec that calls each
//! concern in turn, each in its own file: `decode.rs` (text to k8s-openapi),
//! `names.rs` (metadata, names), `namespaces.rs` (host namespaces), `dns.rs`
//! (hostname, host aliases), `ignored.rs` (fields not acted on),
//! `security.rs`, `volumes.rs` (volumes and mounts), `resources.rs`
//! (quantities), `containers.rs`, `probes.rs` (probes and lifecycle hooks),
//! `env.rs` (environment, `$(VAR)`).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;

use super::model;

mod containers;
mod decode;
mod dns;
mod env;
mod ignored;
mod names;
mod namespaces;
mod probes;
mod resources;
mod security;
mod volumes;

use containers::Scope;

/// Kubernetes' default for spec.terminationGracePeriodSeconds.
const DEFAULT_GRACE_SECONDS: i64 = 30;
const NOT_ENFORCED: &str = "not enforced yet";
const NO_API_SERVER: &str = "unsupported: no API server";

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

/// Reads and admits a manifest file for node `node_name`. Any extension is
/// read as YAML, which covers JSON too.
pub fn load(path: &Path, node_name: &str) -> Result<Admitted, ManifestError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|cause| ManifestError::Read {
        file: file.clone(),
        cause,
    })?;
    admit(&text, &file, &Node::named(node_name))
}

/// Admits a manifest given as text (for this node under its default name);
/// `source` names it in messages.
pub fn parse(text: &str, source: &str) -> Result<Admitted, ManifestError> {
    admit(
        text,
        source,
        &Node::named(&super::settings::default_node_name()),
    )
}

/// Admits a manifest after `adjust` has changed the decoded pod (the static-pod
/// daemon names it and gives it a uid before admission, so that `$(VAR)` and
/// fieldRef values see the final name); `adjust` may add warnings.
pub fn parse_adjusted(
    text: &str,
    source: &str,
    node_name: &str,
    adjust: impl FnOnce(&mut k8s::Pod, &mut Vec<String>),
) -> Result<Admitted, ManifestError> {
    let mut pod = decode::decode(text, source)?;
    let mut warnings = Vec::new();
    adjust(&mut pod, &mut warnings);
    let mut admitted = admit_decoded(pod, source, &Node::named(node_name))?;
    warnings.append(&mut admitted.warnings);
    admitted.warnings = warnings;
    Ok(admitted)
}

fn admit(text: &str, file: &str, node: &Node) -> Result<Admitted, ManifestError> {
    admit_decoded(decode::decode(text, file)?, file, node)
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

/// What admission needs to know about this node.
struct Node {
    /// The node's name (spec.nodeName).
    name: String,
    /// The kernel's host name (a hostNetwork pod's hostname).
    hostname: String,
    /// Allocatable CPU, for resourceFieldRef when a container sets no limit.
    cpu_millis: Option<u64>,
    /// Allocatable memory, likewise.
    memory_bytes: Option<i64>,
    /// The host enforces AppArmor (decides what appArmorProfile means).
    apparmor: bool,
}

impl Node {
    fn named(name: &str) -> Self {
        let cpu_millis = std::thread::available_parallelism()
            .ok()
            .and_then(|cpus| u64::try_from(cpus.get()).ok())
            .map(|cpus| cpus * 1000);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| mem_total(&text));
        Self {
            name: name.to_owned(),
            hostname: crate::net::node::host_name(),
            cpu_millis,
            memory_bytes,
            apparmor: apparmor_enabled(),
        }
    }
}

/// Whether the kernel enforces AppArmor, as the kubelet checks it.
pub(crate) fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|text| text.trim() == "Y")
}

fn mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// One manifest under admission: what every concern's checks share (each
/// file adds its own part of `impl Admission`).
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
        self.ignored_pod_fields(&spec);
        // Destructured in full so that a field added to k8s-openapi cannot slip through.
        let k8s::PodSpec {
            containers,
            ephemeral_containers,
            host_aliases,
            host_ipc,
            host_network,
            host_pid,
            host_users,
            hostname,
            init_containers,
            os,
            resource_claims,
            restart_policy,
            security_context,
            service_account,
            service_account_name,
            share_process_namespace,
            termination_grace_period_seconds,
            volumes,
            dns_config,
            dns_policy,
            subdomain,
            active_deadline_seconds,
            // Warned about by ignored_pod_fields, above.
            affinity: _,
            automount_service_account_token: _,
            enable_service_links: _,
            hostname_override: _,
            image_pull_secrets: _,
            node_name: _,
            node_selector: _,
            overhead: _,
            preemption_policy: _,
            priority: _,
            priority_class_name: _,
            readiness_gates: _,
            resources: pod_resources,
            runtime_class_name: _,
            scheduler_name: _,
            scheduling_gates: _,
            set_hostname_as_fqdn: _,
            tolerations: _,
            topology_spread_constraints: _,
        } = spec;

        let host = self.host_namespaces(
            host_network,
            host_pid,
            host_ipc,
            host_users,
            share_process_namespace,
        )?;
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
            .or(service_account)
            .filter(|name| !name.is_empty())
            // What the ServiceAccount admission plugin would set.
            .unwrap_or_else(|| "default".to_owned());

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
        let active_deadline = match active_deadline_seconds {
            None => None,
            // ValidatePodSpec: activeDeadlineSeconds must be a positive integer.
            Some(s) if s < 1 => {
                return Err(self.invalid(
                    "spec.activeDeadlineSeconds",
                    "must be between 1 and 2147483647, inclusive",
                ))
            }
            Some(s) => Some(Duration::from_secs(s as u64)),
        };
        let hostname = self.hostname(hostname, &metadata.name, host.network)?;
        let host_aliases = self.host_aliases(host_aliases)?;
        let dns = self.pod_dns(dns_policy, dns_config, subdomain)?;
        let mut security = self.pod_security(security_context)?;
        security.own_users = !host.users;
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
        // Pod-level resources (PodLevelResources): what the QoS class and the
        // pod cgroup are made from when set.
        let pod_resources = match pod_resources {
            Some(r) => Some(self.resources("spec", Some(r))?).filter(|r| r.has_cpu_or_memory()),
            None => None,
        };
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
            host_network: host.network,
            grace: Duration::from_secs(grace),
        };
        let mut init = Vec::new();
        let mut app = Vec::new();
        let mut app_fields = Vec::new();
        for ((field, is_init, container), (_, amounts)) in members.into_iter().zip(&resources) {
            let container = self.container(&field, container, is_init, amounts, &scope)?;
            if is_init {
                init.push(container);
            } else {
                app_fields.push(field);
                app.push(container);
            }
        }
        let fields: Vec<(String, &model::Container)> = app_fields.into_iter().zip(&app).collect();
        self.unique_host_ports(&fields)?;

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
            host,
            dns,
            active_deadline,
            security: security.pod.clone(),
            resources: pod_resources,
        })
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

#[cfg(test)]
pub(crate) mod tests {
    //! Whole manifests through admission; the builders here serve the tests of
    //! every concern.

    pub(super) use super::Admitted;
    use super::*;

    pub(super) fn node() -> Node {
        Node {
            name: "node-1".to_owned(),
            hostname: "Node-1-Host".to_owned(),
            cpu_millis: Some(4000),
            memory_bytes: Some(8 << 30),
            // As on the machines the tests run on.
            apparmor: false,
        }
    }

    pub(crate) fn admit_ok(text: &str) -> Admitted {
        match admit(text, "web.yaml", &node()) {
            Ok(admitted) => admitted,
            Err(error) => panic!("refused: {error}\n{text}"),
        }
    }

    pub(super) fn refusal(text: &str) -> String {
        match admit(text, "web.yaml", &node()) {
            Ok(admitted) => panic!("admitted: {admitted:?}\n{text}"),
            Err(error) => error.to_string(),
        }
    }

    pub(super) const HEAD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, uid: u-1}\n";

    /// A pod with this spec (YAML flow style).
    pub(super) fn pod(spec: &str) -> String {
        format!("{HEAD}spec: {spec}\n")
    }

    /// A pod with one container "app", plus `extra` (", key: value ...") on it.
    pub(super) fn app(extra: &str) -> String {
        pod(&format!(
            "{{containers: [{{name: app, image: busybox{extra}}}]}}"
        ))
    }

    /// A pod with one container and these volumes, the container with `extra`.
    pub(super) fn with_volumes(volumes: &str, extra: &str) -> String {
        pod(&format!(
            "{{volumes: {volumes}, containers: [{{name: app, image: busybox{extra}}}]}}"
        ))
    }

    pub(super) fn env_of(container: &model::Container) -> Vec<(&str, &str)> {
        container
            .env
            .iter()
            .map(|var| (var.name.as_str(), var.value.as_str()))
            .collect()
    }

    /// Each manifest is refused with a message starting with its expected text.
    pub(super) fn assert_refusals(cases: &[(String, &str)]) {
        for (text, expected) in cases {
            let message = refusal(text);
            assert!(
                message.starts_with(expected),
                "expected a message starting {expected:?}\n got {message:?}\n for {text}"
            );
        }
    }

    /// Each manifest is admitted with a warning starting with its expected text.
    pub(super) fn assert_warnings(cases: &[(String, &str)]) {
        for (text, expected) in cases {
            let warnings = admit_ok(text).warnings;
            assert!(
                warnings.iter().any(|w| w.starts_with(expected)),
                "expected {expected:?} in {warnings:?}"
            );
        }
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
                ..Default::default()
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
                seccomp: model::SeccompProfile::Unset,
                proc_unmasked: false,
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
        assert_eq!(warnings, Vec::<String>::new());
        let proxy = &pod.init_containers[1].health;
        assert!(proxy.readiness.is_some());
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
        assert_eq!(load(&yaml, "node-1").unwrap().pod.containers[0].name, "app");
        let json = folder.path().join("web.json");
        std::fs::write(
            &json,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
        )
        .unwrap();
        assert_eq!(load(&json, "node-1").unwrap().pod.name, "j");
        let bad = folder.path().join("bad.json");
        std::fs::write(&bad, "{\"apiVersion\": \"v1\",\n \"kind\": [}\n").unwrap();
        let message = load(&bad, "node-1").unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}: ", bad.display())),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
        let missing = folder.path().join("missing.yaml");
        let message = load(&missing, "node-1").unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}: cannot read: ", missing.display())),
            "{message}"
        );
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (HEAD.into(), "web.yaml: spec: required"),
            (pod("{containers: []}"), "web.yaml: spec.containers: required"),
            (pod("{}"), "web.yaml: spec.containers: required"),
            (pod("{os: {name: windows}, containers: [{name: a, image: i}]}"), "web.yaml: spec.os.name: unsupported value \"windows\""),
            (pod("{ephemeralContainers: [{name: dbg, image: i}], containers: [{name: a, image: i}]}"), "web.yaml: spec.ephemeralContainers: unsupported"),
            (pod("{resourceClaims: [{name: gpu}], containers: [{name: a, image: i}]}"), "web.yaml: spec.resourceClaims: unsupported: no API server"),
            (pod("{restartPolicy: Sometimes, containers: [{name: a, image: i}]}"), "web.yaml: spec.restartPolicy: unsupported value \"Sometimes\""),
            (pod("{terminationGracePeriodSeconds: -1, containers: [{name: a, image: i}]}"), "web.yaml: spec.terminationGracePeriodSeconds: must be >= 0"),
        ];
        assert_refusals(&cases);
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:       16310856 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total(text), Some(16_310_856 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }
}
