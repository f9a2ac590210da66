//! The pod engine: a Kubernetes Pod manifest run on this node.
//!
//! `engine` holds the operations the front ends call (start, stop, remove,
//! adopt, exec, ps); `launch` starts a pod's supervisor, the long-lived
//! single-threaded process (`supervisor/`) that runs the pod through the pure
//! lifecycle machine (`lifecycle/`); `folder` is the pod's folder on the host,
//! `store` the set of them.

pub mod admission;
pub mod cgroups;
pub mod downward;
pub mod engine;
pub mod error;
pub mod events;
pub mod exits;
pub mod folder;
pub mod idle;
pub mod image_gc;
pub mod launch;
pub mod lifecycle;
pub mod logs;
pub mod model;
pub mod network;
pub mod poll;
pub mod probe;
pub mod qos;
pub mod security;
pub mod settings;
pub mod spec;
pub mod static_pods;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod systemd_names;
pub mod teardown;
pub mod volumes;

pub use engine::Engine;
pub use error::{Error, Result};
pub use settings::Settings;
