//! Probes and lifecycle hooks in the supervisor's poll loop: the kubelet's
//! probe workers (`probe::Prober`, pure) decide what runs when; each run is a
//! non-blocking `probe::Check` whose fd joins the one poll() (a connect under
//! way waits for POLLOUT), or a short-lived exec helper it watches. What they
//! find goes to the lifecycle as inputs (ProbeFailed, Health, PostStartDone,
//! PreStopDone) and into the pod's events. Nothing here sleeps.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use nix::poll::PollFlags;

use super::Supervisor;
use crate::pod::events::EventType;
use crate::pod::lifecycle::Input;
use crate::pod::model::{Pod, RestartPolicy};
use crate::pod::probe::hooks::{self, Subject, FAILED_POST_START, FAILED_PRE_STOP};
use crate::pod::probe::{check::Verdict, Health};
use crate::pod::probe::{Check, Checks, Context, Due, Event, HookKind, Outcome, Prober, Target};

/// A check under way, by what it is for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Job {
    Probe { due: Due, began: Instant },
    Hook { container: String, kind: HookKind },
}

impl Job {
    fn container(&self) -> &str {
        match self {
            Job::Probe { due, .. } => &due.container,
            Job::Hook { container, .. } => container,
        }
    }
}

/// The pod's probes and hooks under way.
pub(super) struct HealthWork {
    pub(super) prober: Prober,
    pub(super) checks: Checks<Job>,
    /// Where connections go; None while the pod has no sandbox.
    target: Option<Target>,
    /// The prober was told that the pod shuts down.
    told_shutdown: bool,
}

impl HealthWork {
    pub(super) fn new(pod: &Pod) -> Self {
        let containers = pod.init_containers.iter().chain(&pod.containers);
        Self {
            prober: Prober::new(containers.map(|c| (c.name.as_str(), &c.health))),
            checks: Checks::default(),
            target: None,
            told_shutdown: false,
        }
    }

    /// The fds of the checks under way, with their events, in order.
    pub(super) fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        self.checks.fds()
    }

    /// When the loop must look again at the latest: a probe due, or a check's deadline.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match (self.prober.next_deadline(), self.checks.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Supervisor {
    fn health_of(&self, container: &str) -> Option<&Health> {
        self.containers()
            .find(|c| c.name == container)
            .map(|c| &c.health)
    }

    /// Where probes and hooks connect: inside the sandbox's network namespace,
    /// to its loopback when a probe names no host. This is the one place to
    /// change once pods have an IP (connect from here to it:
    /// `Target::here(pod_ip)`) and for hostNetwork pods
    /// (`Target::here(127.0.0.1)`: the node's own namespace).
    pub(super) fn refresh_probe_target(&mut self) {
        let address = self.probe_address();
        self.health.target = self.sandbox_pid.and_then(|pid| match Target::inside(pid) {
            Ok(mut target) => {
                if let Some(ip) = address {
                    target.default_host = ip;
                }
                Some(target)
            }
            Err(e) => {
                tracing::warn!("probes: the sandbox's network namespace: {e}");
                None
            }
        });
    }

    /// The run of `container` counts as running: its probes start.
    pub(super) fn probes_start(&mut self, container: &str, jitter: f64) {
        let at = Instant::now();
        let events = self.health.prober.started(container, at, at, jitter);
        self.prober_events(events);
    }

    /// Starts a hook of `container`; its end comes back as PostStartDone or PreStopDone.
    pub(super) fn run_hook(&mut self, container: &str, kind: HookKind, deadline: Option<Instant>) {
        if kind == HookKind::PreStop {
            self.record_killing(container);
        }
        let Some(hook) = self
            .health_of(container)
            .and_then(|h| h.hook(kind))
            .cloned()
        else {
            self.hook_ended(container, kind, None);
            return;
        };
        let at = Instant::now();
        let check = {
            let Some(target) = &self.health.target else {
                let gone = Outcome {
                    verdict: Verdict::Error,
                    output: "the pod's sandbox is gone".into(),
                    exit_code: None,
                };
                self.hook_ended(container, kind, Some(&gone));
                return;
            };
            let ctx = Context {
                target,
                runtime: Some(&self.runtime),
                container_id: container,
            };
            Check::hook(&hook, &ctx, deadline, at)
        };
        let job = Job::Hook {
            container: container.to_string(),
            kind,
        };
        self.health.checks.add(job, check);
    }

    /// After poll(): `fired[i]` tells whether the i-th fd of the checks had
    /// events. Hands ended checks on, then starts the probes now due.
    pub(super) fn health_step(&mut self, fired: &[bool]) {
        let ended = self.health.checks.dispatch(fired, Instant::now());
        // The code a check's end runs (reading and judging the answer) is
        // given back before the loop sleeps again, as after its start: an
        // idle supervisor keeps no probe code mapped between periods.
        if !ended.is_empty() {
            self.idle_trim_due = true;
        }
        for (job, outcome) in ended {
            match job {
                Job::Probe { due, began } => {
                    let events = self
                        .health
                        .prober
                        .finished(&due, began, &outcome, Instant::now());
                    self.prober_events(events);
                }
                Job::Hook { container, kind } => self.hook_ended(&container, kind, Some(&outcome)),
            }
        }
        self.start_due_probes();
    }

    fn start_due_probes(&mut self) {
        let at = Instant::now();
        let due = self.health.prober.due(at);
        if due.is_empty() {
            return;
        }
        self.idle_trim_due = true;
        let mut unrun = Vec::new();
        let HealthWork {
            prober,
            checks,
            target,
            ..
        } = &mut self.health;
        for due in due {
            let (Some(probe), Some(target)) = (prober.probe(&due), target.as_ref()) else {
                unrun.push(due);
                continue;
            };
            let ctx = Context {
                target,
                runtime: Some(&self.runtime),
                container_id: &due.container,
            };
            let check = Check::probe(&probe.handler, &ctx, probe.timing.timeout, at);
            checks.add(Job::Probe { due, began: at }, check);
        }
        // No sandbox to probe in: an errored result, which the workers throw away.
        let gone = Outcome {
            verdict: Verdict::Error,
            output: "the pod's sandbox is gone".into(),
            exit_code: None,
        };
        for due in unrun {
            let events = self.health.prober.finished(&due, at, &gone, at);
            self.prober_events(events);
        }
    }

    /// What the probe workers said: events recorded, kills and health fed to the lifecycle.
    fn prober_events(&mut self, events: Vec<Event>) {
        let mut touched: Vec<String> = Vec::new();
        for event in events {
            match event {
                Event::Recorded {
                    container,
                    reason,
                    message,
                } => self.record(EventType::Warning, reason, Some(&container), &message),
                Event::Ready { container, .. } | Event::Started { container } => {
                    if !touched.contains(&container) {
                        touched.push(container);
                    }
                }
                Event::Kill {
                    container,
                    kind,
                    message,
                    grace,
                } => {
                    // computePodActions: "…, will be restarted" unless it will not be.
                    let sidecar = self
                        .pod
                        .init_containers
                        .iter()
                        .any(|c| c.name == container && c.is_sidecar());
                    let restarts = sidecar || self.pod.restart_policy != RestartPolicy::Never;
                    let message = match restarts {
                        true => format!("{message}, will be restarted"),
                        false => message,
                    };
                    self.kill_reasons.insert(container.clone(), message);
                    self.apply(Input::ProbeFailed {
                        container,
                        kind,
                        grace,
                    });
                }
            }
        }
        for container in touched {
            let prober = &self.health.prober;
            let (started, ready) = (prober.is_started(&container), prober.is_ready(&container));
            self.apply(Input::Health {
                container,
                started,
                ready,
            });
        }
    }

    /// A hook ended (None: it had nothing to run).
    fn hook_ended(&mut self, container: &str, kind: HookKind, outcome: Option<&Outcome>) {
        let pod_ref = self.pod_ref();
        let who = Subject {
            container,
            pod: &pod_ref,
        };
        let hook = self
            .health_of(container)
            .and_then(|h| h.hook(kind))
            .cloned();
        let failed = match (&hook, outcome) {
            (Some(hook), Some(outcome)) => hooks::result(hook, outcome, who).err(),
            _ => None,
        };
        if let Some(message) = &failed {
            tracing::warn!("{container}: {message}");
        }
        match kind {
            HookKind::PostStart => {
                if failed.is_some() {
                    // Without the hook's output: "so that secrets won't leak".
                    let (reason, message) = FAILED_POST_START;
                    self.record(EventType::Warning, reason, Some(container), message);
                    self.kill_reasons
                        .insert(container.to_string(), reason.to_string());
                }
                self.apply(Input::PostStartDone {
                    container: container.to_string(),
                    error: failed,
                });
            }
            HookKind::PreStop => {
                if failed.is_some() {
                    let (reason, message) = FAILED_PRE_STOP;
                    self.record(EventType::Warning, reason, Some(container), message);
                }
                self.apply(Input::PreStopDone {
                    container: container.to_string(),
                });
            }
        }
        self.publish();
    }

    /// The container's stop signal goes out: a preStop hook still running is given up.
    pub(super) fn stop_signal_sent(&mut self, container: &str) {
        self.record_killing(container);
        self.health.checks.cancel(&Job::Hook {
            container: container.to_string(),
            kind: HookKind::PreStop,
        });
    }

    /// The container's process ended: its probes stop and its hooks are given up.
    pub(super) fn health_container_ended(&mut self, container: &str) {
        self.health.prober.stopped(container);
        self.health
            .checks
            .cancel_where(|job| job.container() == container);
        self.killing_recorded.remove(container);
        self.kill_reasons.remove(container);
    }

    /// Once the pod shuts down, liveness and startup probes stop.
    pub(super) fn health_after_input(&mut self) {
        if self.lifecycle.is_stopping() && !self.health.told_shutdown {
            self.health.told_shutdown = true;
            self.health.prober.shutting_down();
        }
    }

    /// A supervisor that adopts the pod probes its running containers afresh,
    /// spreading their first probes over a period as the kubelet does after
    /// a restart of its own.
    pub(super) fn probes_resume(&mut self) {
        self.refresh_probe_target();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for container in self.lifecycle.probed_containers() {
            let jitter = f64::from(nanos % 1000) / 1000.0;
            self.probes_start(&container, jitter);
        }
    }

    /// When the loop must look again for probes and checks.
    pub(super) fn health_deadline(&self) -> Option<Instant> {
        self.health.deadline()
    }
}
