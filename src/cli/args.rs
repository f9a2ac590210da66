//! The command line, shaped like runc's so that tools which drive runc drive peapod.
//!
//! Over 600 lines on purpose: every verb's flags are declared here, one clap
//! struct each and no logic, so the whole command line reads in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "peapod",
    version,
    about = "peapod: a pod runtime for Linux. With runc's verbs it is an OCI runtime.",
    disable_help_subcommand = true,
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version (as `peapod version`)
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    pub version: (),
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct GlobalOpts {
    /// Folder for container state (kept on tmpfs)
    #[arg(long, global = true, default_value = crate::oci::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Write log lines to this file instead of stderr
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log line format
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log debug detail
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd for cgroups (refused where systemd is not running)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto (`spec --rootless` writes a rootless spec)
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility; CRIU is found on PATH
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`
    Create(CreateArgs),
    /// Print peapod's version, commit, OCI runtime spec and libseccomp versions
    Version,
    /// Run the user process of a created container
    Start(IdArg),
    /// Print a container's state as OCI state JSON
    State(IdArg),
    /// Send a signal to a container's init (or to all its processes)
    Kill(KillArgs),
    /// Delete a container and everything it holds
    Delete(DeleteArgs),
    /// Create and start a container, and wait for it unless detached
    Run(RunArgs),
    /// Run a new process inside a running container
    Exec(ExecArgs),
    /// List the processes of a container
    Ps(PsArgs),
    /// List containers
    #[command(alias = "ls")]
    List(ListArgs),
    /// Write a default config.json to a bundle folder
    Spec(SpecArgs),
    /// Print the OCI features document of this runtime
    Features,
    /// Freeze every process of a container
    Pause(IdArg),
    /// Thaw a paused container
    Resume(IdArg),
    /// Print container statistics
    Events(EventsArgs),
    /// Change a container's resource limits
    Update(UpdateArgs),
    /// Checkpoint a running container with CRIU
    Checkpoint(CheckpointArgs),
    /// Run a hook with the user's bundle in its state (peapod's own hooks call this)
    #[command(name = "hook-state", hide = true)]
    HookState(HookStateArgs),
    /// Run and manage Kubernetes pods on this node
    #[command(subcommand)]
    Pod(PodCommand),
    /// Manage the local image store
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run a pod for every manifest in a folder, as the kubelet runs static pods
    Static(Box<StaticArgs>),
}

#[derive(Args, Debug)]
pub struct StaticArgs {
    /// Folder of pod manifests (default /etc/kubernetes/manifests)
    #[arg(long)]
    pub manifest_dir: Option<PathBuf>,
    /// YAML file with manifestDir, nodeName, rescanSeconds, network, security, registry, image GC thresholds (flags win)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Node name, appended to pod names (default: the host name, lower-cased)
    #[arg(long)]
    pub node_name: Option<String>,
    /// Seconds between full reads of the folder (default 20)
    #[arg(long)]
    pub rescan_seconds: Option<u64>,
    /// Remove unused images once disk use reaches this percentage (kubelet imageGCHighThresholdPercent, default 85; 100 turns it off)
    #[arg(long = "image-gc-high-threshold", env = "PEAPOD_IMAGE_GC_HIGH")]
    pub image_gc_high_threshold: Option<u8>,
    /// ... down to this percentage (kubelet imageGCLowThresholdPercent, default 80)
    #[arg(long = "image-gc-low-threshold", env = "PEAPOD_IMAGE_GC_LOW")]
    pub image_gc_low_threshold: Option<u8>,
    #[command(flatten)]
    pub pods: PodSettingsArgs,
}

/// How pods are run: shared by `pod run` and `static`.
#[derive(Args, Debug, Clone)]
pub struct PodSettingsArgs {
    /// First restart back-off (Kubernetes: 10s); doubles up to 5 min
    #[arg(long, env = "PEAPOD_BACKOFF_BASE", value_parser = duration)]
    pub backoff_base: Option<std::time::Duration>,
    /// Cgroup parent of the pod's cgroups, in every hierarchy (default peapod)
    #[arg(long, env = "PEAPOD_CGROUP_PREFIX", value_parser = cgroup_prefix)]
    pub cgroup_prefix: Option<String>,
    /// Who makes pods' cgroups: cgroupfs (default) or systemd, slices and scopes (the kubelet's cgroupDriver)
    #[arg(long, env = "PEAPOD_CGROUP_DRIVER")]
    pub cgroup_driver: Option<crate::pod::settings::CgroupDriver>,
    /// A container's log is rotated at this size (the kubelet's containerLogMaxSize; default 10Mi)
    #[arg(long, env = "PEAPOD_CONTAINER_LOG_MAX_SIZE", value_parser = crate::pod::settings::parse_size)]
    pub container_log_max_size: Option<u64>,
    /// Log files kept of a container's run (the kubelet's containerLogMaxFiles; default 5)
    #[arg(long, env = "PEAPOD_CONTAINER_LOG_MAX_FILES", value_parser = crate::pod::settings::parse_max_files)]
    pub container_log_max_files: Option<u32>,
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    /// How pods' images are pulled (the same flags as `image pull`).
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The node's security settings, as the kubelet's (config file keys of the
/// same names under `security:`).
#[derive(Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// Folder of Localhost seccomp profiles (the kubelet's <root-dir>/seccomp; default <root>/seccomp)
    #[arg(long, env = "PEAPOD_SECCOMP_PROFILE_ROOT")]
    pub seccomp_profile_root: Option<PathBuf>,
    /// RuntimeDefault seccomp for pods and containers that set no profile (the kubelet's seccompDefault)
    #[arg(long, env = "PEAPOD_SECCOMP_DEFAULT", num_args = 0..=1, default_missing_value = "true")]
    pub seccomp_default: Option<bool>,
    /// Unsafe sysctls pods may set, comma-separated; `net.core.*` allows a prefix (the kubelet's allowedUnsafeSysctls)
    #[arg(long, env = "PEAPOD_ALLOWED_UNSAFE_SYSCTLS", value_delimiter = ',')]
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
}

/// The pods' network: CNI's folders and the node's DNS (config file keys of
/// the same names under `network:`; see contrib/cni/README.md).
#[derive(Args, Debug, Clone, Default)]
pub struct NetworkArgs {
    /// CNI network config folder; its first file is the pods' network (default /etc/cni/net.d)
    #[arg(long, env = "PEAPOD_CNI_CONF_DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI plugin folders, searched in order (default /opt/cni/bin:/usr/lib/cni)
    #[arg(
        long = "cni-bin-dir",
        env = "PEAPOD_CNI_BIN_DIRS",
        value_delimiter = ':'
    )]
    pub cni_bin_dirs: Option<Vec<PathBuf>>,
    /// Where the results of CNI ADD are kept for DEL (default /var/lib/peapod/cni)
    #[arg(long, env = "PEAPOD_CNI_CACHE_DIR")]
    pub cni_cache_dir: Option<PathBuf>,
    /// Seconds a CNI plugin may take (default 60)
    #[arg(long, env = "PEAPOD_CNI_TIMEOUT_SECONDS")]
    pub cni_timeout_seconds: Option<u64>,
    /// Where pods' network namespaces are pinned (default <root>/netns)
    #[arg(long, env = "PEAPOD_NETNS_DIR")]
    pub netns_dir: Option<PathBuf>,
    /// Cluster DNS server(s) for dnsPolicy ClusterFirst, comma-separated (default none: the node's resolv.conf)
    #[arg(long, env = "PEAPOD_CLUSTER_DNS", value_delimiter = ',')]
    pub cluster_dns: Option<Vec<String>>,
    /// Cluster domain (default cluster.local)
    #[arg(long, env = "PEAPOD_CLUSTER_DOMAIN")]
    pub cluster_domain: Option<String>,
    /// The node's resolver file for dnsPolicy Default ("" for none; default /etc/resolv.conf)
    #[arg(long, env = "PEAPOD_RESOLV_CONF")]
    pub resolv_conf: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct StoreArg {
    /// Image store folder
    #[arg(long, global = true, env = "PEAPOD_IMAGE_STORE", default_value = crate::image::DEFAULT_STORE)]
    pub image_store: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum PodCommand {
    /// Run a pod from a manifest (v1/Pod YAML or JSON)
    Run(Box<PodRunArgs>),
    /// List pods
    Ps,
    /// Show a pod's status as a Kubernetes Pod object
    Inspect(PodInspectArgs),
    /// Show a pod, its containers, conditions and events, as kubectl describe does
    Describe(PodNameArg),
    /// Print a container's logs
    Logs(PodLogsArgs),
    /// Run a command in a container of a pod
    Exec(PodExecArgs),
    /// Stop a pod: SIGTERM, then SIGKILL after its grace period
    Stop(PodNameArg),
    /// Remove a stopped pod and everything it holds
    Rm(PodRmArgs),
    /// Give a running pod whose supervisor died a new supervisor
    Adopt(PodAdoptArgs),
    /// The pod supervisor (started by `pod run`, not by people)
    #[command(hide = true)]
    Supervise(SuperviseArgs),
}

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    /// The pod's folder (its settings are in settings.json there)
    pub dir: PathBuf,
    #[arg(long)]
    pub ready_fd: Option<i32>,
    /// Take over a pod whose supervisor died, instead of starting it
    #[arg(long)]
    pub adopt: bool,
}

#[derive(Args, Debug)]
pub struct PodAdoptArgs {
    /// NAME, NAMESPACE/NAME or the pod's uid
    pub name: String,
    /// First restart back-off (Kubernetes: 10s); doubles up to 5 min
    #[arg(long, env = "PEAPOD_BACKOFF_BASE", value_parser = duration)]
    pub backoff_base: Option<std::time::Duration>,
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Args, Debug)]
pub struct PodRunArgs {
    /// The manifest file
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Return once the pod has started
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub settings: PodSettingsArgs,
}

fn cgroup_prefix(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\0'));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "invalid cgroup prefix {text:?}: a relative path without . or .."
        ))
    }
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    crate::oci::events::parse_interval(text)
}

/// A duration that may be zero (`0`, `0s`).
fn duration_or_zero(text: &str) -> Result<std::time::Duration, String> {
    match text.trim_end_matches(|c: char| c.is_ascii_alphabetic()) {
        "0" => Ok(std::time::Duration::ZERO),
        _ => duration(text),
    }
}

#[derive(Args, Debug)]
pub struct PodNameArg {
    /// NAME, NAMESPACE/NAME or the pod's uid
    pub name: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
}

#[derive(Args, Debug)]
pub struct PodInspectArgs {
    pub name: String,
    #[arg(short, long, value_enum, default_value = "yaml")]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct PodLogsArgs {
    pub name: String,
    /// Container (default: the first app container)
    #[arg(short, long)]
    pub container: Option<String>,
    /// Keep printing as the container writes
    #[arg(short, long)]
    pub follow: bool,
    /// The previous run of the container
    #[arg(short, long)]
    pub previous: bool,
    /// Only the last N lines (-1: all)
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// Only lines newer than this (5s, 2m, 3h)
    #[arg(long, value_parser = since)]
    pub since: Option<std::time::Duration>,
    /// Each line with its time (RFC 3339)
    #[arg(long)]
    pub timestamps: bool,
    /// At most this many bytes
    #[arg(long)]
    pub limit_bytes: Option<u64>,
}

/// A relative time as kubectl logs --since takes it: a number and s, m or h.
fn since(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: a number and s, m or h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("invalid duration {text:?}: a number and s, m or h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Args, Debug)]
pub struct PodExecArgs {
    pub name: String,
    /// Container (default: the first app container)
    #[arg(short, long)]
    pub container: Option<String>,
    /// Keep stdin open (accepted; stdin is passed through)
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal
    #[arg(short, long)]
    pub tty: bool,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PodRmArgs {
    pub name: String,
    /// Stop the pod first if it still runs
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an OCI image archive (tar) or OCI layout folder
    Import(ImageImportArgs),
    /// Pull images from a registry (busybox means docker.io/library/busybox:latest)
    Pull(ImagePullArgs),
    /// List images: name, id, digest, size and last use
    Ls(StoreArg),
    /// Remove an image
    Rm(ImageRmArgs),
    /// Remove every image no container uses (the pause image is kept)
    Prune(ImagePruneArgs),
    /// Remove least recently used images while the store's disk is above the high threshold
    Gc(ImageGcArgs),
}

#[derive(Args, Debug)]
pub struct ImageImportArgs {
    pub source: PathBuf,
    /// Name for the image (default: from the archive's annotations)
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Args, Debug)]
pub struct ImageRmArgs {
    pub reference: String,
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Args, Debug)]
pub struct ImagePullArgs {
    /// Image references: NAME[:TAG][@DIGEST]
    #[arg(required = true)]
    pub references: Vec<String>,
    /// Write JSON lines (progress events and one result per image) for a parent process
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Args, Debug)]
pub struct ImagePruneArgs {
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Args, Debug)]
pub struct ImageGcArgs {
    /// Collect when disk use reaches this percentage (kubelet imageGCHighThresholdPercent, default 85)
    #[arg(long, env = "PEAPOD_IMAGE_GC_HIGH")]
    pub high_threshold: Option<u8>,
    /// Collect down to this percentage (kubelet imageGCLowThresholdPercent, default 80)
    #[arg(long, env = "PEAPOD_IMAGE_GC_LOW")]
    pub low_threshold: Option<u8>,
    /// Never collect an image used more recently than this (kubelet imageMinimumGCAge, default 2m)
    #[arg(long, env = "PEAPOD_IMAGE_GC_MINIMUM_AGE", value_parser = duration_or_zero)]
    pub minimum_age: Option<std::time::Duration>,
    /// YAML file with registry and image settings (see `image pull --help`)
    #[arg(long, env = "PEAPOD_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArg,
}

/// How this node reaches registries: flags, then `PEAPOD_*`, then the YAML file.
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Registry (host[:port]) that may be reached over plain HTTP; repeat or comma-separate
    #[arg(
        long = "insecure-registry",
        env = "PEAPOD_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// Folder of <registry>/hosts.toml: mirrors and endpoints, as containerd's (default /etc/peapod/certs.d)
    #[arg(long, env = "PEAPOD_REGISTRY_HOSTS_DIR")]
    pub registry_hosts_dir: Option<PathBuf>,
    /// Folder of <registry>/*.crt: CAs trusted for that registry (default /etc/peapod/certs.d)
    #[arg(long, env = "PEAPOD_REGISTRY_CA_DIR")]
    pub registry_ca_dir: Option<PathBuf>,
    /// Docker-style config.json with credentials (default: /var/lib/kubelet/config.json, then ~/.docker/config.json)
    #[arg(long, env = "PEAPOD_REGISTRY_CREDENTIALS")]
    pub registry_credentials: Option<PathBuf>,
    /// YAML file with insecureRegistries, hostsDir, caDir, credentialsFile, imageStore (flags win)
    #[arg(long, env = "PEAPOD_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct IdArg {
    pub id: String,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Bundle folder (holds config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the container init's PID to
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to, for terminal containers
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Pass this many extra file descriptors (from 3 on) to the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Do not use pivot_root (for ramfs roots)
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long)]
    pub no_new_keyring: bool,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Return once started; do not wait
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (for inspection)
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal every process in the container's cgroup
    #[arg(short, long)]
    pub all: bool,
    pub id: String,
    /// Signal name or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill a running container first; a missing container is not an error
    #[arg(short, long)]
    pub force: bool,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// process.json describing the process (instead of a command)
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Return once started; do not wait
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's PID to
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Environment variable KEY=VALUE (repeatable)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// UID[:GID] to run as
    #[arg(short, long, value_parser = parse_user)]
    pub user: Option<(u32, Option<u32>)>,
    /// Additional group id (repeatable)
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// Add a capability (repeatable)
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privileges for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass this many extra file descriptors (from 3 on)
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Allow exec in a paused container
    #[arg(long)]
    pub ignore_paused: bool,
    /// Sub-cgroup of the container's cgroup to run in
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Accepted for runc compatibility (AppArmor profile)
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    /// Accepted for runc compatibility (SELinux label)
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    pub id: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn parse_user(text: &str) -> Result<(u32, Option<u32>), String> {
    let bad = || format!("invalid user {text:?}: expected UID or UID:GID (numbers)");
    match text.split_once(':') {
        Some((u, g)) => Ok((
            u.parse().map_err(|_| bad())?,
            Some(g.parse().map_err(|_| bad())?),
        )),
        None => Ok((text.parse().map_err(|_| bad())?, None)),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: Format,
    pub id: String,
    /// Arguments for the host's ps (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: Format,
    /// Print only the container ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// Bundle folder to write config.json to
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Print one stats event and exit
    #[arg(long)]
    pub stats: bool,
    /// Time between stats events
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// Folder for CRIU's image files
    #[arg(long, default_value = "checkpoint")]
    pub image_path: PathBuf,
    /// Folder for CRIU's log and work files (default: the image folder)
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// Folder of a previous pre-dump (not supported)
    #[arg(long)]
    pub parent_path: Option<PathBuf>,
    /// Leave the processes running after the checkpoint
    #[arg(long)]
    pub leave_running: bool,
    /// Allow open TCP connections
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external Unix sockets
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow a shell job (a terminal)
    #[arg(long)]
    pub shell_job: bool,
    /// Handle file locks
    #[arg(long)]
    pub file_locks: bool,
    /// Dump memory only, leaving the container running (not supported)
    #[arg(long)]
    pub pre_dump: bool,
    /// CRIU's cgroup mode: soft, full, strict or ignore
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct HookStateArgs {
    /// The bundle folder to put into the state
    #[arg(long)]
    pub bundle: PathBuf,
    /// The hook's path, then its argv (argv[0] first)
    #[arg(last = true, required = true)]
    pub hook: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// linux.resources JSON file, or - for stdin
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix; -1 for unlimited)
    #[arg(short, long, value_parser = size, allow_hyphen_values = true)]
    pub memory: Option<i64>,
    /// Memory soft limit
    #[arg(long, value_parser = size, allow_hyphen_values = true)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit (-1 for unlimited)
    #[arg(long, value_parser = size, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long, alias = "cpu-share")]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds per period
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU real-time period in microseconds
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU real-time runtime in microseconds per real-time period
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to run on (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000)
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

fn size(text: &str) -> Result<i64, String> {
    crate::oci::update::parse_size(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap()
    }

    #[test]
    fn containerd_shim_create_line_parses() {
        let cli = parse(&[
            "peapod",
            "--root",
            "/run/containerd/runc/default",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "c1",
        ]);
        assert_eq!(
            cli.global.root,
            PathBuf::from("/run/containerd/runc/default")
        );
        assert_eq!(cli.global.log_format, LogFormat::Json);
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.id, "c1");
        assert_eq!(c.bundle, PathBuf::from("/b"));
    }

    #[test]
    fn exec_takes_the_command_after_the_id() {
        let cli = parse(&[
            "peapod",
            "exec",
            "-t",
            "-e",
            "A=1",
            "c1",
            "sh",
            "-c",
            "echo -n x",
        ]);
        let Command::Exec(e) = cli.command else {
            panic!("not exec")
        };
        assert!(e.tty);
        assert_eq!(e.id, "c1");
        assert_eq!(e.command, vec!["sh", "-c", "echo -n x"]);
    }

    #[test]
    fn kill_defaults_to_sigterm_and_user_parses() {
        let Command::Kill(k) = parse(&["peapod", "kill", "c1"]).command else {
            panic!()
        };
        assert_eq!(k.signal, "SIGTERM");
        assert_eq!(parse_user("1000:100"), Ok((1000, Some(100))));
        assert_eq!(parse_user("7"), Ok((7, None)));
        assert!(parse_user("root").is_err());
    }

    #[test]
    fn update_sizes_and_global_flags_after_verb() {
        let cli = parse(&[
            "peapod", "update", "--memory", "64m", "c1", "--root", "/tmp/r",
        ]);
        let Command::Update(u) = cli.command else {
            panic!()
        };
        assert_eq!(u.memory, Some(64 << 20));
        assert_eq!(cli.global.root, PathBuf::from("/tmp/r"));
    }
}
