//! The host's cgroups, v1 and v2, for the runtime layer, the pod engine and
//! the shim: which hierarchies are mounted (`layout.rs`: pure v2, v1, or
//! hybrid), a container's or pod's folder in each (`paths.rs`), and what peapod
//! does there: stats (`stats.rs`), OOM counters and notifications (`oom.rs`),
//! the freezer (`freezer.rs`), process lists (`procs.rs`) and removal of empty
//! cgroups (`remove.rs`).
//!
//! Our own code rather than a crate's, because neither crate at hand reads
//! this host right:
//! - libcgroups 0.7 (youki) decides the layout by statfs of `/sys/fs/cgroup`
//!   and reads a hybrid host as v1 only (the cgroup2 tree with hugetlb is
//!   ignored); each use builds a manager that reads /proc/self/cgroup and
//!   mountinfo once per controller (costlier than the reads themselves), its
//!   per-controller stats readers are private, and it knows nothing of
//!   `memory.events` or OOM notifications. It stays what it does well: the
//!   writer of `linux.resources` (`oci::update` applies them through the same
//!   manager that set them at create).
//! - cgroups-rs 0.5 (pulled in by containerd-shim) also picks v1 or v2 by
//!   statfs, turns unreadable files into zeros, and each OOM notification
//!   blocks a thread of its own: wrong for the single-threaded pod supervisor
//!   and the tokio shim.
//!
//! What is left is reading small flat files, which this module does; the
//! layout comes from `sys::mountinfo`, so only hierarchies really mounted count.

mod create;
mod files;
mod freezer;
mod layout;
mod oom;
mod paths;
mod procs;
mod remove;
mod stats;

use std::path::PathBuf;

pub use create::{hugepage_size_name, hugepage_sizes, shares_to_weight, Limits};
pub use freezer::FreezerState;
pub use layout::{Hierarchy, Layout, Mode, Version};
pub use oom::{OomEvent, OomWatch};
pub use paths::{Cgroup, Dir};
pub use stats::{
    BlkioEntry, CpuStats, HugetlbStats, IoDevice, IoStats, MemoryEntry, MemoryEvents, MemoryStats,
    PidsStats, Stats,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("no {0} hierarchy holds this cgroup")]
    NoController(&'static str),
    #[error("{}: still {state} after {waited_ms} ms", path.display())]
    Stuck {
        path: PathBuf,
        state: String,
        waited_ms: u128,
    },
}

impl Error {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The cgroup (or a file of it) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
