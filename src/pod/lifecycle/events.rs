//! What goes into the machine and what comes out: inputs stamped with the
//! time they happened, and the actions the supervisor carries out.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pod::probe::{HookKind, ProbeKind};

/// The instant an input happened: monotonic for deadlines, wall for status times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall: DateTime<Utc>,
}

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
    /// The container's image is not there yet (kubelet `EnsureImageExists`):
    /// it waits with `reason` (`ContainerCreating` while its image is pulled,
    /// `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`,
    /// `InvalidImageName`) and is tried again after `retry`, or once
    /// `ImageReady` comes (None). It counts no restart.
    ImageWait {
        container: String,
        reason: String,
        message: Option<String>,
        retry: Option<Duration>,
    },
    /// The container's image is in the store: a container waiting on an
    /// image (or a failed set-up) is tried again now.
    ImageReady { container: String },
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
    /// The container's postStart hook ended: `error` is the kubelet's message
    /// when it failed (the container is then killed).
    PostStartDone {
        container: String,
        error: Option<String>,
    },
    /// The container's preStop hook ended (however it ended): its stop signal follows.
    PreStopDone { container: String },
    /// The container failed its liveness or startup probe: kill it, with the
    /// probe's terminationGracePeriodSeconds if it has one, and restart it as
    /// its restart policy says.
    ProbeFailed {
        container: String,
        kind: ProbeKind,
        grace: Option<Duration>,
    },
    /// What the container's probes say: started (its startup probe passed) and ready.
    Health {
        container: String,
        started: bool,
        ready: bool,
    },
    /// The sandbox's process died under the pod.
    SandboxDied,
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
    /// Run this hook of the container's run; answer with `PostStartDone` or
    /// `PreStopDone`. A preStop hook is given up at `deadline` (its stop
    /// signal then follows); a postStart hook has none.
    RunHook {
        container: String,
        hook: HookKind,
        deadline: Option<Instant>,
    },
    /// The container's run counts as running and it has probes: start probing it.
    ProbesStart { container: String },
    /// The sandbox died and every container of it has stopped: make a new
    /// sandbox, then feed `Begin` (init containers run again).
    RecreateSandbox,
    /// An event of the pod itself, as the kubelet records it.
    Record {
        reason: &'static str,
        message: String,
    },
}
