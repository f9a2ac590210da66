//! Acting on a task and asking about it: Kill, Pause/Resume, Update, Pids,
//! State, Wait, CloseIO, ResizePty, Shutdown.

use containerd_shim_protos::api::{
    CloseIORequest, KillRequest, PidsResponse, ProcessInfo, ResizePtyRequest, StateRequest,
    StateResponse, Status, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};
use containerd_shim_protos::shim::oci::ProcessDetails;

use super::table::container;
use super::TaskService;
use crate::shim::events::{EventSender, TaskEvent};
use crate::shim::process::Processes;
use crate::shim::Error;

impl<P: Processes, E: EventSender> TaskService<P, E> {
    /// Signals the process itself, or with `all` every process of the
    /// container (`kill --all`).
    pub(super) async fn kill_process(&self, req: KillRequest) -> Result<(), Error> {
        let mut table = self.containers.lock().await;
        let c = container(&mut table, &req.id)?;
        let p = c
            .process(&req.exec_id)
            .map_err(|e| Error::NotFound(format!("kill: {e} in container {}", req.id)))?;
        if p.status == Status::STOPPED {
            return Err(Error::NotFound(format!(
                "process already finished: {}",
                if req.exec_id.is_empty() {
                    &req.id
                } else {
                    &req.exec_id
                }
            )));
        }
        if !req.exec_id.is_empty() && p.status == Status::CREATED {
            return Err(Error::Precondition(format!(
                "exec {} was never started",
                req.exec_id
            )));
        }
        if !req.all || !req.exec_id.is_empty() {
            // The process itself: no runtime invocation needed.
            let Some(handle) = &p.handle else {
                return Err(Error::NotFound("the process has no pid".into()));
            };
            return self.processes.signal(handle, req.signal as i32);
        }
        self.processes.kill_all(c.target(), req.signal).await
    }

    /// Pause (`frozen`) or Resume, and its event.
    pub(super) async fn freeze(&self, id: &str, frozen: bool) -> Result<(), Error> {
        let mut table = self.containers.lock().await;
        let c = container(&mut table, id)?;
        if frozen {
            self.processes.pause(c.target()).await?;
            c.init.status = Status::PAUSED;
            self.events.send(TaskEvent::Paused(TaskPaused {
                container_id: id.to_string(),
                ..Default::default()
            }));
        } else {
            self.processes.resume(c.target()).await?;
            c.init.status = Status::RUNNING;
            self.events.send(TaskEvent::Resumed(TaskResumed {
                container_id: id.to_string(),
                ..Default::default()
            }));
        }
        Ok(())
    }

    pub(super) async fn update_resources(&self, req: UpdateTaskRequest) -> Result<(), Error> {
        let mut table = self.containers.lock().await;
        let c = container(&mut table, &req.id)?;
        let Some(resources) = req.resources.as_ref() else {
            return Err(Error::InvalidArgument("resources: missing".into()));
        };
        self.processes.update(c.target(), &resources.value).await
    }

    /// The container's processes; an exec's carry its exec id.
    pub(super) async fn list_pids(&self, id: &str) -> Result<PidsResponse, Error> {
        let mut table = self.containers.lock().await;
        let c = container(&mut table, id)?;
        let pids = self.processes.pids(c.target()).await?;
        let processes = pids
            .into_iter()
            .map(|pid| {
                let mut info = ProcessInfo {
                    pid,
                    ..Default::default()
                };
                if let Some((exec_id, _)) = c.execs.iter().find(|(_, p)| p.pid as u32 == pid) {
                    let details = ProcessDetails {
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    };
                    info.info = Some(crate::shim::stats::any(
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

    pub(super) async fn process_state(&self, req: StateRequest) -> Result<StateResponse, Error> {
        let mut table = self.containers.lock().await;
        let c = container(&mut table, &req.id)?;
        let bundle = c.bundle.to_string_lossy().into_owned();
        let paused = c.init.status == Status::PAUSED;
        let p = c.process(&req.exec_id)?;
        let (code, at) = p.exit_status();
        // An exec is frozen with its container.
        let status = match p.status {
            Status::RUNNING if paused => Status::PAUSED,
            s => s,
        };
        Ok(StateResponse {
            id: req.id,
            bundle,
            pid: p.pid as u32,
            status: status.into(),
            stdin: p.io.stdin.clone(),
            stdout: p.io.stdout.clone(),
            stderr: p.io.stderr.clone(),
            terminal: p.io.terminal,
            exit_status: code,
            exited_at: at.into(),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    /// Waits for the process's exit (answers at once if it has exited).
    pub(super) async fn wait_exit(&self, req: WaitRequest) -> Result<WaitResponse, Error> {
        let mut rx = {
            let mut table = self.containers.lock().await;
            let c = container(&mut table, &req.id)?;
            c.process(&req.exec_id)?.exit.subscribe()
        };
        let exit = rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| Error::NotFound(format!("{} was deleted", req.id)))?
            .clone();
        let (code, at) = exit.unwrap_or_default();
        Ok(WaitResponse {
            exit_status: code,
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }

    pub(super) async fn close_stdin(&self, req: CloseIORequest) -> Result<(), Error> {
        let mut table = self.containers.lock().await;
        let p = container(&mut table, &req.id)?.process(&req.exec_id)?;
        if req.stdin {
            p.streams.close_stdin();
        }
        Ok(())
    }

    pub(super) async fn resize_terminal(&self, req: ResizePtyRequest) -> Result<(), Error> {
        let mut table = self.containers.lock().await;
        let p = container(&mut table, &req.id)?.process(&req.exec_id)?;
        p.streams.resize(req.width, req.height)
    }

    /// Ends the shim once it has no container left (one shim serves the
    /// whole pod), after the events queued so far are out; else keeps it.
    pub(super) async fn shut_down(&self) {
        if self.containers.lock().await.is_empty() {
            self.events.flush().await;
            self.exit.signal();
        }
    }
}
