//! `peapod pod …`: Kubernetes pods on this node.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::args::*;
use crate::oci::{ExecOptions, ExecOutcome, Runtime};
use crate::pod::model::Pod;
use crate::pod::status::{self, ContainerState, Phase};
use crate::pod::store::{PodDir, PodStore};
use crate::pod::supervisor::Mode;
use crate::pod::{api, logs, run, teardown};

pub fn dispatch(g: &GlobalOpts, command: PodCommand) -> Result<i32> {
    let store = PodStore::new(&g.root);
    match command {
        PodCommand::Run(a) => run_pod(g, a),
        PodCommand::Ps => ps(&store),
        PodCommand::Inspect(a) => inspect(&store, a),
        PodCommand::Logs(a) => logs_cmd(&store, a),
        PodCommand::Exec(a) => exec(&store, a),
        PodCommand::Stop(a) => stop(&store, &a.name),
        PodCommand::Rm(a) => rm(&store, a),
        PodCommand::Adopt(a) => adopt(g, &store, a),
        PodCommand::Supervise(a) => supervise(a),
    }
}

/// How pods are run, from the flags `pod run` and `static` share.
pub fn run_options(g: &GlobalOpts, a: &PodSettingsArgs) -> run::RunOptions {
    let mut settings = run::default_settings(a.store.image_store.clone(), a.backoff_base);
    if let Some(prefix) = &a.cgroup_prefix {
        settings.cgroup_prefix = prefix.clone();
    }
    run::RunOptions {
        root: g.root.clone(),
        settings,
    }
}

fn run_pod(g: &GlobalOpts, a: PodRunArgs) -> Result<i32> {
    let opts = run_options(g, &a.settings);
    let (dir, pod) = run::run(&a.file, &opts).map_err(|e| anyhow!(e))?;
    println!("pod/{} started ({})", pod.name, pod.uid);
    // A container that cannot be created, or crash-loops, is said at once.
    if let Some(status) = dir.status() {
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
    let phase = wait_finished(&dir, None, true)?;
    println!("pod/{}: {:?}", pod.name, phase);
    Ok(if phase == Phase::Succeeded { 0 } else { 1 })
}

/// Waits until the supervisor has published the pod as finished. With
/// `forward_interrupt`, SIGINT/SIGTERM ask the pod to stop.
fn wait_finished(
    dir: &PodDir,
    deadline: Option<Instant>,
    forward_interrupt: bool,
) -> Result<Phase> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    if forward_interrupt {
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
    }
    let sigfd = nix::sys::signalfd::SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
    )?;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(status) = dir.status() {
            if status.finished {
                return Ok(status.phase);
            }
        }
        if !api::supervisor_alive(dir) {
            return Ok(dir.status().map_or(Phase::Failed, |s| s.phase));
        }
        if forward_interrupt && matches!(sigfd.read_signal(), Ok(Some(_))) {
            let _ = api::request(dir, "stop");
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            bail!("timed out waiting for the pod to stop");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
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

fn ps(store: &PodStore) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<30} {:<12} {:<10} {:<7} {:<9} {:<5} SOURCE",
        "NAME", "NAMESPACE", "PHASE", "READY", "RESTARTS", "AGE"
    )?;
    for (dir, pod) in store.list() {
        let status = dir.status();
        // kubectl's READY: app containers and sidecars (restartable init
        // containers), a sidecar counting once started and ready.
        let sidecars: Vec<&str> = pod
            .init_containers
            .iter()
            .filter(|c| c.is_sidecar())
            .map(|c| c.name.as_str())
            .collect();
        let total = pod.containers.len() + sidecars.len();
        let (phase, ready, restarts, started) = match &status {
            Some(s) => {
                let ready = s
                    .status
                    .container_statuses
                    .iter()
                    .filter(|c| c.ready)
                    .count()
                    + (s.status.init_container_statuses.iter())
                        .filter(|c| sidecars.contains(&c.name.as_str()) && c.started && c.ready)
                        .count();
                let restarts: u32 = s.status.containers().map(|c| c.restart_count).sum();
                (
                    format!("{:?}", s.phase),
                    format!("{ready}/{total}"),
                    restarts.to_string(),
                    s.status.start_time,
                )
            }
            None => ("Unknown".into(), format!("0/{total}"), "0".into(), None),
        };
        let phase = if status.as_ref().is_some_and(|s| !s.finished) && !api::supervisor_alive(&dir)
        {
            format!("{phase}(unsupervised)")
        } else {
            phase
        };
        writeln!(
            out,
            "{:<30} {:<12} {:<10} {:<7} {:<9} {:<5} {}",
            pod.name,
            pod.namespace,
            phase,
            ready,
            restarts,
            age(started),
            // Static pods show their manifest.
            pod.annotations
                .get(crate::pod::static_pods::FILE_ANNOTATION)
                .map_or("-", String::as_str)
        )?;
    }
    Ok(0)
}

fn inspect(store: &PodStore, a: PodInspectArgs) -> Result<i32> {
    let (dir, pod) = store.find(&a.name)?;
    let status = dir
        .status()
        .map(|s| serde_json::to_value(status::to_k8s(&s.status)))
        .transpose()?;
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
            "labels": pod.labels, "annotations": pod.annotations
        },
        "status": status,
    });
    match a.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&doc)?),
    }
    Ok(0)
}

fn pick_container(pod: &Pod, wanted: Option<&str>) -> Result<String> {
    match wanted {
        Some(name) => {
            if pod
                .init_containers
                .iter()
                .chain(&pod.containers)
                .any(|c| c.name == name)
            {
                Ok(name.to_string())
            } else {
                bail!("pod {}: no container {name:?}", pod.name)
            }
        }
        None => Ok(pod.containers[0].name.clone()),
    }
}

fn logs_cmd(store: &PodStore, a: PodLogsArgs) -> Result<i32> {
    let (dir, pod) = store.find(&a.name)?;
    let container = pick_container(&pod, a.container.as_deref())?;
    let runs = logs::runs(&dir.logs_dir(), &container);
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
    let path = logs::log_path(&dir.logs_dir(), &container, run);
    let mut out = std::io::stdout().lock();
    let mut offset = logs::print_log(&path, 0, &mut out)?;
    if !a.follow || a.previous {
        return Ok(0);
    }
    let mut pause = Duration::from_millis(10);
    loop {
        let more = logs::print_log(&path, offset, &mut out)?;
        out.flush()?;
        if more != offset {
            offset = more;
            pause = Duration::from_millis(10);
            continue;
        }
        let status = dir.status();
        let still_running = status.as_ref().is_some_and(|s| {
            !s.finished
                && s.status
                    .container(&container)
                    .is_some_and(|c| !matches!(c.state, ContainerState::Terminated(_)))
        });
        let newer_run = logs::runs(&dir.logs_dir(), &container).last() != Some(&run);
        if !still_running || newer_run {
            logs::print_log(&path, offset, &mut out)?;
            return Ok(0);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn exec(store: &PodStore, a: PodExecArgs) -> Result<i32> {
    let (dir, pod) = store.find(&a.name)?;
    let container = pick_container(&pod, a.container.as_deref())?;
    let runtime = Runtime::new(&dir.paths.oci_root(), false)?;
    let opts = ExecOptions {
        id: &container,
        args: a.command,
        tty: a.tty,
        ..Default::default()
    };
    match runtime.exec(&opts)? {
        ExecOutcome::Exited(status) => Ok(status.0),
        ExecOutcome::Detached(_) => Ok(0),
    }
}

fn stop_pod(dir: &PodDir, pod: &Pod) -> Result<()> {
    if dir.status().is_some_and(|s| s.finished) {
        return Ok(());
    }
    if api::supervisor_alive(dir) {
        api::request(dir, "stop")?;
        let deadline = Instant::now() + pod.termination_grace + Duration::from_secs(30);
        wait_finished(dir, Some(deadline), false)?;
        return Ok(());
    }
    teardown::stop_without_supervisor(dir, pod, &dir.cgroup_prefix()).map_err(|e| anyhow!(e))
}

fn stop(store: &PodStore, name: &str) -> Result<i32> {
    let (dir, pod) = store.find(name)?;
    stop_pod(&dir, &pod)?;
    println!("pod/{} stopped", pod.name);
    Ok(0)
}

fn rm(store: &PodStore, a: PodRmArgs) -> Result<i32> {
    let (dir, pod) = store.find(&a.name)?;
    let finished = dir.status().is_some_and(|s| s.finished);
    if !finished {
        if !a.force {
            bail!("pod {} is running: stop it first, or use --force", pod.name);
        }
        stop_pod(&dir, &pod)?;
    }
    let cgroup_prefix = dir.cgroup_prefix();
    teardown::release(&dir, &pod, &cgroup_prefix).map_err(|e| anyhow!(e))?;
    // Never remove through a mount: that would reach into images or host paths.
    if let Some(mount) = crate::image::mount_points()?
        .into_iter()
        .find(|m| m.starts_with(dir.dir()))
    {
        bail!("pod {}: still mounted: {}", pod.name, mount.display());
    }
    std::fs::remove_dir_all(dir.dir())?;
    if let Some(pods) = dir.dir().parent() {
        teardown::remove_cgroup_parent_if_no_pods(pods, &cgroup_prefix);
    }
    println!("pod/{} removed", pod.name);
    Ok(0)
}

fn adopt(g: &GlobalOpts, store: &PodStore, a: PodAdoptArgs) -> Result<i32> {
    let (dir, pod) = store.find(&a.name)?;
    let mut settings = run::default_settings(a.store.image_store.clone(), a.backoff_base);
    settings.cgroup_prefix = dir.cgroup_prefix();
    let opts = run::RunOptions {
        root: g.root.clone(),
        settings,
    };
    run::adopt(&dir, &opts).map_err(|e| anyhow!("pod {}: {e}", pod.name))?;
    println!("pod/{} adopted", pod.name);
    Ok(0)
}

fn supervise(a: SuperviseArgs) -> Result<i32> {
    let mut settings = run::default_settings(
        a.image_store,
        Some(Duration::from_millis(a.backoff_base_ms)),
    );
    settings.cgroup_prefix = a.cgroup_prefix;
    let mode = if a.adopt { Mode::Adopt } else { Mode::Start };
    run::supervise(&a.dir, a.ready_fd, settings, mode).map_err(|e| anyhow!(e))?;
    Ok(0)
}
