//! Root-only integration tests: real namespaces, cgroups, mounts and processes.

mod cgroup;
mod common;
mod conformance;
mod containerd;
mod containerd_shim;
mod copy_up;
mod image;
mod net;
mod pod;
mod pod_features;
mod podman;
mod probes;
mod registry;
mod runtime;
mod static_pods;
