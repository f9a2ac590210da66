//! Restart back-off, per container, as the kubelet's.

use std::time::Duration;

use super::FOREVER;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::lifecycle::tests::*;
    use crate::pod::lifecycle::Lifecycle;

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
}
