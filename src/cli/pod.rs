//! `peapod pod …`: Kubernetes pods on this node. Each verb parses its flags,
//! calls the pod engine and prints.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use super::args::*;
use crate::image::registry::RegistryConfigFile;
use crate::net::settings::{NetworkConfigFile, NetworkOverrides};
use crate::net::NetworkSettings;
use crate::pod::engine::{self, Engine};
use crate::pod::folder::write_json_atomic;
use crate::pod::logs;
use crate::pod::security::{SecurityConfigFile, SecuritySettings};
use crate::pod::settings::CgroupDriver;
use crate::pod::status::{self, ContainerState, Phase};
use crate::pod::supervisor::Mode;
use crate::pod::Settings;

pub fn dispatch(g: &GlobalOpts, command: PodCommand) -> Result<i32> {
    match command {
        PodCommand::Run(a) => run_pod(g, *a),
        PodCommand::Ps => ps(g),
        PodCommand::Inspect(a) => inspect(g, a),
        PodCommand::Describe(a) => super::describe::describe(&g.root, &a.name),
        PodCommand::Logs(a) => logs_cmd(g, a),
        PodCommand::Exec(a) => exec(g, a),
        PodCommand::Stop(a) => stop(g, &a.name),
        PodCommand::Rm(a) => rm(g, a),
        PodCommand::Adopt(a) => adopt(g, a),
        PodCommand::Supervise(a) => supervise(a),
    }
}

/// How pods are run, from the flags `pod run` and `static` share over a
/// config file's `network:` section; pods' namespaces are pinned under the
/// state root unless told otherwise.
///
/// Registry settings come from `--registry-config` (or PEAPOD_REGISTRY_CONFIG),
/// else `registry` (the static daemon's `registry:` section), under the flags.
pub fn settings(
    g: &GlobalOpts,
    a: &PodSettingsArgs,
    file: NetworkConfigFile,
    mut security: SecurityConfigFile,
    registry: RegistryConfigFile,
) -> Result<Settings> {
    let registry = match &a.registry.registry_config {
        Some(path) => super::image::config_file(Some(path))?,
        None => registry,
    };
    let mut settings = Settings {
        image_store: match &registry.image_store {
            Some(path) if a.store.image_store.as_os_str() == crate::image::DEFAULT_STORE => {
                path.clone()
            }
            _ => a.store.image_store.clone(),
        },
        registry: super::image::settings(&a.registry, &registry)
            .map_err(|e| anyhow!("registry settings: {e}"))?,
        ..Settings::default()
    };
    if let Some(high) = registry.image_gc_high_threshold_percent {
        settings.image_gc_high_threshold_percent = high;
    }
    if let Some(low) = registry.image_gc_low_threshold_percent {
        settings.image_gc_low_threshold_percent = low;
    }
    if let Some(base) = a.backoff_base {
        settings.backoff_base = base;
    }
    if let Some(prefix) = &a.cgroup_prefix {
        settings.cgroup_prefix = prefix.clone();
    }
    if let Some(driver) = a.cgroup_driver {
        // Before any pod is made: a pod half made by a missing systemd would
        // have to be undone.
        if driver == CgroupDriver::Systemd && !crate::sys::systemd::booted() {
            bail!("--cgroup-driver systemd: systemd is not running on this host (no /run/systemd/system)");
        }
        settings.cgroup_driver = driver;
    }
    if let Some(size) = a.container_log_max_size {
        settings.container_log_max_size = size;
    }
    if let Some(files) = a.container_log_max_files {
        settings.container_log_max_files = files;
    }
    let n = a.network.clone();
    let netns_dir = n.netns_dir.or(file.netns_dir.clone());
    let flags = NetworkOverrides {
        cni_conf_dir: n.cni_conf_dir,
        cni_bin_dirs: n.cni_bin_dirs,
        cni_cache_dir: n.cni_cache_dir,
        cni_timeout_seconds: n.cni_timeout_seconds,
        netns_dir: Some(netns_dir.unwrap_or_else(|| NetworkSettings::netns_dir_under(&g.root))),
        cluster_dns: n.cluster_dns,
        cluster_domain: n.cluster_domain,
        resolv_conf: n.resolv_conf,
    };
    settings.network =
        NetworkSettings::resolve(file, flags).map_err(|e| anyhow!("network settings: {e}"))?;
    let s = a.security.clone();
    let flags = SecurityConfigFile {
        seccomp_profile_root: s
            .seccomp_profile_root
            .or(security.seccomp_profile_root.take())
            .or_else(|| Some(SecuritySettings::seccomp_root_under(&g.root))),
        seccomp_default: s.seccomp_default,
        allowed_unsafe_sysctls: s.allowed_unsafe_sysctls,
    };
    settings.security = SecuritySettings::resolve(security, flags)
        .map_err(|e| anyhow!("security settings: {e}"))?;
    Ok(settings)
}

/// The engine for verbs that act on existing pods (their own settings are in
/// their folders).
fn engine(g: &GlobalOpts) -> Engine {
    Engine::new(&g.root, Settings::default())
}

fn run_pod(g: &GlobalOpts, a: PodRunArgs) -> Result<i32> {
    let engine = Engine::new(
        &g.root,
        settings(
            g,
            &a.settings,
            NetworkConfigFile::default(),
            SecurityConfigFile::default(),
            RegistryConfigFile::default(),
        )?,
    );
    let admitted = engine.admit(&a.file)?;
    for warning in &admitted.warnings {
        eprintln!("peapod: warning: {warning}");
    }
    let (folder, pod) = engine.start(admitted.pod)?;
    println!("pod/{} started ({})", pod.name, pod.uid);
    // A sandbox or a container that cannot be created, or crash-loops, is said at once.
    if let Some(status) = folder.status() {
        let sandbox = status
            .status
            .condition(status::ConditionType::PodReadyToStartContainers)
            .filter(|c| c.reason.as_deref() == Some("FailedCreatePodSandBox"));
        if let Some(c) = sandbox {
            let message = c.message.as_deref().unwrap_or_default();
            eprintln!(
                "warning: pod {}: FailedCreatePodSandBox: {message}",
                pod.name
            );
        }
        for c in status.status.containers() {
            if let ContainerState::Waiting(w) = &c.state {
                if !matches!(w.reason.as_str(), "ContainerCreating" | "PodInitializing") {
                    let message = w.message.as_deref().unwrap_or_default();
                    eprintln!("warning: container {}: {}: {message}", c.name, w.reason);
                }
            }
        }
    }
    if a.detach {
        return Ok(0);
    }
    // In the foreground: wait for the pod to finish; Ctrl-C stops it.
    let interrupt = interrupt_signals()?;
    let phase = engine::wait_finished(&folder, None, Some(&interrupt))?.unwrap_or(Phase::Failed);
    println!("pod/{}: {:?}", pod.name, phase);
    Ok(if phase == Phase::Succeeded { 0 } else { 1 })
}

/// SIGINT and SIGTERM, blocked and read from a signalfd.
fn interrupt_signals() -> Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    Ok(SignalFd::with_flags(
        &mask,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?)
}

fn age(since: Option<chrono::DateTime<chrono::Utc>>) -> String {
    let Some(since) = since else {
        return "-".into();
    };
    let secs = (chrono::Utc::now() - since).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn ps(g: &GlobalOpts) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<30} {:<12} {:<10} {:<7} {:<9} {:<5} SOURCE",
        "NAME", "NAMESPACE", "PHASE", "READY", "RESTARTS", "AGE"
    )?;
    for pod in engine(g).summaries() {
        writeln!(
            out,
            "{:<30} {:<12} {:<10} {:<7} {:<9} {:<5} {}",
            pod.name,
            pod.namespace,
            pod.status,
            format!("{}/{}", pod.ready.0, pod.ready.1),
            pod.restarts,
            age(pod.started),
            pod.source.as_deref().unwrap_or("-")
        )?;
    }
    Ok(0)
}

fn inspect(g: &GlobalOpts, a: PodInspectArgs) -> Result<i32> {
    let (folder, pod) = engine(g).find(&a.name)?;
    let status = folder
        .status()
        .map(|s| serde_json::to_value(status::to_k8s(&s.status)))
        .transpose()?;
    // How the pod is on the network (host, CNI, or loopback only), as an
    // annotation: what `kubectl describe` users look at for such notes.
    let mut annotations = pod.annotations.clone();
    if let Some(network) = crate::pod::network::record(&folder) {
        annotations.insert(
            crate::pod::network::NETWORK_ANNOTATION.into(),
            network.describe(),
        );
    }
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
            "labels": pod.labels, "annotations": annotations
        },
        "status": status,
    });
    match a.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&doc)?),
    }
    Ok(0)
}

fn logs_cmd(g: &GlobalOpts, a: PodLogsArgs) -> Result<i32> {
    let (folder, pod) = engine(g).find(&a.name)?;
    let container = engine::pick_container(&pod, a.container.as_deref())?;
    let logs_dir = folder.logs_dir();
    let runs = logs::runs(&logs_dir, &container);
    let run = if a.previous {
        runs.iter().rev().nth(1).copied().ok_or_else(|| {
            anyhow!(
                "pod {}: container {container:?} has no previous run",
                pod.name
            )
        })?
    } else {
        *runs
            .last()
            .ok_or_else(|| anyhow!("pod {}: container {container:?} has not run yet", pod.name))?
    };
    let options = logs::ReadOptions {
        tail: usize::try_from(a.tail).ok(),
        since: a
            .since
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| chrono::Utc::now() - d),
        timestamps: a.timestamps,
        limit_bytes: a.limit_bytes,
    };
    let mut printer = logs::Printer::new(options);
    let mut out = std::io::stdout().lock();
    let files = logs::run_files(&logs_dir, &container, run);
    let offset = printer.print_files(&files, &mut out)?;
    if !a.follow || a.previous {
        return Ok(0);
    }
    // Follows the run's current file, across its rotations.
    let mut follower = logs::Follower::new(&logs::log_path(&logs_dir, &container, run), offset);
    let mut pause = Duration::from_millis(10);
    loop {
        let mut lines = Vec::new();
        follower.poll(&mut lines)?;
        for line in &lines {
            if printer.full() {
                return Ok(0);
            }
            printer.print(line, &mut out)?;
        }
        out.flush()?;
        if !lines.is_empty() {
            pause = Duration::from_millis(10);
            continue;
        }
        let newer_run = logs::runs(&logs_dir, &container).last() != Some(&run);
        if !engine::still_running(&folder, &container) || newer_run {
            let mut rest = Vec::new();
            follower.poll(&mut rest)?;
            for line in &rest {
                printer.print(line, &mut out)?;
            }
            return Ok(0);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn exec(g: &GlobalOpts, a: PodExecArgs) -> Result<i32> {
    let status = engine(g).exec(&a.name, a.container.as_deref(), a.command, a.tty)?;
    Ok(status.0)
}

fn stop(g: &GlobalOpts, name: &str) -> Result<i32> {
    let pod = engine(g).stop(name)?;
    println!("pod/{} stopped", pod.name);
    Ok(0)
}

fn rm(g: &GlobalOpts, a: PodRmArgs) -> Result<i32> {
    let pod = engine(g).remove(&a.name, a.force)?;
    println!("pod/{} removed", pod.name);
    Ok(0)
}

fn adopt(g: &GlobalOpts, a: PodAdoptArgs) -> Result<i32> {
    let engine = engine(g);
    let (folder, _) = engine.find(&a.name)?;
    // A pod started before its settings were recorded: the flags say them.
    if !folder.settings_file().exists() {
        let mut settings = folder.settings()?;
        settings.image_store = a.store.image_store.clone();
        if let Some(base) = a.backoff_base {
            settings.backoff_base = base;
        }
        write_json_atomic(&folder.settings_file(), &settings)?;
    }
    let pod = engine.adopt(&a.name)?;
    println!("pod/{} adopted", pod.name);
    Ok(0)
}

fn supervise(a: SuperviseArgs) -> Result<i32> {
    let mode = if a.adopt { Mode::Adopt } else { Mode::Start };
    crate::pod::launch::supervise(&a.dir, a.ready_fd, mode)?;
    Ok(0)
}
