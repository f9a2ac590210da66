//! System plumbing shared by the runtime layer, the pod engine and the shim.

pub mod cgroup;
pub mod idmap;
pub mod mountinfo;
pub mod systemd;
