//! Scenario tables of what probes, hooks, the active deadline and a dead
//! sandbox do to the pod (the kubelet's rules, named in each test).

use std::time::Duration;

use super::tests::*;
use super::{Action, Input, DEADLINE_EXCEEDED, SANDBOX_CHANGED};
use crate::pod::probe::{Handler, Health, Hook, HookKind, Probe, ProbeKind, Timing};
use crate::pod::status::{ConditionStatus, ConditionType};

fn probe() -> Probe {
    Probe {
        handler: Handler::TcpSocket {
            host: None,
            port: 80,
        },
        timing: Timing::default(),
        termination_grace: None,
    }
}

fn hooks(post_start: bool, pre_stop: bool) -> Health {
    let hook = || {
        Some(Hook::Exec {
            command: vec!["true".into()],
        })
    };
    Health {
        post_start: if post_start { hook() } else { None },
        pre_stop: if pre_stop { hook() } else { None },
        ..Health::default()
    }
}

fn run_hook(c: &str, hook: HookKind, deadline: Option<u64>, clock: &Clock) -> Action {
    Action::RunHook {
        container: c.into(),
        hook,
        deadline: deadline.map(|s| clock.at(s).mono),
    }
}

fn post_start_done(c: &str, error: Option<&str>) -> Input {
    Input::PostStartDone {
        container: c.into(),
        error: error.map(str::to_owned),
    }
}

fn pre_stop_done(c: &str) -> Input {
    Input::PreStopDone {
        container: c.into(),
    }
}

fn probes_start(c: &str) -> Action {
    Action::ProbesStart {
        container: c.into(),
    }
}

fn health(c: &str, started: bool, ready: bool) -> Input {
    Input::Health {
        container: c.into(),
        started,
        ready,
    }
}

fn probe_failed(c: &str, kind: ProbeKind, grace: Option<u64>) -> Input {
    Input::ProbeFailed {
        container: c.into(),
        kind,
        grace: grace.map(Duration::from_secs),
    }
}

fn record((reason, message): (&'static str, &str)) -> Action {
    Action::Record {
        reason,
        message: message.into(),
    }
}

/// `run`, with the clock known before the steps are written (hook deadlines are instants).
fn scenario(name: &str, pod: TestPod, steps: impl FnOnce(&Clock) -> Vec<Step>) {
    let clock = Clock::new();
    let steps = steps(&clock);
    run_at(name, pod, &clock, &steps);
}

#[test]
fn post_start_holds_the_container_until_it_ends() {
    // startContainer: the container counts as started (and the next one
    // starts) only once its postStart hook returned.
    let pod = TestPod::new(Always)
        .sidecar("s")
        .app("a")
        .health("s", hooks(true, false));
    scenario("postStart", pod, |c| {
        vec![
            At(0, begin(), vec![start("s")]),
            At(
                1,
                started("s"),
                vec![run_hook("s", HookKind::PostStart, None, c)],
            ),
            State("s", "Waiting:ContainerCreating"),
            At(2, tick(), vec![]),
            At(3, post_start_done("s", None), vec![start("a")]),
            State("s", "Running"),
            At(3, started("a"), vec![]),
            PhaseIs(Phase::Running),
        ]
    });
}

#[test]
fn a_failed_post_start_kills_the_container_running_its_pre_stop_and_it_restarts() {
    // startContainer: FailedPostStartHook, then killContainer (preStop runs
    // too); the container waits with PostStartHookError; restarted per policy.
    let pod = TestPod::new(Always).app("a").health("a", hooks(true, true));
    scenario("postStart fails", pod, |c| {
        vec![
            At(0, begin(), vec![start("a")]),
            At(
                0,
                started("a"),
                vec![run_hook("a", HookKind::PostStart, None, c)],
            ),
            At(
                1,
                post_start_done("a", Some("Exec lifecycle hook ([true]) … failed")),
                vec![run_hook("a", HookKind::PreStop, Some(31), c)],
            ),
            State("a", "Waiting:PostStartHookError"),
            Message("a", Some("Exec lifecycle hook ([true]) … failed")),
            At(2, pre_stop_done("a"), vec![term("a")]),
            Deadline(Some(31)),
            At(3, killed("a", 15), vec![start("a")]),
            Restarts("a", 1),
            At(
                3,
                started("a"),
                vec![run_hook("a", HookKind::PostStart, None, c)],
            ),
            At(4, post_start_done("a", None), vec![]),
            State("a", "Running"),
        ]
    });
    let pod = TestPod::new(Never).app("a").health("a", hooks(true, false));
    scenario("postStart fails under Never", pod, |c| {
        vec![
            At(0, begin(), vec![start("a")]),
            At(
                0,
                started("a"),
                vec![run_hook("a", HookKind::PostStart, None, c)],
            ),
            At(1, post_start_done("a", Some("no")), vec![term("a")]),
            At(2, killed("a", 15), vec![SANDBOX]),
            State("a", "Terminated:Error:143"),
            PhaseIs(Phase::Failed),
        ]
    });
}

#[test]
fn pre_stop_runs_within_the_grace_period_before_the_stop_signal() {
    // killContainer: preStop first, at most the grace period; the stop signal
    // follows; SIGKILL at the deadline, never sooner than 2 s after it.
    let pod = || {
        TestPod::new(Always)
            .app("a")
            .grace(10)
            .health("a", hooks(false, true))
    };
    scenario("preStop ends in time", pod(), |c| {
        vec![
            At(0, begin(), vec![start("a")]),
            At(0, started("a"), vec![]),
            At(
                5,
                stop(),
                vec![run_hook("a", HookKind::PreStop, Some(15), c)],
            ),
            Deadline(Some(15)),
            State("a", "Running"),
            At(8, pre_stop_done("a"), vec![term("a")]),
            Deadline(Some(15)),
            At(15, tick(), vec![kill("a")]),
            At(15, killed("a", 9), vec![SANDBOX]),
        ]
    });
    scenario("preStop outlasts the grace", pod(), |c| {
        vec![
            At(0, begin(), vec![start("a")]),
            At(0, started("a"), vec![]),
            At(
                5,
                stop(),
                vec![run_hook("a", HookKind::PreStop, Some(15), c)],
            ),
            At(15, tick(), vec![term("a")]),
            Deadline(Some(17)),
            At(15, pre_stop_done("a"), vec![]),
            At(17, tick(), vec![kill("a")]),
        ]
    });
    // A sidecar runs its preStop at once and waits for its turn for the signal.
    let pod = TestPod::new(Always)
        .sidecar("s")
        .app("a")
        .health("s", hooks(false, true));
    scenario("sidecar preStop", pod, |c| {
        vec![
            At(0, begin(), vec![start("s")]),
            At(0, started("s"), vec![start("a")]),
            At(0, started("a"), vec![]),
            At(
                1,
                stop(),
                vec![term("a"), run_hook("s", HookKind::PreStop, Some(31), c)],
            ),
            At(2, pre_stop_done("s"), vec![]),
            At(3, killed("a", 15), vec![term("s")]),
        ]
    });
}

#[test]
fn a_failed_liveness_probe_kills_with_its_grace_and_restarts_under_the_policy() {
    // computePodActions: kill ("failed liveness probe"), restart unless Never;
    // the probe's terminationGracePeriodSeconds when set.
    let with_probe = Health {
        liveness: Some(probe()),
        ..Health::default()
    };
    let pod = TestPod::new(Always)
        .app("a")
        .health("a", with_probe.clone());
    scenario("liveness", pod, |_| {
        vec![
            At(0, begin(), vec![start("a")]),
            At(
                0,
                started("a"),
                vec![Action::ProbesStart {
                    container: "a".into(),
                }],
            ),
            At(
                10,
                probe_failed("a", ProbeKind::Liveness, Some(5)),
                vec![term("a")],
            ),
            Deadline(Some(15)),
            // A second failure changes nothing.
            At(11, probe_failed("a", ProbeKind::Liveness, None), vec![]),
            At(15, tick(), vec![kill("a")]),
            At(15, killed("a", 9), vec![start("a")]),
            Restarts("a", 1),
            At(15, started("a"), vec![probes_start("a")]),
            At(
                20,
                probe_failed("a", ProbeKind::Liveness, None),
                vec![term("a")],
            ),
            Deadline(Some(50)),
            At(21, killed("a", 15), vec![]),
            State("a", "Waiting:CrashLoopBackOff"),
            At(31, tick(), vec![start("a")]),
            Restarts("a", 2),
        ]
    });
    let pod = TestPod::new(Never).app("a").health("a", with_probe);
    scenario("liveness under Never", pod, |_| {
        vec![
            At(0, begin(), vec![start("a")]),
            At(0, started("a"), vec![probes_start("a")]),
            At(
                10,
                probe_failed("a", ProbeKind::Liveness, None),
                vec![term("a")],
            ),
            At(11, killed("a", 15), vec![SANDBOX]),
            PhaseIs(Phase::Failed),
        ]
    });
}

#[test]
fn startup_and_readiness_set_started_and_ready() {
    // prober_manager UpdatePodStatus: started once the startup probe passed;
    // ready once started and the readiness probe succeeds.
    let h = Health {
        startup: Some(probe()),
        readiness: Some(probe()),
        ..Health::default()
    };
    let pod = TestPod::new(Always).app("a").health("a", h);
    let (mut pod, clock) = run(
        "probes",
        pod,
        &[
            At(0, begin(), vec![start("a")]),
            At(0, started("a"), vec![probes_start("a")]),
            State("a", "Running"),
        ],
    );
    let ready_of = |pod: &super::Lifecycle| {
        let status = pod.status();
        let a = status.container("a").unwrap();
        let condition = status.condition(ConditionType::Ready).unwrap().status;
        (a.started, a.ready, condition)
    };
    assert_eq!(ready_of(&pod), (false, false, ConditionStatus::False));
    pod.handle(health("a", true, false), clock.at(1));
    assert_eq!(ready_of(&pod), (true, false, ConditionStatus::False));
    pod.handle(health("a", true, true), clock.at(2));
    assert_eq!(ready_of(&pod), (true, true, ConditionStatus::True));
    pod.handle(health("a", true, false), clock.at(3));
    assert_eq!(ready_of(&pod), (true, false, ConditionStatus::False));
    let ready = pod.status();
    let ready = ready.condition(ConditionType::Ready).unwrap();
    assert_eq!(ready.last_transition_time, Some(clock.at(3).wall));
    // A new run starts unready again.
    pod.handle(health("a", true, true), clock.at(4));
    pod.handle(exited("a", 1), clock.at(5));
    pod.handle(started("a"), clock.at(5));
    assert_eq!(ready_of(&pod), (false, false, ConditionStatus::False));
}

#[test]
fn a_sidecars_startup_probe_holds_the_next_init_container() {
    // computeInitContainerActions: a restartable init container with a
    // startup probe lets the next one start only once it has passed.
    let h = Health {
        startup: Some(probe()),
        ..Health::default()
    };
    let pod = TestPod::new(Always)
        .sidecar("s")
        .init("i")
        .app("a")
        .health("s", h);
    run(
        "sidecar startup",
        pod,
        &[
            At(0, begin(), vec![start("s")]),
            At(0, started("s"), vec![probes_start("s")]),
            At(5, tick(), vec![]),
            At(6, health("s", false, false), vec![]),
            At(7, health("s", true, false), vec![start("i")]),
            At(7, started("i"), vec![]),
            At(8, exited("i", 0), vec![start("a")]),
            // Once passed, a restart of the sidecar holds nothing back.
            At(9, exited("s", 1), vec![start("s")]),
            At(9, started("s"), vec![probes_start("s")]),
            At(9, started("a"), vec![]),
            PhaseIs(Phase::Running),
        ],
    );
}

#[test]
fn active_deadline_fails_and_stops_the_pod() {
    // activeDeadlineHandler: phase Failed, reason DeadlineExceeded, event; then stopped.
    let pod = TestPod::new(Always).app("a").active_deadline(10);
    let (pod, _) = run(
        "deadline",
        pod,
        &[
            At(0, begin(), vec![start("a")]),
            Deadline(Some(10)),
            At(1, started("a"), vec![]),
            At(9, tick(), vec![]),
            At(10, tick(), vec![record(DEADLINE_EXCEEDED), term("a")]),
            PhaseIs(Phase::Failed),
            At(11, killed("a", 15), vec![SANDBOX]),
            PhaseIs(Phase::Failed),
        ],
    );
    let status = pod.status();
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(status.message.as_deref(), Some(DEADLINE_EXCEEDED.1));
}

#[test]
fn a_dead_sandbox_is_replaced_and_the_pod_starts_again_in_it() {
    // computePodActions: SandboxChanged → kill the pod, create a sandbox,
    // init containers from the first; not under Never once a container ran.
    let pod = TestPod::new(Always).init("i").app("a").app("b");
    let (pod, _) = run(
        "sandbox replaced",
        pod,
        &[
            At(0, begin(), vec![start("i")]),
            At(0, started("i"), vec![]),
            At(1, exited("i", 0), vec![start("a"), start("b")]),
            At(1, started("a"), vec![]),
            At(1, started("b"), vec![]),
            At(
                5,
                Input::SandboxDied,
                vec![record(SANDBOX_CHANGED), term("a"), term("b")],
            ),
            Deadline(Some(35)),
            At(6, killed("a", 15), vec![]),
            At(35, tick(), vec![kill("b")]),
            At(35, killed("b", 9), vec![Action::RecreateSandbox]),
            PhaseIs(Phase::Running),
            At(36, begin(), vec![start("i")]),
            Restarts("i", 1),
            At(36, started("i"), vec![]),
            At(37, exited("i", 0), vec![start("a"), start("b")]),
            Restarts("a", 1),
            Restarts("b", 1),
            At(37, started("a"), vec![]),
            At(37, started("b"), vec![]),
            PhaseIs(Phase::Running),
        ],
    );
    assert!(!pod.replacing_sandbox());
    let pod = TestPod::new(Never).app("a");
    run(
        "under Never the pod ends",
        pod,
        &[
            At(0, begin(), vec![start("a")]),
            At(0, started("a"), vec![]),
            At(5, Input::SandboxDied, vec![term("a")]),
            At(6, killed("a", 15), vec![SANDBOX]),
            PhaseIs(Phase::Failed),
        ],
    );
}
