//! The pod engine: a Kubernetes Pod manifest run on this node.

pub mod admission;
pub mod api;
pub mod exits;
pub mod idle;
pub mod lifecycle;
pub mod logs;
pub mod model;
pub mod poll;
pub mod run;
pub mod spec;
pub mod static_pods;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod teardown;
pub mod volumes;
