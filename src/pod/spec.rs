//! OCI runtime specs for a pod's sandbox and its members, built from the model.
//!
//! The sandbox owns the pod's net, ipc and uts namespaces; every member joins
//! them by path and gets its own pid (unless shareProcessNamespace) and mount
//! namespace and its own cgroup under the pod's cgroup. A namespace the pod
//! shares with the host (hostNetwork, hostPID, hostIPC) is in no spec: both
//! stay in the host's (`pod_namespaces`).

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceType, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResources, Mount, MountBuilder, RootBuilder,
    Spec, UserBuilder,
};
use oci_spec::OciSpecError;

use super::folder::PodFolder;
use super::model::{Container, Pod, VolumeSource};
use super::qos;
use crate::image::ImageConfig;
use crate::oci::spec::{empty_capabilities, empty_linux, empty_process, empty_spec, every_device};

/// The runtime spec version the pod's configs declare.
const OCI_VERSION: &str = "1.0.2";

/// The capabilities a container gets by default (containerd's and runc's set).
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("container {container}: no command: neither the image nor the manifest gives one")]
    NoCommand { container: String },
    #[error("container {container}: user {user:?} not found in the image's /etc/passwd")]
    UnknownUser { container: String, user: String },
    #[error("container {container}: volumeMounts: no volume {volume:?}")]
    UnknownVolume { container: String, volume: String },
    #[error("container {container} has runAsNonRoot and {why}")]
    NonRoot { container: String, why: String },
    #[error("container {container}: capability {name:?} has no name in the OCI runtime spec")]
    UnknownCapability { container: String, name: String },
    /// oci_spec's builders refused a value (kept as text: its error is not comparable).
    #[error("OCI spec: {0}")]
    Build(String),
    #[error("container {container}: {resource}: this node has no huge pages of that size")]
    HugePageSize { container: String, resource: String },
}

impl From<OciSpecError> for SpecError {
    fn from(e: OciSpecError) -> Self {
        SpecError::Build(e.to_string())
    }
}

/// The host's device nodes, for a privileged container (as containerd gives
/// them): every character and block device under /dev, but not those of
/// the container's own /dev/pts, /dev/shm and /dev/mqueue, nor the console.
fn host_devices() -> Result<Vec<LinuxDevice>, SpecError> {
    let mut found = vec![];
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = meta.file_type();
            let name = entry.file_name();
            if kind.is_dir() {
                let skip = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
                if !(dir == Path::new("/dev") && skip.iter().any(|s| name == *s)) {
                    dirs.push(path);
                }
                continue;
            }
            let typ = if kind.is_char_device() {
                LinuxDeviceType::C
            } else if kind.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            if path == Path::new("/dev/console") {
                continue;
            }
            let rdev = meta.rdev();
            found.push(
                LinuxDeviceBuilder::default()
                    .path(path)
                    .typ(typ)
                    // Both are 32-bit numbers in the kernel's dev_t.
                    .major(nix::sys::stat::major(rdev) as i64)
                    .minor(nix::sys::stat::minor(rdev) as i64)
                    .file_mode(meta.mode() & 0o777)
                    .uid(meta.uid())
                    .gid(meta.gid())
                    .build()?,
            );
        }
    }
    found.sort_by(|a, b| a.path().as_os_str().cmp(b.path().as_os_str()));
    Ok(found)
}

fn mount(
    destination: impl Into<PathBuf>,
    typ: &str,
    source: impl Into<PathBuf>,
    options: &[&str],
) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(strings(options))
        .build()?)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn base_mounts(paths: &PodFolder, privileged: bool) -> Result<Vec<Mount>, SpecError> {
    // Privileged containers get a writable /sys, as with containerd.
    let sys_options: &[&str] = if privileged {
        &["nosuid", "noexec", "nodev"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount("/sys", "sysfs", "sysfs", sys_options)?,
        mount(
            "/dev/shm",
            "bind",
            paths.shm(),
            &["rbind", "nosuid", "nodev", "noexec"],
        )?,
    ])
}

fn pod_file_mounts(paths: &PodFolder) -> Result<Vec<Mount>, SpecError> {
    [
        ("/etc/hosts", paths.hosts()),
        ("/etc/hostname", paths.hostname()),
        ("/etc/resolv.conf", paths.resolv_conf()),
    ]
    .into_iter()
    .map(|(dest, src)| mount(dest, "bind", src, &["rbind", "rprivate"]))
    .collect()
}

fn namespace(typ: LinuxNamespaceType, path: Option<String>) -> Result<LinuxNamespace, SpecError> {
    let builder = LinuxNamespaceBuilder::default().typ(typ);
    Ok(match path {
        Some(path) => builder.path(path),
        None => builder,
    }
    .build()?)
}

/// The same set as bounding, effective and permitted (none inheritable or ambient).
fn capability_sets(set: Capabilities) -> LinuxCapabilities {
    let mut caps = empty_capabilities();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps
}

/// The CRI annotations of a sandbox (no container name) or of a member.
fn annotations(pod: &Pod, container: Option<&str>) -> HashMap<String, String> {
    let kind = if container.is_some() {
        "container"
    } else {
        "sandbox"
    };
    let mut map = HashMap::from([
        (
            "io.kubernetes.cri.container-type".to_string(),
            kind.to_string(),
        ),
        ("io.kubernetes.pod.name".to_string(), pod.name.clone()),
        (
            "io.kubernetes.pod.namespace".to_string(),
            pod.namespace.clone(),
        ),
        ("io.kubernetes.pod.uid".to_string(), pod.uid.clone()),
    ]);
    if let Some(name) = container {
        map.insert("io.kubernetes.cri.container-name".into(), name.into());
    }
    map
}

/// Which namespaces the sandbox (`sandbox_pid` None) or a member has, as the
/// kubelet and containerd apply the host ones: hostNetwork shares the host's
/// network and UTS namespaces, hostPID its PID namespace (the sandbox's too),
/// hostIPC its IPC namespace. The sandbox joins the pinned network namespace
/// `netns` when the pod has one made for CNI.
fn pod_namespaces(
    pod: &Pod,
    paths: &PodFolder,
    sandbox_pid: Option<i32>,
    netns: Option<&Path>,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let joined = |t: &str| sandbox_pid.map(|pid| format!("/proc/{pid}/ns/{t}"));
    let pid = match sandbox_pid {
        Some(_) if !pod.share_process_namespace => None,
        _ => joined("pid"),
    };
    let network = match sandbox_pid {
        None => netns.map(|p| p.display().to_string()),
        Some(_) => joined("net"),
    };
    let mut own = vec![
        (LinuxNamespaceType::Pid, !pod.host.pid, pid),
        (LinuxNamespaceType::Mount, true, None),
        (LinuxNamespaceType::Network, !pod.host.network, network),
        (LinuxNamespaceType::Ipc, !pod.host.ipc, joined("ipc")),
        (LinuxNamespaceType::Uts, !pod.host.network, joined("uts")),
    ];
    if sandbox_pid.is_none() {
        // The sandbox's configs have always listed its mount namespace last.
        let mount = own.remove(1);
        own.push(mount);
    }
    if !pod.host.users {
        // hostUsers: false: the pod's pinned user namespace, joined first so
        // that the namespaces made after it are its own.
        let path = super::security::userns::pin_path(paths);
        own.insert(
            0,
            (
                LinuxNamespaceType::User,
                true,
                Some(path.display().to_string()),
            ),
        );
    }
    own.into_iter()
        .filter(|(_, wanted, _)| *wanted)
        .map(|(typ, _, path)| namespace(typ, path))
        .collect()
}

/// A hostIPC pod uses the host's /dev/shm, as containerd gives it.
fn share_host_shm(pod: &Pod, mounts: &mut [Mount]) {
    if pod.host.ipc {
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/dev/shm") {
                m.set_source(Some("/dev/shm".into()));
            }
        }
    }
}

/// The pause container: holds the namespaces, runs nothing but `/pause`.
pub fn sandbox_spec(
    pod: &Pod,
    paths: &PodFolder,
    rootfs: &Path,
    cgroup: &str,
    netns: Option<&Path>,
    oom_score_adj: i32,
) -> Result<Spec, SpecError> {
    let mut process = empty_process();
    process.set_terminal(Some(false));
    process.set_user(UserBuilder::default().uid(65535u32).gid(65535u32).build()?);
    process.set_args(Some(vec!["/pause".into()]));
    process.set_env(Some(vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()]));
    process.set_cwd("/".into());
    process.set_capabilities(Some(capability_sets(Capabilities::new())));
    process.set_no_new_privileges(Some(true));
    process.set_oom_score_adj(Some(oom_score_adj));

    let mut resources = LinuxResources::default();
    // Deny every device; the runtime then allows the default ones (null, zero, tty…).
    resources.set_devices(Some(vec![every_device(false)]));
    let mut linux = empty_linux();
    linux.set_cgroups_path(Some(cgroup.into()));
    linux.set_namespaces(Some(pod_namespaces(pod, paths, None, netns)?));
    linux.set_masked_paths(Some(strings(&MASKED_PATHS)));
    linux.set_readonly_paths(Some(strings(&READONLY_PATHS)));
    linux.set_resources(Some(resources));
    // The pod's sysctls, in the namespaces every container joins (checked
    // against the node at launch: security::sysctls).
    if !pod.security.sysctls.is_empty() {
        let sysctls = pod.security.sysctls.iter();
        linux.set_sysctl(Some(
            sysctls.map(|s| (s.name.clone(), s.value.clone())).collect(),
        ));
    }

    let mut spec = empty_spec(OCI_VERSION);
    spec.set_root(Some(
        RootBuilder::default().path(rootfs).readonly(true).build()?,
    ));
    // Never with the host's UTS namespace: that would rename the host.
    if !pod.host.network {
        spec.set_hostname(Some(pod.hostname.clone()));
    }
    let mut mounts = base_mounts(paths, false)?;
    share_host_shm(pod, &mut mounts);
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounts));
    spec.set_annotations(Some(annotations(pod, None)));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// On a cgroup v2 host, the Kubernetes default there (containerd's, as runc
/// mounts it): a private cgroup namespace, so the container sees its own
/// cgroup as the root, and cgroup2 at /sys/fs/cgroup, read-only unless
/// privileged, so it cannot raise its own limits.
pub fn private_cgroup(spec: &mut Spec, privileged: bool) -> Result<(), SpecError> {
    let mut options = vec!["nosuid", "noexec", "nodev", "relatime"];
    if !privileged {
        options.push("ro");
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|m| m.destination() != Path::new("/sys/fs/cgroup"));
    // After /sys, which it lies in.
    let at = mounts
        .iter()
        .position(|m| m.destination() == Path::new("/sys"))
        .map_or(mounts.len(), |i| i + 1);
    mounts.insert(at, mount("/sys/fs/cgroup", "cgroup", "cgroup", &options)?);
    spec.set_mounts(Some(mounts));
    if let Some(linux) = spec.linux_mut() {
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        if !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
        {
            namespaces.push(namespace(LinuxNamespaceType::Cgroup, None)?);
        }
        linux.set_namespaces(Some(namespaces));
    }
    Ok(())
}

/// Kubernetes' rule: `command` replaces the Entrypoint (and drops Cmd), `args`
/// replaces Cmd.
pub fn process_args(c: &Container, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let args = match (c.command.is_empty(), c.args.is_empty()) {
        (true, true) => [image.entrypoint.clone(), image.cmd.clone()].concat(),
        (false, true) => c.command.clone(),
        (true, false) => [image.entrypoint.clone(), c.args.clone()].concat(),
        (false, false) => [c.command.clone(), c.args.clone()].concat(),
    };
    if args.is_empty() {
        return Err(SpecError::NoCommand {
            container: c.name.clone(),
        });
    }
    Ok(args)
}

/// Image env first, the manifest's env over it (same name: the manifest wins).
pub fn process_env(c: &Container, image: &ImageConfig, pod: &Pod) -> Vec<String> {
    let mut env: Vec<String> = image.env.clone();
    let mut set = |name: &str, value: &str| {
        env.retain(|e| e.split('=').next() != Some(name));
        env.push(format!("{name}={value}"));
    };
    if !image.env.iter().any(|e| e.starts_with("PATH=")) {
        set(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    set("HOSTNAME", &pod.hostname);
    for var in &c.env {
        set(&var.name, &var.value);
    }
    env
}

/// Resolves the user: runAsUser/runAsGroup win; else the image's USER, by number
/// or by name through the rootfs's /etc/passwd (and /etc/group).
pub fn process_user(
    c: &Container,
    image: &ImageConfig,
    rootfs: &Path,
) -> Result<(u32, u32), SpecError> {
    if let (Some(uid), Some(gid)) = (c.security.run_as_user, c.security.run_as_group) {
        return Ok((uid, gid));
    }
    let from_image = match image.user.as_deref().filter(|u| !u.is_empty()) {
        None => (0, None),
        Some(spec) => {
            let (user, group) = match spec.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (spec, None),
            };
            let (uid, primary) = match user.parse::<u32>() {
                Ok(uid) => (uid, lookup_passwd(rootfs, |f| f[2] == user).map(|f| f.1)),
                Err(_) => {
                    let (uid, gid) = lookup_passwd(rootfs, |f| f[0] == user).ok_or_else(|| {
                        SpecError::UnknownUser {
                            container: c.name.clone(),
                            user: user.to_string(),
                        }
                    })?;
                    (uid, Some(gid))
                }
            };
            let gid = match group {
                Some(g) => Some(
                    g.parse::<u32>()
                        .ok()
                        .or_else(|| lookup_group(rootfs, g))
                        .ok_or_else(|| SpecError::UnknownUser {
                            container: c.name.clone(),
                            user: spec.to_string(),
                        })?,
                ),
                None => primary,
            };
            (uid, gid)
        }
    };
    let uid = c.security.run_as_user.unwrap_or(from_image.0);
    // containerd: a runAsUser takes its group from the image's /etc/passwd
    // (else 0), not from the image's USER.
    let primary = match c.security.run_as_user {
        Some(uid) => lookup_passwd(rootfs, |f| f[2] == uid.to_string()).map(|f| f.1),
        None => from_image.1,
    };
    let gid = c.security.run_as_group.or(primary).unwrap_or(0);
    verify_non_root(c, image)?;
    Ok((uid, gid))
}

/// The kubelet's check of `runAsNonRoot` against the image's user, when no
/// `runAsUser` is given (a `runAsUser: 0` is refused at admission): an image
/// without a user runs as root, and a user name cannot be verified.
fn verify_non_root(c: &Container, image: &ImageConfig) -> Result<(), SpecError> {
    if c.security.run_as_non_root != Some(true) || c.security.run_as_user.is_some() {
        return Ok(());
    }
    let user = image.user.as_deref().unwrap_or_default();
    let user = user.split_once(':').map_or(user, |(u, _)| u);
    let why = match user.parse::<u32>() {
        _ if user.is_empty() => "image will run as root".to_string(),
        Ok(0) => "image will run as root".to_string(),
        Ok(_) => return Ok(()),
        Err(_) => format!("image has non-numeric user ({user}), cannot verify user is non-root"),
    };
    Err(SpecError::NonRoot {
        container: c.name.clone(),
        why,
    })
}

fn lookup_passwd(rootfs: &Path, pick: impl Fn(&[&str]) -> bool) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 4 && pick(&fields))
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

fn lookup_group(rootfs: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(rootfs.join("etc/group")).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 3 && fields[0] == name)
            .then(|| fields[2].parse().ok())
            .flatten()
    })
}

/// Default set, minus drop (ALL drops everything), plus add; all for privileged.
pub fn capabilities(c: &Container) -> Result<Capabilities, SpecError> {
    // Everything this host can grant: a capability outside our bounding set
    // (CAP_SYS_RESOURCE on some hosts) would make the container fail to start.
    let host = || -> Result<Capabilities, SpecError> {
        let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::all());
        bounding
            .into_iter()
            .map(|cap| oci_capability(c, &cap.to_string()))
            .collect()
    };
    if c.security.privileged {
        return host();
    }
    let mut set: Capabilities = DEFAULT_CAPS.into_iter().collect();
    // containerd's order: add ALL, drop ALL, then the single adds, then the
    // single drops (a capability both added and dropped is dropped).
    let (adds, drops) = (&c.security.caps_add, &c.security.caps_drop);
    if adds.iter().any(|a| a == "ALL") {
        set = host()?;
    }
    if drops.iter().any(|d| d == "ALL") {
        set.clear();
    }
    for add in adds.iter().filter(|a| *a != "ALL") {
        set.insert(oci_capability(c, add)?);
    }
    for drop in drops.iter().filter(|d| *d != "ALL") {
        set.remove(&oci_capability(c, drop)?);
    }
    Ok(set)
}

/// `CAP_NET_ADMIN` as oci_spec names it (`NET_ADMIN`, in its `FromStr`).
fn oci_capability(c: &Container, name: &str) -> Result<Capability, SpecError> {
    name.strip_prefix("CAP_")
        .unwrap_or(name)
        .parse()
        .map_err(|_| SpecError::UnknownCapability {
            container: c.name.clone(),
            name: name.to_string(),
        })
}

/// The container's resources as the kubelet asks for them: shares from
/// its cpu request (the minimum, 2, without one), cfs quota from its cpu
/// limit, its memory limit.
fn resources(c: &Container) -> Result<LinuxResources, SpecError> {
    let mut r = LinuxResources::default();
    // Privileged containers may use every device, others only the runtime's defaults.
    r.set_devices(Some(vec![every_device(c.security.privileged)]));
    if let Some(bytes) = c.resources.memory_limit_bytes {
        r.set_memory(Some(LinuxMemoryBuilder::default().limit(bytes).build()?));
    }
    let mut cpu = LinuxCpu::default();
    if let Some(quota) = qos::cpu_quota(c.resources.cpu_limit_millis) {
        cpu.set_quota(Some(quota));
        cpu.set_period(Some(qos::CPU_PERIOD));
    }
    cpu.set_shares(Some(qos::container_shares(c)));
    r.set_cpu(Some(cpu));
    Ok(r)
}

/// The container's hugetlb limits where the node sets them (`page_sizes`,
/// the host's sizes): every size 0 unless the container asks for it
/// (GetHugepageLimitsFromResources). A size the host lacks is refused.
pub fn set_hugepage_limits(
    spec: &mut Spec,
    c: &Container,
    page_sizes: Option<&[u64]>,
) -> Result<(), SpecError> {
    let Some(sizes) = page_sizes else {
        return Ok(());
    };
    if let Some(size) = c
        .resources
        .hugepage_limits
        .keys()
        .find(|s| !sizes.contains(s))
    {
        return Err(SpecError::HugePageSize {
            container: c.name.clone(),
            resource: format!(
                "hugepages-{}i",
                crate::sys::cgroup::hugepage_size_name(*size).trim_end_matches('B')
            ),
        });
    }
    let limits = qos::hugetlb_limits(&c.resources.hugepage_limits, Some(sizes))
        .into_iter()
        .map(|(page_size, limit)| {
            LinuxHugepageLimitBuilder::default()
                .page_size(page_size)
                .limit(limit as i64)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(resources) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.resources_mut().as_mut())
    {
        resources.set_hugepage_limits(Some(limits));
    }
    Ok(())
}

fn volume_mounts(pod: &Pod, c: &Container, paths: &PodFolder) -> Result<Vec<Mount>, SpecError> {
    let mut mounts = vec![];
    for m in &c.mounts {
        let volume = pod
            .volumes
            .iter()
            .find(|v| v.name == m.volume)
            .ok_or_else(|| SpecError::UnknownVolume {
                container: c.name.clone(),
                volume: m.volume.clone(),
            })?;
        let mut source = match &volume.source {
            VolumeSource::EmptyDir { .. } => paths.volume(&volume.name),
            VolumeSource::HostPath { path, .. } => PathBuf::from(path),
        };
        if let Some(sub) = &m.sub_path {
            source = source.join(sub);
        }
        let mut options = vec!["rbind", "rprivate"];
        if m.read_only {
            options.push("ro");
        }
        mounts.push(mount(&m.mount_path, "bind", source, &options)?);
    }
    Ok(mounts)
}

/// The spec of an init, sidecar or app container of the pod.
#[allow(clippy::too_many_arguments)]
pub fn member_spec(
    pod: &Pod,
    c: &Container,
    image: &ImageConfig,
    paths: &PodFolder,
    rootfs: &Path,
    sandbox_pid: i32,
    cgroup: &str,
    oom_score_adj: i32,
) -> Result<Spec, SpecError> {
    let args = process_args(c, image)?;
    let (uid, gid) = process_user(c, image, rootfs)?;
    let cwd = c
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    // Kubernetes: allowPrivilegeEscalation defaults to true; false sets no_new_privs.
    let no_new_privs =
        c.security.allow_privilege_escalation == Some(false) && !c.security.privileged;
    let gids = super::security::groups::additional_gids(pod, c, uid, gid, rootfs);
    let user = UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(gids);
    let mut process = empty_process();
    process.set_terminal(Some(c.tty));
    process.set_user(user.build()?);
    process.set_args(Some(args));
    process.set_env(Some(process_env(c, image, pod)));
    process.set_cwd(cwd.into());
    process.set_capabilities(Some(capability_sets(capabilities(c)?)));
    process.set_no_new_privileges(Some(no_new_privs));
    process.set_oom_score_adj(Some(oom_score_adj));

    let mut mounts = base_mounts(paths, c.security.privileged)?;
    share_host_shm(pod, &mut mounts);
    mounts.extend(pod_file_mounts(paths)?);
    mounts.extend(volume_mounts(pod, c, paths)?);
    mounts.push(mount(
        &c.termination_message_path,
        "bind",
        paths.termination_log(&c.name),
        &["rbind", "rprivate"],
    )?);

    let mut linux = empty_linux();
    linux.set_cgroups_path(Some(cgroup.into()));
    linux.set_namespaces(Some(pod_namespaces(pod, paths, Some(sandbox_pid), None)?));
    linux.set_resources(Some(resources(c)?));
    if c.security.privileged {
        linux.set_devices(Some(host_devices()?));
    } else if c.security.proc_unmasked {
        // procMount: Unmasked (the pod has its own user namespace): /proc
        // as the kernel shows it, as containerd leaves it.
    } else {
        linux.set_masked_paths(Some(strings(&MASKED_PATHS)));
        linux.set_readonly_paths(Some(strings(&READONLY_PATHS)));
    }

    let mut spec = empty_spec(OCI_VERSION);
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(c.security.read_only_root_filesystem)
            .build()?,
    ));
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounts));
    spec.set_annotations(Some(annotations(pod, Some(&c.name))));
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::model::*;
    use std::time::Duration;

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: "busybox".into(),
            command: vec![],
            args: vec![],
            env: vec![],
            working_dir: None,
            security: Security::default(),
            resources: Resources::default(),
            mounts: vec![],
            restart_policy: None,
            tty: false,
            stdin: false,
            termination_message_path: DEFAULT_TERMINATION_MESSAGE_PATH.into(),
            termination_message_from_logs: false,
            image_pull_policy: None,
            ports: vec![],
            health: Default::default(),
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u-1".into(),
            hostname: "web".into(),
            restart_policy: RestartPolicy::Always,
            termination_grace: Duration::from_secs(30),
            share_process_namespace: false,
            init_containers: vec![],
            containers,
            volumes: vec![Volume {
                name: "data".into(),
                source: VolumeSource::EmptyDir {
                    memory: false,
                    size_limit_bytes: None,
                },
            }],
            labels: Default::default(),
            annotations: Default::default(),
            host_aliases: vec![("10.0.0.1".into(), vec!["db".into()])],
            host: HostNamespaces::default(),
            dns: PodDns::default(),
            resources: None,
            active_deadline: None,
            security: Default::default(),
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            working_dir: Some("/srv".into()),
            user: None,
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_follow_kubernetes() {
        let img = image();
        let mut c = container("c");
        assert_eq!(process_args(&c, &img).unwrap(), ["/entry", "serve"]);
        c.args = vec!["x".into()];
        assert_eq!(process_args(&c, &img).unwrap(), ["/entry", "x"]);
        c.command = vec!["sh".into()];
        assert_eq!(process_args(&c, &img).unwrap(), ["sh", "x"]);
        c.args = vec![];
        assert_eq!(process_args(&c, &img).unwrap(), ["sh"]);
        let empty = ImageConfig::default();
        assert_eq!(
            process_args(&container("e"), &empty),
            Err(SpecError::NoCommand {
                container: "e".into()
            })
        );
    }

    #[test]
    fn env_manifest_wins_over_image() {
        let mut c = container("c");
        c.env = vec![EnvVar {
            name: "A".into(),
            value: "manifest".into(),
        }];
        let env = process_env(&c, &image(), &pod(vec![]));
        assert_eq!(env, ["PATH=/bin", "HOSTNAME=web", "A=manifest"]);
    }

    /// A root filesystem with just /etc/passwd and /etc/group.
    fn rootfs_with(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("etc/group"), group).unwrap();
        dir
    }

    #[test]
    fn users_resolve_by_number_and_name() {
        let dir = rootfs_with(
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
            "root:x:0:\nstaff:x:50:\n",
        );
        let mut img = image();
        let c = container("c");
        img.user = Some("app".into());
        assert_eq!(process_user(&c, &img, dir.path()).unwrap(), (1000, 1001));
        img.user = Some("1000:staff".into());
        assert_eq!(process_user(&c, &img, dir.path()).unwrap(), (1000, 50));
        img.user = Some("ghost".into());
        assert!(process_user(&c, &img, dir.path()).is_err());
        let mut c = container("c");
        c.security.run_as_user = Some(7);
        c.security.run_as_group = Some(8);
        assert_eq!(process_user(&c, &img, dir.path()).unwrap(), (7, 8));
        // A runAsUser alone: its group from /etc/passwd, else 0 (not the image's).
        c.security.run_as_group = None;
        img.user = Some("app".into());
        assert_eq!(process_user(&c, &img, dir.path()).unwrap(), (7, 0));
        c.security.run_as_user = Some(1000);
        img.user = Some("0:50".into());
        assert_eq!(process_user(&c, &img, dir.path()).unwrap(), (1000, 1001));
    }

    #[test]
    fn run_as_non_root_is_checked_against_the_image_user() {
        let rootfs = rootfs_with("nobody:x:65534:65534::/:/bin/sh\n", "");
        let mut c = container("c");
        c.security.run_as_non_root = Some(true);
        let image = |user: &str| ImageConfig {
            user: Some(user.to_string()),
            ..Default::default()
        };
        let refused = |c: &Container, user: &str| match process_user(c, &image(user), rootfs.path())
        {
            Err(SpecError::NonRoot { why, .. }) => why,
            other => panic!("{user:?}: {other:?}"),
        };
        assert_eq!(refused(&c, ""), "image will run as root");
        assert_eq!(refused(&c, "0:0"), "image will run as root");
        assert!(refused(&c, "nobody").contains("non-numeric user (nobody)"));
        assert_eq!(
            process_user(&c, &image("65534"), rootfs.path()),
            Ok((65534, 65534))
        );
        // A runAsUser decides, whatever the image says.
        c.security.run_as_user = Some(1000);
        assert_eq!(process_user(&c, &image(""), rootfs.path()), Ok((1000, 0)));
        c.security.run_as_non_root = None;
        c.security.run_as_user = None;
        assert_eq!(process_user(&c, &image(""), rootfs.path()), Ok((0, 0)));
    }

    fn caps(names: &[Capability]) -> Capabilities {
        names.iter().copied().collect()
    }

    #[test]
    fn capabilities_add_drop_privileged() {
        let mut c = container("c");
        assert_eq!(capabilities(&c).unwrap(), caps(&DEFAULT_CAPS));
        c.security.caps_drop = vec!["CAP_NET_RAW".into()];
        c.security.caps_add = vec!["CAP_NET_ADMIN".into()];
        let set = capabilities(&c).unwrap();
        assert!(!set.contains(&Capability::NetRaw));
        assert!(set.contains(&Capability::NetAdmin));
        c.security.caps_drop = vec!["ALL".into()];
        assert_eq!(capabilities(&c).unwrap(), caps(&[Capability::NetAdmin]));
        // Drops win over adds, also over ALL.
        c.security.caps_add = vec!["ALL".into(), "CAP_NET_ADMIN".into()];
        c.security.caps_drop = vec!["CAP_SYS_ADMIN".into(), "CAP_NET_ADMIN".into()];
        let set = capabilities(&c).unwrap();
        assert!(set.len() > DEFAULT_CAPS.len(), "{set:?}");
        assert!(!set.contains(&Capability::SysAdmin));
        assert!(!set.contains(&Capability::NetAdmin));
        c.security.caps_add = vec!["CAP_CHOWN".into()];
        c.security.caps_drop = vec!["CAP_CHOWN".into()];
        assert!(!capabilities(&c).unwrap().contains(&Capability::Chown));
        c.security.privileged = true;
        assert!(capabilities(&c).unwrap().contains(&Capability::SysAdmin));
    }

    #[test]
    fn every_capability_the_host_knows_has_an_oci_name() {
        let c = container("c");
        for cap in caps::all() {
            assert!(oci_capability(&c, &cap.to_string()).is_ok(), "{cap}");
        }
        assert_eq!(
            oci_capability(&c, "CAP_NOPE"),
            Err(SpecError::UnknownCapability {
                container: "c".into(),
                name: "CAP_NOPE".into()
            })
        );
    }

    #[test]
    fn member_joins_the_sandbox_namespaces() {
        let mut c = container("web");
        c.mounts = vec![VolumeMount {
            volume: "data".into(),
            mount_path: "/data".into(),
            read_only: true,
            sub_path: Some("sub".into()),
        }];
        c.resources.cpu_limit_millis = Some(500);
        c.resources.memory_limit_bytes = Some(64 << 20);
        c.security.allow_privilege_escalation = Some(false);
        let p = pod(vec![c.clone()]);
        let paths = PodFolder::new("/run/peapod/pods/u-1".into());
        let spec = member_spec(
            &p,
            &c,
            &image(),
            &paths,
            Path::new("/r"),
            42,
            "/peapod/u-1/web",
            500,
        )
        .unwrap();
        let namespace = |typ, path: Option<&str>| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(typ);
            ns.set_path(path.map(PathBuf::from));
            ns
        };
        let linux = spec.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        assert!(ns.contains(&namespace(
            LinuxNamespaceType::Network,
            Some("/proc/42/ns/net")
        )));
        assert!(ns.contains(&namespace(LinuxNamespaceType::Pid, None)));
        let resources = linux.resources().as_ref().unwrap();
        assert_eq!(resources.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(resources.memory().unwrap().limit(), Some(64 << 20));
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(true));
        assert_eq!(process.cwd(), Path::new("/srv"));
        let mounts = spec.mounts().as_ref().unwrap();
        let data = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/data"))
            .unwrap();
        assert_eq!(
            data.source().as_deref(),
            Some(Path::new("/run/peapod/pods/u-1/volumes/data/sub"))
        );
        assert!(data.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(mounts
            .iter()
            .any(|m| m.destination() == Path::new("/dev/shm")
                && m.source().as_deref() == Some(Path::new("/run/peapod/pods/u-1/shm"))));
        assert!(mounts
            .iter()
            .any(|m| m.destination() == Path::new("/etc/hosts")));

        let mut shared = p.clone();
        shared.share_process_namespace = true;
        let spec = member_spec(
            &shared,
            &c,
            &image(),
            &paths,
            Path::new("/r"),
            42,
            "/x",
            500,
        )
        .unwrap();
        assert!(spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .contains(&namespace(LinuxNamespaceType::Pid, Some("/proc/42/ns/pid"))));
    }

    /// A spec as JSON, with its capability sets sorted (oci_spec keeps them
    /// in a HashSet, whose order is not fixed).
    fn json_of(spec: &Spec) -> serde_json::Value {
        let mut json = serde_json::to_value(spec).unwrap();
        if let Some(sets) = json["process"]["capabilities"].as_object_mut() {
            for set in sets.values_mut() {
                set.as_array_mut()
                    .unwrap()
                    .sort_by_key(|c| c.as_str().unwrap().to_string());
            }
        }
        json
    }

    /// What the sandbox and member configs said when spec.rs built them as
    /// JSON: the files in testdata/ are that code's output for these inputs.
    #[test]
    fn configs_say_what_the_json_built_before_said() {
        let mut c = container("web");
        c.command = vec!["/bin/sh".into()];
        c.args = vec!["-c".into(), "sleep 1".into()];
        c.env = vec![EnvVar {
            name: "A".into(),
            value: "manifest".into(),
        }];
        c.working_dir = Some("/work".into());
        c.mounts = vec![
            VolumeMount {
                volume: "data".into(),
                mount_path: "/data".into(),
                read_only: true,
                sub_path: Some("sub".into()),
            },
            VolumeMount {
                volume: "host".into(),
                mount_path: "/host".into(),
                read_only: false,
                sub_path: None,
            },
        ];
        c.tty = true;
        c.security.run_as_user = Some(1000);
        c.security.run_as_group = Some(2000);
        c.security.supplemental_groups = vec![3000, 3001];
        c.security.caps_add = vec!["CAP_NET_ADMIN".into()];
        c.security.caps_drop = vec!["CAP_NET_RAW".into(), "CAP_MKNOD".into()];
        c.security.read_only_root_filesystem = true;
        c.security.allow_privilege_escalation = Some(false);
        c.resources.cpu_limit_millis = Some(500);
        c.resources.cpu_request_millis = Some(250);
        c.resources.memory_limit_bytes = Some(64 << 20);
        let mut p = pod(vec![c.clone()]);
        p.hostname = "web-host".into();
        p.share_process_namespace = true;
        p.volumes.push(Volume {
            name: "host".into(),
            source: VolumeSource::HostPath {
                path: "/srv/host".into(),
                kind: HostPathType::default(),
            },
        });
        let paths = PodFolder::new("/run/peapod/pods/u-1".into());
        let expected = |text: &str| -> serde_json::Value { serde_json::from_str(text).unwrap() };

        let sandbox = sandbox_spec(
            &p,
            &paths,
            Path::new("/r/pause"),
            "/peapod/u-1/_sandbox",
            None,
            -998,
        )
        .unwrap();
        assert_eq!(
            json_of(&sandbox),
            expected(include_str!("testdata/spec-sandbox.json"))
        );
        let member = member_spec(
            &p,
            &c,
            &image(),
            &paths,
            Path::new("/r/web"),
            42,
            "/peapod/u-1/web",
            500,
        )
        .unwrap();
        assert_eq!(
            json_of(&member),
            expected(include_str!("testdata/spec-member.json"))
        );

        // Privileged: the host's devices and capabilities differ from host to
        // host; the rest is fixed.
        let mut privileged = container("web");
        privileged.security.privileged = true;
        privileged.resources.cpu_request_millis = Some(1);
        p.share_process_namespace = false;
        let only_cmd = ImageConfig {
            cmd: vec!["true".into()],
            ..Default::default()
        };
        let spec = member_spec(
            &p,
            &privileged,
            &only_cmd,
            &paths,
            Path::new("/r/priv"),
            42,
            "/peapod/u-1/priv",
            -997,
        )
        .unwrap();
        let mut json = json_of(&spec);
        let devices = std::mem::replace(&mut json["linux"]["devices"], "elided".into());
        json["process"]["capabilities"] = "elided".into();
        assert_eq!(
            json,
            expected(include_str!("testdata/spec-privileged.json"))
        );
        let null = devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["path"] == "/dev/null")
            .unwrap();
        let mut keys: Vec<_> = null.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["fileMode", "gid", "major", "minor", "path", "type", "uid"]
        );
        assert_eq!(
            (&null["type"], &null["major"], &null["minor"]),
            (&"c".into(), &1.into(), &3.into())
        );
    }

    /// hostNetwork, hostPID and hostIPC leave those namespaces out of both
    /// specs (the host's are kept); the sandbox joins a pinned netns by path.
    #[test]
    fn host_namespaces_are_left_out_and_a_pinned_netns_is_joined() {
        let c = container("web");
        let paths = PodFolder::new("/run/peapod/pods/u-1".into());
        let kinds = |spec: &Spec| -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
            let linux = spec.linux().as_ref().unwrap();
            (linux.namespaces().as_ref().unwrap().iter())
                .map(|n| (n.typ(), n.path().clone()))
                .collect()
        };
        let mut p = pod(vec![c.clone()]);
        let netns = Path::new("/run/peapod/netns/u-1");
        let sandbox = sandbox_spec(&p, &paths, Path::new("/r"), "/x", Some(netns), -998).unwrap();
        assert!(kinds(&sandbox).contains(&(LinuxNamespaceType::Network, Some(netns.into()))));
        assert_eq!(sandbox.hostname().as_deref(), Some("web"));

        p.host = HostNamespaces {
            network: true,
            pid: true,
            ipc: true,
            users: true,
        };
        let sandbox = sandbox_spec(&p, &paths, Path::new("/r"), "/x", None, -998).unwrap();
        assert_eq!(kinds(&sandbox), [(LinuxNamespaceType::Mount, None)]);
        assert_eq!(sandbox.hostname(), &None);
        let member_of = |p: &Pod| {
            let rootfs = Path::new("/r");
            member_spec(p, &c, &image(), &paths, rootfs, 42, "/peapod/u-1/web", 500).unwrap()
        };
        let member = member_of(&p);
        assert_eq!(kinds(&member), [(LinuxNamespaceType::Mount, None)]);
        let shm = (member.mounts().as_ref().unwrap().iter())
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .unwrap();
        assert_eq!(shm.source().as_deref(), Some(Path::new("/dev/shm")));

        p.host = HostNamespaces {
            network: true,
            ..Default::default()
        };
        let member = member_of(&p);
        assert_eq!(
            kinds(&member),
            [
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Ipc, Some("/proc/42/ns/ipc".into())),
            ]
        );
    }

    #[test]
    fn a_private_cgroup_namespace_and_a_read_only_cgroup2_on_v2() {
        let c = container("web");
        let p = pod(vec![c.clone()]);
        let paths = PodFolder::new("/run/peapod/pods/u-1".into());
        let rootfs = Path::new("/r");
        let mut spec = member_spec(&p, &c, &image(), &paths, rootfs, 42, "/x", 0).unwrap();
        private_cgroup(&mut spec, false).unwrap();
        private_cgroup(&mut spec, false).unwrap();
        let mounts = spec.mounts().as_ref().unwrap();
        let at = |dest: &str| {
            mounts
                .iter()
                .position(|m| m.destination() == Path::new(dest))
        };
        let cgroup = at("/sys/fs/cgroup").unwrap();
        assert_eq!(Some(cgroup), at("/sys").map(|i| i + 1), "right after /sys");
        assert_eq!(
            mounts
                .iter()
                .filter(|m| m.destination() == Path::new("/sys/fs/cgroup"))
                .count(),
            1
        );
        assert_eq!(mounts[cgroup].typ().as_deref(), Some("cgroup"));
        assert!(mounts[cgroup]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string()));
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        let cgroup_ns = ns.iter().filter(|n| n.typ() == LinuxNamespaceType::Cgroup);
        assert_eq!(cgroup_ns.count(), 1);
        private_cgroup(&mut spec, true).unwrap();
        let mounts = spec.mounts().as_ref().unwrap();
        let m = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/sys/fs/cgroup"))
            .unwrap();
        assert!(
            !m.options().as_ref().unwrap().contains(&"ro".to_string()),
            "privileged: rw"
        );
    }

    #[test]
    fn an_own_user_namespace_is_joined_first_and_unmasked_proc_has_no_masks() {
        let mut c = container("web");
        let paths = PodFolder::new("/run/peapod/pods/u-1".into());
        let mut p = pod(vec![c.clone()]);
        p.host.users = false;
        let user = (
            LinuxNamespaceType::User,
            Some(PathBuf::from("/run/peapod/pods/u-1/userns")),
        );
        let first = |spec: &Spec| {
            let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
            (ns[0].typ(), ns[0].path().clone())
        };
        let sandbox = sandbox_spec(&p, &paths, Path::new("/r"), "/x", None, 0).unwrap();
        assert_eq!(first(&sandbox), user);
        let member = member_spec(&p, &c, &image(), &paths, Path::new("/r"), 42, "/x", 0).unwrap();
        assert_eq!(first(&member), user);
        let masked = member.linux().as_ref().unwrap().masked_paths().clone();
        assert!(masked.is_some_and(|m| m.contains(&"/proc/keys".to_string())));

        c.security.proc_unmasked = true;
        let member = member_spec(&p, &c, &image(), &paths, Path::new("/r"), 42, "/x", 0).unwrap();
        let linux = member.linux().as_ref().unwrap();
        assert_eq!(linux.masked_paths(), &None);
        assert_eq!(linux.readonly_paths(), &None);
        // The host's user namespace: none in the spec.
        p.host.users = true;
        let sandbox = sandbox_spec(&p, &paths, Path::new("/r"), "/x", None, 0).unwrap();
        assert_ne!(first(&sandbox).0, LinuxNamespaceType::User);
    }
}
