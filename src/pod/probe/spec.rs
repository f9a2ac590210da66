//! Probes and lifecycle hooks as peapod runs them: what the manifest said,
//! validated (see `admission.rs`), with the API server's defaults applied and
//! port names resolved to numbers.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// The name the kubelet's events use ("Liveness probe failed: …").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }

    /// The manifest field ("livenessProbe").
    pub fn field(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startupProbe",
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
        }
    }
}

/// One probe of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub handler: Handler,
    pub timing: Timing,
    /// The probe-level terminationGracePeriodSeconds: the grace a container
    /// killed for failing this (liveness or startup) probe gets.
    pub termination_grace: Option<Duration>,
}

/// When a probe runs and how its results count (the API's defaults applied:
/// timeout 1 s, period 10 s, success threshold 1, failure threshold 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handler {
    /// A command run in the container; success on exit 0.
    Exec {
        command: Vec<String>,
    },
    HttpGet(HttpGet),
    /// Success once a TCP connection is made.
    TcpSocket {
        host: Option<IpAddr>,
        port: u16,
    },
    /// `grpc.health.v1.Health/Check` over cleartext HTTP/2; success on SERVING.
    Grpc {
        port: u16,
        service: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpGet {
    /// None: the pod's IP (or, without one, loopback in the pod's namespace).
    pub host: Option<IpAddr>,
    pub port: u16,
    /// As written, with query if any; "" is "/".
    pub path: String,
    pub scheme: Scheme,
    /// httpHeaders in order (a `Host` header sets the request's host).
    pub headers: Vec<(String, String)>,
}

/// A postStart or preStop hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hook {
    Exec { command: Vec<String> },
    HttpGet(HttpGet),
    Sleep(Duration),
}

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HookKind {
    PostStart,
    PreStop,
}

/// Everything of one container that probes and hooks need.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Health {
    pub startup: Option<Probe>,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    pub post_start: Option<Hook>,
    pub pre_stop: Option<Hook>,
}

impl Health {
    pub fn probe(&self, kind: ProbeKind) -> Option<&Probe> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    pub fn hook(&self, kind: HookKind) -> Option<&Hook> {
        match kind {
            HookKind::PostStart => self.post_start.as_ref(),
            HookKind::PreStop => self.pre_stop.as_ref(),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Rewrites every exec command's words, e.g. to expand `$(VAR)` from the
    /// container's env as the kubelet does (`ExpandContainerCommandOnlyStatic`).
    pub fn map_commands(&mut self, mut f: impl FnMut(&str) -> String) {
        let probes = [&mut self.startup, &mut self.liveness, &mut self.readiness];
        for probe in probes.into_iter().flatten() {
            if let Handler::Exec { command } = &mut probe.handler {
                command.iter_mut().for_each(|word| *word = f(word));
            }
        }
        for hook in [&mut self.post_start, &mut self.pre_stop]
            .into_iter()
            .flatten()
        {
            if let Hook::Exec { command } = hook {
                command.iter_mut().for_each(|word| *word = f(word));
            }
        }
    }
}
