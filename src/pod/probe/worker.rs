//! The kubelet's probe workers as a pure state machine (no I/O, no clock):
//! when each probe of each container runs, how its results count, and what
//! follows (ready/unready, started, kill). The reference is the kubelet's
//! `pkg/kubelet/prober` (worker.go, prober.go, prober_manager.go).
//!
//! The caller (the supervisor's poll loop) tells [`Prober`] when a container's
//! run starts ([`Prober::started`], once it counts as running: after its
//! postStart hook) and ends ([`Prober::stopped`]), asks for the probes that
//! are due ([`Prober::due`]), runs each as a [`super::Check`], hands back the
//! outcome ([`Prober::finished`]) and arms a timer for
//! [`Prober::next_deadline`]. Every call returns [`Event`]s in order.
//!
//! Rules (each from the kubelet; tests name them):
//! - Probing starts with the run: a probe's first run is `initialDelaySeconds`
//!   after the container started, then one every `periodSeconds` (a probe that
//!   took longer than a period is followed at once by the next, as a Go
//!   ticker's buffered tick). An adopted pod may spread its first probes over
//!   a period (the kubelet's jitter after a restart of its own).
//! - A result counts once it is the same `successThreshold` (success) or
//!   `failureThreshold` (failure) times in a row. A probe that errored (the
//!   kubelet's `err != nil`) is thrown away; a warning counts as a success.
//! - The startup probe holds back liveness and readiness until it succeeds,
//!   then stops. Without one, a running container is started at once.
//! - Ready: started and running, and the readiness probe's result is success
//!   (its initial value is failure); without a readiness probe, ready once
//!   started. When the container becomes started, its readiness probe runs
//!   at once (the kubelet's manual trigger) if its initial delay has passed.
//! - A liveness or startup failure kills the container, with the probe's
//!   `terminationGracePeriodSeconds` if set, and holds that probe until the
//!   next run. Results start afresh with each run; nothing is probed while
//!   the container does not run.
//! - Once the pod shuts down, liveness and startup probes stop (the kubelet
//!   sets them to success on deletion); readiness goes on while it runs.

use std::time::{Duration, Instant};

use super::check::{Outcome, Verdict};
use super::spec::{Health, Probe, ProbeKind};

/// The kubelet's `results.Result` of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Unknown,
    Success,
    Failure,
}

/// What the caller must act on, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An event for the container, as the kubelet records it (reason
    /// `Unhealthy` or `ProbeWarning`; message "Liveness probe failed: …").
    Recorded {
        container: String,
        reason: &'static str,
        message: String,
    },
    /// The container's `ready` changed.
    Ready { container: String, ready: bool },
    /// The container counts as started (startup probe passed, or none).
    Started { container: String },
    /// The container failed its liveness or startup probe: kill it. `message`
    /// is the kubelet's ("Container web failed liveness probe"); `grace` is
    /// the probe's terminationGracePeriodSeconds (None: the pod's).
    Kill {
        container: String,
        kind: ProbeKind,
        message: String,
        grace: Option<Duration>,
    },
}

/// One probe to run now; hand it back to [`Prober::finished`] with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub container: String,
    pub kind: ProbeKind,
    /// Which run of the container it probes: a late outcome of an earlier run is ignored.
    pub run: u64,
}

#[derive(Debug, Clone)]
struct Worker {
    kind: ProbeKind,
    probe: Probe,
    result: ProbeResult,
    last: Option<ProbeResult>,
    streak: u32,
    /// Held after a liveness/startup failure until the next run.
    on_hold: bool,
    /// Stopped for good (startup succeeded, or liveness/startup at shutdown).
    done: bool,
    /// First tick of the period grid.
    anchor: Instant,
    /// When it next runs; None while it runs.
    next: Option<Instant>,
}

impl Worker {
    fn new(kind: ProbeKind, probe: &Probe, anchor: Instant) -> Self {
        Self {
            kind,
            probe: probe.clone(),
            result: initial(kind),
            last: None,
            streak: 0,
            on_hold: false,
            done: false,
            anchor,
            next: Some(anchor),
        }
    }

    /// The first tick of the grid after `t`.
    fn tick_after(&self, t: Instant) -> Instant {
        let period = self.probe.timing.period.max(Duration::from_millis(1));
        if t < self.anchor {
            return self.anchor;
        }
        let n = (t - self.anchor).as_nanos() / period.as_nanos() + 1;
        self.anchor + period * n.min(u32::MAX as u128) as u32
    }
}

/// The kubelet's `initialValue` of each kind of worker.
fn initial(kind: ProbeKind) -> ProbeResult {
    match kind {
        ProbeKind::Readiness => ProbeResult::Failure,
        ProbeKind::Liveness => ProbeResult::Success,
        ProbeKind::Startup => ProbeResult::Unknown,
    }
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    health: Health,
    run: u64,
    running: bool,
    started: bool,
    ready: bool,
    workers: Vec<Worker>,
}

impl Member {
    fn worker(&mut self, kind: ProbeKind) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.kind == kind)
    }

    fn has(&self, kind: ProbeKind) -> bool {
        self.workers.iter().any(|w| w.kind == kind)
    }

    /// Whether `kind` may probe now (worker.go's doProbe gates).
    fn may_probe(&self, kind: ProbeKind) -> bool {
        match kind {
            ProbeKind::Startup => !self.started,
            _ => self.started,
        }
    }

    /// Recomputes `ready` (prober_manager.go's UpdatePodStatus); an event if it changed.
    fn update_ready(&mut self, events: &mut Vec<Event>) {
        let ready = self.running
            && self.started
            && self
                .workers
                .iter()
                .find(|w| w.kind == ProbeKind::Readiness)
                .is_none_or(|w| w.result == ProbeResult::Success);
        if ready != self.ready {
            self.ready = ready;
            events.push(Event::Ready {
                container: self.name.clone(),
                ready,
            });
        }
    }
}

/// The probes of one pod's containers.
#[derive(Debug, Clone)]
pub struct Prober {
    members: Vec<Member>,
    shutting_down: bool,
}

impl Prober {
    /// Every container of the pod (those without probes too: they are ready once running).
    pub fn new<'a>(containers: impl IntoIterator<Item = (&'a str, &'a Health)>) -> Self {
        Self {
            members: containers
                .into_iter()
                .map(|(name, health)| Member {
                    name: name.to_string(),
                    health: health.clone(),
                    run: 0,
                    running: false,
                    started: false,
                    ready: false,
                    workers: Vec::new(),
                })
                .collect(),
            shutting_down: false,
        }
    }

    fn member(&mut self, name: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.name == name)
    }

    /// A run of `container` counts as running since `since` (≤ `now`; earlier
    /// for a container an adopting supervisor found running). `jitter` in
    /// [0, 1) spreads the first probes over a period: 0 for a new pod, random
    /// for an adopted one (the kubelet's after its own restart).
    pub fn started(
        &mut self,
        container: &str,
        since: Instant,
        now: Instant,
        jitter: f64,
    ) -> Vec<Event> {
        let shutting_down = self.shutting_down;
        let Some(m) = self.member(container) else {
            return vec![];
        };
        m.run += 1;
        m.running = true;
        m.started = false;
        m.ready = false;
        m.workers = [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ]
        .into_iter()
        .filter_map(|kind| {
            let probe = m.health.probe(kind)?;
            let spread = probe.timing.period.mul_f64(jitter.clamp(0.0, 0.999));
            let anchor = (since + probe.timing.initial_delay).max(now + spread);
            let mut w = Worker::new(kind, probe, anchor);
            w.done = shutting_down && kind != ProbeKind::Readiness;
            Some(w)
        })
        .collect();
        let mut events = vec![];
        if !m.has(ProbeKind::Startup) {
            become_started(m, now, &mut events);
        }
        events
    }

    /// The run of `container` ended (or the container is gone): nothing more
    /// is probed until it starts again, and it is not ready.
    pub fn stopped(&mut self, container: &str) -> Vec<Event> {
        let Some(m) = self.member(container) else {
            return vec![];
        };
        m.running = false;
        m.started = false;
        m.workers.clear();
        let mut events = vec![];
        m.update_ready(&mut events);
        events
    }

    /// The pod shuts down: liveness and startup probes stop for good.
    pub fn shutting_down(&mut self) {
        self.shutting_down = true;
        for m in &mut self.members {
            for w in &mut m.workers {
                if w.kind != ProbeKind::Readiness {
                    w.done = true;
                }
            }
        }
    }

    /// The probes to run now, each to be answered with [`Prober::finished`].
    pub fn due(&mut self, now: Instant) -> Vec<Due> {
        let mut due = vec![];
        for m in &mut self.members {
            if !m.running {
                continue;
            }
            for i in 0..m.workers.len() {
                let kind = m.workers[i].kind;
                let may = m.may_probe(kind);
                let w = &mut m.workers[i];
                let Some(next) = w.next else { continue };
                if next > now || w.done {
                    continue;
                }
                if w.on_hold || !may {
                    // The tick passes without a probe.
                    w.next = Some(w.tick_after(now));
                    continue;
                }
                w.next = None;
                due.push(Due {
                    container: m.name.clone(),
                    kind,
                    run: m.run,
                });
            }
        }
        due
    }

    /// The outcome of a probe `due` returned, which began at `began`.
    pub fn finished(
        &mut self,
        due: &Due,
        began: Instant,
        outcome: &Outcome,
        now: Instant,
    ) -> Vec<Event> {
        let shutting_down = self.shutting_down;
        let Some(m) = self.member(&due.container) else {
            return vec![];
        };
        if m.run != due.run || !m.running {
            return vec![];
        }
        let name = m.name.clone();
        let may = m.may_probe(due.kind);
        let Some(w) = m.worker(due.kind) else {
            return vec![];
        };
        // The next tick; one that passed while this probe ran is taken at once.
        let next = w.tick_after(began).max(now);
        w.next = Some(next);
        if w.done || w.on_hold || !may {
            return vec![];
        }
        let title = due.kind.title();
        let mut events = vec![];
        let result = match outcome.verdict {
            Verdict::Success => ProbeResult::Success,
            Verdict::Warning => {
                events.push(recorded(
                    &name,
                    "ProbeWarning",
                    format!("{title} probe warning: {}", outcome.output),
                ));
                ProbeResult::Success
            }
            Verdict::Failure => {
                events.push(recorded(
                    &name,
                    "Unhealthy",
                    format!("{title} probe failed: {}", outcome.output),
                ));
                ProbeResult::Failure
            }
            Verdict::Error => {
                // prober.go: the event, then worker.go throws the result away.
                events.push(recorded(
                    &name,
                    "Unhealthy",
                    format!(
                        "{title} probe errored and resulted in unknown state: {}",
                        outcome.output
                    ),
                ));
                return events;
            }
        };
        if w.last == Some(result) {
            w.streak += 1;
        } else {
            w.last = Some(result);
            w.streak = 1;
        }
        let threshold = match result {
            ProbeResult::Failure => w.probe.timing.failure_threshold,
            _ => w.probe.timing.success_threshold,
        };
        if w.streak < threshold {
            return events;
        }
        w.result = result;
        let grace = w.probe.termination_grace;
        if result == ProbeResult::Failure && due.kind != ProbeKind::Readiness {
            w.on_hold = true;
            w.streak = 0;
            if !shutting_down {
                events.push(Event::Kill {
                    container: name.clone(),
                    kind: due.kind,
                    message: format!(
                        "Container {name} failed {} probe",
                        title.to_ascii_lowercase()
                    ),
                    grace,
                });
            }
        }
        if due.kind == ProbeKind::Startup && result == ProbeResult::Success {
            w.done = true;
            become_started(m, now, &mut events);
        }
        m.update_ready(&mut events);
        events
    }

    /// When `due` next has something to return.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .iter()
            .filter(|m| m.running)
            .flat_map(|m| &m.workers)
            .filter(|w| !w.done)
            .filter_map(|w| w.next)
            .min()
    }

    pub fn is_ready(&self, container: &str) -> bool {
        self.members.iter().any(|m| m.name == container && m.ready)
    }

    /// Whether the container has started (containerStatuses[].started).
    pub fn is_started(&self, container: &str) -> bool {
        self.members
            .iter()
            .any(|m| m.name == container && m.started)
    }

    /// The probe behind a [`Due`] (to run it).
    pub fn probe(&self, due: &Due) -> Option<&Probe> {
        self.members
            .iter()
            .find(|m| m.name == due.container)
            .and_then(|m| m.health.probe(due.kind))
    }
}

fn recorded(container: &str, reason: &'static str, message: String) -> Event {
    Event::Recorded {
        container: container.to_string(),
        reason,
        message,
    }
}

/// The container counts as started: liveness and readiness may probe; the
/// readiness probe runs at once if its initial delay has passed.
fn become_started(m: &mut Member, now: Instant, events: &mut Vec<Event>) {
    m.started = true;
    events.push(Event::Started {
        container: m.name.clone(),
    });
    if let Some(w) = m.worker(ProbeKind::Readiness) {
        if w.anchor <= now && w.next.is_some() {
            w.next = Some(now);
        }
    }
    m.update_ready(events);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::probe::spec::{Handler, Timing};

    fn probe(period: u64, delay: u64, success: u32, failure: u32) -> Probe {
        Probe {
            handler: Handler::TcpSocket {
                host: None,
                port: 80,
            },
            timing: Timing {
                initial_delay: Duration::from_secs(delay),
                period: Duration::from_secs(period),
                timeout: Duration::from_secs(1),
                success_threshold: success,
                failure_threshold: failure,
            },
            termination_grace: None,
        }
    }

    /// One scripted step at a time offset (seconds).
    enum Step {
        /// The run starts (since = now, no jitter); expected events.
        Start(Vec<Event>),
        Stop(Vec<Event>),
        ShutDown,
        /// Exactly these probes are due.
        Runs(Vec<ProbeKind>),
        /// A due probe of this kind ends with this verdict; expected events.
        Ends(ProbeKind, Verdict, Vec<Event>),
        /// The next deadline is at this offset (seconds).
        Next(Option<f64>),
    }
    use Step::*;

    fn ready(ready: bool) -> Event {
        Event::Ready {
            container: "c".into(),
            ready,
        }
    }
    fn started() -> Event {
        Event::Started {
            container: "c".into(),
        }
    }
    fn unhealthy(message: &str) -> Event {
        recorded("c", "Unhealthy", message.into())
    }
    fn kill(kind: ProbeKind) -> Event {
        Event::Kill {
            container: "c".into(),
            kind,
            message: format!("Container c failed {} probe", kind.title().to_lowercase()),
            grace: None,
        }
    }

    fn run(name: &str, health: Health, steps: &[(f64, Step)]) {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut prober = Prober::new([("c", &health)]);
        let mut pending: Vec<(Due, Instant)> = vec![];
        for (i, (time, step)) in steps.iter().enumerate() {
            let now = at(*time);
            let ctx = format!("{name}: step {i} at {time}s");
            match step {
                Start(expected) => {
                    assert_eq!(&prober.started("c", now, now, 0.0), expected, "{ctx}")
                }
                Stop(expected) => assert_eq!(&prober.stopped("c"), expected, "{ctx}"),
                ShutDown => prober.shutting_down(),
                Runs(kinds) => {
                    let due = prober.due(now);
                    let got: Vec<ProbeKind> = due.iter().map(|d| d.kind).collect();
                    assert_eq!(&got, kinds, "{ctx}");
                    pending.extend(due.into_iter().map(|d| (d, now)));
                }
                Ends(kind, verdict, expected) => {
                    let i = pending
                        .iter()
                        .position(|(d, _)| d.kind == *kind)
                        .expect(&ctx);
                    let (due, began) = pending.remove(i);
                    let outcome = Outcome {
                        verdict: *verdict,
                        output: "out".into(),
                        exit_code: None,
                    };
                    assert_eq!(
                        &prober.finished(&due, began, &outcome, now),
                        expected,
                        "{ctx}"
                    );
                }
                Next(expected) => {
                    let got = prober.next_deadline().map(|d| (d - t0).as_secs_f64());
                    assert_eq!(got, *expected, "{ctx}");
                }
            }
        }
    }

    fn health(startup: Option<Probe>, liveness: Option<Probe>, readiness: Option<Probe>) -> Health {
        Health {
            startup,
            liveness,
            readiness,
            ..Health::default()
        }
    }

    use ProbeKind::*;
    use Verdict::{Error as Errored, Failure as Fails, Success as Passes, Warning as Warns};

    #[test]
    fn without_probes_a_running_container_is_started_and_ready() {
        // prober_manager.go: no startup probe -> started; no readiness probe -> ready.
        run(
            "no probes",
            Health::default(),
            &[
                (0.0, Start(vec![started(), ready(true)])),
                (0.0, Next(None)),
                (5.0, Stop(vec![ready(false)])),
            ],
        );
    }

    #[test]
    fn readiness_starts_false_and_follows_its_thresholds() {
        // worker.go: initialValue Failure for readiness; successThreshold 2, failureThreshold 2.
        run(
            "readiness",
            health(None, None, Some(probe(10, 5, 2, 2))),
            &[
                (0.0, Start(vec![started()])),
                (0.0, Next(Some(5.0))),
                (4.0, Runs(vec![])),
                (5.0, Runs(vec![Readiness])),
                (5.2, Ends(Readiness, Passes, vec![])),
                (5.2, Next(Some(15.0))),
                (15.0, Runs(vec![Readiness])),
                (15.1, Ends(Readiness, Passes, vec![ready(true)])),
                (25.0, Runs(vec![Readiness])),
                (
                    25.1,
                    Ends(
                        Readiness,
                        Fails,
                        vec![unhealthy("Readiness probe failed: out")],
                    ),
                ),
                (35.0, Runs(vec![Readiness])),
                (
                    35.1,
                    Ends(
                        Readiness,
                        Fails,
                        vec![unhealthy("Readiness probe failed: out"), ready(false)],
                    ),
                ),
                // Readiness failures never kill.
                (45.0, Runs(vec![Readiness])),
                (
                    45.1,
                    Ends(
                        Readiness,
                        Fails,
                        vec![unhealthy("Readiness probe failed: out")],
                    ),
                ),
            ],
        );
    }

    #[test]
    fn liveness_failures_kill_at_the_threshold_then_hold_until_the_next_run() {
        // worker.go: onHold after a liveness failure; results reset on a new container.
        run(
            "liveness",
            health(None, Some(probe(1, 0, 1, 3)), None),
            &[
                (0.0, Start(vec![started(), ready(true)])),
                (0.0, Runs(vec![Liveness])),
                (
                    0.1,
                    Ends(
                        Liveness,
                        Fails,
                        vec![unhealthy("Liveness probe failed: out")],
                    ),
                ),
                (1.0, Runs(vec![Liveness])),
                // A success in between starts the count again.
                (1.1, Ends(Liveness, Passes, vec![])),
                (2.0, Runs(vec![Liveness])),
                (
                    2.1,
                    Ends(
                        Liveness,
                        Fails,
                        vec![unhealthy("Liveness probe failed: out")],
                    ),
                ),
                (3.0, Runs(vec![Liveness])),
                (
                    3.1,
                    Ends(
                        Liveness,
                        Fails,
                        vec![unhealthy("Liveness probe failed: out")],
                    ),
                ),
                (4.0, Runs(vec![Liveness])),
                (
                    4.1,
                    Ends(
                        Liveness,
                        Fails,
                        vec![unhealthy("Liveness probe failed: out"), kill(Liveness)],
                    ),
                ),
                // On hold: ticks pass without probes.
                (5.0, Runs(vec![])),
                (6.0, Runs(vec![])),
                (6.5, Stop(vec![ready(false)])),
                (6.5, Next(None)),
                (7.0, Runs(vec![])),
                (8.0, Start(vec![started(), ready(true)])),
                (8.0, Runs(vec![Liveness])),
                (
                    8.1,
                    Ends(
                        Liveness,
                        Fails,
                        vec![unhealthy("Liveness probe failed: out")],
                    ),
                ),
            ],
        );
    }

    #[test]
    fn startup_holds_back_liveness_and_readiness_until_it_succeeds() {
        // worker.go: "Disable other probes until container has started"; startup stops once started.
        run(
            "startup",
            health(
                Some(probe(2, 0, 1, 5)),
                Some(probe(3, 0, 1, 1)),
                Some(probe(4, 0, 1, 1)),
            ),
            &[
                (0.0, Start(vec![])),
                (0.0, Runs(vec![Startup])),
                (
                    0.1,
                    Ends(Startup, Fails, vec![unhealthy("Startup probe failed: out")]),
                ),
                (2.0, Runs(vec![Startup])),
                (2.1, Ends(Startup, Passes, vec![started()])),
                // Readiness runs at once (the kubelet's manual trigger); liveness on its own tick.
                (2.1, Runs(vec![Readiness])),
                (2.2, Ends(Readiness, Passes, vec![ready(true)])),
                (3.0, Runs(vec![Liveness])),
                (3.1, Ends(Liveness, Passes, vec![])),
                // The startup probe does not run again.
                (4.0, Runs(vec![Readiness])),
                (4.1, Ends(Readiness, Passes, vec![])),
                (6.0, Runs(vec![Liveness])),
                (8.0, Runs(vec![Readiness])),
            ],
        );
    }

    #[test]
    fn a_failed_startup_probe_kills_with_its_own_grace() {
        let mut p = probe(1, 0, 1, 2);
        p.termination_grace = Some(Duration::from_secs(7));
        let mut kill = kill(Startup);
        if let Event::Kill { grace, .. } = &mut kill {
            *grace = Some(Duration::from_secs(7));
        }
        run(
            "startup kill",
            health(Some(p), None, None),
            &[
                (0.0, Start(vec![])),
                (0.0, Runs(vec![Startup])),
                (
                    0.1,
                    Ends(Startup, Fails, vec![unhealthy("Startup probe failed: out")]),
                ),
                (1.0, Runs(vec![Startup])),
                (
                    1.1,
                    Ends(
                        Startup,
                        Fails,
                        vec![unhealthy("Startup probe failed: out"), kill],
                    ),
                ),
                (2.0, Runs(vec![])),
            ],
        );
    }

    #[test]
    fn errors_are_thrown_away_and_warnings_count_as_success() {
        // prober.go: errored -> event, result discarded; Warning -> ProbeWarning, Success.
        run(
            "errors",
            health(None, None, Some(probe(1, 0, 2, 1))),
            &[
                (0.0, Start(vec![started()])),
                (0.0, Runs(vec![Readiness])),
                (
                    0.1,
                    Ends(
                        Readiness,
                        Warns,
                        vec![recorded(
                            "c",
                            "ProbeWarning",
                            "Readiness probe warning: out".into(),
                        )],
                    ),
                ),
                (1.0, Runs(vec![Readiness])),
                (
                    1.1,
                    Ends(
                        Readiness,
                        Errored,
                        vec![unhealthy(
                            "Readiness probe errored and resulted in unknown state: out",
                        )],
                    ),
                ),
                (2.0, Runs(vec![Readiness])),
                (2.1, Ends(Readiness, Passes, vec![ready(true)])),
            ],
        );
    }

    #[test]
    fn a_slow_probe_is_followed_at_once_and_then_the_grid_resumes() {
        // Go's ticker keeps one tick while the worker is busy.
        run(
            "slow",
            health(None, Some(probe(2, 0, 1, 3)), None),
            &[
                (0.0, Start(vec![started(), ready(true)])),
                (0.0, Runs(vec![Liveness])),
                (0.0, Next(None)),
                (3.5, Ends(Liveness, Passes, vec![])),
                (3.5, Next(Some(3.5))),
                (3.5, Runs(vec![Liveness])),
                (3.6, Ends(Liveness, Passes, vec![])),
                (3.6, Next(Some(4.0))),
            ],
        );
    }

    #[test]
    fn shutdown_stops_liveness_and_startup_but_not_readiness() {
        // worker.go: on deletion liveness/startup are set to success and stop.
        run(
            "shutdown",
            health(None, Some(probe(1, 0, 1, 1)), Some(probe(1, 0, 1, 1))),
            &[
                (0.0, Start(vec![started()])),
                (0.0, Runs(vec![Liveness, Readiness])),
                (0.0, ShutDown),
                (0.1, Ends(Liveness, Fails, vec![])),
                (0.1, Ends(Readiness, Passes, vec![ready(true)])),
                (1.0, Runs(vec![Readiness])),
                (
                    1.1,
                    Ends(
                        Readiness,
                        Fails,
                        vec![unhealthy("Readiness probe failed: out"), ready(false)],
                    ),
                ),
            ],
        );
    }

    #[test]
    fn outcomes_of_an_earlier_run_are_ignored() {
        let h = health(None, Some(probe(1, 0, 1, 1)), None);
        let t0 = Instant::now();
        let mut prober = Prober::new([("c", &h)]);
        prober.started("c", t0, t0, 0.0);
        let due = prober.due(t0);
        prober.stopped("c");
        prober.started("c", t0, t0, 0.0);
        let failed = Outcome {
            verdict: Verdict::Failure,
            output: String::new(),
            exit_code: None,
        };
        assert_eq!(prober.finished(&due[0], t0, &failed, t0), vec![]);
    }

    #[test]
    fn an_adopted_pod_spreads_its_first_probes_over_a_period() {
        // worker.go: jitter of up to one period after the kubelet restarted.
        let h = health(None, Some(probe(10, 0, 1, 1)), None);
        let t0 = Instant::now();
        let mut prober = Prober::new([("c", &h)]);
        let since = t0 - Duration::from_secs(100);
        prober.started("c", since, t0, 0.25);
        assert_eq!(
            prober.next_deadline(),
            Some(t0 + Duration::from_millis(2500))
        );
        assert!(prober.is_started("c") && prober.is_ready("c"));
    }
}
