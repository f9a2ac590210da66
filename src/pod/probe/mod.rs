//! Probes and lifecycle hooks as non-blocking work for the pod supervisor's
//! poll loop (one single-threaded process per pod): what the kubelet's
//! prober and lifecycle handlers do, without threads.
//!
//! - `spec.rs`: probes and hooks as peapod runs them; `admission.rs` checks
//!   and converts the manifest's (called by admission).
//! - `worker.rs`: the kubelet's probe-worker rules as a pure state machine
//!   ([`Prober`]: when probes run, thresholds, startup gating, ready, kill).
//! - `hooks.rs`: the rules of postStart and preStop, pure.
//! - `check.rs`: one run of a probe or hook ([`Check`]): an fd to poll, the
//!   events wanted, a deadline and a `ready(now)` step; [`Checks`] keeps
//!   many for one poll(). The kinds: `tcp.rs`, `http.rs` (HTTP and HTTPS
//!   over `conn.rs`), `grpc.rs` (a minimal HTTP/2 client, `hpack.rs`),
//!   `exec.rs` (a forked helper running peapod's exec).
//! - `net.rs`: where connections are made (our namespace, or the pod's).

pub mod admission;
pub mod check;
pub mod conn;
pub mod exec;
pub mod grpc;
pub mod hooks;
pub mod hpack;
pub mod http;
pub mod net;
pub mod spec;
pub mod tcp;
pub mod worker;

pub use check::{Check, Checks, Context, Outcome, Verdict};
pub use net::Target;
pub use spec::{Handler, Health, Hook, HookKind, HttpGet, Probe, ProbeKind, Scheme, Timing};
pub use worker::{Due, Event, Prober};
