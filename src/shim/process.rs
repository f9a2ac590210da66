//! How the Task service makes and drives a container's processes (its init
//! and its execs): the one seam between the Task API's rules (`task/`) and
//! the runtime doing the work (the peapod CLI, `cli.rs`; a double in tests).

use std::path::Path;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::stdio::{IoPaths, Streams};
use super::Error;

/// The container a call is about.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub id: &'a str,
    /// Its bundle; the runtime's error log is `log.json` in it.
    pub bundle: &'a Path,
}

/// A process the runtime has made: an init created (not started yet), or an
/// exec running.
pub struct Spawned<H> {
    pub pid: i32,
    /// Signals this process, and never another one that got its PID.
    pub handle: H,
    /// Its exit status (the exit code, or 128 + the signal), once it exits.
    pub exited: oneshot::Receiver<i32>,
    /// What the shim keeps of its stdio (stdin copy, terminal, output copies).
    pub streams: Streams,
}

#[async_trait]
pub trait Processes: Send + Sync + 'static {
    /// What signals one process (a pidfd for the CLI).
    type Handle: Send + Sync + 'static;

    /// Creates the container's init, not started; on failure nothing is left.
    /// `systemd_cgroup`: its cgroup is a systemd scope (the runtime's
    /// `--systemd-cgroup`; later verbs find it in the runtime's state).
    async fn create(
        &self,
        c: Target<'_>,
        io: &IoPaths,
        systemd_cgroup: bool,
    ) -> Result<Spawned<Self::Handle>, Error>;

    /// Starts the created init.
    async fn start(&self, c: Target<'_>) -> Result<(), Error>;

    /// Starts `process` (an OCI process, JSON) in the running container.
    async fn exec(
        &self,
        c: Target<'_>,
        exec_id: &str,
        process: &[u8],
        io: &IoPaths,
    ) -> Result<Spawned<Self::Handle>, Error>;

    /// Sends `signal` to the process itself (not its children).
    fn signal(&self, process: &Self::Handle, signal: i32) -> Result<(), Error>;

    /// Sends `signal` to every process in the container's cgroup.
    async fn kill_all(&self, c: Target<'_>, signal: u32) -> Result<(), Error>;

    /// Deletes the stopped container; `force` for one never started.
    async fn delete(&self, c: Target<'_>, force: bool) -> Result<(), Error>;

    /// Freezes every process of the container.
    async fn pause(&self, c: Target<'_>) -> Result<(), Error>;

    /// Thaws a frozen container.
    async fn resume(&self, c: Target<'_>) -> Result<(), Error>;

    /// Applies `resources` (the OCI `linux.resources`, JSON) to the container.
    async fn update(&self, c: Target<'_>, resources: &[u8]) -> Result<(), Error>;

    /// The PIDs of the container's processes.
    async fn pids(&self, c: Target<'_>) -> Result<Vec<u32>, Error>;
}
