//! Pod lifecycle rules as a pure state machine (events in, actions out).
//!
//! [`Lifecycle`] decides, for one pod, what to start next, when to restart a
//! container, when and how to stop, and which phase and status the pod is in.
//! It does no I/O and reads no clock: the supervisor (a single-threaded event
//! loop) feeds it [`Input`]s stamped with a [`Now`], carries out the returned
//! [`Action`]s in order, and arms a timer for [`Lifecycle::next_deadline`],
//! feeding [`Input::Tick`] when it fires. Kubernetes' kubelet is the reference.
//!
//! ```text
//! let mut pod = Lifecycle::new(&model, Backoff::default());
//! for action in pod.handle(Input::Begin, now) { ... }        // sandbox is up
//! for action in pod.handle(Input::Started { container }, now) { ... }
//! timer.set(pod.next_deadline());                            // then Input::Tick
//! write(status::to_k8s(&pod.status()));                      // a v1 PodStatus
//! if pod.is_finished() { ... }                               // StopSandbox was emitted
//! ```
//!
//! Rules:
//! - Init containers run one at a time in manifest order. A regular one must exit 0
//!   before the next starts; a failed one (non-zero exit or [`Input::StartFailed`])
//!   restarts after back-off, unless the pod's restartPolicy is `Never`: then the
//!   pod is `Failed`, no app container ever starts and the pod shuts down.
//! - A sidecar (init container with restartPolicy `Always`) lets the sequence move on
//!   once it has started, and restarts after back-off whenever it exits, whatever the
//!   pod's restartPolicy, until the pod shuts down.
//! - When the init sequence is done, every app container starts (manifest order, one
//!   batch). An exited app container restarts after back-off under `Always`, under
//!   `OnFailure` only if it failed (exit code != 0, or a start failure), never under
//!   `Never`.
//! - Back-off is per container, as the kubelet's: the first restart is at once (its
//!   [`Action::Start`] comes out of the `handle` call that took the exit), the next
//!   after `base`, doubled at each further one up to `max`; a container that had run
//!   for `reset_after` restarts at once again. Only while it really waits is it
//!   `Waiting{CrashLoopBackOff}`; `restartCount` counts the restarts (it grows when
//!   the restart's [`Action::Start`] is emitted).
//! - The pod finishes when the init sequence failed under `Never`, or when every app
//!   container has exited and none will restart. Shutdown (after finishing or after
//!   [`Input::Stop`]) cancels pending back-offs, starts nothing more, and stops what
//!   runs. Every container gets `Term` first: regular ones (app, and a running init
//!   container) at once; sidecars in reverse order, each once every regular container
//!   and every later sidecar has exited, or at the pod's deadline (shutdown time + the
//!   pod's terminationGracePeriod, at least 1 s) if that comes first. A container still
//!   running at the later of the deadline and 2 s after its `Term` gets `Kill` (the
//!   kubelet's killContainer always leaves 2 s between stop signal and SIGKILL).
//!   When nothing runs any more, [`Action::StopSandbox`] is emitted, once.
//! - Phase: `Pending` until the init sequence is done and every app container has run;
//!   then `Running` while an app container runs or will restart, or a sidecar is still
//!   alive (the kubelet counts a running restartable init container as running); then
//!   `Succeeded` if every app container exited 0, else `Failed`. Once the sandbox is
//!   stopped the phase is always terminal (a pod stopped before all its app containers
//!   ran is `Failed`, like the kubelet's terminal phase on deletion).
//! - Conditions: as the kubelet's status generator; a `Succeeded` pod is `Initialized`
//!   with reason `PodCompleted`, and neither `Ready` nor `ContainersReady`.
//!
//! Decisions beyond the kubelet's rules, for a deterministic machine:
//! - Every input, whatever it is, also lets time pass: due back-offs and the shutdown
//!   deadline are acted on without waiting for a `Tick`.
//! - Inputs that do not fit (unknown container, `Started` for a container that was
//!   not being started, `Exited` for one not running, a second `Begin`) are ignored.
//!   `Exited` for a container still being started is taken as a run that ended at once.
//! - A container that reports `Started` during shutdown gets `Term` at once, then
//!   `Kill` as any other; the sandbox is stopped only after it has exited.
//! - `Stop` before `Begin` emits `StopSandbox` at once (the supervisor may have no
//!   sandbox to stop); a `Stop` during shutdown can only bring the deadline closer,
//!   and never a `Kill` closer than 2 s after its container's `Term`.
//! - When a container got its `Term` is not kept in a [`Snapshot`]: a restored one
//!   that already had it gets `Kill` at the pod's deadline.
//! - Timestamps are serialized with whole seconds, as Kubernetes' `metav1.Time`.
//!
//! Here: the rules that drive the pod (`handle`); `events.rs` what goes in and
//! out, `backoff.rs` the restart delays, `members.rs` one container each,
//! `report.rs` phase, conditions and status, `snapshot.rs` the state that
//! outlives the process. The status types are in [`crate::pod::status`].

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::pod::model::{self, RestartPolicy};
use crate::pod::probe::hooks;
use crate::pod::status::{ConditionType, TerminatedState};

mod backoff;
mod events;
mod members;
mod report;
mod snapshot;
#[cfg(test)]
mod tests_health;

pub use backoff::Backoff;
pub use events::{Action, Input, Now, StopSignal};
use members::{Member, PreStop, Role, Run};
pub use snapshot::{RestoreError, Snapshot};

/// Durations are capped here so that `Instant + Duration` cannot overflow.
/// The waiting reason of a container whose image is being pulled.
pub const PULLING_REASON: &str = "ContainerCreating";

const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The kubelet's pod workers never shut a pod down with less grace than this.
const MIN_POD_GRACE: Duration = Duration::from_secs(1);

/// The kubelet's active deadline handler: reason and message.
pub const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Pod was active on the node longer than the specified deadline",
);

/// The kubelet's event when it replaces a pod's sandbox.
pub const SANDBOX_CHANGED: (&str, &str) = (
    "SandboxChanged",
    "Pod sandbox changed, it will be killed and re-created.",
);

/// The sandbox, as the machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sandbox {
    Up,
    /// It died: the containers are being stopped by this deadline before a
    /// new one is made.
    Replacing {
        deadline: Instant,
    },
    /// `RecreateSandbox` emitted: waiting for `Begin`.
    Awaiting,
}

/// The lifecycle of one pod. See the module documentation for the rules.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// "name_namespace(uid)", as the kubelet names a pod in messages.
    pod_ref: String,
    restart_policy: RestartPolicy,
    grace: Duration,
    backoff: Backoff,
    /// Waiting reason of a container whose turn has not come.
    idle_reason: &'static str,
    /// Init containers (sidecars included) then app containers, in manifest order.
    members: Vec<Member>,
    begun: bool,
    start_time: Option<DateTime<Utc>>,
    /// The init sequence completed in the current sandbox.
    initialized: bool,
    /// Sticky: the init sequence completed once (in any sandbox).
    ever_initialized: bool,
    sandbox: Sandbox,
    /// spec.activeDeadlineSeconds, and when it runs out (from the pod's start).
    active_deadline: Option<Duration>,
    active_until: Option<Instant>,
    /// The pod was stopped for running past its active deadline.
    deadline_exceeded: bool,
    /// A regular init container failed under restartPolicy Never.
    init_failed: bool,
    /// Set once shutting down: when waiting sidecars get `Term`, and from when
    /// whatever still runs gets `Kill` (2 s after its `Term` at the earliest).
    deadline: Option<Instant>,
    sandbox_stopped: bool,
    /// Per condition, in `ConditionType::ALL` order: its status and since when.
    transitions: [Option<(bool, DateTime<Utc>)>; ConditionType::ALL.len()],
}

/// How a run ended.
enum Ending {
    StartFailed {
        reason: String,
        message: String,
    },
    Exited {
        exit_code: i32,
        signal: Option<i32>,
        oom_killed: bool,
        message: Option<String>,
    },
    Lost,
}

impl Lifecycle {
    pub fn new(pod: &model::Pod, backoff: Backoff) -> Self {
        let inits = pod.init_containers.iter().map(|c| {
            let role = if c.is_sidecar() {
                Role::Sidecar
            } else {
                Role::Init
            };
            Member::new(c, role)
        });
        let apps = pod.containers.iter().map(|c| Member::new(c, Role::App));
        Self {
            pod_ref: format!("{}_{}({})", pod.name, pod.namespace, pod.uid),
            restart_policy: pod.restart_policy,
            grace: pod.termination_grace.clamp(MIN_POD_GRACE, FOREVER),
            backoff,
            idle_reason: if pod.init_containers.is_empty() {
                "ContainerCreating"
            } else {
                "PodInitializing"
            },
            members: inits.chain(apps).collect(),
            begun: false,
            start_time: None,
            initialized: false,
            ever_initialized: false,
            sandbox: Sandbox::Up,
            active_deadline: pod.active_deadline,
            active_until: None,
            deadline_exceeded: false,
            init_failed: false,
            deadline: None,
            sandbox_stopped: false,
            transitions: [None; ConditionType::ALL.len()],
        }
    }

    /// Take one input at `now`; returns what to do, in order.
    pub fn handle(&mut self, input: Input, now: Now) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.sandbox_stopped {
            return actions;
        }
        match input {
            Input::Begin => {
                if !self.begun && self.deadline.is_none() {
                    self.begun = true;
                    self.start_time = Some(now.wall);
                    self.active_until = self.active_deadline.map(|d| now.mono + d.min(FOREVER));
                } else if self.sandbox == Sandbox::Awaiting {
                    // A new sandbox: the init sequence runs again from the first.
                    self.sandbox = Sandbox::Up;
                    self.initialized = false;
                }
            }
            Input::Started { container } => self.on_started(&container, now, &mut actions),
            Input::StartFailed {
                container,
                reason,
                message,
            } => self.on_exit(&container, Ending::StartFailed { reason, message }, now),
            Input::Exited {
                container,
                exit_code,
                signal,
                oom_killed,
                message,
            } => {
                let ending = Ending::Exited {
                    exit_code,
                    signal,
                    oom_killed,
                    message,
                };
                self.on_exit(&container, ending, now);
            }
            Input::Lost { container } => self.on_exit(&container, Ending::Lost, now),
            Input::CreateFailed {
                container,
                reason,
                message,
            } => {
                let (retry, stopping) = (self.backoff.base, self.deadline.is_some());
                if let Some(m) = self.member(&container) {
                    if matches!(m.run, Run::Starting) {
                        m.run = match stopping {
                            true => Run::Exited,
                            false => Run::CreateError {
                                until: now.mono + retry,
                                reason,
                                message,
                            },
                        };
                    }
                }
            }
            Input::ImageWait {
                container,
                reason,
                message,
                retry,
            } => {
                let stopping = self.deadline.is_some();
                if let Some(m) = self.member(&container) {
                    // A pull that ends (ErrImagePull) finds its container waiting on
                    // it (ContainerCreating), not Starting: that wait ends too.
                    let pulling = matches!(&m.run, Run::CreateError { reason, .. } if reason == PULLING_REASON);
                    if matches!(m.run, Run::Starting) || pulling {
                        m.run = match stopping {
                            true => Run::Exited,
                            false => Run::CreateError {
                                until: now.mono + retry.unwrap_or(FOREVER).min(FOREVER),
                                reason,
                                message: message.unwrap_or_default(),
                            },
                        };
                    }
                }
            }
            Input::ImageReady { container } => {
                if let Some(m) = self.member(&container) {
                    if let Run::CreateError { until, .. } = &mut m.run {
                        *until = now.mono;
                    }
                }
            }
            Input::Tick => {}
            Input::Stop => self.begin_shutdown(now),
            Input::PostStartDone { container, error } => {
                let grace = self.grace;
                if let Some(m) = self.member(&container) {
                    if let Run::Running {
                        post_start: post_start @ true,
                        killing,
                        ..
                    } = &mut m.run
                    {
                        *post_start = false;
                        match error {
                            None => m.probes_start(&mut actions),
                            Some(message) => {
                                *killing = Some(now.mono + grace);
                                m.post_start_error = Some(message);
                            }
                        }
                    }
                }
            }
            Input::PreStopDone { container } => {
                if let Some(m) = self.member(&container) {
                    if let Run::Running { pre_stop, .. } = &mut m.run {
                        if *pre_stop == PreStop::Running {
                            *pre_stop = PreStop::Done;
                        }
                    }
                }
            }
            Input::ProbeFailed {
                container,
                kind,
                grace,
            } => {
                let grace = hooks::kill_grace(self.grace, Some((kind, grace)));
                if let Some(m) = self.member(&container) {
                    if let Run::Running {
                        killing: killing @ None,
                        signaled: None,
                        ..
                    } = &mut m.run
                    {
                        *killing = Some(now.mono + grace.min(FOREVER));
                    }
                }
            }
            Input::Health {
                container,
                started,
                ready,
            } => {
                if let Some(m) = self.member(&container) {
                    if m.counted_running() {
                        m.started = started;
                        m.ready = ready;
                    }
                }
            }
            Input::SandboxDied => self.on_sandbox_died(now, &mut actions),
        }
        self.advance(now, &mut actions);
        self.record_transitions(now.wall);
        actions
    }

    /// When the supervisor must feed a `Tick` next: the earliest back-off expiry, or
    /// during shutdown the earliest moment a `Kill`, or a waiting sidecar's `Term`,
    /// becomes due.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.sandbox_stopped {
            return None;
        }
        let stopping = match (self.deadline, self.sandbox) {
            (Some(deadline), _) | (None, Sandbox::Replacing { deadline }) => Some(deadline),
            _ => None,
        };
        let signals = self.members.iter().filter_map(|m| {
            let deadline = m.stop_deadline(stopping)?;
            m.next_signal_due(deadline)
        });
        if stopping.is_some() {
            return signals.min();
        }
        let backoffs = self.members.iter().filter_map(|m| match m.run {
            Run::BackOff { until, .. } | Run::CreateError { until, .. } => Some(until),
            _ => None,
        });
        let active = self.active_until.filter(|_| self.begun);
        signals.chain(backoffs).chain(active).min()
    }

    /// Nothing more will ever run, and `StopSandbox` was emitted.
    pub fn is_finished(&self) -> bool {
        self.sandbox_stopped
    }

    /// A container waits to be tried again (it could not be created, or it
    /// crashed and backs off): the pod may stay Pending for long.
    pub fn is_waiting_on_a_failure(&self) -> bool {
        self.members.iter().any(|m| match &m.run {
            Run::BackOff { .. } => true,
            // An image being pulled is no failure: `pod run` waits for it.
            Run::CreateError { reason, .. } => reason != PULLING_REASON,
            _ => false,
        })
    }

    /// Shutting down (after `Stop`, or because the pod finished).
    pub fn is_stopping(&self) -> bool {
        self.deadline.is_some()
    }

    /// Containers whose process is (or may be) running: started, or being started.
    pub fn alive_containers(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.alive())
            .map(|m| m.name.clone())
            .collect()
    }

    /// Containers whose run counts as running and that have probes (an
    /// adopting supervisor probes them afresh).
    pub fn probed_containers(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.counted_running() && m.hooks.probes)
            .map(|m| m.name.clone())
            .collect()
    }

    /// Whether the sandbox is being replaced (its containers stopping, or a
    /// new one awaited): the sandbox's death is expected.
    pub fn replacing_sandbox(&self) -> bool {
        self.sandbox != Sandbox::Up
    }

    fn member(&mut self, name: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.name == name)
    }

    fn on_started(&mut self, name: &str, now: Now, actions: &mut Vec<Action>) {
        if let Some(m) = self.member(name) {
            if matches!(m.run, Run::Starting) {
                m.begin_run(now, actions);
            }
        }
    }

    /// The sandbox died: as the kubelet's computePodActions, a new one is made
    /// (after every container is stopped) unless the pod must not restart
    /// anything (restartPolicy Never once a container ran, or nothing left to
    /// run); then the pod is stopped.
    fn on_sandbox_died(&mut self, now: Now, actions: &mut Vec<Action>) {
        if !self.begun || self.deadline.is_some() || self.sandbox != Sandbox::Up {
            return;
        }
        let ran = self.members.iter().any(|m| m.has_run());
        let apps_to_start = self.members.iter().any(|m| {
            m.role == Role::App
                && !(self.restart_policy == RestartPolicy::OnFailure && m.succeeded())
        });
        let recreate = !(self.restart_policy == RestartPolicy::Never && ran)
            && (apps_to_start || !self.initialized);
        if !recreate {
            self.begin_shutdown(now);
            return;
        }
        let (reason, message) = SANDBOX_CHANGED;
        actions.push(Action::Record {
            reason,
            message: message.to_owned(),
        });
        self.sandbox = Sandbox::Replacing {
            deadline: now.mono + self.grace,
        };
    }

    /// Stops what runs in a dead sandbox; once nothing does, asks for a new
    /// one, every container to start again.
    fn replace_sandbox(&mut self, now: Instant, deadline: Instant, actions: &mut Vec<Action>) {
        for m in &mut self.members {
            if matches!(m.run, Run::BackOff { .. } | Run::CreateError { .. }) {
                m.run = Run::Idle;
            }
            let until = m.stop_deadline(Some(deadline)).unwrap_or(deadline);
            m.stop(now, until, actions);
        }
        if self.members.iter().any(Member::alive) {
            return;
        }
        let policy = self.restart_policy;
        for m in &mut self.members {
            m.init_passed = false;
            let skip = m.role == Role::App && policy == RestartPolicy::OnFailure && m.succeeded();
            if !skip {
                m.restart_pending = m.has_run();
                m.run = Run::Idle;
            }
        }
        self.sandbox = Sandbox::Awaiting;
        actions.push(Action::RecreateSandbox);
    }

    fn on_exit(&mut self, name: &str, ending: Ending, now: Now) {
        let (restart_policy, backoff, shutting_down) =
            (self.restart_policy, self.backoff, self.deadline.is_some());
        let Some(m) = self.member(name) else {
            return;
        };
        let (started_at, ran_for) = match (&m.run, &ending) {
            (
                Run::Running {
                    since, since_wall, ..
                },
                Ending::Exited { .. } | Ending::Lost,
            ) => (
                Some(*since_wall),
                now.mono.saturating_duration_since(*since),
            ),
            (Run::Starting, Ending::Exited { .. }) => (Some(now.wall), Duration::ZERO),
            (Run::Starting, Ending::Lost) => (None, Duration::ZERO),
            (Run::Starting, Ending::StartFailed { .. }) => (None, Duration::ZERO),
            _ => return,
        };
        let terminated = match ending {
            Ending::StartFailed { reason, message } => TerminatedState {
                exit_code: 128,
                signal: None,
                reason: if reason.is_empty() {
                    "StartError".to_owned()
                } else {
                    reason
                },
                message: Some(message).filter(|m| !m.is_empty()),
                started_at,
                finished_at: now.wall,
            },
            Ending::Exited {
                exit_code,
                signal,
                oom_killed,
                message,
            } => {
                let reason = match (oom_killed, exit_code) {
                    (true, _) => "OOMKilled",
                    (false, 0) => "Completed",
                    (false, _) => "Error",
                };
                TerminatedState {
                    exit_code,
                    signal,
                    reason: reason.to_owned(),
                    message,
                    started_at,
                    finished_at: now.wall,
                }
            }
            Ending::Lost => TerminatedState {
                exit_code: 137,
                signal: None,
                reason: "ContainerStatusUnknown".to_owned(),
                message: Some(
                    "The container's exit status is unknown: a previous supervisor of the pod started it"
                        .to_owned(),
                ),
                started_at,
                finished_at: now.wall,
            },
        };
        let failed = terminated.exit_code != 0;
        m.has_started |= started_at.is_some();
        m.previous = m.latest.replace(terminated);
        let restart = !shutting_down
            && match (m.role, restart_policy) {
                (Role::Sidecar, _) | (Role::App, RestartPolicy::Always) => true,
                (_, RestartPolicy::Never) => false,
                (Role::Init | Role::App, RestartPolicy::OnFailure | RestartPolicy::Always) => {
                    failed
                }
            };
        if restart {
            let delay = backoff.next(m.backoff, ran_for);
            m.backoff = Some(delay);
            // A zero delay is already due: `advance`, later in this `handle`, restarts it.
            m.run = Run::BackOff {
                until: now.mono + delay,
                delay,
            };
        } else {
            m.run = Run::Exited;
            if m.role == Role::Init && failed && !shutting_down {
                self.init_failed = true;
            }
        }
    }

    /// Enter (or hasten) shutdown: no restart from now on.
    fn begin_shutdown(&mut self, now: Now) {
        let deadline = now.mono + self.grace;
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        for m in &mut self.members {
            if matches!(m.run, Run::BackOff { .. } | Run::CreateError { .. }) {
                m.run = Run::Exited;
            }
        }
    }

    fn advance(&mut self, now: Now, actions: &mut Vec<Action>) {
        let over = self.active_until.is_some_and(|until| now.mono >= until);
        if self.begun && self.deadline.is_none() && over {
            // The kubelet's activeDeadlineHandler: the pod fails, then stops.
            self.deadline_exceeded = true;
            let (reason, message) = DEADLINE_EXCEEDED;
            actions.push(Action::Record {
                reason,
                message: message.to_owned(),
            });
            self.begin_shutdown(now);
        }
        if let (None, Sandbox::Replacing { deadline }) = (self.deadline, self.sandbox) {
            self.replace_sandbox(now.mono, deadline, actions);
        }
        if self.begun && self.deadline.is_none() && self.sandbox == Sandbox::Up {
            for m in &mut self.members {
                if let Some(until) = m.killing() {
                    m.stop(now.mono, until, actions);
                }
                if m.is_started() {
                    m.init_passed = true;
                }
            }
            self.fire_backoffs(now, actions);
            self.start_next(actions);
            let apps_done = self
                .members
                .iter()
                .filter(|m| m.role == Role::App)
                .all(|m| matches!(m.run, Run::Exited));
            if self.init_failed || (self.initialized && apps_done) {
                self.begin_shutdown(now);
            }
        }
        if let Some(deadline) = self.deadline {
            self.shut_down(now.mono, deadline, actions);
        }
    }

    fn fire_backoffs(&mut self, now: Now, actions: &mut Vec<Action>) {
        for m in &mut self.members {
            if matches!(m.run, Run::BackOff { until, .. } if until <= now.mono) {
                m.restart_count += 1;
                m.start(actions);
            } else if matches!(m.run, Run::CreateError { until, .. } if until <= now.mono) {
                m.start(actions);
            }
        }
    }

    /// Start the init container whose turn it is, or, once none is left, the apps.
    fn start_next(&mut self, actions: &mut Vec<Action>) {
        if !self.initialized {
            for m in self.members.iter_mut().filter(|m| m.role != Role::App) {
                if m.init_done() {
                    continue;
                }
                if matches!(m.run, Run::Idle) {
                    m.start(actions);
                }
                return;
            }
            self.initialized = true;
            self.ever_initialized = true;
        }
        for m in self.members.iter_mut().filter(|m| m.role == Role::App) {
            if matches!(m.run, Run::Idle) {
                m.start(actions);
            }
        }
    }

    /// Regular containers first, then sidecars in reverse order, each when its turn
    /// comes or at the deadline; `Kill` when due.
    fn shut_down(&mut self, now: Instant, deadline: Instant, actions: &mut Vec<Action>) {
        for m in self.members.iter_mut().filter(|m| m.role != Role::Sidecar) {
            let until = m.stop_deadline(Some(deadline)).unwrap_or(deadline);
            m.stop(now, until, actions);
        }
        let overdue = now >= deadline;
        let mut blocked = self
            .members
            .iter()
            .any(|m| m.role != Role::Sidecar && m.alive());
        for m in self
            .members
            .iter_mut()
            .rev()
            .filter(|m| m.role == Role::Sidecar)
        {
            let until = m.stop_deadline(Some(deadline)).unwrap_or(deadline);
            if overdue || !blocked || m.signaled().is_some() || m.killing().is_some() {
                m.stop(now, until, actions);
            } else {
                m.pre_stop_early(deadline, actions);
            }
            blocked |= m.alive();
        }
        if !self.members.iter().any(Member::alive) {
            self.sandbox_stopped = true;
            actions.push(Action::StopSandbox);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The scenario tables of the rules; their builders are shared with the
    //! tests of the other parts of the machine.

    use super::*;
    pub(super) use crate::pod::status::{ContainerState, Phase};
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    pub(super) use RestartPolicy::{Always, Never, OnFailure};
    pub(super) use Step::*;

    /// A pod manifest built by hand: containers in the order the methods are called.
    pub(super) struct TestPod(pub(super) model::Pod);

    impl TestPod {
        pub(super) fn new(restart_policy: RestartPolicy) -> Self {
            Self(model::Pod {
                name: "web".into(),
                namespace: "default".into(),
                uid: "uid-1".into(),
                hostname: "web".into(),
                restart_policy,
                termination_grace: Duration::from_secs(30),
                share_process_namespace: false,
                init_containers: Vec::new(),
                containers: Vec::new(),
                volumes: Vec::new(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                host_aliases: Vec::new(),
                host: Default::default(),
                dns: Default::default(),
                resources: None,
                active_deadline: None,
                security: Default::default(),
            })
        }

        pub(super) fn init(mut self, name: &str) -> Self {
            self.0.init_containers.push(container(name, None));
            self
        }

        pub(super) fn sidecar(mut self, name: &str) -> Self {
            self.0.init_containers.push(container(name, Some(Always)));
            self
        }

        pub(super) fn app(mut self, name: &str) -> Self {
            self.0.containers.push(container(name, None));
            self
        }

        /// Gives the container `name` these probes and hooks.
        pub(super) fn health(mut self, name: &str, health: crate::pod::probe::Health) -> Self {
            let c = (self.0.init_containers.iter_mut())
                .chain(&mut self.0.containers)
                .find(|c| c.name == name)
                .expect("a container of the test pod");
            c.health = health;
            self
        }

        pub(super) fn active_deadline(mut self, secs: u64) -> Self {
            self.0.active_deadline = Some(Duration::from_secs(secs));
            self
        }

        pub(super) fn grace(mut self, secs: u64) -> Self {
            self.0.termination_grace = Duration::from_secs(secs);
            self
        }
    }

    pub(super) fn container(name: &str, restart_policy: Option<RestartPolicy>) -> model::Container {
        model::Container {
            name: name.into(),
            image: format!("{name}:latest"),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            security: Default::default(),
            resources: Default::default(),
            mounts: Vec::new(),
            restart_policy,
            tty: false,
            stdin: false,
            termination_message_path: model::DEFAULT_TERMINATION_MESSAGE_PATH.into(),
            termination_message_from_logs: false,
            image_pull_policy: None,
            ports: Vec::new(),
            health: Default::default(),
        }
    }

    pub(super) fn begin() -> Input {
        Input::Begin
    }

    pub(super) fn started(c: &str) -> Input {
        Input::Started {
            container: c.into(),
        }
    }

    pub(super) fn exited(c: &str, exit_code: i32) -> Input {
        Input::Exited {
            container: c.into(),
            exit_code,
            signal: None,
            oom_killed: false,
            message: None,
        }
    }

    pub(super) fn killed(c: &str, signal: i32) -> Input {
        Input::Exited {
            container: c.into(),
            exit_code: 128 + signal,
            signal: Some(signal),
            oom_killed: false,
            message: None,
        }
    }

    pub(super) fn oom(c: &str) -> Input {
        Input::Exited {
            container: c.into(),
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            message: None,
        }
    }

    pub(super) fn start_failed(c: &str) -> Input {
        Input::StartFailed {
            container: c.into(),
            reason: "StartError".into(),
            message: "exec: \"nope\": executable file not found in $PATH".into(),
        }
    }

    pub(super) fn tick() -> Input {
        Input::Tick
    }

    pub(super) fn stop() -> Input {
        Input::Stop
    }

    pub(super) fn start(c: &str) -> Action {
        Action::Start {
            container: c.into(),
        }
    }

    pub(super) fn term(c: &str) -> Action {
        Action::Signal {
            container: c.into(),
            signal: StopSignal::Term,
        }
    }

    pub(super) fn kill(c: &str) -> Action {
        Action::Signal {
            container: c.into(),
            signal: StopSignal::Kill,
        }
    }

    pub(super) const SANDBOX: Action = Action::StopSandbox;

    /// One line of a scenario; times are seconds after the scenario's start.
    #[derive(Debug, Clone)]
    pub(super) enum Step {
        /// Feed this input at this time; exactly these actions must come back.
        At(u64, Input, Vec<Action>),
        /// `next_deadline()`, as seconds after the start.
        Deadline(Option<u64>),
        PhaseIs(Phase),
        Finished(bool),
        /// A container's state, as `describe` writes it.
        State(&'static str, &'static str),
        /// A container's waiting message (None when it has none or is not waiting).
        Message(&'static str, Option<&'static str>),
        Restarts(&'static str, u32),
        /// The pod's grace period becomes this many seconds, as a `Stop` asking for a
        /// shorter one (kubectl delete --grace-period) would make it.
        Grace(u64),
    }

    pub(super) struct Clock {
        pub(super) mono: Instant,
        pub(super) wall: DateTime<Utc>,
    }

    impl Clock {
        pub(super) fn new() -> Self {
            Self {
                mono: Instant::now(),
                wall: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
            }
        }

        pub(super) fn at(&self, secs: u64) -> Now {
            Now {
                mono: self.mono + Duration::from_secs(secs),
                wall: self.wall + chrono::Duration::seconds(secs as i64),
            }
        }
    }

    /// "Waiting:Reason", "Running" or "Terminated:Reason:code".
    pub(super) fn describe(state: &ContainerState) -> String {
        match state {
            ContainerState::Waiting(w) => format!("Waiting:{}", w.reason),
            ContainerState::Running(_) => "Running".to_owned(),
            ContainerState::Terminated(t) => format!("Terminated:{}:{}", t.reason, t.exit_code),
        }
    }

    pub(super) fn run(name: &str, pod: TestPod, steps: &[Step]) -> (Lifecycle, Clock) {
        run_with(name, pod, Backoff::default(), steps)
    }

    pub(super) fn run_with(
        name: &str,
        pod: TestPod,
        backoff: Backoff,
        steps: &[Step],
    ) -> (Lifecycle, Clock) {
        let clock = Clock::new();
        let pod = run_clocked(name, pod, backoff, &clock, steps);
        (pod, clock)
    }

    /// A scenario on a given clock (one its steps were written with).
    pub(super) fn run_at(name: &str, pod: TestPod, clock: &Clock, steps: &[Step]) -> Lifecycle {
        run_clocked(name, pod, Backoff::default(), clock, steps)
    }

    fn run_clocked(
        name: &str,
        pod: TestPod,
        backoff: Backoff,
        clock: &Clock,
        steps: &[Step],
    ) -> Lifecycle {
        let mut pod = Lifecycle::new(&pod.0, backoff);
        for (i, step) in steps.iter().enumerate() {
            let context = format!("{name}: step {i}: {step:?}");
            match step {
                At(secs, input, want) => {
                    let got = pod.handle(input.clone(), clock.at(*secs));
                    assert_eq!(&got, want, "{context}");
                }
                Deadline(want) => {
                    let want = want.map(|secs| clock.at(secs).mono);
                    assert_eq!(pod.next_deadline(), want, "{context}");
                }
                PhaseIs(want) => assert_eq!(pod.phase(), *want, "{context}"),
                Finished(want) => assert_eq!(pod.is_finished(), *want, "{context}"),
                State(container, want) => {
                    let status = pod.status();
                    let got = status.container(container).expect(&context);
                    assert_eq!(describe(&got.state), *want, "{context}");
                }
                Message(container, want) => {
                    let status = pod.status();
                    let got = status.container(container).expect(&context);
                    let got = match &got.state {
                        ContainerState::Waiting(w) => w.message.as_deref(),
                        _ => None,
                    };
                    assert_eq!(got, *want, "{context}");
                }
                Restarts(container, want) => {
                    let status = pod.status();
                    let got = status.container(container).expect(&context);
                    assert_eq!(got.restart_count, *want, "{context}");
                }
                Grace(secs) => pod.grace = Duration::from_secs(*secs),
            }
        }
        pod
    }

    fn image_wait(c: &str, reason: &str, retry: Option<u64>) -> Input {
        Input::ImageWait {
            container: c.into(),
            reason: reason.into(),
            message: None,
            retry: retry.map(Duration::from_secs),
        }
    }

    /// Found by scripts/soak (registry-stop): the pull's failure came while the
    /// container waited on it (ContainerCreating) and was dropped, so the pod
    /// showed ContainerCreating for ever and never pulled again.
    #[test]
    fn a_failed_pull_ends_the_wait_on_it_and_is_retried() {
        let steps = vec![
            At(0, begin(), vec![start("c")]),
            At(0, image_wait("c", PULLING_REASON, None), vec![]),
            State("c", "Waiting:ContainerCreating"),
            At(1, image_wait("c", "ErrImagePull", Some(1)), vec![]),
            State("c", "Waiting:ErrImagePull"),
            PhaseIs(Phase::Pending),
            At(2, tick(), vec![start("c")]),
            At(2, image_wait("c", "ImagePullBackOff", Some(5)), vec![]),
            State("c", "Waiting:ImagePullBackOff"),
            At(3, tick(), vec![]),
        ];
        run("pull failed", TestPod::new(Always).app("c"), &steps);
    }

    #[test]
    fn init_containers_run_one_at_a_time_then_all_apps_start() {
        let cases = [
            (
                "two init containers, two apps",
                TestPod::new(Always).init("a").init("b").app("c").app("d"),
                vec![
                    PhaseIs(Phase::Pending),
                    State("a", "Waiting:PodInitializing"),
                    State("c", "Waiting:PodInitializing"),
                    At(0, begin(), vec![start("a")]),
                    State("a", "Waiting:ContainerCreating"),
                    State("b", "Waiting:PodInitializing"),
                    At(1, started("a"), vec![]),
                    State("a", "Running"),
                    At(2, exited("a", 0), vec![start("b")]),
                    State("a", "Terminated:Completed:0"),
                    At(3, started("b"), vec![]),
                    PhaseIs(Phase::Pending),
                    At(4, exited("b", 0), vec![start("c"), start("d")]),
                    PhaseIs(Phase::Pending),
                    At(5, started("c"), vec![]),
                    PhaseIs(Phase::Pending),
                    At(5, started("d"), vec![]),
                    PhaseIs(Phase::Running),
                    Deadline(None),
                    Finished(false),
                ],
            ),
            (
                "no init containers",
                TestPod::new(Never).app("c").app("d"),
                vec![
                    State("c", "Waiting:ContainerCreating"),
                    At(0, tick(), vec![]),
                    At(0, begin(), vec![start("c"), start("d")]),
                    At(1, started("d"), vec![]),
                    At(1, started("c"), vec![]),
                    PhaseIs(Phase::Running),
                ],
            ),
        ];
        for (name, pod, steps) in cases {
            run(name, pod, &steps);
        }
    }

    #[test]
    fn failed_init_container_under_never_fails_the_pod() {
        let pod = || TestPod::new(Never).sidecar("s").init("a").app("c");
        let up_to_a = || {
            vec![
                At(0, begin(), vec![start("s")]),
                At(1, started("s"), vec![start("a")]),
            ]
        };
        let cases = [
            (
                "non-zero exit: sidecar stopped, then the sandbox",
                [
                    up_to_a(),
                    vec![
                        At(2, started("a"), vec![]),
                        At(3, exited("a", 1), vec![term("s")]),
                        PhaseIs(Phase::Failed),
                        State("a", "Terminated:Error:1"),
                        State("c", "Waiting:PodInitializing"),
                        Deadline(Some(33)),
                        Finished(false),
                        At(10, killed("s", 15), vec![SANDBOX]),
                        Finished(true),
                        Deadline(None),
                        PhaseIs(Phase::Failed),
                        State("s", "Terminated:Error:143"),
                        At(40, tick(), vec![]),
                        At(40, stop(), vec![]),
                    ],
                ]
                .concat(),
            ),
            (
                "sidecar ignores Term: Kill at the grace deadline",
                [
                    up_to_a(),
                    vec![
                        At(2, started("a"), vec![]),
                        At(3, exited("a", 2), vec![term("s")]),
                        At(32, tick(), vec![]),
                        At(33, tick(), vec![kill("s")]),
                        Deadline(None),
                        Finished(false),
                        At(34, killed("s", 9), vec![SANDBOX]),
                        Finished(true),
                    ],
                ]
                .concat(),
            ),
            (
                "start failure",
                [
                    up_to_a(),
                    vec![
                        At(2, start_failed("a"), vec![term("s")]),
                        State("a", "Terminated:StartError:128"),
                        PhaseIs(Phase::Failed),
                        At(3, exited("s", 0), vec![SANDBOX]),
                        Restarts("a", 0),
                    ],
                ]
                .concat(),
            ),
        ];
        for (name, steps) in cases {
            run(name, pod(), &steps);
        }
    }

    #[test]
    fn failed_init_container_restarts_after_backoff_unless_never() {
        for policy in [Always, OnFailure] {
            let steps = [
                At(0, begin(), vec![start("a")]),
                At(1, started("a"), vec![]),
                // The first failure restarts at once.
                At(2, exited("a", 1), vec![start("a")]),
                State("a", "Waiting:ContainerCreating"),
                State("c", "Waiting:PodInitializing"),
                PhaseIs(Phase::Pending),
                Restarts("a", 1),
                Deadline(None),
                At(2, start_failed("a"), vec![]),
                State("a", "Waiting:CrashLoopBackOff"),
                State("c", "Waiting:PodInitializing"),
                PhaseIs(Phase::Pending),
                Restarts("a", 1),
                Deadline(Some(12)),
                At(11, tick(), vec![]),
                At(12, tick(), vec![start("a")]),
                Restarts("a", 2),
                Deadline(None),
                At(12, start_failed("a"), vec![]),
                State("a", "Waiting:CrashLoopBackOff"),
                Deadline(Some(32)),
                // Any input lets time pass: the due restart needs no Tick.
                At(33, started("c"), vec![start("a")]),
                At(33, started("a"), vec![]),
                At(34, exited("a", 0), vec![start("c")]),
                Restarts("a", 3),
                State("a", "Terminated:Completed:0"),
                At(35, started("c"), vec![]),
                PhaseIs(Phase::Running),
            ];
            run(
                &format!("{policy:?}"),
                TestPod::new(policy).init("a").app("c"),
                &steps,
            );
        }
    }

    #[test]
    fn sidecars_gate_the_init_sequence_and_always_restart() {
        let cases = [
            (
                "restarts under Never, stopped after the apps",
                TestPod::new(Never)
                    .init("a")
                    .sidecar("s")
                    .init("b")
                    .app("c"),
                vec![
                    At(0, begin(), vec![start("a")]),
                    At(1, started("a"), vec![]),
                    At(2, exited("a", 0), vec![start("s")]),
                    State("b", "Waiting:PodInitializing"),
                    At(3, started("s"), vec![start("b")]),
                    State("s", "Running"),
                    // The first crash restarts at once, even under Never.
                    At(4, exited("s", 1), vec![start("s")]),
                    State("s", "Waiting:ContainerCreating"),
                    Restarts("s", 1),
                    At(4, started("s"), vec![]),
                    At(4, exited("s", 1), vec![]),
                    State("s", "Waiting:CrashLoopBackOff"),
                    Deadline(Some(14)),
                    At(5, started("b"), vec![]),
                    At(6, exited("b", 0), vec![start("c")]),
                    At(14, tick(), vec![start("s")]),
                    Restarts("s", 2),
                    At(14, started("s"), vec![]),
                    At(15, started("c"), vec![]),
                    PhaseIs(Phase::Running),
                    // A sidecar exiting 0 restarts too; it ran 6 s: the delay doubles.
                    At(20, exited("s", 0), vec![]),
                    Deadline(Some(40)),
                    At(40, tick(), vec![start("s")]),
                    At(41, started("s"), vec![]),
                    At(50, exited("c", 0), vec![term("s")]),
                    // Running while the sidecar handles its Term.
                    PhaseIs(Phase::Running),
                    Deadline(Some(80)),
                    At(51, killed("s", 15), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                    Restarts("s", 3),
                ],
            ),
            (
                "a sidecar that cannot start holds the sequence",
                TestPod::new(Always).sidecar("s").init("a").app("c"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, start_failed("s"), vec![start("s")]),
                    State("s", "Waiting:ContainerCreating"),
                    State("a", "Waiting:PodInitializing"),
                    At(0, start_failed("s"), vec![]),
                    State("s", "Waiting:CrashLoopBackOff"),
                    State("a", "Waiting:PodInitializing"),
                    Deadline(Some(10)),
                    At(10, tick(), vec![start("s")]),
                    At(10, started("s"), vec![start("a")]),
                ],
            ),
            (
                "a sidecar back-off cancelled when the pod finishes",
                TestPod::new(OnFailure).sidecar("s").app("c"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("c")]),
                    At(0, started("c"), vec![]),
                    At(5, exited("s", 1), vec![start("s")]),
                    At(5, started("s"), vec![]),
                    At(5, exited("s", 1), vec![]),
                    State("s", "Waiting:CrashLoopBackOff"),
                    Deadline(Some(15)),
                    At(6, exited("c", 0), vec![SANDBOX]),
                    State("s", "Terminated:Error:1"),
                    PhaseIs(Phase::Succeeded),
                    Deadline(None),
                    At(15, tick(), vec![]),
                ],
            ),
        ];
        for (name, pod, steps) in cases {
            run(name, pod, &steps);
        }
    }

    #[test]
    fn app_containers_restart_per_policy() {
        // (policy, how c ends, actions, state, deadline, phase); a restart is at once.
        let cases = [
            (
                Always,
                exited("c", 0),
                vec![start("c")],
                "Waiting:ContainerCreating",
                None,
                Phase::Running,
            ),
            (
                Always,
                exited("c", 1),
                vec![start("c")],
                "Waiting:ContainerCreating",
                None,
                Phase::Running,
            ),
            (
                Always,
                start_failed("c"),
                vec![start("c")],
                "Waiting:ContainerCreating",
                None,
                Phase::Running,
            ),
            (
                OnFailure,
                exited("c", 0),
                vec![SANDBOX],
                "Terminated:Completed:0",
                None,
                Phase::Succeeded,
            ),
            (
                OnFailure,
                exited("c", 3),
                vec![start("c")],
                "Waiting:ContainerCreating",
                None,
                Phase::Running,
            ),
            (
                OnFailure,
                oom("c"),
                vec![start("c")],
                "Waiting:ContainerCreating",
                None,
                Phase::Running,
            ),
            (
                OnFailure,
                start_failed("c"),
                vec![start("c")],
                "Waiting:ContainerCreating",
                None,
                Phase::Running,
            ),
            (
                Never,
                exited("c", 0),
                vec![SANDBOX],
                "Terminated:Completed:0",
                None,
                Phase::Succeeded,
            ),
            (
                Never,
                exited("c", 1),
                vec![SANDBOX],
                "Terminated:Error:1",
                None,
                Phase::Failed,
            ),
            (
                Never,
                oom("c"),
                vec![SANDBOX],
                "Terminated:OOMKilled:137",
                None,
                Phase::Failed,
            ),
            (
                Never,
                start_failed("c"),
                vec![SANDBOX],
                "Terminated:StartError:128",
                None,
                Phase::Failed,
            ),
        ];
        for (policy, ending, actions, state, deadline, phase) in cases {
            let name = format!("{policy:?} {ending:?}");
            let finished = actions.contains(&SANDBOX);
            let restarts = actions.contains(&start("c"));
            // A start failure needs the container still being started.
            let up = if matches!(ending, Input::StartFailed { .. }) {
                tick()
            } else {
                started("c")
            };
            let mut steps = vec![
                At(0, begin(), vec![start("c")]),
                At(1, up.clone(), vec![]),
                At(5, ending.clone(), actions),
                State("c", state),
                Deadline(deadline),
                PhaseIs(phase),
                Finished(finished),
                Restarts("c", u32::from(restarts)),
            ];
            if restarts {
                // The same ending again waits `base`.
                steps.extend([
                    At(6, up, vec![]),
                    At(7, ending, vec![]),
                    State("c", "Waiting:CrashLoopBackOff"),
                    Deadline(Some(17)),
                    PhaseIs(Phase::Running),
                    Finished(false),
                    Restarts("c", 1),
                ]);
            }
            run(&name, TestPod::new(policy).app("c"), &steps);
        }
    }

    #[test]
    fn stop_terminates_apps_then_sidecars_in_reverse() {
        let pod = || {
            TestPod::new(Always)
                .sidecar("s1")
                .sidecar("s2")
                .app("a")
                .app("b")
        };
        let all_running = || {
            vec![
                At(0, begin(), vec![start("s1")]),
                At(0, started("s1"), vec![start("s2")]),
                At(0, started("s2"), vec![start("a"), start("b")]),
                At(0, started("a"), vec![]),
                At(0, started("b"), vec![]),
                PhaseIs(Phase::Running),
                Deadline(None),
            ]
        };
        let cases = [
            (
                "everyone leaves in time",
                [
                    all_running(),
                    vec![
                        At(10, stop(), vec![term("a"), term("b")]),
                        Deadline(Some(40)),
                        At(11, exited("a", 0), vec![]),
                        At(12, killed("b", 15), vec![term("s2")]),
                        State("b", "Terminated:Error:143"),
                        At(13, exited("s2", 0), vec![term("s1")]),
                        Finished(false),
                        At(14, exited("s1", 0), vec![SANDBOX]),
                        Finished(true),
                        Deadline(None),
                        PhaseIs(Phase::Failed),
                        At(20, tick(), vec![]),
                    ],
                ]
                .concat(),
            ),
            (
                "all apps exit 0 on Term: Succeeded",
                [
                    all_running(),
                    vec![
                        At(10, stop(), vec![term("a"), term("b")]),
                        At(11, exited("b", 0), vec![]),
                        At(11, exited("a", 0), vec![term("s2")]),
                        At(11, exited("s2", 0), vec![term("s1")]),
                        At(11, exited("s1", 0), vec![SANDBOX]),
                        PhaseIs(Phase::Succeeded),
                    ],
                ]
                .concat(),
            ),
            (
                "at the deadline: Kill for the apps, Term for the waiting sidecars, Kill 2 s later",
                [
                    all_running(),
                    vec![
                        At(10, stop(), vec![term("a"), term("b")]),
                        At(11, exited("a", 0), vec![]),
                        Deadline(Some(40)),
                        At(39, tick(), vec![]),
                        At(40, tick(), vec![kill("b"), term("s2"), term("s1")]),
                        Deadline(Some(42)),
                        At(40, killed("b", 9), vec![]),
                        PhaseIs(Phase::Running),
                        At(41, exited("s1", 0), vec![]),
                        At(41, tick(), vec![]),
                        At(42, tick(), vec![kill("s2")]),
                        Deadline(None),
                        At(42, killed("s2", 9), vec![SANDBOX]),
                        PhaseIs(Phase::Failed),
                    ],
                ]
                .concat(),
            ),
            (
                "a sidecar whose turn comes just before the deadline still gets 2 s",
                [
                    all_running(),
                    vec![
                        At(10, stop(), vec![term("a"), term("b")]),
                        At(20, exited("a", 0), vec![]),
                        At(39, exited("b", 0), vec![term("s2")]),
                        Deadline(Some(40)),
                        At(40, tick(), vec![term("s1")]),
                        Deadline(Some(41)),
                        At(41, tick(), vec![kill("s2")]),
                        Deadline(Some(42)),
                        At(41, killed("s2", 9), vec![]),
                        At(42, tick(), vec![kill("s1")]),
                        At(42, killed("s1", 9), vec![SANDBOX]),
                        PhaseIs(Phase::Succeeded),
                    ],
                ]
                .concat(),
            ),
            (
                "a shorter grace hastens Kill, never sooner than 2 s after Term",
                [
                    all_running(),
                    vec![
                        At(10, stop(), vec![term("a"), term("b")]),
                        Deadline(Some(40)),
                        Grace(5),
                        At(11, stop(), vec![]),
                        Deadline(Some(16)),
                        At(
                            16,
                            tick(),
                            vec![kill("a"), kill("b"), term("s2"), term("s1")],
                        ),
                        Deadline(Some(18)),
                        At(16, killed("a", 9), vec![]),
                        At(16, killed("b", 9), vec![]),
                        At(17, tick(), vec![]),
                        At(18, tick(), vec![kill("s2"), kill("s1")]),
                    ],
                ]
                .concat(),
            ),
            (
                "a second Stop with 1 s right after the first: Kill 2 s after each Term",
                [
                    all_running(),
                    vec![
                        At(10, stop(), vec![term("a"), term("b")]),
                        Grace(1),
                        At(10, stop(), vec![]),
                        Deadline(Some(11)),
                        At(11, tick(), vec![term("s2"), term("s1")]),
                        Deadline(Some(12)),
                        At(12, tick(), vec![kill("a"), kill("b")]),
                        Deadline(Some(13)),
                        At(13, tick(), vec![kill("s2"), kill("s1")]),
                        Deadline(None),
                    ],
                ]
                .concat(),
            ),
            (
                "a crashed sidecar no longer blocks the earlier one",
                [
                    all_running(),
                    vec![
                        At(10, stop(), vec![term("a"), term("b")]),
                        At(11, exited("s2", 1), vec![]),
                        State("s2", "Terminated:Error:1"),
                        Deadline(Some(40)),
                        At(12, exited("a", 0), vec![]),
                        At(13, exited("b", 0), vec![term("s1")]),
                        At(14, exited("s1", 0), vec![SANDBOX]),
                    ],
                ]
                .concat(),
            ),
            (
                "Stop twice, then Stop when finished",
                [
                    all_running(),
                    vec![
                        At(10, stop(), vec![term("a"), term("b")]),
                        At(11, stop(), vec![]),
                        Deadline(Some(40)),
                        At(12, exited("a", 0), vec![]),
                        At(12, exited("b", 0), vec![term("s2")]),
                        At(12, exited("s2", 0), vec![term("s1")]),
                        At(12, exited("s1", 0), vec![SANDBOX]),
                        At(13, stop(), vec![]),
                        At(13, begin(), vec![]),
                    ],
                ]
                .concat(),
            ),
        ];
        for (name, steps) in cases {
            run(name, pod(), &steps);
        }
    }

    #[test]
    fn stop_in_other_situations() {
        let cases = [
            (
                "back-off cancelled, nothing restarts",
                TestPod::new(Always).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(0, started("a"), vec![]),
                    At(5, exited("a", 1), vec![start("a")]),
                    At(5, started("a"), vec![]),
                    At(5, exited("a", 1), vec![]),
                    Deadline(Some(15)),
                    At(6, stop(), vec![term("s")]),
                    State("a", "Terminated:Error:1"),
                    Deadline(Some(36)),
                    At(15, tick(), vec![]),
                    At(16, exited("s", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Failed),
                    Restarts("a", 1),
                ],
            ),
            (
                "during init: the init container first, the app never starts",
                TestPod::new(Always).sidecar("s").init("i").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("i")]),
                    At(0, started("i"), vec![]),
                    At(5, stop(), vec![term("i")]),
                    At(6, exited("i", 0), vec![term("s")]),
                    At(7, exited("s", 0), vec![SANDBOX]),
                    State("a", "Waiting:PodInitializing"),
                    State("i", "Terminated:Completed:0"),
                    PhaseIs(Phase::Failed),
                ],
            ),
            (
                "a container still starting is stopped once it runs",
                TestPod::new(Always).app("a").app("b"),
                vec![
                    At(0, begin(), vec![start("a"), start("b")]),
                    At(0, started("a"), vec![]),
                    At(1, stop(), vec![term("a")]),
                    At(2, exited("a", 0), vec![]),
                    Finished(false),
                    At(3, started("b"), vec![term("b")]),
                    At(4, exited("b", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
            (
                "a container starting after the deadline gets Term, then Kill 2 s later",
                TestPod::new(Always).app("a").app("b"),
                vec![
                    At(0, begin(), vec![start("a"), start("b")]),
                    At(0, started("a"), vec![]),
                    At(1, stop(), vec![term("a")]),
                    At(2, exited("a", 0), vec![]),
                    Deadline(None),
                    At(40, started("b"), vec![term("b")]),
                    Deadline(Some(42)),
                    At(41, tick(), vec![]),
                    At(42, tick(), vec![kill("b")]),
                    At(42, killed("b", 9), vec![SANDBOX]),
                ],
            ),
            (
                "a start failure during shutdown does not restart",
                TestPod::new(Always).app("a"),
                vec![
                    At(0, begin(), vec![start("a")]),
                    At(1, stop(), vec![]),
                    At(2, start_failed("a"), vec![SANDBOX]),
                    State("a", "Terminated:StartError:128"),
                ],
            ),
            (
                "before Begin",
                TestPod::new(Always).init("i").app("a"),
                vec![
                    At(0, stop(), vec![SANDBOX]),
                    At(1, begin(), vec![]),
                    Finished(true),
                    PhaseIs(Phase::Failed),
                    State("i", "Waiting:PodInitializing"),
                ],
            ),
            (
                "during the shutdown of a finished pod",
                TestPod::new(Never).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(0, started("a"), vec![]),
                    At(5, exited("a", 0), vec![term("s")]),
                    PhaseIs(Phase::Running),
                    Deadline(Some(35)),
                    At(6, stop(), vec![]),
                    Deadline(Some(35)),
                    At(35, tick(), vec![kill("s")]),
                    PhaseIs(Phase::Running),
                    At(36, killed("s", 9), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
        ];
        for (name, pod, steps) in cases {
            run(name, pod, &steps);
        }
    }

    /// As the kubelet's: the pod is given 1 s, and every container still its Term
    /// and 2 s before Kill.
    #[test]
    fn zero_grace_still_terms_first() {
        let cases = [
            (
                "stop",
                TestPod::new(Always).grace(0).sidecar("s").app("a").app("b"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a"), start("b")]),
                    At(0, started("a"), vec![]),
                    At(0, started("b"), vec![]),
                    At(10, stop(), vec![term("a"), term("b")]),
                    Deadline(Some(11)),
                    At(11, tick(), vec![term("s")]),
                    Deadline(Some(12)),
                    At(12, tick(), vec![kill("a"), kill("b")]),
                    Deadline(Some(13)),
                    At(12, killed("a", 9), vec![]),
                    At(12, killed("b", 9), vec![]),
                    At(13, tick(), vec![kill("s")]),
                    Deadline(None),
                    At(13, killed("s", 9), vec![SANDBOX]),
                ],
            ),
            (
                "stop, the apps leave on Term",
                TestPod::new(Always).grace(0).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(0, started("a"), vec![]),
                    At(10, stop(), vec![term("a")]),
                    At(10, exited("a", 0), vec![term("s")]),
                    Deadline(Some(12)),
                    At(11, tick(), vec![]),
                    At(12, tick(), vec![kill("s")]),
                    At(12, killed("s", 9), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
            (
                "pod finished",
                TestPod::new(Never).grace(0).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(0, started("a"), vec![]),
                    At(3, exited("a", 0), vec![term("s")]),
                    PhaseIs(Phase::Running),
                    Deadline(Some(5)),
                    At(4, tick(), vec![]),
                    At(5, tick(), vec![kill("s")]),
                    At(5, killed("s", 9), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
        ];
        for (name, pod, steps) in cases {
            run(name, pod, &steps);
        }
    }

    #[test]
    fn inputs_that_do_not_fit_are_ignored() {
        let steps = [
            At(0, started("a"), vec![]),
            At(0, exited("a", 1), vec![]),
            At(0, begin(), vec![start("a")]),
            At(0, begin(), vec![]),
            At(1, started("nobody"), vec![]),
            At(1, exited("nobody", 1), vec![]),
            At(1, start_failed("nobody"), vec![]),
            At(1, started("a"), vec![]),
            At(1, started("a"), vec![]),
            At(1, start_failed("a"), vec![]),
            State("a", "Running"),
            At(2, exited("a", 1), vec![start("a")]),
            At(2, started("a"), vec![]),
            At(3, exited("a", 1), vec![]),
            At(3, exited("a", 1), vec![]),
            At(3, started("a"), vec![]),
            At(3, start_failed("a"), vec![]),
            Restarts("a", 1),
            Deadline(Some(13)),
            State("a", "Waiting:CrashLoopBackOff"),
        ];
        run("ignored", TestPod::new(Always).app("a"), &steps);

        // Exited straight from starting: a run that ended at once.
        let steps = [
            At(0, begin(), vec![start("a")]),
            At(1, exited("a", 0), vec![start("a")]),
            State("a", "Waiting:ContainerCreating"),
            Restarts("a", 1),
            Deadline(None),
        ];
        let (pod, clock) = run(
            "exited while starting",
            TestPod::new(Always).app("a"),
            &steps,
        );
        let status = pod.status();
        let last = status.container_statuses[0].last_state.clone().unwrap();
        assert_eq!(last.started_at, Some(clock.at(1).wall));
        assert_eq!(last.finished_at, clock.at(1).wall);
    }

    #[test]
    fn next_deadline_is_the_earliest_backoff() {
        let steps = [
            At(0, begin(), vec![start("a"), start("b")]),
            Deadline(None),
            At(0, started("a"), vec![]),
            At(0, started("b"), vec![]),
            // A first crash restarts at once: nothing to wait for.
            At(1, exited("b", 1), vec![start("b")]),
            Deadline(None),
            At(1, started("b"), vec![]),
            At(5, exited("b", 1), vec![]),
            Deadline(Some(15)),
            // An immediate restart leaves the pending back-off's deadline alone.
            At(6, exited("a", 1), vec![start("a")]),
            Deadline(Some(15)),
            At(6, started("a"), vec![]),
            At(7, exited("a", 1), vec![]),
            Deadline(Some(15)),
            At(15, tick(), vec![start("b")]),
            Deadline(Some(17)),
            At(16, started("b"), vec![]),
            At(16, exited("b", 1), vec![]),
            Deadline(Some(17)),
            At(17, tick(), vec![start("a")]),
            Deadline(Some(36)),
        ];
        run("earliest", TestPod::new(Always).app("a").app("b"), &steps);
    }

    #[test]
    fn a_lost_container_is_unknown_and_restarts_as_a_failure() {
        let lost = |c: &str| Input::Lost {
            container: c.into(),
        };
        let (pod, _) = run(
            "lost",
            TestPod::new(OnFailure).app("web"),
            &[
                At(0, begin(), vec![start("web")]),
                At(1, started("web"), vec![]),
                At(5, lost("web"), vec![start("web")]),
                State("web", "Waiting:ContainerCreating"),
                Restarts("web", 1),
            ],
        );
        let last = pod
            .status()
            .container("web")
            .unwrap()
            .last_state
            .clone()
            .unwrap();
        assert_eq!(
            (last.exit_code, last.reason.as_str()),
            (137, "ContainerStatusUnknown")
        );
        assert!(last.message.unwrap().contains("supervisor"));
    }

    #[test]
    fn a_container_that_cannot_be_created_waits_and_is_tried_again_without_a_restart() {
        let create_failed = |c: &str| Input::CreateFailed {
            container: c.into(),
            reason: "CreateContainerConfigError".into(),
            message: "container web has runAsNonRoot and image will run as root".into(),
        };
        let (pod, _) = run(
            "create error",
            TestPod::new(Never).init("setup").app("web"),
            &[
                At(0, begin(), vec![start("setup")]),
                // An init container that cannot be created holds up the rest,
                // whatever the restart policy, and fails nothing.
                At(0, create_failed("setup"), vec![]),
                State("setup", "Waiting:CreateContainerConfigError"),
                Message(
                    "setup",
                    Some("container web has runAsNonRoot and image will run as root"),
                ),
                PhaseIs(Phase::Pending),
                Deadline(Some(10)),
                At(9, tick(), vec![]),
                At(10, tick(), vec![start("setup")]),
                Restarts("setup", 0),
                At(10, started("setup"), vec![]),
                At(11, exited("setup", 0), vec![start("web")]),
                At(11, create_failed("web"), vec![]),
                PhaseIs(Phase::Pending),
                At(21, tick(), vec![start("web")]),
                At(21, started("web"), vec![]),
                PhaseIs(Phase::Running),
                Restarts("web", 0),
                // Stopped while it waits: it ends without a run.
                At(22, exited("web", 0), vec![SANDBOX]),
            ],
        );
        assert_eq!(pod.phase(), Phase::Succeeded);
        let (_, _) = run(
            "create error, then stop",
            TestPod::new(Always).app("web"),
            &[
                At(0, begin(), vec![start("web")]),
                At(0, create_failed("web"), vec![]),
                At(1, stop(), vec![SANDBOX]),
                Finished(true),
            ],
        );
    }
}
