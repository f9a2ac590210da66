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
//!
//!     probe_rss netns PID ROUNDS
//!
//! compares the two ways of making a socket in the network namespace of PID:
//! setns() there and back in this process (what `probe::Target` does), and a
//! forked helper per socket that joins the namespace and sends the socket
//! back over a socketpair.

use std::time::{Duration, Instant};

use peapod::pod::probe::{
    Check, Checks, Context, Due, Handler, Health, HttpGet, Probe, Prober, Scheme, Target, Timing,
    Verdict,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("netns") {
        let pid: i32 = args.get(1).and_then(|a| a.parse().ok()).expect("a pid");
        let rounds: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
        return netns_cost(pid, rounds);
    }
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
        let wake = prober
            .next_deadline()
            .map_or(end, |d| d.min(end))
            .min(now + Duration::from_secs(1));
        peapod::pod::idle::release_code_pages();
        let ended = checks.wait(wake);
        let now = Instant::now();
        for ((due, began), outcome) in ended {
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

fn netns_cost(pid: i32, rounds: u32) {
    use nix::sys::socket::{
        recvmsg, sendmsg, socketpair, ControlMessage, ControlMessageOwned, MsgFlags,
    };
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let target = Target::inside(pid).expect("open the namespace");
    let addr = "127.0.0.1:80".parse().expect("an address");
    let began = Instant::now();
    for _ in 0..rounds {
        drop(target.socket(&addr).expect("socket"));
    }
    let setns = began.elapsed() / rounds;
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open the namespace");
    let began = Instant::now();
    for _ in 0..rounds {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        // SAFETY: this process is single-threaded; the child only makes syscalls and exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let _ = nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET);
                let sock = nix::sys::socket::socket(
                    AddressFamily::Inet,
                    SockType::Stream,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )
                .expect("socket");
                let fds = [sock.as_raw_fd()];
                let _ = sendmsg::<()>(
                    theirs.as_raw_fd(),
                    &[std::io::IoSlice::new(b"s")],
                    &[ControlMessage::ScmRights(&fds)],
                    MsgFlags::empty(),
                    None,
                );
                // SAFETY: leave at once.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(theirs);
                let mut buf = [0u8; 1];
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
                let msg = recvmsg::<()>(
                    ours.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::empty(),
                )
                .expect("recvmsg");
                for cmsg in msg.cmsgs().expect("cmsgs") {
                    if let ControlMessageOwned::ScmRights(fds) = cmsg {
                        // SAFETY: the fd was just received and is ours alone.
                        drop(unsafe { OwnedFd::from_raw_fd(fds[0]) });
                    }
                }
                let _ = nix::sys::wait::waitpid(child, None);
            }
        }
    }
    let forked = began.elapsed() / rounds;
    println!("socket in a netns: setns there and back {setns:?}, forked helper {forked:?} (per socket, {rounds} rounds)");
}
