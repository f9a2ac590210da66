//! Root-only integration tests: real namespaces, cgroups, mounts and processes.

mod cgroup;
mod common;
mod conformance;
mod conformance_cgroups;
mod conformance_checkpoint;
mod conformance_hooks;
mod conformance_mounts;
mod conformance_seccomp;
mod conformance_tty;
mod conformance_update;
mod containerd;
mod containerd_shim;
mod copy_up;
mod image;
mod net;
mod pod;
mod pod_features;
mod pod_health;
mod pod_network;
mod pod_pull;
mod podman;
mod probes;
mod registry;
mod runtime;
mod static_pods;
