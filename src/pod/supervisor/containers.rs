//! The pod's containers on the host: the sandbox, each run of a container,
//! signals, and what a run leaves behind (its termination message).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

use super::helper::in_child;
use super::network::FAILED_SANDBOX;
use super::output::{LogRun, Output};
use super::Supervisor;
use crate::error::{one_line, Context};
use crate::image::{IdMap, Rootfs};
use crate::oci::console::ConsoleListener;
use crate::oci::{CreateOptions, Runtime, Stdio};
use crate::pod::cgroups::{self, container_cgroups_path};
use crate::pod::downward;
use crate::pod::error::{Error, Result};
use crate::pod::events::EventType;
use crate::pod::folder::SANDBOX;
use crate::pod::lifecycle::Input;
use crate::pod::logs::{self, log_path, LineSplitter, Stream};
use crate::pod::qos;
use crate::pod::security::{seccomp, userns};
use crate::pod::settings::{CgroupDriver, PAUSE_IMAGE};
use crate::pod::spec::{member_spec, private_cgroup, sandbox_spec, set_hugepage_limits};
use crate::pod::volumes;

/// The most of a terminationMessagePath file, and of a log's tail, that
/// becomes a container's termination message (the kubelet's limits).
const MAX_TERMINATION_MESSAGE: u64 = 4096;
const MAX_LOG_MESSAGE: usize = 2048;

/// A container asks for huge pages on a node that cannot limit them.
const HUGEPAGES_NOT_LIMITED: &str = "HugePagesNotLimited";

/// Why a container did not start, in the kubelet's terms: its config could
/// not be made (`CreateContainerConfigError`), its container could not be
/// set up (`CreateContainerError`), or the runtime failed to create or start
/// it (`StartError`, a run that ended at once).
pub(super) enum StartFailure {
    Config(String),
    Create(String),
    Start(String),
}

impl Supervisor {
    /// Volumes, /dev/shm, then the network, /etc files and the sandbox
    /// (`network.rs`); the lifecycle begins once the sandbox runs.
    pub(super) fn start_pod(&mut self) -> Result<()> {
        // Before the volumes, which are given to the pod's IDs.
        self.user_namespace()?;
        volumes::prepare(&self.pod, &self.folder)?;
        // The pod cgroup, with its QoS parents, before any container is made in it.
        cgroups::create(
            &self.folder,
            &self.settings,
            &self.pod,
            self.hugepage_sizes.as_deref(),
        )?;
        self.open_outputs()?;
        self.make_sandbox()
    }

    /// The sandbox container, in the pinned network namespace `netns` if the
    /// pod has one; returns its pid. The one place a sandbox is made, for a
    /// new pod and for one whose sandbox died (through `make_sandbox`).
    pub(super) fn create_sandbox(&mut self, netns: Option<&Path>) -> Result<i32> {
        let pause = self.store.resolve(PAUSE_IMAGE)?;
        let bundle = self.folder.bundle(SANDBOX);
        let idmap = self.user_namespace()?;
        let rootfs = Rootfs::mount_mapped(&self.store, &pause, &bundle, idmap.as_ref())?;
        let cgroup = container_cgroups_path(&self.settings, &self.pod, SANDBOX);
        let oom = qos::clamp_oom_score_adj(qos::SANDBOX_OOM_SCORE_ADJ, qos::oom_score_floor());
        let mut spec = sandbox_spec(&self.pod, &self.folder, &rootfs.path(), &cgroup, netns, oom)?;
        if cgroup_v2() {
            private_cgroup(&mut spec, false)?;
        }
        seccomp::apply(
            &mut spec,
            &self.pod.security.seccomp,
            false,
            &self.settings.security,
        )
        .map_err(|e| Error::Supervisor(format!("sandbox: {e}")))?;
        let stdio = null_stdio()?;
        let pid = in_child(|| create_and_start(&self.runtime, SANDBOX, &bundle, spec, stdio, None))
            .map_err(|e| Error::Supervisor(format!("sandbox: {}", one_line(&e))))?;
        // The sandbox has a mount namespace of its own (`sandbox_spec`).
        rootfs.unmount_here()?;
        Ok(pid)
    }

    /// The sandbox died and its containers have stopped: what is left of it
    /// goes (its runtime state, cgroup, rootfs and network, as the kubelet
    /// tears down a dead sandbox), a new one is made, and the pod starts
    /// again in it. A network that cannot be set up is retried with back-off
    /// (`network.rs`); if no sandbox can be made otherwise, the pod stops.
    pub(super) fn recreate_sandbox(&mut self) {
        self.sandbox_pid = None;
        self.refresh_probe_target();
        self.undo_sandbox();
        if let Err(e) = self.make_sandbox() {
            let message = format!("Failed to create pod sandbox: {}", one_line(&e));
            tracing::error!("{message}");
            self.record(EventType::Warning, FAILED_SANDBOX, None, &message);
            self.apply(Input::Stop);
        }
    }

    /// A fresh run of `name`: new rootfs, new OCI container, same volumes and logs folder.
    pub(super) fn start_container(&mut self, name: &str) -> std::result::Result<i32, StartFailure> {
        use StartFailure::{Config, Create, Start};
        let c = self
            .container(name)
            .ok_or_else(|| Create(format!("no container {name}")))?;
        // The Downward API's status values are known now (the kubelet's rule).
        let c = downward::resolve(&c, &self.runtime_values());
        let image = self
            .images
            .get(name)
            .cloned()
            .ok_or_else(|| Create(format!("no resolved image for {name}")))?;
        self.delete_container(name);
        let bundle = self.folder.bundle(name);
        Rootfs::unmount(&bundle).map_err(|e| Create(one_line(&e)))?;
        let resolved = self
            .store
            .resolve(&image.id)
            .map_err(|e| Create(one_line(&e)))?;
        let idmap = self.user_namespace().map_err(|e| Create(one_line(&e)))?;
        let rootfs = Rootfs::mount_mapped(&self.store, &resolved, &bundle, idmap.as_ref())
            .map_err(|e| Create(one_line(&e)))?;
        let sandbox_pid = self
            .sandbox_pid
            .ok_or_else(|| Create("the sandbox is not running".into()))?;
        volumes::make_sub_paths(&self.pod, &c, &self.folder).map_err(|e| Config(one_line(&e)))?;
        self.reset_termination_log(name)
            .map_err(|e| Create(one_line(&e)))?;
        self.give_pod_files(name)
            .map_err(|e| Create(one_line(&e)))?;
        let cgroup = container_cgroups_path(&self.settings, &self.pod, name);
        // The kubelet's score, raised where this host cannot lower scores.
        let oom = qos::clamp_oom_score_adj(
            qos::oom_score_adj(&self.pod, &c, qos::memory_capacity()),
            qos::oom_score_floor(),
        );
        let mut spec = member_spec(
            &self.pod,
            &c,
            &image.config,
            &self.folder,
            &rootfs.path(),
            sandbox_pid,
            &cgroup,
            oom,
        )
        .and_then(|mut spec| {
            if cgroup_v2() {
                private_cgroup(&mut spec, c.security.privileged)?;
            }
            set_hugepage_limits(&mut spec, &c, self.hugepage_sizes.as_deref())?;
            Ok(spec)
        })
        .map_err(|e| Config(one_line(&e)))?;
        if self.hugepage_sizes.is_none() && !c.resources.hugepage_limits.is_empty() {
            let message = format!(
                "container {name}: hugepages limits not set: no hugetlb controller for them on this node{}",
                match self.settings.cgroup_driver {
                    CgroupDriver::Systemd => " (the systemd driver has none)",
                    CgroupDriver::Cgroupfs => "",
                }
            );
            tracing::warn!("{message}");
            self.record(
                EventType::Warning,
                HUGEPAGES_NOT_LIMITED,
                Some(name),
                &message,
            );
        }
        // A Localhost profile is read now, as the kubelet reads it per container.
        let node = &self.settings.security;
        seccomp::apply(&mut spec, &c.security.seccomp, c.security.privileged, node)
            .map_err(|e| Config(format!("container {name}: {e}")))?;
        self.open_run_log(name, LogRun::Next)
            .map_err(|e| Create(one_line(&e)))?;
        let stdio = self
            .container_stdio(name)
            .map_err(|e| Create(one_line(&e)))?;
        // A terminal's master comes back over a console socket while the
        // container is created; the supervisor holds it for the run.
        let console = match c.tty {
            true => Some(
                ConsoleListener::bind(&self.folder.io_dir().join("tty.sock"))
                    .map_err(|e| Create(one_line(&e)))?,
            ),
            false => None,
        };
        let socket = console.as_ref().map(|c| c.path());
        let pid = in_child(|| create_and_start(&self.runtime, name, &bundle, spec, stdio, socket))
            .map_err(|e| Start(one_line(&e)))?;
        // Every member has a mount namespace of its own (`member_spec`).
        rootfs.unmount_here().map_err(|e| Start(one_line(&e)))?;
        if let Some(console) = console {
            let master = console.receive_master().map_err(|e| Start(one_line(&e)))?;
            crate::oci::console::set_nonblocking(master.as_fd())
                .map_err(|e| Start(format!("terminal: fcntl: {e}")))?;
            self.outputs.retain(|o| !(o.tty && o.container == name));
            self.outputs.push(Output {
                container: name.to_string(),
                stream: Stream::Stdout,
                fifo: File::from(master),
                splitter: LineSplitter::default(),
                tty: true,
                closed: false,
            });
        }
        Ok(pid)
    }

    /// Sends `signal` to a container's init (or, with `all`, to every process
    /// in its cgroup).
    pub(super) fn signal(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        in_child(|| Ok(self.runtime.kill(id, signal, all).map(|()| 0)?)).map(drop)
    }

    /// Removes a container's OCI state and cgroup (its logs stay).
    pub(super) fn delete_container(&self, id: &str) {
        let _ = in_child(|| Ok(self.runtime.delete(id, true).map(|()| 0)?));
        // A systemd scope is gone when this returns, so the next run can
        // take its name.
        if let Err(e) = cgroups::forget_container(&self.settings, &self.pod, id) {
            tracing::warn!("{}", one_line(&e));
        }
    }

    /// What a container that ended left in its terminationMessagePath (at most
    /// 4 KiB, as the kubelet reads), or with FallbackToLogsOnError after a
    /// failure, the last 80 lines (at most 2 KiB) of its run's log.
    pub(super) fn termination_message(&self, name: &str, exit_code: i32) -> Option<String> {
        let mut text = Vec::new();
        if let Ok(file) = File::open(self.folder.termination_log(name)) {
            let _ = file.take(MAX_TERMINATION_MESSAGE).read_to_end(&mut text);
        }
        let from_logs = self
            .containers()
            .any(|c| c.name == name && c.termination_message_from_logs);
        if text.is_empty() && from_logs && exit_code != 0 {
            let run = logs::runs(&self.folder.logs_dir(), name).last().copied();
            if let Some(run) = run {
                let path = log_path(&self.folder.logs_dir(), name, run);
                let mut log = Vec::new();
                let _ = logs::print_log(&path, 0, &mut log);
                let lines: Vec<&[u8]> = log.split_inclusive(|b| *b == b'\n').collect();
                text = lines[lines.len().saturating_sub(80)..].concat();
                let cut = text.len().saturating_sub(MAX_LOG_MESSAGE);
                text.drain(..cut);
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        (!text.is_empty()).then_some(text)
    }

    /// hostUsers: false: the pod's range (allocated once, kept in its
    /// folder) and its user namespace, made and pinned once; None otherwise.
    fn user_namespace(&self) -> Result<Option<IdMap>> {
        if self.pod.host.users {
            return Ok(None);
        }
        let range = userns::allocate(&self.folder).map_err(|e| Error::Supervisor(e.to_string()))?;
        userns::open_path(&self.folder).map_err(|e| Error::Supervisor(e.to_string()))?;
        let userns =
            userns::pin(&self.folder, range).map_err(|e| Error::Supervisor(e.to_string()))?;
        Ok(Some(IdMap {
            userns,
            base: range.base,
        }))
    }

    /// hostUsers: false: the files the engine binds into a container (its
    /// /etc files, its termination log) belong to the pod's root, as they
    /// belong to root without a user namespace.
    fn give_pod_files(&self, name: &str) -> Result<()> {
        let range = userns::range(&self.folder).map_err(|e| Error::Supervisor(e.to_string()))?;
        let files = [
            self.folder.hosts(),
            self.folder.hostname(),
            self.folder.resolv_conf(),
            self.folder.termination_log(name),
        ];
        for file in files.iter().filter(|f| f.exists()) {
            userns::give(file, range, 0, 0).map_err(|e| Error::Supervisor(e.to_string()))?;
        }
        Ok(())
    }

    /// A fresh, empty terminationMessagePath file for a container's next run,
    /// writable by whatever user the container runs as.
    fn reset_termination_log(&self, name: &str) -> Result<()> {
        let path = self.folder.termination_log(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).context(|| format!("create {}", dir.display()))?;
        }
        File::create(&path).context(|| format!("create {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .context(|| format!("chmod {}", path.display()))?;
        Ok(())
    }
}

/// A container that was never created: no run and no log; it is tried again.
pub(super) fn create_failed(container: String, reason: &str, message: String) -> Input {
    tracing::warn!("{container}: {reason}: {message}");
    Input::CreateFailed {
        container,
        reason: reason.into(),
        message,
    }
}

/// Creates and starts one OCI container from its spec (in a helper process, see
/// `in_child`); returns the pid of its process.
fn create_and_start(
    runtime: &Runtime,
    id: &str,
    bundle: &Path,
    spec: Spec,
    stdio: Stdio,
    console: Option<&Path>,
) -> Result<i32> {
    let options = CreateOptions {
        id,
        bundle,
        pid_file: None,
        console_socket: console,
        preserve_fds: 0,
        no_pivot: false,
    };
    let container = runtime.create_with_spec(&options, spec, stdio)?;
    runtime.start(id)?;
    container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| Error::Supervisor(format!("container {id} has no process")))
}

fn null_stdio() -> Result<Stdio> {
    let open = || -> Result<OwnedFd> {
        Ok(OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .context(|| "open /dev/null".into())?)
    };
    Ok(Stdio {
        stdin: open()?,
        stdout: open()?,
        stderr: open()?,
    })
}

/// A pure cgroup v2 host: containers get their own cgroup namespace there.
fn cgroup_v2() -> bool {
    crate::sys::cgroup::Layout::host().mode() == crate::sys::cgroup::Mode::Unified
}
