//! How exits are reported: an exec's exit before its init's, and nothing of
//! a container without a pid namespace of its own left running once its init
//! has exited (containerd's runc shim keeps the same rules).

use containerd_shim_protos::api::Status;
use containerd_shim_protos::events::task::TaskExit;
use tokio::sync::oneshot;

use super::table::Container;
use super::TaskService;
use crate::shim::events::{EventSender, TaskEvent};
use crate::shim::process::Processes;
use crate::shim::service::timestamp_now;

impl<P: Processes, E: EventSender> TaskService<P, E> {
    /// Reports the exit of `exec_id` (the init if empty) once it comes.
    pub(super) fn watch_exit(&self, id: &str, exec_id: &str, exited: oneshot::Receiver<i32>) {
        let me = self.clone();
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            let code = exited.await.unwrap_or(255);
            me.exited(&id, &exec_id, code).await;
        });
    }

    async fn exited(&self, id: &str, exec_id: &str, code: i32) {
        let mut table = self.containers.lock().await;
        let Some(c) = table.get_mut(id) else { return };
        if exec_id.is_empty() {
            if c.kill_all_on_exit {
                // Without a pid namespace of its own, the init's death does
                // not take its children with it.
                if let Err(e) = self
                    .processes
                    .kill_all(c.target(), libc::SIGKILL as u32)
                    .await
                {
                    log::warn!("kill the processes left in {id}: {e}");
                }
            }
            let running: Vec<&P::Handle> = c
                .execs
                .values()
                .filter(|p| p.is_live())
                .filter_map(|p| p.handle.as_ref())
                .collect();
            if !running.is_empty() {
                // Execs go with the init; their exits are reported first.
                for handle in running {
                    let _ = self.processes.signal(handle, libc::SIGKILL);
                }
                c.pending_init_exit = Some(code);
                return;
            }
            self.finish(c, "", code).await;
            return;
        }
        self.finish(c, exec_id, code).await;
        let execs_done = !c.execs.values().any(|p| p.status == Status::RUNNING);
        if execs_done {
            if let Some(code) = c.pending_init_exit.take() {
                self.finish(c, "", code).await;
            }
        }
    }

    /// Marks a process stopped and sends TaskExit.
    async fn finish(&self, c: &mut Container<P::Handle>, exec_id: &str, code: i32) {
        let id = c.id.clone();
        let Ok(p) = c.process(exec_id) else { return };
        p.streams.drain().await;
        p.status = Status::STOPPED;
        let at = timestamp_now();
        let code = code as u32;
        self.events.send(TaskEvent::Exit(TaskExit {
            id: if exec_id.is_empty() { &id } else { exec_id }.to_string(),
            container_id: id,
            pid: p.pid as u32,
            exit_status: code,
            exited_at: Some(at.clone()).into(),
            ..Default::default()
        }));
        p.exit.send_replace(Some((code, at)));
        if exec_id.is_empty() {
            c.stop_oom_watch();
        }
    }
}

/// Whether the bundle's container shares a pid namespace (one named by path,
/// or the host's: no pid namespace entry), as runc's ShouldKillAllOnExit
/// decides; an unreadable config counts as shared.
pub(super) fn shares_pid_namespace(bundle: &std::path::Path) -> bool {
    let config = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(config) = config else { return true };
    pid_namespace_shared(&config)
}

pub(super) fn pid_namespace_shared(config: &serde_json::Value) -> bool {
    let own = config["linux"]["namespaces"].as_array().is_some_and(|all| {
        all.iter()
            .any(|ns| ns["type"] == "pid" && ns["path"].as_str().unwrap_or_default().is_empty())
    });
    !own
}
