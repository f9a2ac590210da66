//! A task's life: Create, Start (of the init or an exec), Exec and Delete,
//! with the events containerd expects of each.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_shim_protos::api::{
    CreateTaskRequest, CreateTaskResponse, DeleteRequest, DeleteResponse, ExecProcessRequest,
    Mount, StartRequest, StartResponse, Status,
};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskIO, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options as RuncOptions;

use super::exits::shares_pid_namespace;
use super::table::{container, status_name, Container, Process};
use super::TaskService;
use crate::shim::events::{EventSender, TaskEvent};
use crate::shim::process::{Processes, Target};
use crate::shim::service::timestamp_now;
use crate::shim::stdio::IoPaths;
use crate::shim::Error;

/// Unmounts whatever is mounted at `rootfs` (the container's rootfs mounts).
pub fn unmount_rootfs(rootfs: &Path) {
    while nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

/// Mounts containerd's rootfs mounts on `<bundle>/rootfs`; whether any were.
async fn mount_rootfs(mounts: &[Mount], bundle: &Path) -> Result<bool, Error> {
    let rootfs = bundle.join("rootfs");
    for m in mounts {
        let _ = std::fs::create_dir_all(&rootfs);
        if let Err(e) = containerd_shim::asynchronous::util::mount_rootfs(m, &rootfs).await {
            unmount_rootfs(&rootfs);
            return Err(Error::Other(format!(
                "mount rootfs {} ({}): {e}",
                rootfs.display(),
                m.type_
            )));
        }
    }
    Ok(!mounts.is_empty())
}

/// The runtime options containerd may send: CRI's `runtimeoptions.v1.Options`
/// for non-runc runtime types, and runc's options from `ctr`.
pub(super) fn accept_options(type_url: &str) -> Result<(), Error> {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    match name {
        "" | "runtimeoptions.v1.Options" | "containerd.runc.v1.Options" => Ok(()),
        other => Err(Error::InvalidArgument(format!(
            "options: unsupported runtime options type {other:?}"
        ))),
    }
}

/// Whether the container's cgroup is a systemd scope: runc's options say so
/// (`SystemdCgroup = true`, sent with runc's options type), or the bundle's
/// cgroupsPath has runc's systemd form `slice:prefix:name`, which containerd's
/// CRI makes when the kubelet's cgroup parent is a `.slice` (its systemd
/// driver); CRI sends no runc options to a non-runc runtime type.
pub(super) fn systemd_cgroup(options: Option<&Any>, bundle: &Path) -> Result<bool, Error> {
    if let Some(opts) = options {
        if opts.type_url.rsplit('/').next() == Some("containerd.runc.v1.Options") {
            let runc = RuncOptions::parse_from_bytes(&opts.value).map_err(|e| {
                Error::InvalidArgument(format!("options: containerd.runc.v1.Options: {e}"))
            })?;
            if runc.systemd_cgroup {
                return Ok(true);
            }
        }
    }
    let config = bundle.join("config.json");
    let spec: serde_json::Value = match std::fs::read(&config) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", config.display())))?,
        // The runtime reports a missing config.json with its own words.
        Err(_) => return Ok(false),
    };
    Ok(spec["linux"]["cgroupsPath"]
        .as_str()
        .is_some_and(is_systemd_cgroups_path))
}

/// runc's systemd cgroupsPath: `slice:prefix:name`, the slice empty or a
/// `.slice` unit (runc's cgroupfs paths have no colons).
pub(super) fn is_systemd_cgroups_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split(':').collect();
    parts.len() == 3
        && (parts[0].is_empty() || parts[0].ends_with(".slice"))
        && !parts[0].contains('/')
        && !parts[2].is_empty()
}

impl<P: Processes, E: EventSender> TaskService<P, E> {
    pub(super) async fn create_task(
        &self,
        req: CreateTaskRequest,
    ) -> Result<CreateTaskResponse, Error> {
        if let Some(opts) = req.options.as_ref() {
            accept_options(&opts.type_url)?;
        }
        let id = req.id.clone();
        let bundle = PathBuf::from(&req.bundle);
        let systemd = systemd_cgroup(req.options.as_ref(), &bundle)?;
        let mut table = self.containers.lock().await;
        if table.contains_key(&id) {
            return Err(Error::AlreadyExists(format!(
                "container {id:?} already exists"
            )));
        }
        let rootfs_mounted = mount_rootfs(&req.rootfs, &bundle).await?;
        let io = IoPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let target = Target {
            id: &id,
            bundle: &bundle,
        };
        let spawned = match self.processes.create(target, &io, systemd).await {
            Ok(s) => s,
            Err(e) => {
                if rootfs_mounted {
                    unmount_rootfs(&bundle.join("rootfs"));
                }
                return Err(e);
            }
        };
        let pid = spawned.pid;
        let mut init = Process::new(io.clone());
        let exited = init.spawned(spawned);
        let oom_watch = self.events.watch_oom(&id, pid);
        let kill_all_on_exit = shares_pid_namespace(&bundle);
        table.insert(
            id.clone(),
            Container {
                id: id.clone(),
                bundle,
                init,
                execs: HashMap::new(),
                rootfs_mounted,
                pending_init_exit: None,
                kill_all_on_exit,
                oom_watch,
            },
        );
        self.watch_exit(&id, "", exited);
        self.events.send(TaskEvent::Create(TaskCreate {
            container_id: id,
            bundle: req.bundle,
            rootfs: req.rootfs,
            io: Some(TaskIO {
                stdin: io.stdin,
                stdout: io.stdout,
                stderr: io.stderr,
                terminal: io.terminal,
                ..Default::default()
            })
            .into(),
            pid: pid as u32,
            ..Default::default()
        }));
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    pub(super) async fn start_process(&self, req: StartRequest) -> Result<StartResponse, Error> {
        let mut table = self.containers.lock().await;
        let c = container(&mut table, &req.id)?;
        let pid = if req.exec_id.is_empty() {
            self.start_init(c).await?
        } else {
            self.start_exec(c, &req.exec_id).await?
        };
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn start_init(&self, c: &mut Container<P::Handle>) -> Result<i32, Error> {
        if c.init.status != Status::CREATED {
            return Err(Error::Precondition(format!(
                "container {} is {}, not created",
                c.id,
                status_name(c.init.status)
            )));
        }
        self.processes.start(c.target()).await?;
        // The init may have exited already: the exit handler waits for the
        // table's lock, so TaskStart goes out before TaskExit.
        if c.init.status == Status::CREATED {
            c.init.status = Status::RUNNING;
        }
        self.events.send(TaskEvent::Start(TaskStart {
            container_id: c.id.clone(),
            pid: c.init.pid as u32,
            ..Default::default()
        }));
        Ok(c.init.pid)
    }

    async fn start_exec(&self, c: &mut Container<P::Handle>, exec_id: &str) -> Result<i32, Error> {
        if c.init.status != Status::RUNNING {
            return Err(Error::Precondition(format!(
                "cannot exec in container {}: it is {}",
                c.id,
                status_name(c.init.status)
            )));
        }
        let p = c.process(exec_id)?;
        if p.status != Status::CREATED {
            return Err(Error::Precondition(format!(
                "exec {exec_id:?} was already started"
            )));
        }
        let (io, spec) = (p.io.clone(), std::mem::take(&mut p.spec));
        let spawned = self.processes.exec(c.target(), exec_id, &spec, &io).await?;
        let pid = spawned.pid;
        let p = c.process(exec_id)?;
        let exited = p.spawned(spawned);
        p.status = Status::RUNNING;
        self.watch_exit(&c.id, exec_id, exited);
        self.events.send(TaskEvent::ExecStarted(TaskExecStarted {
            container_id: c.id.clone(),
            exec_id: exec_id.to_string(),
            pid: pid as u32,
            ..Default::default()
        }));
        Ok(pid)
    }

    pub(super) async fn add_exec(&self, req: ExecProcessRequest) -> Result<(), Error> {
        let mut table = self.containers.lock().await;
        let c = container(&mut table, &req.id)?;
        if c.execs.contains_key(&req.exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec {:?} already exists in container {}",
                req.exec_id, req.id
            )));
        }
        let Some(spec) = req.spec.as_ref() else {
            return Err(Error::InvalidArgument(
                "spec: the exec's process is missing".into(),
            ));
        };
        if serde_json::from_slice::<serde_json::Value>(&spec.value).is_err() {
            return Err(Error::InvalidArgument(
                "spec: the exec's process is not JSON".into(),
            ));
        }
        let mut p = Process::new(IoPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        });
        p.spec = spec.value.clone();
        c.execs.insert(req.exec_id.clone(), p);
        self.events.send(TaskEvent::ExecAdded(TaskExecAdded {
            container_id: req.id,
            exec_id: req.exec_id,
            ..Default::default()
        }));
        Ok(())
    }

    /// Deletes an exited exec, or the container once its init is not
    /// running. A second delete is answered NotFound, which containerd takes
    /// as already deleted.
    pub(super) async fn delete_process(&self, req: DeleteRequest) -> Result<DeleteResponse, Error> {
        let mut table = self.containers.lock().await;
        let c = container(&mut table, &req.id)?;
        if !req.exec_id.is_empty() {
            let p = c.process(&req.exec_id)?;
            if p.status == Status::RUNNING {
                return Err(Error::Precondition(format!(
                    "exec {} is still running",
                    req.exec_id
                )));
            }
            let (code, at) = p.exit_status();
            let pid = p.pid as u32;
            c.execs.remove(&req.exec_id);
            return Ok(DeleteResponse {
                pid,
                exit_status: code,
                exited_at: at.into(),
                ..Default::default()
            });
        }
        let status = c.init.status;
        if c.init.is_live() {
            return Err(Error::Precondition(format!(
                "container {} is {}: stop it first",
                req.id,
                status_name(status)
            )));
        }
        // A container created but never started still has its init waiting.
        let force = status == Status::CREATED;
        match self.processes.delete(c.target(), force).await {
            Ok(())
            | Err(Error::Runtime {
                not_found: true, ..
            }) => {}
            Err(e) => return Err(e),
        }
        if c.rootfs_mounted {
            unmount_rootfs(&c.bundle.join("rootfs"));
        }
        c.stop_oom_watch();
        let (code, at) = c.init.exit_status();
        let at = at.unwrap_or_else(timestamp_now);
        let pid = c.init.pid as u32;
        table.remove(&req.id);
        self.events.send(TaskEvent::Delete(TaskDelete {
            container_id: req.id,
            pid,
            exit_status: code,
            exited_at: Some(at.clone()).into(),
            ..Default::default()
        }));
        Ok(DeleteResponse {
            pid,
            exit_status: code,
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }
}
