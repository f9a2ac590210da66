//! `containerd-shim-peapod-v1`: containerd's shim v2 for peapod, one shim
//! process per pod.
//!
//! The shim is a tokio ttrpc server (containerd's `containerd-shim` crate);
//! it never calls libcontainer. Its Task service (`task/`) keeps containerd's
//! rules over two seams: `process.rs` (how a container's processes are made
//! and driven; `cli.rs` runs the single-threaded `peapod` runtime CLI for
//! each operation, through `runtime.rs`, the way containerd's runc shim runs
//! runc) and `events.rs` (where its events go: containerd's publisher,
//! through one queue). The shim is the subreaper of the containers
//! (`reaper.rs`), copies terminals (`stdio.rs`), reads cgroup metrics
//! (`stats.rs`) and OOM notifications (`oom.rs`).

mod cli;
mod error;
mod events;
mod oom;
mod process;
mod reaper;
mod runtime;
mod service;
mod stats;
mod stdio;
mod task;

pub use error::Error;
pub use service::{grouping, run};
