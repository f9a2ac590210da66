//! What the shim knows of its containers and their processes.

use std::collections::HashMap;
use std::path::PathBuf;

use containerd_shim_protos::api::Status;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::shim::process::{Spawned, Target};
use crate::shim::stdio::{IoPaths, Streams};
use crate::shim::Error;

/// A process's exit status and time, once it has exited.
pub(super) type Exit = Option<(u32, Timestamp)>;

/// An init or exec process; `H` signals it.
pub(super) struct Process<H> {
    /// 0 until the runtime made it.
    pub pid: i32,
    pub handle: Option<H>,
    pub io: IoPaths,
    pub streams: Streams,
    pub status: Status,
    pub exit: watch::Sender<Exit>,
    /// An exec's OCI process (JSON), until it is started.
    pub spec: Vec<u8>,
}

impl<H> Process<H> {
    pub fn new(io: IoPaths) -> Self {
        Process {
            pid: 0,
            handle: None,
            io,
            streams: Streams::default(),
            status: Status::CREATED,
            exit: watch::channel(None).0,
            spec: Vec::new(),
        }
    }

    /// Takes what the runtime made; returns its exit to come.
    pub fn spawned(&mut self, s: Spawned<H>) -> oneshot::Receiver<i32> {
        self.pid = s.pid;
        self.handle = Some(s.handle);
        self.streams = s.streams;
        s.exited
    }

    pub fn exit_status(&self) -> (u32, Option<Timestamp>) {
        match &*self.exit.borrow() {
            Some((code, at)) => (*code, Some(at.clone())),
            None => (0, None),
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self.status, Status::RUNNING | Status::PAUSED)
    }
}

pub(super) struct Container<H> {
    pub id: String,
    pub bundle: PathBuf,
    pub init: Process<H>,
    pub execs: HashMap<String, Process<H>>,
    pub rootfs_mounted: bool,
    /// The init's exit, held back until its running execs' exits are out.
    pub pending_init_exit: Option<i32>,
    /// The container has no pid namespace of its own: when its init exits,
    /// the rest of its processes are killed (`kill --all`), as runc's shim does.
    pub kill_all_on_exit: bool,
    pub oom_watch: Option<JoinHandle<()>>,
}

impl<H> Container<H> {
    /// The init for an empty `exec_id`, else that exec.
    pub fn process(&mut self, exec_id: &str) -> Result<&mut Process<H>, Error> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| Error::NotFound(format!("exec {exec_id:?} not found")))
    }

    pub fn target(&self) -> Target<'_> {
        Target {
            id: &self.id,
            bundle: &self.bundle,
        }
    }

    pub fn stop_oom_watch(&mut self) {
        if let Some(w) = self.oom_watch.take() {
            w.abort();
        }
    }
}

/// The shim's containers, by id.
pub(super) type Table<H> = HashMap<String, Container<H>>;

pub(super) fn container<'a, H>(
    table: &'a mut Table<H>,
    id: &str,
) -> Result<&'a mut Container<H>, Error> {
    table
        .get_mut(id)
        .ok_or_else(|| Error::NotFound(format!("container {id:?} not found in this shim")))
}

pub(super) fn status_name(s: Status) -> &'static str {
    match s {
        Status::CREATED => "created",
        Status::RUNNING => "running",
        Status::STOPPED => "stopped",
        Status::PAUSED => "paused",
        _ => "unknown",
    }
}
