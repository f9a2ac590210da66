//! The rules of postStart and preStop hooks, as pure code (the kubelet's
//! `kuberuntime_container.go` startContainer/killContainer and
//! `lifecycle/handlers.go`). A hook runs as a [`super::Check`]; what its
//! outcome means and what comes next is decided here.
//!
//! - postStart runs once the container's process has started; the container
//!   is not Running (not started, not ready, not probed) until it completes.
//!   If it fails, the container is killed (event `FailedPostStartHook`,
//!   "PostStartHook failed"; the container waits with reason
//!   `PostStartHookError` and the hook's message), and restarts as its
//!   restart policy says. It has no timeout of its own.
//! - preStop runs before the stop signal, within the grace period: the stop
//!   signal follows when it ends or when the grace is spent, whichever comes
//!   first, and the time it took (whole seconds) counts against the grace
//!   left before SIGKILL, which is never less than 2 s.
//! - A kill for a failed liveness or startup probe uses that probe's
//!   terminationGracePeriodSeconds when set, else the pod's.
//! - An exec hook fails on a non-zero exit; an httpGet hook only when no
//!   response comes (any status is fine); a sleep hook only when the
//!   container ends before it does.

use std::time::{Duration, Instant};

use super::check::{Outcome, Verdict};
use super::spec::{Hook, ProbeKind};

/// The kubelet's minimumGracePeriodInSeconds.
pub const MIN_STOP_GRACE: Duration = Duration::from_secs(2);

/// Event reasons and messages the kubelet records for hooks (without the
/// hook's output: "so that secrets won't leak").
pub const FAILED_POST_START: (&str, &str) = ("FailedPostStartHook", "PostStartHook failed");
pub const FAILED_PRE_STOP: (&str, &str) = ("FailedPreStopHook", "PreStopHook failed");
/// The waiting reason of a container whose postStart hook failed.
pub const POST_START_ERROR: &str = "PostStartHookError";

/// The grace a container gets when killed: for a failed liveness or startup
/// probe, the probe's own if it has one (setTerminationGracePeriod).
pub fn kill_grace(pod_grace: Duration, failed: Option<(ProbeKind, Option<Duration>)>) -> Duration {
    match failed {
        Some((ProbeKind::Liveness | ProbeKind::Startup, Some(probe_grace))) => probe_grace,
        _ => pod_grace,
    }
}

/// When a preStop hook begun at `began` with `grace` must give way to the
/// stop signal (executePreStopHook waits at most the grace period).
pub fn pre_stop_deadline(began: Instant, grace: Duration) -> Instant {
    began + grace
}

/// How long after the stop signal SIGKILL follows, once a preStop hook ran
/// for `ran` out of `grace` (killContainer: grace minus the hook's whole
/// seconds, at least 2 s).
pub fn grace_after_pre_stop(grace: Duration, ran: Duration) -> Duration {
    let left = grace.as_secs().saturating_sub(ran.as_secs());
    Duration::from_secs(left).max(MIN_STOP_GRACE)
}

/// Whether a hook runs at all before a stop with this grace (the kubelet
/// skips preStop with a grace period of 0).
pub fn runs_pre_stop(grace: Duration) -> bool {
    !grace.is_zero()
}

/// Who a hook message is about: the container's name and the pod as the
/// kubelet's `format.Pod` writes it ("name_namespace(uid)").
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub container: &'a str,
    pub pod: &'a str,
}

/// What a hook's outcome means: Ok, or the kubelet's failure message.
pub fn result(hook: &Hook, outcome: &Outcome, who: Subject<'_>) -> Result<(), String> {
    let Subject { container, pod } = who;
    match hook {
        Hook::Exec { command } => match (outcome.verdict, outcome.exit_code) {
            (Verdict::Success | Verdict::Warning, _) => Ok(()),
            (_, code) => {
                let error = match code {
                    Some(code) => format!("command '{}' exited with {code}: ", command.join(" ")),
                    None => outcome.output.clone(),
                };
                let message = match code {
                    Some(_) => outcome.output.as_str(),
                    None => "",
                };
                Err(format!(
                    "Exec lifecycle hook ([{}]) for Container {container:?} in Pod {pod:?} failed - error: {error}, message: {message:?}",
                    command.join(" ")
                ))
            }
        },
        Hook::HttpGet(get) => match outcome.verdict {
            Verdict::Success | Verdict::Warning => Ok(()),
            _ => Err(format!(
                "HTTP lifecycle hook ({}) for Container {container:?} in Pod {pod:?} failed - error: {}",
                get.path, outcome.output
            )),
        },
        Hook::Sleep(d) => match outcome.verdict {
            Verdict::Success | Verdict::Warning => Ok(()),
            _ => Err(format!(
                "Sleep lifecycle hook ({}) for Container {container:?} in Pod {pod:?} failed - error: {}",
                d.as_secs(),
                outcome.output
            )),
        },
    }
}

/// The outcome of a sleep hook cut short because its container ended.
pub fn sleep_cut_short() -> Outcome {
    Outcome {
        verdict: Verdict::Failure,
        output: "container terminated before sleep hook finished".into(),
        exit_code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::probe::spec::{HttpGet, Scheme};

    const S: u64 = 1;
    fn secs(n: u64) -> Duration {
        Duration::from_secs(n * S)
    }

    #[test]
    fn the_kill_grace_is_the_failed_probes_own_if_set() {
        // setTerminationGracePeriod: probe-level grace only for liveness/startup kills.
        let pod = secs(30);
        let cases = [
            (None, pod),
            (Some((ProbeKind::Liveness, None)), pod),
            (Some((ProbeKind::Liveness, Some(secs(5)))), secs(5)),
            (Some((ProbeKind::Startup, Some(secs(1)))), secs(1)),
            (Some((ProbeKind::Readiness, Some(secs(5)))), pod),
        ];
        for (failed, expected) in cases {
            assert_eq!(kill_grace(pod, failed), expected, "{failed:?}");
        }
    }

    #[test]
    fn a_pre_stop_hook_spends_the_grace_in_whole_seconds_leaving_at_least_two() {
        // killContainer: gracePeriod -= int64(elapsed.Seconds()); min 2 s.
        let cases = [
            (secs(30), Duration::from_millis(0), secs(30)),
            (secs(30), Duration::from_millis(2900), secs(28)),
            (secs(30), secs(29), MIN_STOP_GRACE),
            (secs(30), secs(40), MIN_STOP_GRACE),
            (secs(1), Duration::from_millis(300), MIN_STOP_GRACE),
        ];
        for (grace, ran, expected) in cases {
            assert_eq!(
                grace_after_pre_stop(grace, ran),
                expected,
                "{grace:?} {ran:?}"
            );
        }
        let t0 = Instant::now();
        assert_eq!(pre_stop_deadline(t0, secs(30)), t0 + secs(30));
        assert!(!runs_pre_stop(Duration::ZERO) && runs_pre_stop(secs(1)));
    }

    #[test]
    fn hook_outcomes_mean_what_the_kubelets_handlers_say() {
        let who = Subject {
            container: "web",
            pod: "demo_default(1234)",
        };
        let exec = Hook::Exec {
            command: vec!["sh".into(), "-c".into(), "exit 3".into()],
        };
        let failed = Outcome {
            verdict: Verdict::Failure,
            output: "oops\n".into(),
            exit_code: Some(3),
        };
        assert_eq!(
            result(&exec, &failed, who),
            Err("Exec lifecycle hook ([sh -c exit 3]) for Container \"web\" in Pod \"demo_default(1234)\" failed - error: command 'sh -c exit 3' exited with 3: , message: \"oops\\n\"".into())
        );
        let ok = Outcome {
            verdict: Verdict::Success,
            output: String::new(),
            exit_code: Some(0),
        };
        assert_eq!(result(&exec, &ok, who), Ok(()));
        let get = Hook::HttpGet(HttpGet {
            host: None,
            port: 80,
            path: "/stop".into(),
            scheme: Scheme::Http,
            headers: vec![],
        });
        // A response of any status is a success for a hook.
        assert_eq!(result(&get, &ok, who), Ok(()));
        let refused = Outcome {
            verdict: Verdict::Failure,
            output:
                "Get \"http://10.0.0.2:80/stop\": dial tcp 10.0.0.2:80: connect: connection refused"
                    .into(),
            exit_code: None,
        };
        assert_eq!(
            result(&get, &refused, who),
            Err("HTTP lifecycle hook (/stop) for Container \"web\" in Pod \"demo_default(1234)\" failed - error: Get \"http://10.0.0.2:80/stop\": dial tcp 10.0.0.2:80: connect: connection refused".into())
        );
        let sleep = Hook::Sleep(secs(5));
        assert_eq!(
            result(&sleep, &sleep_cut_short(), who),
            Err("Sleep lifecycle hook (5) for Container \"web\" in Pod \"demo_default(1234)\" failed - error: container terminated before sleep hook finished".into())
        );
    }
}
