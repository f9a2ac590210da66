//! Root-only integration tests: real namespaces, cgroups, mounts and processes.

mod common;
mod containerd;
mod pod;
mod podman;
mod runtime;
