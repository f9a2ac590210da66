//! containerd's Task service over the `peapod` runtime CLI.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ProcessInfo, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, Status,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext};
use tokio::sync::{mpsc, oneshot, watch, Mutex};

use super::error::Error;
use super::reaper::Reaper;
use super::runtime::Runtime;
use super::service::timestamp_now;
use super::stdio::{open_streams, ConsoleSocket, IoPaths, Streams};

type Exit = Option<(u32, Timestamp)>;

/// An init or exec process.
struct Process {
    pid: i32,
    /// Opened while the process was an unreaped child of ours: signals sent
    /// through it can never reach a recycled PID.
    pidfd: Option<OwnedFd>,
    io: IoPaths,
    streams: Streams,
    status: Status,
    exit: watch::Sender<Exit>,
    /// An exec's OCI process (JSON), until it is started.
    spec: Vec<u8>,
}

impl Process {
    fn new(io: IoPaths) -> Self {
        Process {
            pid: 0,
            pidfd: None,
            io,
            streams: Streams::default(),
            status: Status::CREATED,
            exit: watch::channel(None).0,
            spec: Vec::new(),
        }
    }

    fn set_pid(&mut self, pid: i32) {
        self.pid = pid;
        // SAFETY: plain syscall; the descriptor is owned from here on.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a fresh descriptor (when not negative).
        self.pidfd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }

    /// Sends `signal` to the process itself (not its children).
    fn signal(&self, signal: i32) -> Result<(), Error> {
        let Some(fd) = &self.pidfd else {
            return Err(Error::NotFound("the process has no pid".into()));
        };
        // SAFETY: pidfd_send_signal with a pidfd we own and no siginfo.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => Error::NotFound("process already finished".into()),
                Some(libc::EINVAL) => {
                    Error::InvalidArgument(format!("signal: invalid signal {signal}"))
                }
                _ => Error::io("kill", e),
            });
        }
        Ok(())
    }

    fn exit_status(&self) -> (u32, Option<Timestamp>) {
        match &*self.exit.borrow() {
            Some((code, at)) => (*code, Some(at.clone())),
            None => (0, None),
        }
    }
}

struct Container {
    bundle: PathBuf,
    init: Process,
    execs: HashMap<String, Process>,
    rootfs_mounted: bool,
    /// The init's exit, held back until its running execs' exits are out.
    pending_init_exit: Option<i32>,
    /// The container has no pid namespace of its own: when its init exits,
    /// the rest of its processes are killed (`kill --all`), as runc's shim does.
    kill_all_on_exit: bool,
    oom_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Container {
    fn process(&mut self, exec_id: &str) -> Result<&mut Process, Error> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id:?} not found")))
    }

    fn log(&self) -> PathBuf {
        self.bundle.join("log.json")
    }
}

/// What goes through the event queue: an event, or a marker the forwarder
/// acknowledges once everything queued before it is published.
pub(super) enum Queued {
    Event(&'static str, Box<dyn MessageDyn>),
    Flush(oneshot::Sender<()>),
}

/// The init's pid, in the bundle: `delete` (containerd's cleanup after a
/// dead shim) reads it back, as runc's shim reads its `init.pid`.
pub(super) const INIT_PID_FILE: &str = "init.pid";

/// How long Shutdown waits for queued events to reach containerd.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct TaskService {
    runtime: Arc<Runtime>,
    reaper: Arc<Reaper>,
    namespace: String,
    containers: Arc<Mutex<HashMap<String, Container>>>,
    events: mpsc::UnboundedSender<Queued>,
    exit: Arc<ExitSignal>,
}

/// Unmounts whatever is mounted at `rootfs` (the container's rootfs mounts).
pub fn unmount_rootfs(rootfs: &Path) {
    while nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

fn ttrpc_err(e: Error) -> ttrpc::Error {
    e.into()
}

fn container<'a>(
    map: &'a mut HashMap<String, Container>,
    id: &str,
) -> Result<&'a mut Container, Error> {
    map.get_mut(id)
        .ok_or_else(|| Error::NotFound(format!("container {id:?} not found in this shim")))
}

impl TaskService {
    pub fn new(
        runtime: Runtime,
        reaper: Arc<Reaper>,
        publisher: RemotePublisher,
        namespace: String,
        exit: Arc<ExitSignal>,
    ) -> Self {
        // One queue, one sender: events reach containerd in the order they
        // were produced.
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        let ns = namespace.clone();
        tokio::spawn(async move {
            while let Some(queued) = rx.recv().await {
                match queued {
                    Queued::Event(topic, event) => {
                        let ctx = ttrpc::context::Context::default();
                        if let Err(e) = publisher.publish(ctx, topic, &ns, event).await {
                            log::warn!("publish {topic}: {e}");
                        }
                    }
                    Queued::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        TaskService {
            runtime: Arc::new(runtime),
            reaper,
            namespace,
            containers: Arc::new(Mutex::new(HashMap::new())),
            events: tx,
            exit,
        }
    }

    fn publish(&self, topic: &'static str, event: impl MessageDyn) {
        let _ = self.events.send(Queued::Event(topic, Box::new(event)));
    }

    /// Waits (at most FLUSH_WAIT) until the events queued so far are published.
    async fn flush_events(&self) {
        let (done, flushed) = oneshot::channel();
        if self.events.send(Queued::Flush(done)).is_ok()
            && tokio::time::timeout(FLUSH_WAIT, flushed).await.is_err()
        {
            log::warn!("events not all published after {FLUSH_WAIT:?}");
        }
    }

    /// Watches `pid` (a child of ours by now) and reports its exit.
    fn watch_exit(&self, id: &str, exec_id: &str, pid: i32) {
        let exited = self.reaper.watch(pid);
        let me = self.handle();
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            let code = exited.await.unwrap_or(255);
            me.exited(&id, &exec_id, code).await;
        });
    }

    fn handle(&self) -> TaskService {
        TaskService {
            runtime: self.runtime.clone(),
            reaper: self.reaper.clone(),
            namespace: self.namespace.clone(),
            containers: self.containers.clone(),
            events: self.events.clone(),
            exit: self.exit.clone(),
        }
    }

    async fn exited(&self, id: &str, exec_id: &str, code: i32) {
        let mut map = self.containers.lock().await;
        let Some(c) = map.get_mut(id) else { return };
        if exec_id.is_empty() {
            if c.kill_all_on_exit {
                // Without a pid namespace of its own, the init's death does
                // not take its children with it.
                let log = c.log();
                if let Err(e) = self
                    .runtime
                    .call(Some(&log), &["kill", "--all", id, "KILL"])
                    .await
                {
                    log::warn!("kill the processes left in {id}: {e}");
                }
            }
            let running: Vec<&Process> = c
                .execs
                .values()
                .filter(|p| matches!(p.status, Status::RUNNING | Status::PAUSED))
                .collect();
            if !running.is_empty() {
                // Execs go with the init; their exits are reported first.
                for p in running {
                    let _ = p.signal(libc::SIGKILL);
                }
                c.pending_init_exit = Some(code);
                return;
            }
            self.finish(id, c, "", code).await;
            return;
        }
        self.finish(id, c, exec_id, code).await;
        let execs_done = !c.execs.values().any(|p| p.status == Status::RUNNING);
        if execs_done {
            if let Some(code) = c.pending_init_exit.take() {
                self.finish(id, c, "", code).await;
            }
        }
    }

    /// Marks a process stopped and publishes TaskExit.
    async fn finish(&self, id: &str, c: &mut Container, exec_id: &str, code: i32) {
        let Ok(p) = c.process(exec_id) else { return };
        p.streams.drain().await;
        p.status = Status::STOPPED;
        let at = timestamp_now();
        let code = code as u32;
        self.publish(
            topics::TASK_EXIT_EVENT_TOPIC,
            TaskExit {
                container_id: id.to_string(),
                id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
                pid: p.pid as u32,
                exit_status: code,
                exited_at: Some(at.clone()).into(),
                ..Default::default()
            },
        );
        p.exit.send_replace(Some((code, at)));
        if exec_id.is_empty() {
            if let Some(w) = c.oom_watch.take() {
                w.abort();
            }
        }
    }

    fn read_pid(file: &Path) -> Result<i32, Error> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::io(format!("read {}", file.display()), e))?;
        text.trim()
            .parse()
            .map_err(|_| Error::Other(format!("{}: not a pid: {text:?}", file.display())))
    }

    async fn do_create(&self, req: CreateTaskRequest) -> Result<CreateTaskResponse, Error> {
        if let Some(opts) = req.options.as_ref() {
            accept_options(&opts.type_url)?;
        }
        let id = req.id.clone();
        let bundle = PathBuf::from(&req.bundle);
        let mut map = self.containers.lock().await;
        if map.contains_key(&id) {
            return Err(Error::AlreadyExists(format!(
                "container {id:?} already exists"
            )));
        }
        let rootfs = bundle.join("rootfs");
        let mut mounted = false;
        for m in &req.rootfs {
            let _ = std::fs::create_dir_all(&rootfs);
            if let Err(e) = containerd_shim::asynchronous::util::mount_rootfs(m, &rootfs).await {
                unmount_rootfs(&rootfs);
                return Err(Error::Other(format!(
                    "mount rootfs {} ({}): {e}",
                    rootfs.display(),
                    m.type_
                )));
            }
            mounted = true;
        }
        let io = IoPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let created = self.create_init(&id, &bundle, &io).await;
        let (pid, streams) = match created {
            Ok(v) => v,
            Err(e) => {
                if mounted {
                    unmount_rootfs(&rootfs);
                }
                return Err(e);
            }
        };
        let mut init = Process::new(io.clone());
        init.set_pid(pid);
        init.streams = streams;
        let oom_watch = super::oom::watch(pid, id.clone(), self.events.clone());
        let kill_all_on_exit = shares_pid_namespace(&bundle);
        map.insert(
            id.clone(),
            Container {
                bundle: bundle.clone(),
                init,
                execs: HashMap::new(),
                rootfs_mounted: mounted,
                pending_init_exit: None,
                kill_all_on_exit,
                oom_watch,
            },
        );
        self.watch_exit(&id, "", pid);
        self.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
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
            },
        );
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// `peapod create`; on failure nothing is left (peapod cleans its own).
    async fn create_init(
        &self,
        id: &str,
        bundle: &Path,
        io: &IoPaths,
    ) -> Result<(i32, Streams), Error> {
        let pid_file = bundle.join(INIT_PID_FILE);
        let log = bundle.join("log.json");
        let (child, mut streams) = open_streams(io, id, &self.namespace, &self.reaper).await?;
        let console = if io.terminal {
            Some(ConsoleSocket::new(&self.runtime.root)?)
        } else {
            None
        };
        let mut args: Vec<OsString> = vec![
            "create".into(),
            "--bundle".into(),
            bundle.into(),
            "--pid-file".into(),
            pid_file.clone().into(),
        ];
        if let Some(c) = &console {
            args.push("--console-socket".into());
            args.push(c.path.clone().into());
        }
        args.push(id.into());
        let attaching = console.map(|c| c.attach(io.clone())).transpose()?;
        self.runtime.run(Some(&log), &args, child, None).await?;
        let pid = Self::read_pid(&pid_file)?;
        if let Some(attaching) = attaching {
            match attaching.streams().await {
                Ok(s) => streams = s,
                Err(e) => {
                    let _ = self.runtime.call(None, &["delete", "--force", id]).await;
                    return Err(e);
                }
            }
        }
        Ok((pid, streams))
    }

    async fn start_exec(&self, id: &str, exec_id: &str, c: &mut Container) -> Result<i32, Error> {
        let p = c.process(exec_id)?;
        if p.status != Status::CREATED {
            return Err(Error::Precondition(format!(
                "exec {exec_id:?} was already started"
            )));
        }
        let io = p.io.clone();
        let spec = std::mem::take(&mut p.spec);
        let process_file = c.bundle.join(format!(".exec-{exec_id}.json"));
        let pid_file = c.bundle.join(format!(".exec-{exec_id}.pid"));
        std::fs::write(&process_file, &spec)
            .map_err(|e| Error::io(format!("write {}", process_file.display()), e))?;
        let (child, mut streams) = open_streams(&io, id, &self.namespace, &self.reaper).await?;
        let console = if io.terminal {
            Some(ConsoleSocket::new(&self.runtime.root)?)
        } else {
            None
        };
        let mut args: Vec<OsString> = vec![
            "exec".into(),
            "--process".into(),
            process_file.clone().into(),
            "--detach".into(),
            "--pid-file".into(),
            pid_file.clone().into(),
        ];
        if let Some(s) = &console {
            args.push("--console-socket".into());
            args.push(s.path.clone().into());
        }
        args.push(id.into());
        let log = c.log();
        let attaching = console.map(|s| s.attach(io.clone())).transpose()?;
        let ran = self.runtime.run(Some(&log), &args, child, None).await;
        let _ = std::fs::remove_file(&process_file);
        let pid = ran.and_then(|_| Self::read_pid(&pid_file));
        let _ = std::fs::remove_file(&pid_file);
        let pid = pid?;
        if let Some(attaching) = attaching {
            streams = attaching.streams().await?;
        }
        let p = c.process(exec_id)?;
        p.set_pid(pid);
        p.streams = streams;
        p.status = Status::RUNNING;
        Ok(pid)
    }
}

/// Whether the bundle's container shares a pid namespace (one named by path,
/// or the host's: no pid namespace entry), as runc's ShouldKillAllOnExit
/// decides; an unreadable config counts as shared.
fn shares_pid_namespace(bundle: &Path) -> bool {
    let config = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(config) = config else { return true };
    pid_namespace_shared(&config)
}

fn pid_namespace_shared(config: &serde_json::Value) -> bool {
    let own = config["linux"]["namespaces"].as_array().is_some_and(|all| {
        all.iter()
            .any(|ns| ns["type"] == "pid" && ns["path"].as_str().unwrap_or_default().is_empty())
    });
    !own
}

/// The runtime options containerd may send: CRI's `runtimeoptions.v1.Options`
/// for non-runc runtime types, and runc's options from `ctr`.
fn accept_options(type_url: &str) -> Result<(), Error> {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    match name {
        "" | "runtimeoptions.v1.Options" | "containerd.runc.v1.Options" => Ok(()),
        other => Err(Error::InvalidArgument(format!(
            "options: unsupported runtime options type {other:?}"
        ))),
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::CREATED => "created",
        Status::RUNNING => "running",
        Status::STOPPED => "stopped",
        Status::PAUSED => "paused",
        _ => "unknown",
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let started = std::time::Instant::now();
        let id = req.id.clone();
        let created = self.do_create(req).await.map_err(ttrpc_err);
        log::debug!("create {id}: {:?}", started.elapsed());
        created
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
        if req.exec_id.is_empty() {
            if c.init.status != Status::CREATED {
                return Err(ttrpc_err(Error::Precondition(format!(
                    "container {} is {}, not created",
                    req.id,
                    status_name(c.init.status)
                ))));
            }
            let log = c.log();
            self.runtime
                .call(Some(&log), &["start", &req.id])
                .await
                .map_err(ttrpc_err)?;
            // The init may have exited already: the exit handler waits for
            // this lock, so TaskStart goes out before TaskExit.
            if c.init.status == Status::CREATED {
                c.init.status = Status::RUNNING;
            }
            let pid = c.init.pid as u32;
            self.publish(
                topics::TASK_START_EVENT_TOPIC,
                TaskStart {
                    container_id: req.id.clone(),
                    pid,
                    ..Default::default()
                },
            );
            return Ok(StartResponse {
                pid,
                ..Default::default()
            });
        }
        if c.init.status != Status::RUNNING {
            return Err(ttrpc_err(Error::Precondition(format!(
                "cannot exec in container {}: it is {}",
                req.id,
                status_name(c.init.status)
            ))));
        }
        let pid = self
            .start_exec(&req.id, &req.exec_id, c)
            .await
            .map_err(ttrpc_err)?;
        self.watch_exit(&req.id, &req.exec_id, pid);
        self.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
        if !req.exec_id.is_empty() {
            let p = c.process(&req.exec_id).map_err(ttrpc_err)?;
            if p.status == Status::RUNNING {
                return Err(ttrpc_err(Error::Precondition(format!(
                    "exec {} is still running",
                    req.exec_id
                ))));
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
        if matches!(status, Status::RUNNING | Status::PAUSED) {
            return Err(ttrpc_err(Error::Precondition(format!(
                "container {} is {}: stop it first",
                req.id,
                status_name(status)
            ))));
        }
        let log = c.log();
        let args: &[&str] = if status == Status::CREATED {
            &["delete", "--force", &req.id]
        } else {
            &["delete", &req.id]
        };
        match self.runtime.call(Some(&log), args).await {
            Ok(_)
            | Err(Error::Runtime {
                not_found: true, ..
            }) => {}
            Err(e) => return Err(ttrpc_err(e)),
        }
        if c.rootfs_mounted {
            unmount_rootfs(&c.bundle.join("rootfs"));
        }
        if let Some(w) = c.oom_watch.take() {
            w.abort();
        }
        let (code, at) = c.init.exit_status();
        let at = at.unwrap_or_else(timestamp_now);
        let pid = c.init.pid as u32;
        map.remove(&req.id);
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: req.id.clone(),
                pid,
                exit_status: code,
                exited_at: Some(at.clone()).into(),
                ..Default::default()
            },
        );
        Ok(DeleteResponse {
            pid,
            exit_status: code,
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
        if c.execs.contains_key(&req.exec_id) {
            return Err(ttrpc_err(Error::AlreadyExists(format!(
                "exec {:?} already exists in container {}",
                req.exec_id, req.id
            ))));
        }
        let Some(spec) = req.spec.as_ref() else {
            return Err(ttrpc_err(Error::InvalidArgument(
                "spec: the exec's process is missing".into(),
            )));
        };
        if serde_json::from_slice::<serde_json::Value>(&spec.value).is_err() {
            return Err(ttrpc_err(Error::InvalidArgument(
                "spec: the exec's process is not JSON".into(),
            )));
        }
        let mut p = Process::new(IoPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        });
        p.spec = spec.value.clone();
        c.execs.insert(req.exec_id.clone(), p);
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
        let p = c.process(&req.exec_id).map_err(ttrpc_err)?;
        p.streams.resize(req.width, req.height).map_err(ttrpc_err)?;
        Ok(Empty::new())
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
        let bundle = c.bundle.to_string_lossy().into_owned();
        let paused = c.init.status == Status::PAUSED;
        let p = c.process(&req.exec_id).map_err(ttrpc_err)?;
        let (code, at) = p.exit_status();
        // An exec is frozen with its container.
        let status = match p.status {
            Status::RUNNING if paused => Status::PAUSED,
            s => s,
        };
        Ok(StateResponse {
            id: req.id.clone(),
            bundle,
            pid: p.pid as u32,
            status: status.into(),
            stdin: p.io.stdin.clone(),
            stdout: p.io.stdout.clone(),
            stderr: p.io.stderr.clone(),
            terminal: p.io.terminal,
            exit_status: code,
            exited_at: at.into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        self.freeze(&req.id, true).await.map_err(ttrpc_err)?;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        self.freeze(&req.id, false).await.map_err(ttrpc_err)?;
        Ok(Empty::new())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
        let log = c.log();
        let p = c.process(&req.exec_id).map_err(|e| {
            ttrpc_err(Error::NotFound(format!(
                "kill: {e} in container {}",
                req.id
            )))
        })?;
        if p.status == Status::STOPPED {
            return Err(ttrpc_err(Error::NotFound(format!(
                "process already finished: {}",
                if req.exec_id.is_empty() {
                    &req.id
                } else {
                    &req.exec_id
                }
            ))));
        }
        if !req.exec_id.is_empty() && p.status == Status::CREATED {
            return Err(ttrpc_err(Error::Precondition(format!(
                "exec {} was never started",
                req.exec_id
            ))));
        }
        if !req.all || !req.exec_id.is_empty() {
            // The process itself: no runtime invocation needed.
            return p
                .signal(req.signal as i32)
                .map(|()| Empty::new())
                .map_err(ttrpc_err);
        }
        let sig = req.signal.to_string();
        let mut args = vec!["kill", "--all"];
        args.push(&req.id);
        args.push(&sig);
        self.runtime
            .call(Some(&log), &args)
            .await
            .map_err(ttrpc_err)?;
        Ok(Empty::new())
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
        let log = c.log();
        let out = self
            .runtime
            .call(Some(&log), &["ps", "--format", "json", &req.id])
            .await
            .map_err(ttrpc_err)?;
        let pids: Vec<u32> = serde_json::from_str(&out).map_err(|e| {
            ttrpc_err(Error::Other(format!(
                "peapod ps: not a JSON list of pids: {e}"
            )))
        })?;
        let processes = pids
            .into_iter()
            .map(|pid| {
                let mut info = ProcessInfo {
                    pid,
                    ..Default::default()
                };
                if let Some((exec_id, _)) = c.execs.iter().find(|(_, p)| p.pid as u32 == pid) {
                    let details = containerd_shim_protos::shim::oci::ProcessDetails {
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    };
                    info.info = Some(super::stats::any(
                        "containerd.runc.v1.ProcessDetails",
                        &details,
                    ))
                    .into();
                }
                info
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
        let p = c.process(&req.exec_id).map_err(ttrpc_err)?;
        if req.stdin {
            p.streams.close_stdin();
        }
        Ok(Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: containerd_shim_protos::api::CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::UNIMPLEMENTED,
            "checkpoint is not implemented by peapod",
        )))
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
        let log = c.log();
        let Some(resources) = req.resources.as_ref() else {
            return Err(ttrpc_err(Error::InvalidArgument(
                "resources: missing".into(),
            )));
        };
        let args: Vec<OsString> = ["update", "--resources", "-", &req.id]
            .iter()
            .map(OsString::from)
            .collect();
        self.runtime
            .run(
                Some(&log),
                &args,
                super::runtime::ChildStdio::default(),
                Some(&resources.value),
            )
            .await
            .map_err(ttrpc_err)?;
        Ok(Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let mut rx = {
            let mut map = self.containers.lock().await;
            let c = container(&mut map, &req.id).map_err(ttrpc_err)?;
            c.process(&req.exec_id).map_err(ttrpc_err)?.exit.subscribe()
        };
        let exit = rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| ttrpc_err(Error::NotFound(format!("{} was deleted", req.id))))?
            .clone();
        let (code, at) = exit.unwrap_or_default();
        Ok(WaitResponse {
            exit_status: code,
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let pid = {
            let mut map = self.containers.lock().await;
            container(&mut map, &req.id).map_err(ttrpc_err)?.init.pid
        };
        let stats = super::stats::collect(pid).map_err(ttrpc_err)?;
        Ok(StatsResponse {
            stats: Some(stats).into(),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        let mut map = self.containers.lock().await;
        let task_pid = map.get_mut(&req.id).map(|c| c.init.pid as u32).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        // One shim serves the whole pod: it goes with the pod's last container.
        if self.containers.lock().await.is_empty() {
            self.flush_events().await;
            self.exit.signal();
        }
        Ok(Empty::new())
    }
}

impl TaskService {
    async fn freeze(&self, id: &str, pause: bool) -> Result<(), Error> {
        let mut map = self.containers.lock().await;
        let c = container(&mut map, id)?;
        let log = c.log();
        let verb = if pause { "pause" } else { "resume" };
        self.runtime.call(Some(&log), &[verb, id]).await?;
        if pause {
            c.init.status = Status::PAUSED;
            self.publish(
                topics::TASK_PAUSED_EVENT_TOPIC,
                TaskPaused {
                    container_id: id.to_string(),
                    ..Default::default()
                },
            );
        } else {
            c.init.status = Status::RUNNING;
            self.publish(
                topics::TASK_RESUMED_EVENT_TOPIC,
                TaskResumed {
                    container_id: id.to_string(),
                    ..Default::default()
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{accept_options, pid_namespace_shared};
    use serde_json::json;

    #[test]
    fn init_exit_kills_all_without_a_pid_namespace_of_its_own() {
        let own = json!({ "linux": { "namespaces": [{ "type": "mount" }, { "type": "pid" }] } });
        assert!(!pid_namespace_shared(&own));
        let joined = json!({ "linux": { "namespaces": [
            { "type": "pid", "path": "/proc/42/ns/pid" }] } });
        assert!(pid_namespace_shared(&joined));
        let host = json!({ "linux": { "namespaces": [{ "type": "network" }] } });
        assert!(pid_namespace_shared(&host));
        assert!(pid_namespace_shared(&json!({})));
    }

    #[test]
    fn runtime_options_from_cri_and_ctr_are_accepted() {
        for url in [
            "",
            "runtimeoptions.v1.Options",
            "type.googleapis.com/runtimeoptions.v1.Options",
            "containerd.runc.v1.Options",
        ] {
            assert!(accept_options(url).is_ok(), "{url}");
        }
        let err = accept_options("example.v1.Other").unwrap_err().to_string();
        assert!(
            err.starts_with("options:") && err.contains("example.v1.Other"),
            "{err}"
        );
    }
}
