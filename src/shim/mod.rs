//! `containerd-shim-peapod-v1`: containerd's shim v2 for peapod, one shim
//! process per pod.
//!
//! The shim is a tokio ttrpc server (containerd's `containerd-shim` crate);
//! it never calls libcontainer. Each container operation runs the
//! single-threaded `peapod` runtime CLI (`runtime.rs`), the way containerd's
//! runc shim runs runc; the shim is the subreaper of the containers
//! (`reaper.rs`), copies terminals (`stdio.rs`), reads cgroup metrics
//! (`stats.rs`) and OOM notifications (`oom.rs`), and publishes containerd's
//! task events in containerd's order (`task.rs`).

mod error;
mod oom;
mod reaper;
mod runtime;
mod service;
mod stats;
mod stdio;
mod task;

pub use error::Error;
pub use service::{grouping, run};
