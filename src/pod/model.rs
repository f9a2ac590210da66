//! The pod as peapod runs it: what the manifest said, validated, defaults
//! applied, `$(VAR)` references expanded. Everything downstream (OCI specs,
//! lifecycle, status) works from this, never from the raw manifest.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::probe::Health;
use crate::net::dns::{DnsPolicy, PodDnsConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    /// metadata.uid if given, else a fresh one chosen at admission.
    pub uid: String,
    /// spec.hostname, else the pod name (Kubernetes' rule).
    pub hostname: String,
    pub restart_policy: RestartPolicy,
    /// spec.terminationGracePeriodSeconds (default 30 s).
    pub termination_grace: Duration,
    pub share_process_namespace: bool,
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// spec.hostAliases, as extra /etc/hosts lines (ip, names).
    pub host_aliases: Vec<(String, Vec<String>)>,
    /// spec.activeDeadlineSeconds: how long the pod may be active (from its
    /// start) before it is stopped and fails with reason DeadlineExceeded.
    #[serde(default)]
    pub active_deadline: Option<Duration>,
    /// spec.hostNetwork, hostPID, hostIPC.
    #[serde(default)]
    pub host: HostNamespaces,
    /// spec.dnsPolicy, dnsConfig and subdomain.
    #[serde(default)]
    pub dns: PodDns,
    /// The pod-level securityContext fields that are the pod's, not each
    /// container's: the sandbox's seccomp profile, sysctls, fsGroup, policies.
    #[serde(default)]
    pub security: PodSecurity,
    /// Pod-level spec.resources (Kubernetes 1.34): they decide the QoS class
    /// and the pod cgroup's limits when set.
    #[serde(default)]
    pub resources: Option<Resources>,
}

/// What the pod's securityContext says for the pod as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PodSecurity {
    /// spec.securityContext.seccompProfile: the sandbox's profile.
    pub seccomp: SeccompProfile,
    /// spec.securityContext.sysctls, in order (set in the sandbox's namespaces).
    pub sysctls: Vec<Sysctl>,
    /// spec.securityContext.fsGroup: owns emptyDir volumes, joins every container's groups.
    pub fs_group: Option<u32>,
    /// fsGroupChangePolicy OnRootMismatch (the default is Always).
    pub fs_group_on_root_mismatch: bool,
    /// supplementalGroupsPolicy Strict: the image's /etc/group memberships are not added.
    pub supplemental_groups_strict: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

/// A seccompProfile, the container's over the pod's. `Unset` is decided by
/// the node (the kubelet's seccompDefault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SeccompProfile {
    #[default]
    Unset,
    RuntimeDefault,
    Unconfined,
    /// `localhostProfile`, relative to the node's profile folder; `field` is
    /// where the manifest said it, for errors.
    Localhost {
        profile: String,
        field: String,
    },
}

/// The host's namespaces a pod shares instead of having its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNamespaces {
    pub network: bool,
    pub pid: bool,
    pub ipc: bool,
    /// hostUsers (default true); false: the pod has a user namespace of its
    /// own, with a range of host IDs of its own (`security::userns`).
    #[serde(default = "yes")]
    pub users: bool,
}

fn yes() -> bool {
    true
}

impl Default for HostNamespaces {
    fn default() -> Self {
        Self {
            network: false,
            pid: false,
            ipc: false,
            users: true,
        }
    }
}

/// What the pod's /etc/resolv.conf and /etc/hosts are made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PodDns {
    pub policy: DnsPolicy,
    pub config: Option<PodDnsConfig>,
    /// spec.subdomain: the pod's FQDN in /etc/hosts.
    pub subdomain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    /// The image reference as written (resolved against the image store later).
    pub image: String,
    /// `imagePullPolicy` as written (None: the API's default for `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Overrides the image's Entrypoint when not empty.
    pub command: Vec<String>,
    /// Overrides the image's Cmd when not empty.
    pub args: Vec<String>,
    /// In order, `$(VAR)` already expanded.
    pub env: Vec<EnvVar>,
    pub working_dir: Option<String>,
    pub security: Security,
    pub resources: Resources,
    pub mounts: Vec<VolumeMount>,
    /// Only on init containers: `Always` makes it a sidecar.
    pub restart_policy: Option<RestartPolicy>,
    pub tty: bool,
    pub stdin: bool,
    /// Where the container may write why it ended (its `terminated.message`).
    #[serde(default = "default_termination_message_path")]
    pub termination_message_path: String,
    /// `FallbackToLogsOnError`: an empty message after a failure is the log's tail.
    #[serde(default)]
    pub termination_message_from_logs: bool,
    /// Its probes and lifecycle hooks (exec commands with `$(VAR)` expanded).
    #[serde(default)]
    pub health: Health,
    /// spec.containers[].ports (those with a hostPort are mapped on the node).
    #[serde(default)]
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub container_port: u16,
    /// Set (the containerPort's) on a hostNetwork pod, as the API server defaults it.
    pub host_port: Option<u16>,
    pub protocol: Protocol,
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

fn default_termination_message_path() -> String {
    DEFAULT_TERMINATION_MESSAGE_PATH.to_string()
}

impl Container {
    /// A restartable init container (the sidecar pattern).
    pub fn is_sidecar(&self) -> bool {
        self.restart_policy == Some(RestartPolicy::Always)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// Container securityContext merged over the pod's securityContext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Security {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub run_as_non_root: Option<bool>,
    pub supplemental_groups: Vec<u32>,
    /// Capability names as CAP_XXX.
    pub caps_add: Vec<String>,
    /// Capability names as CAP_XXX, or "ALL".
    pub caps_drop: Vec<String>,
    pub privileged: bool,
    pub read_only_root_filesystem: bool,
    /// None is Kubernetes' default, true: no_new_privs stays off (only an explicit
    /// false sets it, and not for a privileged container).
    pub allow_privilege_escalation: Option<bool>,
    /// seccompProfile, the container's over the pod's.
    #[serde(default)]
    pub seccomp: SeccompProfile,
    /// procMount: Unmasked (only in a pod with its own user namespace): no
    /// masked or read-only /proc paths.
    #[serde(default)]
    pub proc_unmasked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resources {
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<i64>,
    pub cpu_request_millis: Option<u64>,
    pub memory_request_bytes: Option<i64>,
    /// `hugepages-<size>` limits (= requests): page size in bytes -> bytes.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hugepage_limits: std::collections::BTreeMap<u64, u64>,
}

impl Resources {
    pub fn has_cpu_or_memory(&self) -> bool {
        self.cpu_limit_millis.is_some()
            || self.memory_limit_bytes.is_some()
            || self.cpu_request_millis.is_some()
            || self.memory_request_bytes.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub volume: String,
    pub mount_path: String,
    pub read_only: bool,
    pub sub_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub source: VolumeSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    EmptyDir {
        memory: bool,
        size_limit_bytes: Option<i64>,
    },
    HostPath {
        path: String,
        kind: HostPathType,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum HostPathType {
    /// "" in Kubernetes: no check.
    #[default]
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}
