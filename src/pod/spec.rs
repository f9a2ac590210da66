//! OCI runtime specs for a pod's sandbox and its members, built from the model.
//!
//! The sandbox owns the pod's net, ipc and uts namespaces; every member joins
//! them by path and gets its own pid (unless shareProcessNamespace) and mount
//! namespace and its own cgroup under the pod's cgroup.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::model::{Container, Pod, VolumeSource};
use crate::image::ImageConfig;

/// The capabilities a container gets by default (containerd's and runc's set).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
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

/// The cgroup folder name of the sandbox: `_` cannot appear in a container name.
pub const SANDBOX_CGROUP: &str = "_sandbox";

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
}

/// Where a pod's files live on the host: `<root>/pods/<uid>/...`.
#[derive(Debug, Clone)]
pub struct PodPaths {
    pub dir: PathBuf,
}

impl PodPaths {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("etc/hosts")
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("etc/hostname")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("etc/resolv.conf")
    }
    /// The pod's /dev/shm: a tmpfs shared by every container of the pod.
    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
    pub fn volume(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }
    /// The file a container's terminationMessagePath is (one run at a time).
    pub fn termination_log(&self, container: &str) -> PathBuf {
        self.dir.join("termination").join(container)
    }
    /// A container's bundle folder (config.json, and the overlay's rootfs/upper/work).
    pub fn bundle(&self, container: &str) -> PathBuf {
        self.dir.join("bundles").join(container)
    }
    /// The OCI runtime's state folder for this pod's containers.
    pub fn oci_root(&self) -> PathBuf {
        self.dir.join("oci")
    }
}

/// `<prefix>/<uid>/<leaf>`: the cgroup path of one container of the pod.
pub fn cgroup_path(prefix: &str, pod: &Pod, leaf: &str) -> String {
    format!("/{}/{}/{leaf}", prefix.trim_matches('/'), pod.uid)
}

/// The devices cgroup rule denying (or, for privileged containers, allowing)
/// every device; the runtime then allows the default ones (null, zero, tty…).
fn all_devices(allow: bool) -> Value {
    json!([{ "allow": allow, "access": "rwm" }])
}

/// The host's device nodes, for a privileged container (as containerd gives
/// them): every character and block device under /dev, but not those of
/// the container's own /dev/pts, /dev/shm and /dev/mqueue, nor the console.
fn host_devices() -> Vec<Value> {
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
                "c"
            } else if kind.is_block_device() {
                "b"
            } else {
                continue;
            };
            if path == Path::new("/dev/console") {
                continue;
            }
            let rdev = meta.rdev();
            found.push(json!({
                "path": path,
                "type": typ,
                "major": nix::sys::stat::major(rdev),
                "minor": nix::sys::stat::minor(rdev),
                "fileMode": meta.mode() & 0o777,
                "uid": meta.uid(),
                "gid": meta.gid(),
            }));
        }
    }
    found.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    found
}

fn base_mounts(paths: &PodPaths, privileged: bool) -> Vec<Value> {
    // Privileged containers get a writable /sys, as with containerd.
    let sys_options: &[&str] = if privileged {
        &["nosuid", "noexec", "nodev"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] }),
        json!({ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": sys_options }),
        json!({ "destination": "/dev/shm", "type": "bind", "source": paths.shm(),
                "options": ["rbind", "nosuid", "nodev", "noexec"] }),
    ]
}

fn pod_file_mounts(paths: &PodPaths) -> Vec<Value> {
    [
        ("/etc/hosts", paths.hosts()),
        ("/etc/hostname", paths.hostname()),
        ("/etc/resolv.conf", paths.resolv_conf()),
    ]
    .into_iter()
    .map(|(dest, src)| json!({ "destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"] }))
    .collect()
}

/// The pause container: holds the namespaces, runs nothing but `/pause`.
pub fn sandbox_spec(pod: &Pod, paths: &PodPaths, rootfs: &Path, cgroup: &str) -> Value {
    let caps: Vec<&str> = vec![];
    json!({
        "ociVersion": "1.0.2",
        "root": { "path": rootfs, "readonly": true },
        "hostname": pod.hostname,
        "process": {
            "terminal": false,
            "user": { "uid": 65535, "gid": 65535 },
            "args": ["/pause"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "noNewPrivileges": true,
            "oomScoreAdj": 0
        },
        "mounts": base_mounts(paths, false),
        "annotations": {
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.pod.name": pod.name,
            "io.kubernetes.pod.namespace": pod.namespace,
            "io.kubernetes.pod.uid": pod.uid
        },
        "linux": {
            "cgroupsPath": cgroup,
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "resources": { "devices": all_devices(false) }
        }
    })
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
pub fn capabilities(c: &Container) -> Vec<String> {
    // Everything this host can grant: a capability outside our bounding set
    // (CAP_SYS_RESOURCE on some hosts) would make the container fail to start.
    let host = || -> Vec<String> {
        let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::all());
        bounding.into_iter().map(|c| c.to_string()).collect()
    };
    let mut set: Vec<String> = if c.security.privileged {
        let mut all = host();
        all.sort();
        return all;
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    // containerd's order: add ALL, drop ALL, then the single adds, then the
    // single drops (a capability both added and dropped is dropped).
    let (adds, drops) = (&c.security.caps_add, &c.security.caps_drop);
    if adds.iter().any(|a| a == "ALL") {
        set = host();
    }
    if drops.iter().any(|d| d == "ALL") {
        set.clear();
    }
    for add in adds.iter().filter(|a| *a != "ALL") {
        if !set.contains(add) {
            set.push(add.clone());
        }
    }
    set.retain(|cap| !drops.contains(cap));
    set.sort();
    set
}

fn resources(c: &Container) -> Value {
    let mut r = json!({ "devices": all_devices(c.security.privileged) });
    if let Some(bytes) = c.resources.memory_limit_bytes {
        r["memory"] = json!({ "limit": bytes });
    }
    let period: u64 = 100_000;
    if let Some(millis) = c.resources.cpu_limit_millis {
        // Kubernetes' minimum quota is 1 ms per 100 ms period.
        let quota = (millis * period / 1000).max(1000);
        r["cpu"] = json!({ "quota": quota, "period": period });
    }
    if let Some(millis) = c
        .resources
        .cpu_request_millis
        .or(c.resources.cpu_limit_millis)
    {
        let shares = (millis * 1024 / 1000).clamp(2, 262_144);
        if !r["cpu"].is_object() {
            r["cpu"] = json!({});
        }
        r["cpu"]["shares"] = json!(shares);
    }
    r
}

fn volume_mounts(pod: &Pod, c: &Container, paths: &PodPaths) -> Result<Vec<Value>, SpecError> {
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
        mounts.push(json!({ "destination": m.mount_path, "type": "bind", "source": source, "options": options }));
    }
    Ok(mounts)
}

/// The spec of an init, sidecar or app container of the pod.
#[allow(clippy::too_many_arguments)]
pub fn member_spec(
    pod: &Pod,
    c: &Container,
    image: &ImageConfig,
    paths: &PodPaths,
    rootfs: &Path,
    sandbox_pid: i32,
    cgroup: &str,
) -> Result<Value, SpecError> {
    let args = process_args(c, image)?;
    let (uid, gid) = process_user(c, image, rootfs)?;
    let caps = capabilities(c);
    let cwd = c
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    // Kubernetes: allowPrivilegeEscalation defaults to true; false sets no_new_privs.
    let no_new_privs =
        c.security.allow_privilege_escalation == Some(false) && !c.security.privileged;
    let ns = |t: &str| format!("/proc/{sandbox_pid}/ns/{t}");
    let pid_ns = if pod.share_process_namespace {
        json!({ "type": "pid", "path": ns("pid") })
    } else {
        json!({ "type": "pid" })
    };
    let mut mounts = base_mounts(paths, c.security.privileged);
    mounts.extend(pod_file_mounts(paths));
    mounts.extend(volume_mounts(pod, c, paths)?);
    mounts.push(
        json!({ "destination": c.termination_message_path, "type": "bind",
        "source": paths.termination_log(&c.name), "options": ["rbind", "rprivate"] }),
    );
    let mut linux = json!({
        "cgroupsPath": cgroup,
        "namespaces": [
            pid_ns,
            { "type": "mount" },
            { "type": "network", "path": ns("net") },
            { "type": "ipc", "path": ns("ipc") },
            { "type": "uts", "path": ns("uts") }
        ],
        "resources": resources(c),
    });
    if c.security.privileged {
        linux["devices"] = json!(host_devices());
    } else {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    let mut user = json!({ "uid": uid, "gid": gid });
    if !c.security.supplemental_groups.is_empty() {
        user["additionalGids"] = json!(c.security.supplemental_groups);
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "root": { "path": rootfs, "readonly": c.security.read_only_root_filesystem },
        "process": {
            "terminal": c.tty,
            "user": user,
            "args": args,
            "env": process_env(c, image, pod),
            "cwd": cwd,
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "noNewPrivileges": no_new_privs,
        },
        "mounts": mounts,
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": c.name,
            "io.kubernetes.pod.name": pod.name,
            "io.kubernetes.pod.namespace": pod.namespace,
            "io.kubernetes.pod.uid": pod.uid
        },
        "linux": linux
    }))
}

/// /etc/hosts as the kubelet writes it: localhost lines, the pod's own name, aliases.
pub fn hosts_file(pod: &Pod) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file (peapod).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    text.push_str(&format!("127.0.1.1\t{}\n", pod.hostname));
    for (ip, names) in &pod.host_aliases {
        text.push_str(&format!("{ip}\t{}\n", names.join("\t")));
    }
    text
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

    #[test]
    fn capabilities_add_drop_privileged() {
        let mut c = container("c");
        assert_eq!(capabilities(&c).len(), DEFAULT_CAPS.len());
        c.security.caps_drop = vec!["CAP_NET_RAW".into()];
        c.security.caps_add = vec!["CAP_NET_ADMIN".into()];
        let set = capabilities(&c);
        assert!(!set.contains(&"CAP_NET_RAW".to_string()));
        assert!(set.contains(&"CAP_NET_ADMIN".to_string()));
        c.security.caps_drop = vec!["ALL".into()];
        assert_eq!(capabilities(&c), ["CAP_NET_ADMIN"]);
        // Drops win over adds, also over ALL.
        c.security.caps_add = vec!["ALL".into(), "CAP_NET_ADMIN".into()];
        c.security.caps_drop = vec!["CAP_SYS_ADMIN".into(), "CAP_NET_ADMIN".into()];
        let set = capabilities(&c);
        assert!(set.len() > DEFAULT_CAPS.len(), "{set:?}");
        assert!(!set.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!set.contains(&"CAP_NET_ADMIN".to_string()));
        c.security.caps_add = vec!["CAP_CHOWN".into()];
        c.security.caps_drop = vec!["CAP_CHOWN".into()];
        assert!(!capabilities(&c).contains(&"CAP_CHOWN".to_string()));
        c.security.privileged = true;
        assert!(capabilities(&c).contains(&"CAP_SYS_ADMIN".to_string()));
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
        let paths = PodPaths::new("/run/peapod/pods/u-1".into());
        let spec = member_spec(
            &p,
            &c,
            &image(),
            &paths,
            Path::new("/r"),
            42,
            "/peapod/u-1/web",
        )
        .unwrap();
        let ns = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({ "type": "network", "path": "/proc/42/ns/net" })));
        assert!(ns.contains(&json!({ "type": "pid" })));
        assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["process"]["cwd"], "/srv");
        let mounts = spec["mounts"].as_array().unwrap();
        let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
        assert_eq!(data["source"], "/run/peapod/pods/u-1/volumes/data/sub");
        assert!(data["options"].as_array().unwrap().contains(&json!("ro")));
        assert!(mounts
            .iter()
            .any(|m| m["destination"] == "/dev/shm" && m["source"] == "/run/peapod/pods/u-1/shm"));
        assert!(mounts.iter().any(|m| m["destination"] == "/etc/hosts"));

        let mut shared = p.clone();
        shared.share_process_namespace = true;
        let spec = member_spec(&shared, &c, &image(), &paths, Path::new("/r"), 42, "/x").unwrap();
        assert!(spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({ "type": "pid", "path": "/proc/42/ns/pid" })));
    }

    #[test]
    fn hosts_file_has_pod_name_and_aliases() {
        let text = hosts_file(&pod(vec![]));
        assert!(text.contains("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("127.0.1.1\tweb\n"));
        assert!(text.contains("10.0.0.1\tdb\n"));
    }
}
