//! One container of the pod as the machine tracks it: its role, where its
//! run stands, its restarts and terminations, and its status.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::events::{Action, StopSignal};
use crate::pod::model;
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
        }
    }

    pub(super) fn start(&mut self, actions: &mut Vec<Action>) {
        self.run = Run::Starting;
        actions.push(Action::Start {
            container: self.name.clone(),
        });
    }

    /// Send `Term` once, then `Kill` once due (see `kill_due`).
    pub(super) fn stop(&mut self, now: Instant, deadline: Instant, actions: &mut Vec<Action>) {
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

    pub(super) fn running(&self) -> bool {
        matches!(self.run, Run::Running { .. })
    }

    /// Has run or tried to (kubelet: a waiting container with a last termination
    /// counts as stopped, not as waiting).
    pub(super) fn has_run(&self) -> bool {
        self.has_started || self.latest.is_some()
    }

    pub(super) fn succeeded(&self) -> bool {
        matches!(self.run, Run::Exited) && self.latest.as_ref().is_some_and(|t| t.exit_code == 0)
    }

    /// Lets the init sequence move past it.
    pub(super) fn init_done(&self) -> bool {
        match self.role {
            Role::Sidecar => self.has_started,
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
