//! One run of a probe or hook as non-blocking work for a poll loop.
//!
//! ```text
//! let mut check = Check::probe(&probe.handler, &ctx, probe.timing.timeout, now);
//! loop {
//!     poll([(check.fd(), check.events()), ...], until check.deadline());
//!     if fd fired or the deadline passed {
//!         if let Some(outcome) = check.ready(Instant::now()) { break }
//!     }
//! }
//! ```
//!
//! A check that has no fd (a sleep, or one that ended at once) is ready at
//! its deadline. [`Checks`] keeps many at once for one poll().

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::exec::ExecCheck;
use super::grpc::GrpcCheck;
use super::http::{HttpCheck, Purpose};
use super::net::Target;
use super::spec::{Handler, Hook};
use super::tcp::TcpCheck;
use crate::oci::Runtime;

/// The Kubernetes version peapod speaks for (k8s-openapi's `v1_34`): the
/// kubelet's User-Agent is `kube-probe/<major.minor>`.
pub const KUBE_VERSION: &str = "1.34";

/// The kubelet's probe.Result, and "errored" (its `err != nil`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// A success with something to say (an HTTP redirect not followed).
    Warning,
    Failure,
    /// The probe could not be run: the kubelet throws the result away.
    Error,
}

/// How one run of a probe or hook ended, with its output (the text of the
/// kubelet's events: a body, a command's output, or what went wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub output: String,
    /// An exec's exit code.
    pub exit_code: Option<i32>,
}

/// What checks of one pod need: where connections go, and for exec the
/// runtime and the container's id in it.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub target: &'a Target,
    pub runtime: Option<&'a Runtime>,
    pub container_id: &'a str,
}

impl Context<'_> {
    fn exec(
        &self,
        command: &[String],
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<Work, Outcome> {
        let runtime = self.runtime.ok_or_else(|| Outcome {
            verdict: Verdict::Error,
            output: "exec: no container runtime".into(),
            exit_code: None,
        })?;
        ExecCheck::start(runtime, self.container_id, command, timeout, now).map(Work::Exec)
    }
}

enum Work {
    Tcp(TcpCheck),
    Http(HttpCheck),
    Grpc(GrpcCheck),
    Exec(ExecCheck),
    Sleep,
    Done(Outcome),
}

/// A probe or hook under way.
pub struct Check {
    work: Work,
    deadline: Option<Instant>,
}

impl Check {
    /// Starts one run of a probe's handler, which must end within `timeout`.
    pub fn probe(handler: &Handler, ctx: &Context<'_>, timeout: Duration, now: Instant) -> Self {
        let deadline = Some(now + timeout);
        let agent = format!("kube-probe/{KUBE_VERSION}");
        let work = match handler {
            Handler::TcpSocket { host, port } => {
                TcpCheck::start(ctx.target, *host, *port).map(Work::Tcp)
            }
            Handler::HttpGet(get) => {
                HttpCheck::start(ctx.target, get, Purpose::Probe, &agent).map(Work::Http)
            }
            Handler::Grpc { port, service } => {
                GrpcCheck::start(ctx.target, *port, service, timeout, &agent).map(Work::Grpc)
            }
            Handler::Exec { command } => ctx.exec(command, Some(timeout), now),
        };
        Self::new(work, deadline)
    }

    /// Starts a hook; `deadline` is when the caller stops waiting (a preStop
    /// hook's grace), None for none (postStart).
    pub fn hook(hook: &Hook, ctx: &Context<'_>, deadline: Option<Instant>, now: Instant) -> Self {
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        let agent = format!("kube-lifecycle/{KUBE_VERSION}");
        match hook {
            Hook::Sleep(d) => Self {
                work: Work::Sleep,
                deadline: Some(deadline.map_or(now + *d, |end| end.min(now + *d))),
            },
            Hook::HttpGet(get) => {
                let work = HttpCheck::start(ctx.target, get, Purpose::Hook, &agent).map(Work::Http);
                Self::new(work, deadline)
            }
            Hook::Exec { command } => Self::new(ctx.exec(command, timeout, now), deadline),
        }
    }

    fn new(work: Result<Work, Outcome>, deadline: Option<Instant>) -> Self {
        match work {
            Ok(work @ Work::Exec(_)) => {
                let helper = match &work {
                    Work::Exec(e) => e.deadline,
                    _ => None,
                };
                Self {
                    work,
                    deadline: helper.or(deadline),
                }
            }
            Ok(work) => Self { work, deadline },
            // Ended at once: ready at the next look.
            Err(outcome) => Self {
                work: Work::Done(outcome),
                deadline: Some(Instant::now()),
            },
        }
    }

    /// The fd to watch, if any.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.work {
            Work::Tcp(c) => Some(c.conn.fd()),
            Work::Http(c) => Some(c.conn.fd()),
            Work::Grpc(c) => Some(c.conn.fd()),
            Work::Exec(c) => Some(c.fd()),
            Work::Sleep | Work::Done(_) => None,
        }
    }

    /// What to watch the fd for.
    pub fn events(&self) -> PollFlags {
        match &self.work {
            Work::Tcp(c) => c.conn.events(),
            Work::Http(c) => c.conn.events(),
            Work::Grpc(c) => c.conn.events(),
            _ => PollFlags::POLLIN,
        }
    }

    /// When to call [`Check::ready`] at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Moves the check on (its fd fired, or its deadline came); Some once it is over.
    pub fn ready(&mut self, now: Instant) -> Option<Outcome> {
        let late = self.deadline.is_some_and(|d| now >= d);
        let outcome = match &mut self.work {
            Work::Done(outcome) => Some(outcome.clone()),
            Work::Sleep => late.then(|| Outcome {
                verdict: Verdict::Success,
                output: String::new(),
                exit_code: None,
            }),
            Work::Tcp(c) => c.ready().or_else(|| late.then(|| c.timed_out())),
            Work::Http(c) => c.ready().or_else(|| late.then(|| c.timed_out())),
            Work::Grpc(c) => c.ready().or_else(|| late.then(|| c.timed_out())),
            Work::Exec(c) => c.ready().or_else(|| late.then(|| c.timed_out())),
        };
        if let Some(o) = &outcome {
            self.work = Work::Done(o.clone());
        }
        outcome
    }
}

/// Checks under way, by the caller's key, for one poll().
pub struct Checks<K> {
    running: Vec<(K, Check)>,
}

impl<K> Default for Checks<K> {
    fn default() -> Self {
        Self {
            running: Vec::new(),
        }
    }
}

impl<K: Clone + PartialEq> Checks<K> {
    pub fn add(&mut self, key: K, check: Check) {
        self.running.push((key, check));
    }

    /// Drops a check (its work is abandoned: an exec's process is killed).
    pub fn cancel(&mut self, key: &K) {
        self.running.retain(|(k, _)| k != key);
    }

    /// Drops every check whose key matches.
    pub fn cancel_where(&mut self, matches: impl Fn(&K) -> bool) {
        self.running.retain(|(k, _)| !matches(k));
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// The fds to add to the poll set, with their events, in order.
    pub fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        self.running
            .iter()
            .filter_map(|(_, c)| Some((c.fd()?, c.events())))
            .collect()
    }

    /// The earliest deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.running.iter().filter_map(|(_, c)| c.deadline()).min()
    }

    /// One poll() on these checks alone, until one moves or `until` comes;
    /// returns the checks that ended (for a loop of their own: the
    /// supervisor polls [`Checks::fds`] with its other fds).
    pub fn wait(&mut self, until: Instant) -> Vec<(K, Outcome)> {
        let now = Instant::now();
        let wake = self.deadline().map_or(until, |d| d.min(until));
        let ms = wake
            .saturating_duration_since(now)
            .as_millis()
            .min(i32::MAX as u128) as i32;
        let fired: Vec<bool> = {
            let fds = self.fds();
            let mut polled: Vec<PollFd> =
                fds.iter().map(|(fd, ev)| PollFd::new(*fd, *ev)).collect();
            let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            match poll(&mut polled, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return vec![],
            }
            polled
                .iter()
                .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        self.dispatch(&fired, Instant::now())
    }

    /// After poll(): `fired[i]` says whether the i-th fd of [`Checks::fds`]
    /// had events. Returns the checks that ended, with their outcomes.
    pub fn dispatch(&mut self, fired: &[bool], now: Instant) -> Vec<(K, Outcome)> {
        let mut fired = fired.iter();
        let mut ended = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            let check = &mut self.running[i].1;
            let woke = match check.fd() {
                Some(_) => *fired.next().unwrap_or(&false),
                None => false,
            };
            let due = check.deadline().is_some_and(|d| now >= d);
            if woke || due {
                if let Some(outcome) = check.ready(now) {
                    let (key, _) = self.running.remove(i);
                    ended.push((key, outcome));
                    continue;
                }
            }
            i += 1;
        }
        ended
    }
}

/// A duration as Go prints one ("1s", "1.5s", "2m0s").
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let frac = d.subsec_nanos();
    if secs == 0 && frac == 0 {
        return "0s".into();
    }
    if secs < 60 {
        return match frac {
            0 => format!("{secs}s"),
            _ => format!("{}s", d.as_secs_f64()),
        };
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match h {
        0 => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_gos() {
        for (d, text) in [
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(120), "2m0s"),
            (Duration::from_secs(3725), "1h2m5s"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(go_duration(d), text);
        }
    }

    #[test]
    fn a_sleep_is_ready_at_its_end_or_the_callers_deadline() {
        let t0 = Instant::now();
        let target = Target::here("127.0.0.1".parse().unwrap());
        let ctx = Context {
            target: &target,
            runtime: None,
            container_id: "c",
        };
        let mut sleep = Check::hook(&Hook::Sleep(Duration::from_secs(5)), &ctx, None, t0);
        assert!(sleep.fd().is_none());
        assert_eq!(sleep.deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(sleep.ready(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            sleep.ready(t0 + Duration::from_secs(5)).map(|o| o.verdict),
            Some(Verdict::Success)
        );
        let cut = Check::hook(
            &Hook::Sleep(Duration::from_secs(5)),
            &ctx,
            Some(t0 + Duration::from_secs(2)),
            t0,
        );
        assert_eq!(cut.deadline(), Some(t0 + Duration::from_secs(2)));
    }
}
