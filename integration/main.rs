//! Root-only integration tests: real namespaces, cgroups, mounts and processes.

mod cgroup;
mod common;
mod conformance;
mod containerd;
mod containerd_shim;
mod net;
mod pod;
mod pod_features;
mod pod_network;
mod podman;
mod probes;
mod runtime;
mod static_pods;
