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
//! write(serde_json::to_vec(&pod.status()));                  // a v1 PodStatus
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

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{self, RestartPolicy};

/// The instant an input happened: monotonic for deadlines, wall for status times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall: DateTime<Utc>,
}

/// Restart back-off; `Default` is the kubelet's (10 s, doubling to 5 min, reset
/// after 10 min of running). Tests shorten `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay before the next restart, given the previous delay (if any) and how
    /// long the container ran before it exited. As with the kubelet, the first
    /// crash (and the first after a long clean run) restarts at once; then `base`,
    /// doubling up to `max`.
    pub fn next(&self, previous: Option<Duration>, ran_for: Duration) -> Duration {
        let max = self.max.min(FOREVER);
        let base = self.base.min(max);
        match previous {
            Some(previous) if ran_for < self.reset_after => {
                previous.saturating_mul(2).clamp(base, max)
            }
            _ => Duration::ZERO,
        }
    }
}

/// Durations are capped here so that `Instant + Duration` cannot overflow.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The kubelet's pod workers never shut a pod down with less grace than this.
const MIN_POD_GRACE: Duration = Duration::from_secs(1);

/// The kubelet's minimumGracePeriodInSeconds: the least time between a container's
/// stop signal and its SIGKILL.
const MIN_STOP_GRACE: Duration = Duration::from_secs(2);

/// What happened to the pod, as the supervisor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The sandbox is up: start the pod.
    Begin,
    /// The container's process is running.
    Started { container: String },
    /// The container could not be created or started (e.g. missing executable):
    /// taken as an exit with code 128 and this reason (e.g. "StartError").
    StartFailed {
        container: String,
        reason: String,
        message: String,
    },
    /// The container could not be set up, so it never got a process (its
    /// command, user, rootfs or spec): the kubelet's `CreateContainerConfigError`
    /// or `CreateContainerError`. It waits with that reason and is tried again
    /// after the back-off base, whatever the restart policy, counting no restart.
    CreateFailed {
        container: String,
        reason: String,
        message: String,
    },
    /// The container's process exited. Reason "OOMKilled" if `oom_killed`, else
    /// "Completed" for code 0 and "Error" otherwise.
    Exited {
        container: String,
        exit_code: i32,
        signal: Option<i32>,
        oom_killed: bool,
        /// What it wrote to its terminationMessagePath (or its log's tail).
        message: Option<String>,
    },
    /// The container's process is gone and its exit status is unknown (it was
    /// not our child: a supervisor of the pod that has since died started it). Taken as
    /// the kubelet takes a container it lost: exit code 137, reason
    /// "ContainerStatusUnknown", a failure for the restart policy.
    Lost { container: String },
    /// Time passed (the timer for `next_deadline` fired).
    Tick,
    /// Graceful stop requested (pod stop / rm, or the supervisor got SIGTERM).
    Stop,
}

/// How to stop a container: its stop signal (SIGTERM unless the image says
/// otherwise), or SIGKILL once the grace period is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StopSignal {
    Term,
    Kill,
}

/// What the supervisor must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create and start this container (answer with `Started` or `StartFailed`).
    Start { container: String },
    /// Send this signal to the container's process.
    Signal {
        container: String,
        signal: StopSignal,
    },
    /// Nothing runs any more and nothing will: stop the sandbox. Emitted once.
    StopSandbox,
}

/// Kubernetes' pod phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// The pod's status, shaped as Kubernetes' v1 `PodStatus` (camelCase JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusView {
    pub phase: Phase,
    pub conditions: Vec<PodCondition>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    pub start_time: Option<DateTime<Utc>>,
    /// Init containers, sidecars included, in manifest order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_container_statuses: Vec<ContainerStatusView>,
    /// App containers, in manifest order.
    #[serde(default)]
    pub container_statuses: Vec<ContainerStatusView>,
}

impl PodStatusView {
    /// Every container, init containers first, in manifest order.
    pub fn containers(&self) -> impl Iterator<Item = &ContainerStatusView> {
        self.init_container_statuses
            .iter()
            .chain(&self.container_statuses)
    }

    pub fn container(&self, name: &str) -> Option<&ContainerStatusView> {
        self.containers().find(|c| c.name == name)
    }

    pub fn condition(&self, kind: ConditionType) -> Option<&PodCondition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub kind: ConditionType,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    pub last_transition_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionType {
    PodReadyToStartContainers,
    Initialized,
    Ready,
    ContainersReady,
    PodScheduled,
}

/// The order the kubelet lists conditions in.
const CONDITIONS: [ConditionType; 5] = [
    ConditionType::PodReadyToStartContainers,
    ConditionType::Initialized,
    ConditionType::Ready,
    ConditionType::ContainersReady,
    ConditionType::PodScheduled,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            Self::True
        } else {
            Self::False
        }
    }
}

/// One container's status, shaped as Kubernetes' v1 `ContainerStatus`. Whether it is
/// an init container is which list of [`PodStatusView`] it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatusView {
    pub name: String,
    pub image: String,
    pub state: ContainerState,
    /// The previous termination (what `logs --previous` shows), `{}` in JSON if none.
    #[serde(default, with = "last_state_json")]
    pub last_state: Option<TerminatedState>,
    /// Running (no probes); for a regular init container: exited 0.
    pub ready: bool,
    pub restart_count: u32,
    /// Running (no startup probes).
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerState {
    Waiting(WaitingState),
    Running(RunningState),
    Terminated(TerminatedState),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingState {
    /// "ContainerCreating", "PodInitializing" or "CrashLoopBackOff".
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningState {
    #[serde(with = "rfc3339")]
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminatedState {
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// "Completed", "Error", "OOMKilled", or the start failure's reason.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// None when the process never started.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339")]
    pub finished_at: DateTime<Utc>,
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
    /// Sticky: the init sequence completed once.
    initialized: bool,
    /// A regular init container failed under restartPolicy Never.
    init_failed: bool,
    /// Set once shutting down: when waiting sidecars get `Term`, and from when
    /// whatever still runs gets `Kill` (2 s after its `Term` at the earliest).
    deadline: Option<Instant>,
    sandbox_stopped: bool,
    /// Per entry of `CONDITIONS`: its status and since when.
    transitions: [Option<(bool, DateTime<Utc>)>; CONDITIONS.len()],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Init,
    Sidecar,
    App,
}

#[derive(Debug, Clone)]
enum Run {
    /// Its turn has not come (or never will).
    Idle,
    /// `Start` emitted; waiting for `Started` or `StartFailed`.
    Starting,
    Running {
        since: Instant,
        since_wall: DateTime<Utc>,
        signaled: Option<StopSignal>,
        /// When `Term` was sent; None before, or if unknown (restored).
        termed: Option<Instant>,
    },
    /// Exited; restarts at `until`.
    BackOff { until: Instant, delay: Duration },
    /// Could not be set up; tried again at `until` (not a restart).
    CreateError {
        until: Instant,
        reason: String,
        message: String,
    },
    /// Exited for good.
    Exited,
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    image: String,
    role: Role,
    run: Run,
    /// Has ever been running (what lets the init sequence pass a sidecar).
    has_started: bool,
    restart_count: u32,
    /// The last back-off delay used.
    backoff: Option<Duration>,
    latest: Option<TerminatedState>,
    previous: Option<TerminatedState>,
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
            init_failed: false,
            deadline: None,
            sandbox_stopped: false,
            transitions: [None; CONDITIONS.len()],
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
                }
            }
            Input::Started { container } => self.on_started(&container, now),
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
            Input::Tick => {}
            Input::Stop => self.begin_shutdown(now),
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
        match self.deadline {
            Some(deadline) => self
                .members
                .iter()
                .filter_map(|m| m.next_signal_due(deadline))
                .min(),
            None => self
                .members
                .iter()
                .filter_map(|m| match m.run {
                    Run::BackOff { until, .. } | Run::CreateError { until, .. } => Some(until),
                    _ => None,
                })
                .min(),
        }
    }

    pub fn phase(&self) -> Phase {
        if self.init_failed {
            return Phase::Failed;
        }
        let apps = || self.members.iter().filter(|m| m.role == Role::App);
        let terminal = || {
            if apps().all(Member::succeeded) {
                Phase::Succeeded
            } else {
                Phase::Failed
            }
        };
        if self.sandbox_stopped {
            return terminal();
        }
        if !self.initialized || apps().any(|m| !m.has_run()) {
            return Phase::Pending;
        }
        let sidecar_alive = || {
            self.members
                .iter()
                .any(|m| m.role == Role::Sidecar && m.alive())
        };
        if apps().any(|m| !matches!(m.run, Run::Exited)) || sidecar_alive() {
            return Phase::Running;
        }
        terminal()
    }

    pub fn status(&self) -> PodStatusView {
        let phase = self.phase();
        let mut conditions = self.conditions(phase);
        for (condition, transition) in conditions.iter_mut().zip(&self.transitions) {
            condition.last_transition_time = transition.map(|(_, since)| since);
        }
        let view = |role: fn(Role) -> bool| {
            self.members
                .iter()
                .filter(|m| role(m.role))
                .map(|m| m.status(self.idle_reason, &self.pod_ref))
                .collect()
        };
        PodStatusView {
            phase,
            conditions,
            start_time: self.start_time,
            init_container_statuses: view(|r| r != Role::App),
            container_statuses: view(|r| r == Role::App),
        }
    }

    /// Nothing more will ever run, and `StopSandbox` was emitted.
    pub fn is_finished(&self) -> bool {
        self.sandbox_stopped
    }

    /// A container waits to be tried again (it could not be created, or it
    /// crashed and backs off): the pod may stay Pending for long.
    pub fn is_waiting_on_a_failure(&self) -> bool {
        self.members
            .iter()
            .any(|m| matches!(m.run, Run::BackOff { .. } | Run::CreateError { .. }))
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

    /// Everything needed to carry on with this pod in another process, with
    /// monotonic instants turned into wall-clock times as of `now`.
    pub fn snapshot(&self, now: Now) -> Snapshot {
        Snapshot {
            begun: self.begun,
            start_time: self.start_time,
            initialized: self.initialized,
            init_failed: self.init_failed,
            deadline: self.deadline.map(|d| wall_of(d, now)),
            sandbox_stopped: self.sandbox_stopped,
            transitions: self.transitions.to_vec(),
            members: self
                .members
                .iter()
                .map(|m| MemberSnapshot {
                    name: m.name.clone(),
                    run: match &m.run {
                        Run::Idle => RunSnapshot::Idle,
                        Run::Starting => RunSnapshot::Starting,
                        Run::Running {
                            since_wall,
                            signaled,
                            ..
                        } => RunSnapshot::Running {
                            since: *since_wall,
                            signaled: *signaled,
                        },
                        Run::BackOff { until, delay } => RunSnapshot::BackOff {
                            until: wall_of(*until, now),
                            delay_ms: delay.as_millis() as u64,
                        },
                        Run::CreateError {
                            until,
                            reason,
                            message,
                        } => RunSnapshot::CreateError {
                            until: wall_of(*until, now),
                            reason: reason.clone(),
                            message: message.clone(),
                        },
                        Run::Exited => RunSnapshot::Exited,
                    },
                    has_started: m.has_started,
                    restart_count: m.restart_count,
                    backoff_ms: m.backoff.map(|d| d.as_millis() as u64),
                    latest: m.latest.clone(),
                    previous: m.previous.clone(),
                })
                .collect(),
        }
    }

    /// The lifecycle of `pod` as a `snapshot` left it. Fails if the snapshot is
    /// not of this pod's containers.
    pub fn restore(
        pod: &model::Pod,
        backoff: Backoff,
        snapshot: &Snapshot,
        now: Now,
    ) -> Result<Self, String> {
        let mut lifecycle = Self::new(pod, backoff);
        let names: Vec<&str> = lifecycle.members.iter().map(|m| m.name.as_str()).collect();
        let saved: Vec<&str> = snapshot.members.iter().map(|m| m.name.as_str()).collect();
        if names != saved || snapshot.transitions.len() != CONDITIONS.len() {
            return Err(format!(
                "the saved lifecycle has containers {saved:?}, the pod has {names:?}"
            ));
        }
        lifecycle.begun = snapshot.begun;
        lifecycle.start_time = snapshot.start_time;
        lifecycle.initialized = snapshot.initialized;
        lifecycle.init_failed = snapshot.init_failed;
        lifecycle.deadline = snapshot.deadline.map(|d| instant_of(d, now));
        lifecycle.sandbox_stopped = snapshot.sandbox_stopped;
        for (t, saved) in lifecycle.transitions.iter_mut().zip(&snapshot.transitions) {
            *t = *saved;
        }
        for (m, saved) in lifecycle.members.iter_mut().zip(&snapshot.members) {
            m.run = match saved.run {
                RunSnapshot::Idle => Run::Idle,
                RunSnapshot::Starting => Run::Starting,
                RunSnapshot::Running { since, signaled } => Run::Running {
                    since: instant_of(since, now),
                    since_wall: since,
                    signaled,
                    termed: None,
                },
                RunSnapshot::BackOff { until, delay_ms } => Run::BackOff {
                    until: instant_of(until, now),
                    delay: Duration::from_millis(delay_ms),
                },
                RunSnapshot::CreateError {
                    until,
                    ref reason,
                    ref message,
                } => Run::CreateError {
                    until: instant_of(until, now),
                    reason: reason.clone(),
                    message: message.clone(),
                },
                RunSnapshot::Exited => Run::Exited,
            };
            m.has_started = saved.has_started;
            m.restart_count = saved.restart_count;
            m.backoff = saved.backoff_ms.map(Duration::from_millis);
            m.latest = saved.latest.clone();
            m.previous = saved.previous.clone();
        }
        Ok(lifecycle)
    }

    fn member(&mut self, name: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.name == name)
    }

    fn on_started(&mut self, name: &str, now: Now) {
        if let Some(m) = self.member(name) {
            if matches!(m.run, Run::Starting) {
                m.run = Run::Running {
                    since: now.mono,
                    since_wall: now.wall,
                    signaled: None,
                    termed: None,
                };
                m.has_started = true;
            }
        }
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
        if self.begun && self.deadline.is_none() {
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
            m.stop(now, deadline, actions);
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
            if overdue || !blocked || m.signaled().is_some() {
                m.stop(now, deadline, actions);
            }
            blocked |= m.alive();
        }
        if !self.members.iter().any(Member::alive) {
            self.sandbox_stopped = true;
            actions.push(Action::StopSandbox);
        }
    }

    fn conditions(&self, phase: Phase) -> Vec<PodCondition> {
        let names = |filter: &dyn Fn(&Member) -> bool| {
            let names: Vec<&str> = self
                .members
                .iter()
                .filter(|m| filter(m))
                .map(|m| m.name.as_str())
                .collect();
            names.join(" ")
        };
        let initialized = if phase == Phase::Succeeded {
            (true, Some("PodCompleted"), None)
        } else if self.initialized {
            (true, None, None)
        } else {
            let pending = names(&|m| m.role != Role::App && !m.init_done());
            (
                false,
                Some("ContainersNotInitialized"),
                Some(format!("containers with incomplete status: [{pending}]")),
            )
        };
        let ready = match phase {
            Phase::Succeeded => (false, Some("PodCompleted"), None),
            Phase::Failed => (false, Some("PodFailed"), None),
            Phase::Pending | Phase::Running => {
                let unready = names(&|m| m.role != Role::Init && !m.running());
                if unready.is_empty() {
                    (true, None, None)
                } else {
                    (
                        false,
                        Some("ContainersNotReady"),
                        Some(format!("containers with unready status: [{unready}]")),
                    )
                }
            }
        };
        CONDITIONS
            .iter()
            .map(|&kind| {
                let (status, reason, message) = match kind {
                    ConditionType::PodReadyToStartContainers => {
                        (self.begun && !self.sandbox_stopped, None, None)
                    }
                    ConditionType::Initialized => initialized.clone(),
                    ConditionType::Ready | ConditionType::ContainersReady => ready.clone(),
                    ConditionType::PodScheduled => (true, None, None),
                };
                PodCondition {
                    kind,
                    status: status.into(),
                    reason: reason.map(str::to_owned),
                    message,
                    last_transition_time: None,
                }
            })
            .collect()
    }

    fn record_transitions(&mut self, wall: DateTime<Utc>) {
        let conditions = self.conditions(self.phase());
        for (condition, transition) in conditions.iter().zip(&mut self.transitions) {
            let status = condition.status == ConditionStatus::True;
            if transition.is_none_or(|(was, _)| was != status) {
                *transition = Some((status, wall));
            }
        }
    }
}

impl Member {
    fn new(container: &model::Container, role: Role) -> Self {
        Self {
            name: container.name.clone(),
            image: container.image.clone(),
            role,
            run: Run::Idle,
            has_started: false,
            restart_count: 0,
            backoff: None,
            latest: None,
            previous: None,
        }
    }

    fn start(&mut self, actions: &mut Vec<Action>) {
        self.run = Run::Starting;
        actions.push(Action::Start {
            container: self.name.clone(),
        });
    }

    /// Send `Term` once, then `Kill` once due (see `kill_due`).
    fn stop(&mut self, now: Instant, deadline: Instant, actions: &mut Vec<Action>) {
        let kill_due = self.kill_due(deadline);
        let Run::Running {
            signaled, termed, ..
        } = &mut self.run
        else {
            return;
        };
        let signal = match *signaled {
            None => {
                *termed = Some(now);
                StopSignal::Term
            }
            Some(StopSignal::Term) if kill_due.is_some_and(|due| now >= due) => StopSignal::Kill,
            Some(_) => return,
        };
        *signaled = Some(signal);
        actions.push(Action::Signal {
            container: self.name.clone(),
            signal,
        });
    }

    /// The last signal sent to its running process.
    fn signaled(&self) -> Option<StopSignal> {
        match self.run {
            Run::Running { signaled, .. } => signaled,
            _ => None,
        }
    }

    /// When a `Term`ed container gets `Kill`: at the pod's deadline, but never
    /// sooner than 2 s after its `Term` (if known: a restored one has no time).
    fn kill_due(&self, deadline: Instant) -> Option<Instant> {
        match self.run {
            Run::Running {
                signaled: Some(StopSignal::Term),
                termed,
                ..
            } => Some(termed.map_or(deadline, |t| deadline.max(t + MIN_STOP_GRACE))),
            _ => None,
        }
    }

    /// During shutdown, when it needs a signal next: `Kill` when due, or `Term`
    /// at the deadline for a sidecar still waiting for its turn.
    fn next_signal_due(&self, deadline: Instant) -> Option<Instant> {
        match self.run {
            Run::Running { signaled: None, .. } => Some(deadline),
            _ => self.kill_due(deadline),
        }
    }

    /// Its process is (or may be) running.
    fn alive(&self) -> bool {
        matches!(self.run, Run::Starting | Run::Running { .. })
    }

    fn running(&self) -> bool {
        matches!(self.run, Run::Running { .. })
    }

    /// Has run or tried to (kubelet: a waiting container with a last termination
    /// counts as stopped, not as waiting).
    fn has_run(&self) -> bool {
        self.has_started || self.latest.is_some()
    }

    fn succeeded(&self) -> bool {
        matches!(self.run, Run::Exited) && self.latest.as_ref().is_some_and(|t| t.exit_code == 0)
    }

    /// Lets the init sequence move past it.
    fn init_done(&self) -> bool {
        match self.role {
            Role::Sidecar => self.has_started,
            Role::Init | Role::App => self.succeeded(),
        }
    }

    fn status(&self, idle_reason: &str, pod_ref: &str) -> ContainerStatusView {
        let waiting = |reason: &str, message: Option<String>| {
            ContainerState::Waiting(WaitingState {
                reason: reason.to_owned(),
                message,
            })
        };
        let (state, last_state) = match &self.run {
            Run::Idle => (waiting(idle_reason, None), self.latest.clone()),
            Run::Starting => (waiting("ContainerCreating", None), self.latest.clone()),
            Run::Running { since_wall, .. } => (
                ContainerState::Running(RunningState {
                    started_at: *since_wall,
                }),
                self.latest.clone(),
            ),
            Run::BackOff { delay, .. } => {
                let message = format!(
                    "back-off {} restarting failed container={} pod={pod_ref}",
                    go_duration(*delay),
                    self.name
                );
                (
                    waiting("CrashLoopBackOff", Some(message)),
                    self.latest.clone(),
                )
            }
            Run::CreateError {
                reason, message, ..
            } => (waiting(reason, Some(message.clone())), self.latest.clone()),
            Run::Exited => match &self.latest {
                Some(latest) => (
                    ContainerState::Terminated(latest.clone()),
                    self.previous.clone(),
                ),
                None => (waiting(idle_reason, None), None),
            },
        };
        ContainerStatusView {
            name: self.name.clone(),
            image: self.image.clone(),
            state,
            last_state,
            ready: match self.role {
                Role::Init => self.succeeded(),
                Role::Sidecar | Role::App => self.running(),
            },
            restart_count: self.restart_count,
            started: self.running(),
        }
    }
}

/// [`Lifecycle`]'s state in a form that outlives the process (see
/// [`Lifecycle::snapshot`]): instants are wall-clock times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    begun: bool,
    start_time: Option<DateTime<Utc>>,
    initialized: bool,
    init_failed: bool,
    deadline: Option<DateTime<Utc>>,
    sandbox_stopped: bool,
    transitions: Vec<Option<(bool, DateTime<Utc>)>>,
    members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MemberSnapshot {
    name: String,
    run: RunSnapshot,
    has_started: bool,
    restart_count: u32,
    backoff_ms: Option<u64>,
    latest: Option<TerminatedState>,
    previous: Option<TerminatedState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum RunSnapshot {
    Idle,
    Starting,
    Running {
        since: DateTime<Utc>,
        signaled: Option<StopSignal>,
    },
    BackOff {
        until: DateTime<Utc>,
        delay_ms: u64,
    },
    CreateError {
        until: DateTime<Utc>,
        reason: String,
        message: String,
    },
    Exited,
}

/// The wall-clock time of a monotonic instant, as seen at `now`.
fn wall_of(instant: Instant, now: Now) -> DateTime<Utc> {
    let offset = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    if instant >= now.mono {
        now.wall + offset(instant - now.mono)
    } else {
        now.wall - offset(now.mono - instant)
    }
}

/// The monotonic instant of a wall-clock time, as seen at `now` (an instant
/// before the process's clock can express becomes `now.mono`).
fn instant_of(wall: DateTime<Utc>, now: Now) -> Instant {
    match (wall - now.wall).to_std() {
        Ok(ahead) => now.mono + ahead.min(FOREVER),
        Err(_) => (now.wall - wall)
            .to_std()
            .ok()
            .and_then(|behind| now.mono.checked_sub(behind))
            .unwrap_or(now.mono),
    }
}

/// A duration as Go prints it ("10s", "2m40s", "5m0s", "10ms"), as in kubelet messages.
fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        return if nanos == 0 {
            "0s".to_owned()
        } else {
            format!("{nanos}ns")
        };
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 1_000_000));
    }
    let secs = d.as_secs();
    let (hours, minutes) = (secs / 3600, secs / 60 % 60);
    let seconds = decimal(
        u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
    );
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// `value / unit` in decimal, without trailing zeros.
fn decimal(value: u128, unit: u128) -> String {
    let (whole, fraction) = (value / unit, value % unit);
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// RFC 3339 with whole seconds, as Kubernetes writes times.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(de::Error::custom)
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            time: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            #[derive(Deserialize)]
            struct Wire(#[serde(with = "super")] DateTime<Utc>);
            Ok(Option::<Wire>::deserialize(d)?.map(|Wire(time)| time))
        }
    }
}

/// `lastState` is a whole `ContainerState` in Kubernetes: `{}` or `{"terminated": …}`.
mod last_state_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::TerminatedState;

    #[derive(Serialize, Deserialize)]
    struct Wire<T> {
        #[serde(skip_serializing_if = "Option::is_none")]
        terminated: Option<T>,
    }

    pub fn serialize<S: Serializer>(
        state: &Option<TerminatedState>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        Wire {
            terminated: state.as_ref(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<TerminatedState>, D::Error> {
        Ok(Option::<Wire<TerminatedState>>::deserialize(d)?.and_then(|w| w.terminated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    use RestartPolicy::{Always, Never, OnFailure};
    use Step::*;

    /// A pod manifest built by hand: containers in the order the methods are called.
    struct TestPod(model::Pod);

    impl TestPod {
        fn new(restart_policy: RestartPolicy) -> Self {
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
            })
        }

        fn init(mut self, name: &str) -> Self {
            self.0.init_containers.push(container(name, None));
            self
        }

        fn sidecar(mut self, name: &str) -> Self {
            self.0.init_containers.push(container(name, Some(Always)));
            self
        }

        fn app(mut self, name: &str) -> Self {
            self.0.containers.push(container(name, None));
            self
        }

        fn grace(mut self, secs: u64) -> Self {
            self.0.termination_grace = Duration::from_secs(secs);
            self
        }
    }

    fn container(name: &str, restart_policy: Option<RestartPolicy>) -> model::Container {
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
        }
    }

    fn begin() -> Input {
        Input::Begin
    }

    fn started(c: &str) -> Input {
        Input::Started {
            container: c.into(),
        }
    }

    fn exited(c: &str, exit_code: i32) -> Input {
        Input::Exited {
            container: c.into(),
            exit_code,
            signal: None,
            oom_killed: false,
            message: None,
        }
    }

    fn killed(c: &str, signal: i32) -> Input {
        Input::Exited {
            container: c.into(),
            exit_code: 128 + signal,
            signal: Some(signal),
            oom_killed: false,
            message: None,
        }
    }

    fn oom(c: &str) -> Input {
        Input::Exited {
            container: c.into(),
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            message: None,
        }
    }

    fn start_failed(c: &str) -> Input {
        Input::StartFailed {
            container: c.into(),
            reason: "StartError".into(),
            message: "exec: \"nope\": executable file not found in $PATH".into(),
        }
    }

    fn tick() -> Input {
        Input::Tick
    }

    fn stop() -> Input {
        Input::Stop
    }

    fn start(c: &str) -> Action {
        Action::Start {
            container: c.into(),
        }
    }

    fn term(c: &str) -> Action {
        Action::Signal {
            container: c.into(),
            signal: StopSignal::Term,
        }
    }

    fn kill(c: &str) -> Action {
        Action::Signal {
            container: c.into(),
            signal: StopSignal::Kill,
        }
    }

    const SANDBOX: Action = Action::StopSandbox;

    /// One line of a scenario; times are seconds after the scenario's start.
    #[derive(Debug, Clone)]
    enum Step {
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

    struct Clock {
        mono: Instant,
        wall: DateTime<Utc>,
    }

    impl Clock {
        fn new() -> Self {
            Self {
                mono: Instant::now(),
                wall: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
            }
        }

        fn at(&self, secs: u64) -> Now {
            Now {
                mono: self.mono + Duration::from_secs(secs),
                wall: self.wall + chrono::Duration::seconds(secs as i64),
            }
        }
    }

    /// "Waiting:Reason", "Running" or "Terminated:Reason:code".
    fn describe(state: &ContainerState) -> String {
        match state {
            ContainerState::Waiting(w) => format!("Waiting:{}", w.reason),
            ContainerState::Running(_) => "Running".to_owned(),
            ContainerState::Terminated(t) => format!("Terminated:{}:{}", t.reason, t.exit_code),
        }
    }

    fn run(name: &str, pod: TestPod, steps: &[Step]) -> (Lifecycle, Clock) {
        run_with(name, pod, Backoff::default(), steps)
    }

    fn run_with(name: &str, pod: TestPod, backoff: Backoff, steps: &[Step]) -> (Lifecycle, Clock) {
        let clock = Clock::new();
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
        (pod, clock)
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
    fn backoff_doubles_up_to_max_and_resets_after_a_long_run() {
        let mut steps = vec![
            At(0, begin(), vec![start("c")]),
            At(0, started("c"), vec![]),
        ];
        let mut t = 0;
        for delay in [0, 10, 20, 40, 80, 160, 300, 300] {
            if delay == 0 {
                steps.push(At(t, exited("c", 1), vec![start("c")]));
                steps.push(Deadline(None));
            } else {
                steps.push(At(t, exited("c", 1), vec![]));
                steps.push(Deadline(Some(t + delay)));
                t += delay;
                steps.push(At(t, tick(), vec![start("c")]));
            }
            steps.push(At(t, started("c"), vec![]));
        }
        steps.push(Restarts("c", 8));
        // After a 10-minute run: at once again, then `base` again.
        t += 600;
        steps.push(At(t, exited("c", 1), vec![start("c")]));
        steps.push(Deadline(None));
        steps.push(Restarts("c", 9));
        steps.push(At(t, started("c"), vec![]));
        steps.push(At(t, exited("c", 1), vec![]));
        steps.push(Deadline(Some(t + 10)));
        steps.push(Restarts("c", 9));
        run("ladder", TestPod::new(Always).app("c"), &steps);

        let backoff = Backoff::default();
        let secs = Duration::from_secs;
        let cases = [
            (None, secs(0), secs(0)),
            (None, secs(600), secs(0)),
            (Some(secs(0)), secs(0), secs(10)),
            (Some(secs(0)), secs(599), secs(10)),
            (Some(secs(10)), secs(0), secs(20)),
            (Some(secs(160)), secs(599), secs(300)),
            (Some(secs(300)), secs(0), secs(300)),
            (Some(secs(300)), secs(600), secs(0)),
        ];
        for (previous, ran_for, want) in cases {
            assert_eq!(
                backoff.next(previous, ran_for),
                want,
                "{previous:?} {ran_for:?}"
            );
        }
        let odd = Backoff {
            base: secs(20),
            max: secs(15),
            reset_after: secs(1),
        };
        assert_eq!(odd.next(None, secs(0)), secs(0));
        assert_eq!(odd.next(Some(secs(0)), secs(0)), secs(15));
        assert_eq!(odd.next(Some(secs(15)), secs(0)), secs(15));
    }

    #[test]
    fn configurable_base_keeps_the_ladder() {
        let fast = Backoff {
            base: Duration::from_millis(10),
            ..Backoff::default()
        };
        let clock = Clock::new();
        let mut pod = Lifecycle::new(&TestPod::new(Always).app("c").0, fast);
        assert_eq!(pod.handle(begin(), clock.at(0)), vec![start("c")]);
        assert_eq!(pod.handle(started("c"), clock.at(0)), vec![]);
        assert_eq!(pod.handle(exited("c", 1), clock.at(0)), vec![start("c")]);
        assert_eq!(pod.next_deadline(), None);
        assert_eq!(pod.handle(started("c"), clock.at(0)), vec![]);
        assert_eq!(pod.handle(exited("c", 1), clock.at(0)), vec![]);
        assert_eq!(
            pod.next_deadline(),
            Some(clock.at(0).mono + Duration::from_millis(10))
        );
        let status = pod.status();
        let ContainerState::Waiting(waiting) = &status.container_statuses[0].state else {
            panic!("{status:?}");
        };
        assert_eq!(
            waiting.message.as_deref(),
            Some("back-off 10ms restarting failed container=c pod=web_default(uid-1)")
        );
    }

    #[test]
    fn first_crash_restarts_at_once_then_after_base() {
        let message = "back-off 10s restarting failed container=c pod=web_default(uid-1)";
        let steps = [
            At(0, begin(), vec![start("c")]),
            At(1, started("c"), vec![]),
            // First crash: Start from the same call, no CrashLoopBackOff in between.
            At(2, exited("c", 1), vec![start("c")]),
            State("c", "Waiting:ContainerCreating"),
            Message("c", None),
            Restarts("c", 1),
            Deadline(None),
            PhaseIs(Phase::Running),
            At(3, started("c"), vec![]),
            State("c", "Running"),
            // Second crash: Start only after `base`.
            At(4, exited("c", 1), vec![]),
            State("c", "Waiting:CrashLoopBackOff"),
            Message("c", Some(message)),
            Restarts("c", 1),
            Deadline(Some(14)),
            At(13, tick(), vec![]),
            Restarts("c", 1),
            At(14, tick(), vec![start("c")]),
            Restarts("c", 2),
            Deadline(None),
            At(14, started("c"), vec![]),
            // Ran for `reset_after`: at once again, and the ladder starts over.
            At(614, exited("c", 1), vec![start("c")]),
            State("c", "Waiting:ContainerCreating"),
            Message("c", None),
            Restarts("c", 3),
            Deadline(None),
            At(615, started("c"), vec![]),
            At(616, exited("c", 1), vec![]),
            Message("c", Some(message)),
            Deadline(Some(626)),
            At(626, tick(), vec![start("c")]),
            At(626, started("c"), vec![]),
            // A second short of `reset_after`: no reset, the delay doubles.
            At(1225, exited("c", 1), vec![]),
            State("c", "Waiting:CrashLoopBackOff"),
            Deadline(Some(1245)),
            Restarts("c", 4),
        ];
        run("ladder from zero", TestPod::new(Always).app("c"), &steps);
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
    fn phase_follows_the_app_containers() {
        let cases = [
            (
                "all succeed",
                TestPod::new(Never).app("a").app("b"),
                vec![
                    PhaseIs(Phase::Pending),
                    At(0, begin(), vec![start("a"), start("b")]),
                    At(1, started("a"), vec![]),
                    PhaseIs(Phase::Pending),
                    At(1, started("b"), vec![]),
                    PhaseIs(Phase::Running),
                    At(2, exited("a", 0), vec![]),
                    PhaseIs(Phase::Running),
                    At(3, exited("b", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
            (
                "one fails",
                TestPod::new(Never).app("a").app("b"),
                vec![
                    At(0, begin(), vec![start("a"), start("b")]),
                    At(1, started("a"), vec![]),
                    At(1, started("b"), vec![]),
                    At(2, exited("a", 1), vec![]),
                    PhaseIs(Phase::Running),
                    At(3, exited("b", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Failed),
                ],
            ),
            (
                "OnFailure: running while a failed one will restart",
                TestPod::new(OnFailure).app("a").app("b"),
                vec![
                    At(0, begin(), vec![start("a"), start("b")]),
                    At(1, started("a"), vec![]),
                    At(1, started("b"), vec![]),
                    At(2, exited("a", 0), vec![]),
                    At(3, exited("b", 1), vec![start("b")]),
                    PhaseIs(Phase::Running),
                    At(3, started("b"), vec![]),
                    At(4, exited("b", 1), vec![]),
                    State("b", "Waiting:CrashLoopBackOff"),
                    PhaseIs(Phase::Running),
                    At(14, tick(), vec![start("b")]),
                    PhaseIs(Phase::Running),
                    At(14, started("b"), vec![]),
                    At(15, exited("b", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                    Restarts("b", 2),
                ],
            ),
            (
                "pending while an init container crash-loops",
                TestPod::new(Always).init("i").app("a"),
                vec![
                    At(0, begin(), vec![start("i")]),
                    At(0, start_failed("i"), vec![start("i")]),
                    PhaseIs(Phase::Pending),
                    At(0, start_failed("i"), vec![]),
                    State("i", "Waiting:CrashLoopBackOff"),
                    PhaseIs(Phase::Pending),
                    At(10, tick(), vec![start("i")]),
                    At(10, started("i"), vec![]),
                    At(11, exited("i", 0), vec![start("a")]),
                    PhaseIs(Phase::Pending),
                    At(11, started("a"), vec![]),
                    PhaseIs(Phase::Running),
                ],
            ),
            (
                "running while a sidecar stops after the apps",
                TestPod::new(Never).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(1, started("a"), vec![]),
                    PhaseIs(Phase::Running),
                    At(2, exited("a", 0), vec![term("s")]),
                    PhaseIs(Phase::Running),
                    State("s", "Running"),
                    At(3, killed("s", 15), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
            (
                "a failed app: Failed once the sidecar has stopped",
                TestPod::new(Never).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(1, started("a"), vec![]),
                    At(2, exited("a", 1), vec![term("s")]),
                    PhaseIs(Phase::Running),
                    At(3, exited("s", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Failed),
                ],
            ),
            (
                "a sidecar being restarted counts as alive",
                TestPod::new(Never).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(0, started("a"), vec![]),
                    At(5, exited("s", 1), vec![start("s")]),
                    At(6, exited("a", 0), vec![]),
                    PhaseIs(Phase::Running),
                    Deadline(None),
                    At(7, started("s"), vec![term("s")]),
                    PhaseIs(Phase::Running),
                    At(8, exited("s", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
        ];
        for (name, pod, steps) in cases {
            run(name, pod, &steps);
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
    fn status_is_a_kubernetes_pod_status() {
        let steps = [
            At(0, begin(), vec![start("s")]),
            At(1, started("s"), vec![start("i")]),
            At(2, started("i"), vec![]),
            At(3, exited("i", 0), vec![start("a")]),
            At(4, started("a"), vec![]),
            At(10, killed("a", 9), vec![start("a")]),
            At(10, started("a"), vec![]),
            At(11, exited("a", 1), vec![]),
            At(21, tick(), vec![start("a")]),
            At(21, started("a"), vec![]),
            At(30, exited("a", 2), vec![]),
        ];
        let pod = TestPod::new(Always).sidecar("s").init("i").app("a");
        let (pod, clock) = run("status", pod, &steps);
        let status = pod.status();
        assert_eq!(status.phase, Phase::Running);
        assert_eq!(status.start_time, Some(clock.at(0).wall));

        let json = serde_json::to_value(&status).unwrap();
        let a = &json["containerStatuses"][0];
        assert_eq!(a["name"], "a");
        assert_eq!(a["image"], "a:latest");
        assert_eq!(a["restartCount"], 2);
        assert_eq!(a["ready"], false);
        assert_eq!(a["started"], false);
        assert_eq!(a["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            a["state"]["waiting"]["message"],
            "back-off 20s restarting failed container=a pod=web_default(uid-1)"
        );
        assert_eq!(a["lastState"]["terminated"]["exitCode"], 2);
        assert_eq!(a["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(
            a["lastState"]["terminated"]["startedAt"],
            "2024-05-01T12:00:21Z"
        );
        assert_eq!(
            a["lastState"]["terminated"]["finishedAt"],
            "2024-05-01T12:00:30Z"
        );
        assert_eq!(json["startTime"], "2024-05-01T12:00:00Z");
        let inits = &json["initContainerStatuses"];
        assert_eq!(inits[0]["name"], "s");
        assert_eq!(
            inits[0]["state"]["running"]["startedAt"],
            "2024-05-01T12:00:01Z"
        );
        assert_eq!(inits[0]["ready"], true);
        assert_eq!(inits[0]["lastState"], serde_json::json!({}));
        assert_eq!(inits[1]["state"]["terminated"]["reason"], "Completed");
        assert_eq!(inits[1]["ready"], true);

        let conditions: Vec<(String, String)> = json["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap().into(),
                    c["status"].as_str().unwrap().into(),
                )
            })
            .collect();
        let want = [
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", "False"),
            ("ContainersReady", "False"),
            ("PodScheduled", "True"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, s)| (t.to_string(), s.to_string()))
            .collect();
        assert_eq!(conditions, want);
        let ready = status.condition(ConditionType::Ready).unwrap();
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a]")
        );
        // Ready went true at 21 s (a started again) and false at 30 s.
        assert_eq!(ready.last_transition_time, Some(clock.at(30).wall));
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.last_transition_time, Some(clock.at(3).wall));

        // Kubernetes' own types read it, and so do ours.
        let k8s: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(json.clone()).unwrap();
        assert_eq!(k8s.phase.as_deref(), Some("Running"));
        let k8s_a = &k8s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(k8s_a.restart_count, 2);
        let last = k8s_a
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(last.exit_code, 2);
        assert_eq!(k8s.init_container_statuses.as_ref().unwrap().len(), 2);
        assert_eq!(k8s.conditions.as_ref().unwrap().len(), 5);
        let back: PodStatusView = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn conditions_before_and_after() {
        let pod = TestPod::new(Never).init("i").app("a");
        let (mut pod, clock) = run("conditions", pod, &[]);
        let status = pod.status();
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.status, ConditionStatus::False);
        assert_eq!(
            initialized.reason.as_deref(),
            Some("ContainersNotInitialized")
        );
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [i]")
        );
        assert_eq!(initialized.last_transition_time, None);
        let ready_to_start = status
            .condition(ConditionType::PodReadyToStartContainers)
            .unwrap();
        assert_eq!(ready_to_start.status, ConditionStatus::False);

        pod.handle(begin(), clock.at(0));
        pod.handle(started("i"), clock.at(1));
        pod.handle(exited("i", 0), clock.at(2));
        pod.handle(started("a"), clock.at(3));
        let status = pod.status();
        for kind in CONDITIONS {
            let condition = status.condition(kind).unwrap();
            assert_eq!(condition.status, ConditionStatus::True, "{kind:?}");
        }
        let ready = status.condition(ConditionType::Ready).unwrap();
        assert_eq!(ready.last_transition_time, Some(clock.at(3).wall));
        assert!(status.container("a").unwrap().ready);
        assert!(status.container("a").unwrap().started);

        pod.handle(exited("a", 0), clock.at(4));
        let status = pod.status();
        assert_eq!(status.phase, Phase::Succeeded);
        let ready = status.condition(ConditionType::ContainersReady).unwrap();
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
        // The kubelet's GeneratePodInitializedCondition on a Succeeded pod.
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.status, ConditionStatus::True);
        assert_eq!(initialized.reason.as_deref(), Some("PodCompleted"));
        assert_eq!(initialized.message, None);
        assert_eq!(initialized.last_transition_time, Some(clock.at(2).wall));
        let sandbox = status
            .condition(ConditionType::PodReadyToStartContainers)
            .unwrap();
        assert_eq!(sandbox.status, ConditionStatus::False);
        assert_eq!(sandbox.last_transition_time, Some(clock.at(4).wall));
    }

    #[test]
    fn conditions_while_a_sidecar_outlives_the_apps() {
        let pod = TestPod::new(Never).sidecar("s").app("a");
        let steps = [
            At(0, begin(), vec![start("s")]),
            At(1, started("s"), vec![start("a")]),
            At(2, started("a"), vec![]),
            At(3, exited("a", 0), vec![term("s")]),
        ];
        let (mut pod, clock) = run("sidecar outlives", pod, &steps);
        let status = pod.status();
        assert_eq!(status.phase, Phase::Running);
        for kind in [ConditionType::Ready, ConditionType::ContainersReady] {
            let ready = status.condition(kind).unwrap();
            assert_eq!(ready.status, ConditionStatus::False, "{kind:?}");
            assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
            assert_eq!(
                ready.message.as_deref(),
                Some("containers with unready status: [a]")
            );
            assert_eq!(ready.last_transition_time, Some(clock.at(3).wall));
        }
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.status, ConditionStatus::True);
        assert_eq!(initialized.reason, None);
        assert!(status.container("s").unwrap().ready);

        assert_eq!(pod.handle(killed("s", 15), clock.at(4)), vec![SANDBOX]);
        let status = pod.status();
        assert_eq!(status.phase, Phase::Succeeded);
        let ready = status.condition(ConditionType::Ready).unwrap();
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
        assert_eq!(ready.last_transition_time, Some(clock.at(3).wall));
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.status, ConditionStatus::True);
        assert_eq!(initialized.reason.as_deref(), Some("PodCompleted"));
        assert_eq!(initialized.last_transition_time, Some(clock.at(1).wall));
    }

    #[test]
    fn durations_print_as_go_does() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(5), "5ns"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_millis(10), "10ms"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(2500), "2.5s"),
            (Duration::from_secs(80), "1m20s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want);
        }
    }

    /// Two lifecycles fed the same inputs: one lives on, the other goes through
    /// a JSON snapshot (as a replacement supervisor gets it) at `cut` seconds.
    #[test]
    fn a_restored_lifecycle_carries_on_exactly_like_the_original() {
        let pod = TestPod::new(OnFailure)
            .init("setup")
            .sidecar("log")
            .app("web")
            .app("worker");
        let backoff = Backoff {
            base: Duration::from_secs(10),
            ..Backoff::default()
        };
        let before = [
            (0, begin()),
            (1, started("setup")),
            (2, exited("setup", 0)),
            (3, started("log")),
            (4, started("web")),
            (4, started("worker")),
            (5, exited("worker", 1)),
            (5, started("worker")),
            (6, exited("worker", 2)),
        ];
        let after = [
            (20, tick()),
            (20, started("worker")),
            (30, stop()),
            (31, exited("web", 0)),
            (33, exited("worker", 143)),
            (35, exited("log", 0)),
        ];
        let clock = Clock::new();
        let mut original = Lifecycle::new(&pod.0, backoff);
        for (secs, input) in &before {
            original.handle(input.clone(), clock.at(*secs));
        }
        let json = serde_json::to_string(&original.snapshot(clock.at(7))).unwrap();
        // The new process has its own monotonic clock; wall time is what carries over.
        let later = Clock {
            mono: Instant::now() + Duration::from_secs(1000),
            wall: clock.wall,
        };
        let snapshot: Snapshot = serde_json::from_str(&json).unwrap();
        let mut restored = Lifecycle::restore(&pod.0, backoff, &snapshot, later.at(8)).unwrap();
        assert_eq!(restored.status(), original.status());
        assert_eq!(restored.alive_containers(), ["log", "web"]);
        // The worker's back-off (10 s after its second crash at 6 s) is still due at 16 s.
        assert_eq!(restored.next_deadline(), Some(later.at(16).mono));
        for (secs, input) in &after {
            let want = original.handle(input.clone(), clock.at(*secs));
            let got = restored.handle(input.clone(), later.at(*secs));
            assert_eq!(got, want, "at {secs}s: {input:?}");
            assert_eq!(restored.status(), original.status(), "at {secs}s");
        }
        assert!(restored.is_finished());
    }

    /// The time of a `Term` is not in the snapshot: the pod's deadline stands alone.
    #[test]
    fn a_restored_lifecycle_kills_a_termed_container_at_the_deadline() {
        let pod = TestPod::new(Always).grace(1).app("a");
        let steps = [
            At(0, begin(), vec![start("a")]),
            At(0, started("a"), vec![]),
            At(10, stop(), vec![term("a")]),
            Deadline(Some(12)),
        ];
        let (original, clock) = run("original", pod, &steps);
        let snapshot = original.snapshot(clock.at(10));
        let pod = TestPod::new(Always).grace(1).app("a");
        let later = Clock {
            mono: Instant::now() + Duration::from_secs(1000),
            wall: clock.wall,
        };
        let mut restored =
            Lifecycle::restore(&pod.0, Backoff::default(), &snapshot, later.at(10)).unwrap();
        assert_eq!(restored.next_deadline(), Some(later.at(11).mono));
        assert_eq!(restored.handle(tick(), later.at(11)), vec![kill("a")]);
        assert_eq!(restored.next_deadline(), None);
    }

    #[test]
    fn a_restored_lifecycle_refuses_another_pods_snapshot() {
        let clock = Clock::new();
        let pod = TestPod::new(Always).app("web");
        let snapshot = Lifecycle::new(&pod.0, Backoff::default()).snapshot(clock.at(0));
        let other = TestPod::new(Always).app("db");
        let err =
            Lifecycle::restore(&other.0, Backoff::default(), &snapshot, clock.at(1)).unwrap_err();
        assert!(
            err.contains("[\"web\"]") && err.contains("[\"db\"]"),
            "{err}"
        );
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
