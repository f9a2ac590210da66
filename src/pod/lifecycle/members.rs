//! One container of the pod as the machine tracks it: its role, where its
//! run stands, its restarts and terminations, and its status.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::events::{Action, StopSignal};
use crate::pod::model;
use crate::pod::probe::hooks::POST_START_ERROR;
use crate::pod::probe::HookKind;
use crate::pod::status::{
    go_duration, ContainerState, ContainerStatusView, RunningState, TerminatedState, WaitingState,
};

/// The kubelet's minimumGracePeriodInSeconds: the least time between a container's
/// stop signal and its SIGKILL.
const MIN_STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Init,
    Sidecar,
    App,
}

/// Where a container's run stands.
#[derive(Debug, Clone)]
pub(super) enum Run {
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
        /// Its postStart hook still runs: it does not count as running yet.
        post_start: bool,
        pre_stop: PreStop,
        /// Killed on its own (a failed probe or postStart hook) while the pod
        /// goes on: the end of its grace period.
        killing: Option<Instant>,
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

/// Where a run's preStop hook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PreStop {
    NotRun,
    Running,
    Done,
}

/// What a container's probes and hooks mean for the machine.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Hooks {
    pub(super) post_start: bool,
    pub(super) pre_stop: bool,
    pub(super) startup_probe: bool,
    pub(super) readiness_probe: bool,
    /// Any probe at all: probing starts with each run.
    pub(super) probes: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) name: String,
    pub(super) image: String,
    pub(super) role: Role,
    pub(super) run: Run,
    /// Has ever been running (what lets the init sequence pass a sidecar).
    pub(super) has_started: bool,
    pub(super) restart_count: u32,
    /// The last back-off delay used.
    pub(super) backoff: Option<Duration>,
    pub(super) latest: Option<TerminatedState>,
    pub(super) previous: Option<TerminatedState>,
    pub(super) hooks: Hooks,
    /// Its startup probe passed in this run (without one: unused).
    pub(super) started: bool,
    /// Its readiness probe's result in this run (without one: unused).
    pub(super) ready: bool,
    /// Counted as started in the current sandbox: lets the init sequence move
    /// past a sidecar.
    pub(super) init_passed: bool,
    /// Its next start is a restart (it ran in a sandbox that was replaced).
    pub(super) restart_pending: bool,
    /// Why its postStart hook failed (while the run it killed lasts).
    pub(super) post_start_error: Option<String>,
}

impl Member {
    pub(super) fn new(container: &model::Container, role: Role) -> Self {
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
            hooks: Hooks {
                post_start: container.health.post_start.is_some(),
                pre_stop: container.health.pre_stop.is_some(),
                startup_probe: container.health.startup.is_some(),
                readiness_probe: container.health.readiness.is_some(),
                probes: [
                    &container.health.startup,
                    &container.health.liveness,
                    &container.health.readiness,
                ]
                .iter()
                .any(|p| p.is_some()),
            },
            started: false,
            ready: false,
            init_passed: false,
            restart_pending: false,
            post_start_error: None,
        }
    }

    pub(super) fn start(&mut self, actions: &mut Vec<Action>) {
        if std::mem::take(&mut self.restart_pending) {
            self.restart_count += 1;
        }
        self.run = Run::Starting;
        actions.push(Action::Start {
            container: self.name.clone(),
        });
    }

    /// Its process runs: it counts as running once its postStart hook has
    /// ended (the kubelet starts the next container only then).
    pub(super) fn begin_run(&mut self, now: super::Now, actions: &mut Vec<Action>) {
        self.run = Run::Running {
            since: now.mono,
            since_wall: now.wall,
            signaled: None,
            termed: None,
            post_start: self.hooks.post_start,
            pre_stop: PreStop::NotRun,
            killing: None,
        };
        self.has_started = true;
        self.started = false;
        self.ready = false;
        self.post_start_error = None;
        if self.hooks.post_start {
            actions.push(Action::RunHook {
                container: self.name.clone(),
                hook: HookKind::PostStart,
                deadline: None,
            });
        } else {
            self.probes_start(actions);
        }
    }

    pub(super) fn probes_start(&self, actions: &mut Vec<Action>) {
        if self.hooks.probes {
            actions.push(Action::ProbesStart {
                container: self.name.clone(),
            });
        }
    }

    /// Stop its run by `deadline`: its preStop hook first (if it has one), then
    /// `Term` once the hook ended or the deadline came, then `Kill` once due
    /// (see `kill_due`).
    pub(super) fn stop(&mut self, now: Instant, deadline: Instant, actions: &mut Vec<Action>) {
        let kill_due = self.kill_due(deadline);
        let has_pre_stop = self.hooks.pre_stop;
        let Run::Running {
            signaled,
            termed,
            pre_stop,
            ..
        } = &mut self.run
        else {
            return;
        };
        let signal = match *signaled {
            None => {
                if has_pre_stop && *pre_stop == PreStop::NotRun && now < deadline {
                    *pre_stop = PreStop::Running;
                    actions.push(Action::RunHook {
                        container: self.name.clone(),
                        hook: HookKind::PreStop,
                        deadline: Some(deadline),
                    });
                    return;
                }
                if *pre_stop == PreStop::Running && now < deadline {
                    return;
                }
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

    /// A sidecar whose turn to stop has not come runs its preStop hook at once
    /// all the same (the kubelet's killContainer runs the hook, then waits for
    /// its turn).
    pub(super) fn pre_stop_early(&mut self, deadline: Instant, actions: &mut Vec<Action>) {
        let has_pre_stop = self.hooks.pre_stop;
        if let Run::Running {
            signaled: None,
            pre_stop,
            ..
        } = &mut self.run
        {
            if has_pre_stop && *pre_stop == PreStop::NotRun {
                *pre_stop = PreStop::Running;
                actions.push(Action::RunHook {
                    container: self.name.clone(),
                    hook: HookKind::PreStop,
                    deadline: Some(deadline),
                });
            }
        }
    }

    /// The end of the grace of a run killed on its own.
    pub(super) fn killing(&self) -> Option<Instant> {
        match self.run {
            Run::Running { killing, .. } => killing,
            _ => None,
        }
    }

    /// The earlier of the pod's shutdown deadline and its own kill's.
    pub(super) fn stop_deadline(&self, pod: Option<Instant>) -> Option<Instant> {
        match (pod, self.killing()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The last signal sent to its running process.
    pub(super) fn signaled(&self) -> Option<StopSignal> {
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
    pub(super) fn next_signal_due(&self, deadline: Instant) -> Option<Instant> {
        match self.run {
            Run::Running { signaled: None, .. } => Some(deadline),
            _ => self.kill_due(deadline),
        }
    }

    /// Its process is (or may be) running.
    pub(super) fn alive(&self) -> bool {
        matches!(self.run, Run::Starting | Run::Running { .. })
    }

    /// Running, its postStart hook done (and not failed).
    pub(super) fn counted_running(&self) -> bool {
        matches!(
            self.run,
            Run::Running {
                post_start: false,
                ..
            }
        ) && self.post_start_error.is_none()
    }

    /// containerStatuses[].started: running, and its startup probe passed.
    pub(super) fn is_started(&self) -> bool {
        self.counted_running() && (!self.hooks.startup_probe || self.started)
    }

    /// containerStatuses[].ready, for a sidecar or app container: started, and
    /// its readiness probe succeeds.
    pub(super) fn is_ready(&self) -> bool {
        self.is_started() && (!self.hooks.readiness_probe || self.ready)
    }

    /// Has run or tried to (kubelet: a waiting container with a last termination
    /// counts as stopped, not as waiting).
    pub(super) fn has_run(&self) -> bool {
        self.has_started || self.latest.is_some()
    }

    pub(super) fn succeeded(&self) -> bool {
        matches!(self.run, Run::Exited) && self.latest.as_ref().is_some_and(|t| t.exit_code == 0)
    }

    /// Lets the init sequence move past it: a regular init container once it
    /// succeeded, a sidecar once it started (its postStart hook and startup
    /// probe passed) in the current sandbox.
    pub(super) fn init_done(&self) -> bool {
        match self.role {
            Role::Sidecar => self.init_passed,
            Role::Init | Role::App => self.succeeded(),
        }
    }

    pub(super) fn status(&self, idle_reason: &str, pod_ref: &str) -> ContainerStatusView {
        let waiting = |reason: &str, message: Option<String>| {
            ContainerState::Waiting(WaitingState {
                reason: reason.to_owned(),
                message,
            })
        };
        let (state, last_state) = match &self.run {
            Run::Idle => (waiting(idle_reason, None), self.latest.clone()),
            Run::Starting => (waiting("ContainerCreating", None), self.latest.clone()),
            Run::Running {
                post_start: true, ..
            } => (waiting("ContainerCreating", None), self.latest.clone()),
            Run::Running { .. } if self.post_start_error.is_some() => (
                waiting(POST_START_ERROR, self.post_start_error.clone()),
                self.latest.clone(),
            ),
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
            } => {
                let message = (!message.is_empty()).then(|| message.clone());
                (waiting(reason, message), self.latest.clone())
            }
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
                Role::Sidecar | Role::App => self.is_ready(),
            },
            restart_count: self.restart_count,
            started: self.is_started(),
        }
    }
}
