//! containerd's Task service: containerd's rules for a task's processes and
//! events, over two seams: how processes are made and driven
//! (`process::Processes`, the peapod CLI in the shim) and where events go
//! (`events::EventSender`, containerd's publisher in the shim). Its files:
//! `lifecycle.rs` (Create, Start, Exec, Delete), `control.rs` (Kill, Pause,
//! Wait, State, …), `exits.rs` (the order exits are reported in),
//! `table.rs` (what it knows of its containers).

mod control;
#[cfg(test)]
mod doubles;
mod exits;
mod lifecycle;
mod table;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext};
use tokio::sync::Mutex;

use super::events::EventSender;
use super::process::Processes;
use super::Error;
use table::{container, Table};

// `oom.rs` queues its TaskOOM events by this path.
pub(super) use super::events::Queued;
pub use lifecycle::unmount_rootfs;

pub struct TaskService<P: Processes, E: EventSender> {
    processes: Arc<P>,
    events: Arc<E>,
    /// One lock over the table: operations on it (and the exits reported)
    /// happen one at a time, so their events come out in order.
    containers: Arc<Mutex<Table<P::Handle>>>,
    exit: Arc<ExitSignal>,
}

// Not derived: P and E need not be Clone.
impl<P: Processes, E: EventSender> Clone for TaskService<P, E> {
    fn clone(&self) -> Self {
        TaskService {
            processes: self.processes.clone(),
            events: self.events.clone(),
            containers: self.containers.clone(),
            exit: self.exit.clone(),
        }
    }
}

impl<P: Processes, E: EventSender> TaskService<P, E> {
    pub fn new(processes: P, events: E, exit: Arc<ExitSignal>) -> Self {
        TaskService {
            processes: Arc::new(processes),
            events: Arc::new(events),
            containers: Arc::new(Mutex::new(Table::new())),
            exit,
        }
    }
}

fn answer<T>(result: Result<T, Error>) -> ttrpc::Result<T> {
    result.map_err(ttrpc::Error::from)
}

#[async_trait]
impl<P: Processes, E: EventSender> Task for TaskService<P, E> {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let started = std::time::Instant::now();
        let id = req.id.clone();
        let created = self.create_task(req).await;
        log::debug!("create {id}: {:?}", started.elapsed());
        answer(created)
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        answer(self.start_process(req).await)
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        answer(self.delete_process(req).await)
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        answer(self.add_exec(req).await.map(|()| Empty::new()))
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        answer(self.resize_terminal(req).await.map(|()| Empty::new()))
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        answer(self.process_state(req).await)
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        answer(self.freeze(&req.id, true).await.map(|()| Empty::new()))
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        answer(self.freeze(&req.id, false).await.map(|()| Empty::new()))
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        answer(self.kill_process(req).await.map(|()| Empty::new()))
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        answer(self.list_pids(&req.id).await)
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        answer(self.close_stdin(req).await.map(|()| Empty::new()))
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::UNIMPLEMENTED,
            "checkpoint is not implemented by peapod",
        )))
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        answer(self.update_resources(req).await.map(|()| Empty::new()))
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        answer(self.wait_exit(req).await)
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let pid = {
            let mut table = self.containers.lock().await;
            answer(container(&mut table, &req.id))?.init.pid
        };
        let stats = answer(super::stats::collect(pid))?;
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
        let table = self.containers.lock().await;
        let task_pid = table.get(&req.id).map(|c| c.init.pid as u32).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        self.shut_down().await;
        Ok(Empty::new())
    }
}
