//! The machine's state in a form that outlives the process: the supervisor
//! writes it into status.json, and a replacement supervisor (`pod adopt`)
//! carries on from it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::backoff::Backoff;
use super::events::{Now, StopSignal};
use super::members::{PreStop, Role, Run};
use super::{Lifecycle, Sandbox, FOREVER};
use crate::pod::model;
use crate::pod::status::{ConditionType, TerminatedState};

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
    // Fields added later: left out while they say what a snapshot without
    // them means, so that older supervisors' files and ours read alike.
    /// None: the same as `initialized`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ever_initialized: Option<bool>,
    #[serde(default, skip_serializing_if = "SandboxSnapshot::is_up")]
    sandbox: SandboxSnapshot,
    #[serde(default, skip_serializing_if = "is_false")]
    deadline_exceeded: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl SandboxSnapshot {
    fn is_up(&self) -> bool {
        *self == SandboxSnapshot::Up
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
enum SandboxSnapshot {
    #[default]
    Up,
    Replacing {
        deadline: DateTime<Utc>,
    },
    Awaiting,
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
    #[serde(default, skip_serializing_if = "is_false")]
    started: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    ready: bool,
    /// None: a sidecar that started passed, others did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init_passed: Option<bool>,
    #[serde(default, skip_serializing_if = "is_false")]
    restart_pending: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    post_start_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum RunSnapshot {
    Idle,
    Starting,
    Running {
        since: DateTime<Utc>,
        signaled: Option<StopSignal>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        killing: Option<DateTime<Utc>>,
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

/// Why a snapshot cannot be restored for a pod.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the saved lifecycle has containers {saved:?}, the pod has {pod:?}")]
    OtherContainers {
        saved: Vec<String>,
        pod: Vec<String>,
    },
    #[error("the saved lifecycle has {saved} pod conditions, not {expected}")]
    Conditions { saved: usize, expected: usize },
}

impl Lifecycle {
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
            ever_initialized: (self.ever_initialized != self.initialized)
                .then_some(self.ever_initialized),
            sandbox: match self.sandbox {
                Sandbox::Up => SandboxSnapshot::Up,
                Sandbox::Replacing { deadline } => SandboxSnapshot::Replacing {
                    deadline: wall_of(deadline, now),
                },
                Sandbox::Awaiting => SandboxSnapshot::Awaiting,
            },
            deadline_exceeded: self.deadline_exceeded,
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
                            killing,
                            ..
                        } => RunSnapshot::Running {
                            since: *since_wall,
                            signaled: *signaled,
                            killing: killing.map(|k| wall_of(k, now)),
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
                    started: m.started,
                    ready: m.ready,
                    init_passed: (m.init_passed != (m.role == Role::Sidecar && m.has_started))
                        .then_some(m.init_passed),
                    restart_pending: m.restart_pending,
                    post_start_error: m.post_start_error.clone(),
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
    ) -> Result<Self, RestoreError> {
        let mut lifecycle = Self::new(pod, backoff);
        let names: Vec<&str> = lifecycle.members.iter().map(|m| m.name.as_str()).collect();
        let saved: Vec<&str> = snapshot.members.iter().map(|m| m.name.as_str()).collect();
        if names != saved {
            return Err(RestoreError::OtherContainers {
                saved: saved.into_iter().map(str::to_owned).collect(),
                pod: names.into_iter().map(str::to_owned).collect(),
            });
        }
        if snapshot.transitions.len() != ConditionType::ALL.len() {
            return Err(RestoreError::Conditions {
                saved: snapshot.transitions.len(),
                expected: ConditionType::ALL.len(),
            });
        }
        lifecycle.begun = snapshot.begun;
        lifecycle.start_time = snapshot.start_time;
        lifecycle.initialized = snapshot.initialized;
        lifecycle.init_failed = snapshot.init_failed;
        lifecycle.deadline = snapshot.deadline.map(|d| instant_of(d, now));
        lifecycle.sandbox_stopped = snapshot.sandbox_stopped;
        lifecycle.ever_initialized = snapshot.ever_initialized.unwrap_or(snapshot.initialized);
        lifecycle.sandbox = match snapshot.sandbox {
            SandboxSnapshot::Up => Sandbox::Up,
            SandboxSnapshot::Replacing { deadline } => Sandbox::Replacing {
                deadline: instant_of(deadline, now),
            },
            SandboxSnapshot::Awaiting => Sandbox::Awaiting,
        };
        lifecycle.deadline_exceeded = snapshot.deadline_exceeded;
        lifecycle.active_until = match (lifecycle.active_deadline, snapshot.start_time) {
            (Some(d), Some(start)) => chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| start.checked_add_signed(d))
                .map(|until| instant_of(until, now)),
            _ => None,
        };
        for (t, saved) in lifecycle.transitions.iter_mut().zip(&snapshot.transitions) {
            *t = *saved;
        }
        for (m, saved) in lifecycle.members.iter_mut().zip(&snapshot.members) {
            m.run = match saved.run {
                RunSnapshot::Idle => Run::Idle,
                RunSnapshot::Starting => Run::Starting,
                // A hook under way when the supervisor died is not run again:
                // its postStart counts as done, its preStop as over.
                RunSnapshot::Running {
                    since,
                    signaled,
                    killing,
                } => Run::Running {
                    since: instant_of(since, now),
                    since_wall: since,
                    signaled,
                    termed: None,
                    post_start: false,
                    pre_stop: match signaled {
                        Some(_) => PreStop::Done,
                        None => PreStop::NotRun,
                    },
                    killing: killing.map(|k| instant_of(k, now)),
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
            m.started = saved.started;
            m.ready = saved.ready;
            m.init_passed = saved
                .init_passed
                .unwrap_or(m.role == Role::Sidecar && saved.has_started);
            m.restart_pending = saved.restart_pending;
            m.post_start_error = saved.post_start_error.clone();
        }
        Ok(lifecycle)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::lifecycle::tests::*;
    use crate::pod::status::{to_k8s, PodStatusView};

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
        let err = err.to_string();
        assert!(
            err.contains("[\"web\"]") && err.contains("[\"db\"]"),
            "{err}"
        );
    }

    /// status.json as peapod wrote it before its status went through k8s-openapi
    /// (a Running pod: an init container done, a sidecar and an app running, an
    /// app crash-looping after two failures).
    const STATUS_FILE_BEFORE_K8S_OPENAPI: &str = r#"{
  "phase": "Running",
  "supervisor_pid": 4242,
  "sandbox_pid": 4250,
  "pids": {
    "log": 4300,
    "web": 4310
  },
  "finished": false,
  "status": {
    "phase": "Running",
    "conditions": [
      {
        "type": "PodReadyToStartContainers",
        "status": "True",
        "lastTransitionTime": "2024-05-01T12:00:00Z"
      },
      {
        "type": "Initialized",
        "status": "True",
        "lastTransitionTime": "2024-05-01T12:00:02Z"
      },
      {
        "type": "Ready",
        "status": "False",
        "reason": "ContainersNotReady",
        "message": "containers with unready status: [worker]",
        "lastTransitionTime": "2024-05-01T12:00:06Z"
      },
      {
        "type": "ContainersReady",
        "status": "False",
        "reason": "ContainersNotReady",
        "message": "containers with unready status: [worker]",
        "lastTransitionTime": "2024-05-01T12:00:06Z"
      },
      {
        "type": "PodScheduled",
        "status": "True",
        "lastTransitionTime": "2024-05-01T12:00:00Z"
      }
    ],
    "startTime": "2024-05-01T12:00:00Z",
    "initContainerStatuses": [
      {
        "name": "setup",
        "image": "setup:1",
        "state": {
          "terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": "2024-05-01T12:00:01Z",
            "finishedAt": "2024-05-01T12:00:02Z"
          }
        },
        "lastState": {},
        "ready": true,
        "restartCount": 0,
        "started": false
      },
      {
        "name": "log",
        "image": "log:1",
        "state": {
          "running": {
            "startedAt": "2024-05-01T12:00:02Z"
          }
        },
        "lastState": {},
        "ready": true,
        "restartCount": 0,
        "started": true
      }
    ],
    "containerStatuses": [
      {
        "name": "web",
        "image": "web:1",
        "state": {
          "running": {
            "startedAt": "2024-05-01T12:00:03Z"
          }
        },
        "lastState": {},
        "ready": true,
        "restartCount": 0,
        "started": true
      },
      {
        "name": "worker",
        "image": "worker:1",
        "state": {
          "waiting": {
            "reason": "CrashLoopBackOff",
            "message": "back-off 10s restarting failed container=worker pod=web_shop(6f1c2b9e-0000-4000-8000-000000000001)"
          }
        },
        "lastState": {
          "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "startedAt": "2024-05-01T12:00:05Z",
            "finishedAt": "2024-05-01T12:00:06Z"
          }
        },
        "ready": false,
        "restartCount": 1,
        "started": false
      }
    ]
  },
  "lifecycle": {
    "begun": true,
    "start_time": "2024-05-01T12:00:00.250Z",
    "initialized": true,
    "init_failed": false,
    "deadline": null,
    "sandbox_stopped": false,
    "transitions": [
      [
        true,
        "2024-05-01T12:00:00.250Z"
      ],
      [
        true,
        "2024-05-01T12:00:02.900Z"
      ],
      [
        false,
        "2024-05-01T12:00:06.700Z"
      ],
      [
        false,
        "2024-05-01T12:00:06.700Z"
      ],
      [
        true,
        "2024-05-01T12:00:00.250Z"
      ]
    ],
    "members": [
      {
        "name": "setup",
        "run": "Exited",
        "has_started": true,
        "restart_count": 0,
        "backoff_ms": null,
        "latest": {
          "exitCode": 0,
          "reason": "Completed",
          "startedAt": "2024-05-01T12:00:01Z",
          "finishedAt": "2024-05-01T12:00:02Z"
        },
        "previous": null
      },
      {
        "name": "log",
        "run": {
          "Running": {
            "since": "2024-05-01T12:00:02.900Z",
            "signaled": null
          }
        },
        "has_started": true,
        "restart_count": 0,
        "backoff_ms": null,
        "latest": null,
        "previous": null
      },
      {
        "name": "web",
        "run": {
          "Running": {
            "since": "2024-05-01T12:00:03.400Z",
            "signaled": null
          }
        },
        "has_started": true,
        "restart_count": 0,
        "backoff_ms": null,
        "latest": null,
        "previous": null
      },
      {
        "name": "worker",
        "run": {
          "BackOff": {
            "until": "2024-05-01T12:00:16.700Z",
            "delay_ms": 10000
          }
        },
        "has_started": true,
        "restart_count": 1,
        "backoff_ms": 10000,
        "latest": {
          "exitCode": 1,
          "reason": "Error",
          "startedAt": "2024-05-01T12:00:05Z",
          "finishedAt": "2024-05-01T12:00:06Z"
        },
        "previous": {
          "exitCode": 137,
          "signal": 9,
          "reason": "Error",
          "message": "out of patience",
          "startedAt": "2024-05-01T12:00:03Z",
          "finishedAt": "2024-05-01T12:00:05Z"
        }
      }
    ]
  },
  "starts": {
    "4250": 123456,
    "4300": 123470,
    "4310": 123480
  }
}"#;

    /// A pod started by an older peapod can be adopted: its status.json reads,
    /// its lifecycle carries on, and it is written back meaning the same.
    #[test]
    fn a_status_file_written_before_k8s_openapi_is_read_and_adopted() {
        let file: crate::pod::folder::StatusFile =
            serde_json::from_str(STATUS_FILE_BEFORE_K8S_OPENAPI).unwrap();
        assert_eq!(file.phase(), Phase::Running);
        assert_eq!((file.supervisor_pid, file.sandbox_pid), (4242, Some(4250)));
        assert_eq!(file.pids["web"], 4310);
        assert_eq!(file.starts[&4300], 123470);
        let worker = file.status.container("worker").unwrap();
        assert_eq!(describe(&worker.state), "Waiting:CrashLoopBackOff");
        assert_eq!(worker.restart_count, 1);
        assert_eq!(worker.last_state.as_ref().unwrap().exit_code, 1);
        assert_eq!(
            describe(&file.status.container("setup").unwrap().state),
            "Terminated:Completed:0"
        );

        let mut pod = TestPod::new(OnFailure)
            .init("setup")
            .sidecar("log")
            .app("web")
            .app("worker")
            .0;
        pod.namespace = "shop".into();
        pod.uid = "6f1c2b9e-0000-4000-8000-000000000001".into();
        for c in pod.init_containers.iter_mut().chain(&mut pod.containers) {
            c.image = format!("{}:1", c.name);
        }
        let clock = Clock::new();
        let snapshot = file.lifecycle.as_ref().unwrap();
        let mut adopted =
            Lifecycle::restore(&pod, Backoff::default(), snapshot, clock.at(8)).unwrap();
        let k8s = |status: &PodStatusView| serde_json::to_value(to_k8s(status)).unwrap();
        assert_eq!(k8s(&adopted.status()), k8s(&file.status));
        assert_eq!(adopted.alive_containers(), ["log", "web"]);
        // The worker's back-off, due at 12:00:16.7, still is.
        let due = clock.at(8).mono + Duration::from_millis(8700);
        assert_eq!(adopted.next_deadline(), Some(due));
        let now = Now {
            mono: due,
            wall: clock.at(8).wall + chrono::Duration::milliseconds(8700),
        };
        assert_eq!(adopted.handle(tick(), now), vec![start("worker")]);

        // Written back, it says the same; k8s-openapi adds the (empty) imageID
        // every ContainerStatus has, and the top-level copy of the phase
        // (status.phase says it) is no longer written.
        let mut before: serde_json::Value =
            serde_json::from_str(STATUS_FILE_BEFORE_K8S_OPENAPI).unwrap();
        before.as_object_mut().unwrap().remove("phase");
        for list in ["initContainerStatuses", "containerStatuses"] {
            for c in before["status"][list].as_array_mut().unwrap() {
                c["imageID"] = "".into();
            }
        }
        assert_eq!(serde_json::to_value(&file).unwrap(), before);
    }
}
