//! Measures what probes cost a long-lived single-threaded process shaped like
//! the pod supervisor: one poll() loop, code pages given back before each
//! sleep (`pod::idle`), N containers with a 1-second httpGet liveness probe.
//!
//!     probe_rss PORT PROBES SECONDS
//!
//! probes http://127.0.0.1:PORT/ (start a server first, e.g. `busybox httpd
//! -f -p 127.0.0.1:PORT -h DIR`) from PROBES containers for SECONDS, then
//! prints its RSS (total, anonymous, file) and the CPU time per probe. With
//! PROBES 0 it runs the same loop with nothing to probe: the baseline.

use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollTimeout};
use peapod::pod::probe::{
    Check, Checks, Context, Due, Handler, Health, HttpGet, Probe, Prober, Scheme, Target, Timing,
    Verdict,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number =
        |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (port, probes, seconds) = (number(0, 8080) as u16, number(1, 3) as usize, number(2, 30));
    let probe = Probe {
        handler: Handler::HttpGet(HttpGet {
            host: None,
            port,
            path: "/".into(),
            scheme: Scheme::Http,
            headers: vec![],
        }),
        timing: Timing {
            period: Duration::from_secs(1),
            ..Timing::default()
        },
        termination_grace: None,
    };
    let health = Health {
        liveness: Some(probe),
        ..Health::default()
    };
    let names: Vec<String> = (0..probes).map(|i| format!("c{i}")).collect();
    let mut prober = Prober::new(names.iter().map(|n| (n.as_str(), &health)));
    let target = Target::here("127.0.0.1".parse().expect("an IP"));
    let ctx = Context {
        target: &target,
        runtime: None,
        container_id: "",
    };
    let begun = Instant::now();
    for name in &names {
        prober.started(name, begun, begun, 0.0);
    }
    let mut checks: Checks<(Due, Instant)> = Checks::default();
    let (mut ran, mut failed) = (0u64, 0u64);
    let end = begun + Duration::from_secs(seconds);
    let cpu_before = cpu_time();
    while Instant::now() < end {
        let now = Instant::now();
        for due in prober.due(now) {
            let Some(p) = prober.probe(&due).cloned() else {
                continue;
            };
            checks.add(
                (due, now),
                Check::probe(&p.handler, &ctx, p.timing.timeout, now),
            );
        }
        let wake = [
            prober.next_deadline(),
            checks.deadline(),
            Some(begun + Duration::from_secs(1)),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
        .unwrap_or(now + Duration::from_secs(1))
        .min(end);
        let ms = wake.saturating_duration_since(now).as_millis().max(1) as i32;
        peapod::pod::idle::release_code_pages();
        let fds = checks.fds();
        let mut polled: Vec<PollFd> = fds
            .iter()
            .map(|(fd, events)| PollFd::new(*fd, *events))
            .collect();
        let _ = poll(
            &mut polled,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        );
        let fired: Vec<bool> = polled
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(polled);
        drop(fds);
        let now = Instant::now();
        for ((due, began), outcome) in checks.dispatch(&fired, now) {
            ran += 1;
            if outcome.verdict != Verdict::Success {
                failed += 1;
            }
            prober.finished(&due, began, &outcome, now);
        }
    }
    let cpu = cpu_time() - cpu_before;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
            .unwrap_or_default()
    };
    println!(
        "probes={probes} ran={ran} failed={failed} VmRSS={}kB RssAnon={}kB RssFile={}kB VmHWM={}kB cpu={:.1}ms per_probe={:.0}us",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:"),
        cpu.as_secs_f64() * 1000.0,
        if ran > 0 { cpu.as_secs_f64() * 1e6 / ran as f64 } else { 0.0 },
    );
}

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(usage.user_time()) + tv(usage.system_time())
}
