//! Where the Task service's events go: the seam between the Task API's rules
//! (`task/`) and containerd's event publisher (a double in tests).

use async_trait::async_trait;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The task events the Task service sends, each under its own topic
/// (TaskOOM comes from the kernel: `EventSender::watch_oom`).
#[derive(Debug)]
pub enum TaskEvent {
    Create(TaskCreate),
    Start(TaskStart),
    ExecAdded(TaskExecAdded),
    ExecStarted(TaskExecStarted),
    Exit(TaskExit),
    Delete(TaskDelete),
    Paused(TaskPaused),
    Resumed(TaskResumed),
}

impl TaskEvent {
    /// The topic containerd expects it under, and the message.
    pub fn into_parts(self) -> (&'static str, Box<dyn MessageDyn>) {
        match self {
            TaskEvent::Create(e) => (topics::TASK_CREATE_EVENT_TOPIC, Box::new(e)),
            TaskEvent::Start(e) => (topics::TASK_START_EVENT_TOPIC, Box::new(e)),
            TaskEvent::ExecAdded(e) => (topics::TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(e)),
            TaskEvent::ExecStarted(e) => (topics::TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(e)),
            TaskEvent::Exit(e) => (topics::TASK_EXIT_EVENT_TOPIC, Box::new(e)),
            TaskEvent::Delete(e) => (topics::TASK_DELETE_EVENT_TOPIC, Box::new(e)),
            TaskEvent::Paused(e) => (topics::TASK_PAUSED_EVENT_TOPIC, Box::new(e)),
            TaskEvent::Resumed(e) => (topics::TASK_RESUMED_EVENT_TOPIC, Box::new(e)),
        }
    }
}

#[async_trait]
pub trait EventSender: Send + Sync + 'static {
    /// Queues `event`: events reach containerd in the order they were sent.
    fn send(&self, event: TaskEvent);

    /// Waits (a bounded time) until what was sent so far has reached containerd.
    async fn flush(&self);

    /// Sends TaskOOM for `id` whenever the kernel reports an OOM kill in the
    /// memory cgroup of `pid`, until the returned task is aborted; None when
    /// there is nothing to watch.
    fn watch_oom(&self, id: &str, pid: i32) -> Option<JoinHandle<()>>;
}

/// What goes through the event queue: an event, or a marker the forwarder
/// acknowledges once everything queued before it is published.
pub enum Queued {
    Event(&'static str, Box<dyn MessageDyn>),
    Flush(oneshot::Sender<()>),
}

/// How long a flush waits for queued events to reach containerd.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// containerd's publisher behind one queue with one forwarder, which keeps
/// the events in order; the OOM watchers (`oom.rs`) feed the same queue.
pub struct ContainerdEvents {
    queue: mpsc::UnboundedSender<Queued>,
}

impl ContainerdEvents {
    pub fn new(publisher: RemotePublisher, namespace: String) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Queued>();
        tokio::spawn(async move {
            while let Some(queued) = rx.recv().await {
                match queued {
                    Queued::Event(topic, event) => {
                        let ctx = ttrpc::context::Context::default();
                        if let Err(e) = publisher.publish(ctx, topic, &namespace, event).await {
                            log::warn!("publish {topic}: {e}");
                        }
                    }
                    Queued::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        ContainerdEvents { queue }
    }
}

#[async_trait]
impl EventSender for ContainerdEvents {
    fn send(&self, event: TaskEvent) {
        let (topic, message) = event.into_parts();
        let _ = self.queue.send(Queued::Event(topic, message));
    }

    async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Queued::Flush(done)).is_ok()
            && tokio::time::timeout(FLUSH_WAIT, flushed).await.is_err()
        {
            log::warn!("events not all published after {FLUSH_WAIT:?}");
        }
    }

    fn watch_oom(&self, id: &str, pid: i32) -> Option<JoinHandle<()>> {
        super::oom::watch(pid, id.to_string(), self.queue.clone())
    }
}
