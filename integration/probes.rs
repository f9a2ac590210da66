//! Probes and hooks (src/pod/probe) against real servers: busybox `httpd`,
//! listening sockets, `openssl s_server` and a tonic gRPC health server
//! (examples/grpc_health.rs), each in a network namespace the test makes and
//! reached from inside it as a pod's are; exec probes in a real container.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};
use peapod::pod::probe::hooks::{self, Subject};
use peapod::pod::probe::{
    Check, Checks, Context, Due, Event, Handler, Health, Hook, HttpGet, Outcome, Probe, ProbeKind,
    Prober, Scheme, Target, Timing, Verdict,
};

use crate::common::{busybox_rootfs, require_root, wait_until, TestEnv};

#[path = "../examples/grpc_health.rs"]
#[allow(dead_code)]
mod grpc_health;

/// A network namespace of our own (only `lo`, up), held by a sleeping process.
struct Netns {
    holder: Child,
    file: File,
}

impl Netns {
    fn new() -> Self {
        require_root();
        let mut holder = Command::new(busybox());
        holder.args(["sleep", "1000"]).stdin(Stdio::null());
        // SAFETY: unshare is a plain syscall, fine between fork and exec.
        unsafe { holder.pre_exec(|| unshare(CloneFlags::CLONE_NEWNET).map_err(Into::into)) };
        let holder = holder.spawn().expect("spawn the namespace's holder");
        let pid = holder.id() as i32;
        let path = format!("/proc/{pid}/ns/net");
        wait_until("the holder's new namespace", Duration::from_secs(5), || {
            std::fs::read_link(&path).ok() != std::fs::read_link("/proc/self/ns/net").ok()
        });
        peapod::oci::network::bring_up_loopback(nix::unistd::Pid::from_raw(pid)).expect("lo up");
        let file = File::open(&path).expect("open the namespace");
        Self { holder, file }
    }

    fn pid(&self) -> i32 {
        self.holder.id() as i32
    }

    fn target(&self) -> Target {
        Target::inside(self.pid()).expect("a target inside the namespace")
    }

    /// Starts `cmd` inside the namespace.
    fn spawn(&self, cmd: &mut Command) -> Server {
        let fd = self.file.as_raw_fd();
        // SAFETY: setns is a plain syscall on an fd we keep open, fine between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let ns = std::os::fd::BorrowedFd::borrow_raw(fd);
                setns(ns, CloneFlags::CLONE_NEWNET).map_err(Into::into)
            })
        };
        Server(cmd.stdin(Stdio::null()).spawn().expect("spawn a server"))
    }

    /// A listening socket on 127.0.0.1:`port` inside the namespace, held by
    /// this process: dropping it closes the port at once (a server process's
    /// forked children could keep it open after the server is killed).
    fn listen(&self, port: u16) -> std::net::TcpListener {
        let fd = self.file.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: the fd is the namespace file this struct keeps open.
                    let ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                    // Only this short-lived thread changes namespace; the socket keeps it.
                    setns(ns, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
                    std::net::TcpListener::bind(("127.0.0.1", port)).expect("listen")
                })
                .join()
                .expect("the listening thread")
        })
    }

    /// Waits until something accepts connections on `port`.
    fn wait_port(&self, port: u16) {
        let handler = Handler::TcpSocket { host: None, port };
        wait_until(
            &format!("port {port} to listen"),
            Duration::from_secs(10),
            || probe(self, &handler, Duration::from_secs(1)).verdict == Verdict::Success,
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn busybox() -> std::path::PathBuf {
    busybox_rootfs().join("bin/busybox")
}

fn context<'a>(
    target: &'a Target,
    runtime: Option<&'a peapod::oci::Runtime>,
    id: &'a str,
) -> Context<'a> {
    Context {
        target,
        runtime,
        container_id: id,
    }
}

/// Runs one check to its end.
fn run(check: Check) -> Outcome {
    let mut checks = Checks::default();
    checks.add((), check);
    loop {
        let far = Instant::now() + Duration::from_secs(60);
        if let Some(((), outcome)) = checks.wait(far).pop() {
            return outcome;
        }
    }
}

fn probe(ns: &Netns, handler: &Handler, timeout: Duration) -> Outcome {
    let target = ns.target();
    run(Check::probe(
        handler,
        &context(&target, None, ""),
        timeout,
        Instant::now(),
    ))
}

fn http(port: u16, path: &str) -> HttpGet {
    HttpGet {
        host: None,
        port,
        path: path.into(),
        scheme: Scheme::Http,
        headers: vec![],
    }
}

fn assert_outcome(outcome: &Outcome, verdict: Verdict, output: &str) {
    assert_eq!(outcome.verdict, verdict, "{outcome:?}");
    assert!(
        outcome.output.contains(output),
        "{outcome:?} lacks {output:?}"
    );
}

/// Drives `prober` (its containers started) with real checks until `stop`
/// says so, failing after `deadline`; `stop` sees each event, and None after
/// each probe that ended. Returns every event seen.
fn drive(
    prober: &mut Prober,
    ctx: &Context<'_>,
    deadline: Duration,
    mut stop: impl FnMut(Option<&Event>) -> bool,
) -> Vec<Event> {
    let end = Instant::now() + deadline;
    let mut checks: Checks<(Due, Instant)> = Checks::default();
    let mut events = vec![];
    loop {
        let now = Instant::now();
        assert!(
            now < end,
            "no awaited event within {deadline:?}: {events:#?}"
        );
        for due in prober.due(now) {
            let p = prober.probe(&due).expect("a probe for what is due").clone();
            checks.add(
                (due, now),
                Check::probe(&p.handler, ctx, p.timing.timeout, now),
            );
        }
        let wake = prober.next_deadline().map_or(end, |d| d.min(end));
        let ended = checks.wait(wake);
        let now = Instant::now();
        for ((due, began), outcome) in ended {
            for event in prober.finished(&due, began, &outcome, now) {
                let done = stop(Some(&event));
                events.push(event);
                if done {
                    return events;
                }
            }
            if stop(None) {
                return events;
            }
        }
    }
}

fn liveness(handler: Handler, period: u64, failures: u32) -> Health {
    Health {
        liveness: Some(Probe {
            handler,
            timing: Timing {
                period: Duration::from_secs(period),
                failure_threshold: failures,
                ..Timing::default()
            },
            termination_grace: None,
        }),
        ..Health::default()
    }
}

fn cgi(dir: &Path, name: &str, body: &str) {
    let path = dir.join("cgi-bin").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// busybox httpd on 127.0.0.1:8080 of `ns`, serving `dir` with CGI scripts:
/// `health` answers 200 to the kubelet's headers, 500 once `dir/broken` exists.
fn httpd(ns: &Netns, dir: &Path) -> Server {
    cgi(dir, "health", &format!(
        "if [ -e {broken} ] || [ \"$HTTP_USER_AGENT\" != kube-probe/1.34 ] || [ \"$HTTP_X_PROBE\" != yes ]; then\n\
         printf 'HTTP/1.0 500 Internal Server Error\\r\\n\\r\\nbroken\\n'\nelse\nprintf 'HTTP/1.0 200 OK\\r\\n\\r\\nok\\n'\nfi",
        broken = dir.join("broken").display()
    ));
    cgi(
        dir,
        "moved",
        "printf 'HTTP/1.0 302 Found\\r\\nLocation: /cgi-bin/health\\r\\n\\r\\n'",
    );
    cgi(
        dir,
        "away",
        "printf 'HTTP/1.0 302 Found\\r\\nLocation: http://127.0.0.2:8080/\\r\\n\\r\\nelsewhere'",
    );
    cgi(
        dir,
        "loop",
        "printf 'HTTP/1.0 302 Found\\r\\nLocation: /cgi-bin/loop\\r\\n\\r\\n'",
    );
    let server = ns.spawn(
        Command::new(busybox())
            .args(["httpd", "-f", "-p", "127.0.0.1:8080", "-h"])
            .arg(dir),
    );
    ns.wait_port(8080);
    server
}

#[test]
fn tcp_probe_succeeds_while_the_port_is_open_and_fails_once_it_closes() {
    let ns = Netns::new();
    let listener = ns.listen(7000);
    let handler = Handler::TcpSocket {
        host: None,
        port: 7000,
    };
    assert_outcome(
        &probe(&ns, &handler, Duration::from_secs(1)),
        Verdict::Success,
        "",
    );
    drop(listener);
    assert_outcome(
        &probe(&ns, &handler, Duration::from_secs(1)),
        Verdict::Failure,
        "dial tcp 127.0.0.1:7000: connect: connection refused",
    );
    // The pod's loopback is not ours: nothing listens on the host's 127.0.0.1:7000 either way.
    let unreachable = Handler::TcpSocket {
        host: Some("10.255.0.1".parse().unwrap()),
        port: 80,
    };
    assert_outcome(
        &probe(&ns, &unreachable, Duration::from_secs(1)),
        Verdict::Failure,
        "network is unreachable",
    );
}

#[test]
fn http_probe_sends_the_kubelets_request_and_follows_the_server_from_200_to_500() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let _httpd = httpd(&ns, dir.path());
    let mut get = http(8080, "/cgi-bin/health");
    get.headers.push(("X-Probe".into(), "yes".into()));
    let handler = Handler::HttpGet(get.clone());
    assert_outcome(
        &probe(&ns, &handler, Duration::from_secs(2)),
        Verdict::Success,
        "ok",
    );
    // Without the probe's header the script answers 500.
    let bare = Handler::HttpGet(http(8080, "/cgi-bin/health"));
    assert_outcome(
        &probe(&ns, &bare, Duration::from_secs(2)),
        Verdict::Failure,
        "HTTP probe failed with statuscode: 500",
    );
    // Redirects: followed on the same host, a warning to another, at most 10 requests.
    let moved = Handler::HttpGet(HttpGet {
        path: "/cgi-bin/moved".into(),
        ..get.clone()
    });
    assert_outcome(
        &probe(&ns, &moved, Duration::from_secs(2)),
        Verdict::Success,
        "ok",
    );
    let away = Handler::HttpGet(http(8080, "/cgi-bin/away"));
    assert_outcome(
        &probe(&ns, &away, Duration::from_secs(2)),
        Verdict::Warning,
        "Probe terminated redirects, Response body: elsewhere",
    );
    let looping = Handler::HttpGet(http(8080, "/cgi-bin/loop"));
    assert_outcome(
        &probe(&ns, &looping, Duration::from_secs(5)),
        Verdict::Failure,
        "Get \"http://127.0.0.1:8080/cgi-bin/loop\": stopped after 10 redirects",
    );
    assert_outcome(
        &probe(
            &ns,
            &Handler::HttpGet(http(8080, "/none")),
            Duration::from_secs(2),
        ),
        Verdict::Failure,
        "statuscode: 404",
    );

    // The kubelet's worker: a 1 s liveness probe, killed after 2 failures in a row.
    let target = ns.target();
    let ctx = context(&target, None, "");
    let health = liveness(handler, 1, 2);
    let mut prober = Prober::new([("web", &health)]);
    let now = Instant::now();
    prober.started("web", now, now, 0.0);
    let mut probes = 0;
    let healthy = drive(&mut prober, &ctx, Duration::from_secs(10), |e| {
        e.is_none() && count_to(&mut probes, 2)
    });
    assert_eq!(healthy, vec![]);
    std::fs::write(dir.path().join("broken"), "").unwrap();
    let events = drive(&mut prober, &ctx, Duration::from_secs(10), |e| {
        matches!(e, Some(Event::Kill { .. }))
    });
    let unhealthy = Event::Recorded {
        container: "web".into(),
        reason: "Unhealthy",
        message: "Liveness probe failed: HTTP probe failed with statuscode: 500".into(),
    };
    let kill = Event::Kill {
        container: "web".into(),
        kind: ProbeKind::Liveness,
        message: "Container web failed liveness probe".into(),
        grace: None,
    };
    assert_eq!(events, vec![unhealthy.clone(), unhealthy, kill]);
}

/// Counts a call; true at the `n`th.
fn count_to(count: &mut u32, n: u32) -> bool {
    *count += 1;
    *count >= n
}

#[test]
fn http_probe_times_out_on_a_server_that_never_answers() {
    let ns = Netns::new();
    // The kernel accepts the connection (the backlog); nothing ever answers.
    let _listener = ns.listen(7001);
    let started = Instant::now();
    let outcome = probe(
        &ns,
        &Handler::HttpGet(http(7001, "/")),
        Duration::from_secs(1),
    );
    assert_outcome(
        &outcome,
        Verdict::Failure,
        "context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn https_probes_skip_verification_and_hooks_fall_back_to_http() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=probe-test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(made.success(), "openssl req failed");
    let _tls = ns.spawn(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                "127.0.0.1:8443",
                "-cert",
            ])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    ns.wait_port(8443);
    let https = HttpGet {
        scheme: Scheme::Https,
        ..http(8443, "/")
    };
    assert_outcome(
        &probe(&ns, &Handler::HttpGet(https), Duration::from_secs(2)),
        Verdict::Success,
        "",
    );

    let www = tempfile::tempdir().unwrap();
    let _httpd = httpd(&ns, www.path());
    let wrong = HttpGet {
        scheme: Scheme::Https,
        ..http(8080, "/cgi-bin/health")
    };
    assert_outcome(
        &probe(
            &ns,
            &Handler::HttpGet(wrong.clone()),
            Duration::from_secs(2),
        ),
        Verdict::Failure,
        "http: server gave HTTP response to HTTPS client",
    );
    // A hook: retried in HTTP, and any status (here 500) is a success.
    let target = ns.target();
    let ctx = context(&target, None, "");
    let hook = Hook::HttpGet(wrong);
    let outcome = run(Check::hook(
        &hook,
        &ctx,
        Some(Instant::now() + Duration::from_secs(5)),
        Instant::now(),
    ));
    let who = Subject {
        container: "web",
        pod: "demo_default(1)",
    };
    assert_eq!(hooks::result(&hook, &outcome, who), Ok(()));
    let refused = Hook::HttpGet(http(8081, "/stop"));
    let outcome = run(Check::hook(&refused, &ctx, None, Instant::now()));
    assert_eq!(
        hooks::result(&refused, &outcome, who),
        Err("HTTP lifecycle hook (/stop) for Container \"web\" in Pod \"demo_default(1)\" failed - error: Get \"http://127.0.0.1:8081/stop\": dial tcp 127.0.0.1:8081: connect: connection refused".into())
    );
}

#[test]
fn grpc_probe_asks_a_real_grpc_health_server() {
    let ns = Netns::new();
    let statuses: Arc<Mutex<Vec<(String, i32)>>> =
        Arc::new(Mutex::new(vec![("".into(), grpc_health::SERVING)]));
    let lookup_statuses = statuses.clone();
    let lookup: grpc_health::Lookup = Arc::new(move |service| {
        let statuses = lookup_statuses.lock().unwrap();
        statuses
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, status)| *status)
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let netns = ns.file.try_clone().unwrap();
    let server = std::thread::spawn(move || {
        // This thread alone moves into the namespace: its listener is made there.
        setns(&netns, CloneFlags::CLONE_NEWNET).expect("setns");
        let listener = std::net::TcpListener::bind("127.0.0.1:9000").expect("bind");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(grpc_health::serve(listener, lookup, async {
                let _ = stopped.await;
            }))
            .expect("serve");
    });
    ns.wait_port(9000);
    let check = |service: &str| {
        let handler = Handler::Grpc {
            port: 9000,
            service: service.into(),
        };
        probe(&ns, &handler, Duration::from_secs(2))
    };
    assert_outcome(&check(""), Verdict::Success, "service healthy");
    statuses.lock().unwrap()[0].1 = grpc_health::NOT_SERVING;
    assert_outcome(
        &check(""),
        Verdict::Failure,
        "service unhealthy (responded with \"NOT_SERVING\")",
    );
    assert_outcome(
        &check("api"),
        Verdict::Failure,
        "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service",
    );
    statuses
        .lock()
        .unwrap()
        .push(("api".into(), grpc_health::SERVING));
    assert_outcome(&check("api"), Verdict::Success, "service healthy");
    let _ = stop.send(());
    server.join().unwrap();
    assert_outcome(&check(""), Verdict::Failure, "error: failed to connect service at \"127.0.0.1:9000\": dial tcp 127.0.0.1:9000: connect: connection refused");
}

/// The exec scenario runs in a fresh copy of this test binary
/// (`exec_probe_driver`): forking and running Rust code in the child, as an
/// exec check does, is only sound from a single-threaded process, and the
/// test harness runs tests on many threads.
#[test]
fn exec_probe_runs_in_a_real_container() {
    let env = TestEnv::new("probe-exec");
    let id = env.id("probed");
    let config = env.config(&id, &["sh", "-c", "touch /tmp/ok; exec sleep 1000"]);
    let bundle = env.bundle(&id, &config);
    env.ok(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "probes::exec_probe_driver",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(
            "PEAPOD_PROBE_DRIVER",
            format!("{}\n{id}", env.state_dir().display()),
        )
        .output()
        .expect("run the driver");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    env.ok(&["delete", "--force", &id]);
    assert!(
        out.status.success() && text.contains("exec driver: done"),
        "driver failed:\n{text}"
    );
    env.finish();
}

#[test]
fn exec_probe_driver() {
    let Ok(setting) = std::env::var("PEAPOD_PROBE_DRIVER") else {
        return;
    };
    let (state, id) = setting.split_once('\n').expect("state dir and id");
    let runtime = peapod::oci::Runtime::new(Path::new(state), false).expect("runtime");
    let target = Target::here("127.0.0.1".parse().unwrap());
    let ctx = context(&target, Some(&runtime), id);
    let exec = |words: &[&str], timeout: u64| {
        let handler = Handler::Exec {
            command: words.iter().map(|w| w.to_string()).collect(),
        };
        run(Check::probe(
            &handler,
            &ctx,
            Duration::from_secs(timeout),
            Instant::now(),
        ))
    };
    let ok = exec(&["/bin/busybox", "test", "-f", "/tmp/ok"], 5);
    assert_eq!(
        (ok.verdict, ok.exit_code),
        (Verdict::Success, Some(0)),
        "{ok:?}"
    );
    let failed = exec(&["sh", "-c", "echo hello; echo oops >&2; exit 3"], 5);
    assert_eq!(
        (failed.verdict, failed.exit_code, failed.output.as_str()),
        (Verdict::Failure, Some(3), "hello\noops\n")
    );
    // The kubelet reads at most 10 KiB of output.
    let long = exec(
        &[
            "sh",
            "-c",
            "busybox head -c 20000 /dev/zero | busybox tr '\\0' a",
        ],
        5,
    );
    assert_eq!(
        (long.verdict, long.output.len()),
        (Verdict::Success, 10 * 1024)
    );
    // A timeout kills the command.
    let started = Instant::now();
    let slow = exec(&["sleep", "31"], 1);
    assert_outcome(
        &slow,
        Verdict::Failure,
        "command \"sleep 31\" timed out after 1s",
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let leftover = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x0031\x00"));
    assert!(!leftover, "the timed-out command still runs");
    // A container that is not there: the kubelet's "errored" (result thrown away).
    let gone = Context {
        container_id: "no-such-container",
        ..ctx
    };
    let outcome = run(Check::probe(
        &Handler::Exec {
            command: vec!["true".into()],
        },
        &gone,
        Duration::from_secs(2),
        Instant::now(),
    ));
    assert_eq!(outcome.verdict, Verdict::Error, "{outcome:?}");

    // A failing postStart-style exec hook, in the kubelet's words.
    let hook = Hook::Exec {
        command: vec!["sh".into(), "-c".into(), "echo no; exit 2".into()],
    };
    let outcome = run(Check::hook(&hook, &ctx, None, Instant::now()));
    let who = Subject {
        container: "probed",
        pod: "p_default(1)",
    };
    assert_eq!(
        hooks::result(&hook, &outcome, who),
        Err("Exec lifecycle hook ([sh -c echo no; exit 2]) for Container \"probed\" in Pod \"p_default(1)\" failed - error: command 'sh -c echo no; exit 2' exited with 2: , message: \"no\\n\"".into())
    );

    // The worker: a 1 s exec liveness probe fails once the file is gone.
    let test = ["/bin/busybox", "test", "-f", "/tmp/ok"];
    let health = liveness(
        Handler::Exec {
            command: test.iter().map(|w| w.to_string()).collect(),
        },
        1,
        1,
    );
    let mut prober = Prober::new([("probed", &health)]);
    let now = Instant::now();
    prober.started("probed", now, now, 0.0);
    let mut probes = 0;
    let healthy = drive(&mut prober, &ctx, Duration::from_secs(10), |e| {
        e.is_none() && count_to(&mut probes, 2)
    });
    assert_eq!(healthy, vec![]);
    assert_eq!(exec(&["rm", "/tmp/ok"], 5).verdict, Verdict::Success);
    let events = drive(&mut prober, &ctx, Duration::from_secs(10), |e| {
        matches!(e, Some(Event::Kill { .. }))
    });
    assert_eq!(
        events.last(),
        Some(&Event::Kill {
            container: "probed".into(),
            kind: ProbeKind::Liveness,
            message: "Container probed failed liveness probe".into(),
            grace: None,
        })
    );
    println!("exec driver: done");
}
