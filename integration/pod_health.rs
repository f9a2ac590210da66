//! Pods that look after themselves, for real: probes of every kind passing
//! and failing, liveness restarts with back-off, readiness and READY,
//! startup gating, lifecycle hooks, activeDeadlineSeconds, a sandbox that
//! dies and is replaced, and bounded logs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::pod::PodEnv;

const HEAD: &str = "apiVersion: v1\nkind: Pod\n";

fn container<'a>(status: &'a Value, name: &str) -> &'a Value {
    PodEnv::container(status, name)
}

/// A container's status, if the pod has published one yet.
fn try_container<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .filter_map(|list| status["status"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
}

fn restarts(env: &PodEnv, pod: &str, c: &str) -> i64 {
    container(&env.inspect(pod), c)["restartCount"]
        .as_i64()
        .unwrap()
}

fn condition(status: &Value, kind: &str) -> String {
    status["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .map(|c| c["status"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// `pod ps`'s READY column for the pod.
fn ps_ready(env: &PodEnv, pod: &str) -> String {
    let out = env.ok(&["pod", "ps"]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(pod))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_default()
        .to_string()
}

fn describe(env: &PodEnv, pod: &str) -> String {
    env.ok(&["pod", "describe", pod])
}

fn uid(status: &Value) -> String {
    status["metadata"]["uid"].as_str().unwrap().to_string()
}

/// Starts `pod run -d` without waiting for it (a pod held Pending on purpose).
fn run_in_background(env: &PodEnv, name: &str, yaml: &str) -> std::process::Child {
    let path = env.manifest(name, yaml);
    env.cmd(&["pod", "run", "-d", "-f", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_pod_exists(env: &PodEnv, name: &str) {
    wait_until(&format!("pod {name}"), Duration::from_secs(20), || {
        env.peapod(&["pod", "inspect", name, "-o", "json"])
            .status
            .success()
    });
}

#[test]
fn http_liveness_failures_restart_the_container_with_back_off_and_say_why() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"{HEAD}metadata: {{name: live}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    command:
    - sh
    - -c
    - |
      mkdir -p /www/cgi-bin
      cat > /www/cgi-bin/health <<'EOF'
      #!/bin/sh
      if [ -e /tmp/broken ]; then printf 'HTTP/1.0 500 Oops\r\n\r\nbroken\n'; else printf 'HTTP/1.0 200 OK\r\n\r\nok\n'; fi
      EOF
      chmod +x /www/cgi-bin/health
      (sleep 2; touch /tmp/broken) &
      exec httpd -f -p 8080 -h /www
    # Liveness only once httpd listens: a probe before that is refused, and
    # the test wants the failure that the 500 gives.
    startupProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
      failureThreshold: 60
    livenessProbe:
      httpGet: {{port: 8080, path: /cgi-bin/health}}
      periodSeconds: 1
      failureThreshold: 1
"#
    );
    env.run("live", &yaml);
    wait_until("two liveness restarts", Duration::from_secs(60), || {
        restarts(&env, "live", "web") >= 2
    });
    let status = env.inspect("live");
    let web = container(&status, "web");
    let last = &web["lastState"]["terminated"];
    assert!(
        [137, 143].contains(&last["exitCode"].as_i64().unwrap()),
        "{web}"
    );
    let text = describe(&env, "live");
    for want in [
        "Liveness probe failed: HTTP probe failed with statuscode: 500",
        "Container web failed liveness probe, will be restarted",
        "Back-off restarting failed container web in pod live_default(",
        "Started container web",
        "Liveness:       http-get http://:8080/cgi-bin/health delay=0s timeout=1s period=1s #success=1 #failure=1",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    env.finish();
}

#[test]
fn readiness_of_exec_and_tcp_probes_flips_ready_and_the_ready_column_both_ways() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"{HEAD}metadata: {{name: ready}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
    readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1}}
  - name: tcp
    image: busybox
    command: [sh, -c, "nc -ll -p 7000 -e /bin/true & echo $! > /tmp/nc.pid; exec sleep 1000"]
    readinessProbe: {{tcpSocket: {{port: 7000}}, periodSeconds: 1}}
"#
    );
    env.run("ready", &yaml);
    let wait_ready = |app: bool, tcp: bool, column: &str| {
        wait_until(
            &format!("app ready {app}, tcp ready {tcp}"),
            Duration::from_secs(20),
            || {
                let s = env.inspect("ready");
                container(&s, "app")["ready"] == app
                    && container(&s, "tcp")["ready"] == tcp
                    && condition(&s, "Ready") == if app && tcp { "True" } else { "False" }
                    && ps_ready(&env, "ready") == column
            },
        );
    };
    wait_ready(false, true, "1/2");
    env.exec_ok("ready", "app", &["touch", "/tmp/ready"]);
    wait_ready(true, true, "2/2");
    assert_eq!(condition(&env.inspect("ready"), "ContainersReady"), "True");
    env.exec_ok("ready", "tcp", &["sh", "-c", "kill $(cat /tmp/nc.pid)"]);
    wait_ready(true, false, "1/2");
    env.exec_ok("ready", "app", &["rm", "/tmp/ready"]);
    wait_ready(false, false, "0/2");
    let text = describe(&env, "ready");
    assert!(
        text.contains(
            "Readiness probe failed: dial tcp 127.0.0.1:7000: connect: connection refused"
        ),
        "{text}"
    );
    assert_eq!(restarts(&env, "ready", "tcp"), 0);
    env.finish();
}

#[test]
fn a_startup_probe_holds_liveness_back_until_it_passes() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"{HEAD}metadata: {{name: slow}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
    startupProbe: {{exec: {{command: [cat, /tmp/started]}}, periodSeconds: 1, failureThreshold: 60}}
    livenessProbe: {{exec: {{command: ["false"]}}, periodSeconds: 1, failureThreshold: 1}}
"#
    );
    env.run("slow", &yaml);
    // For three periods the failing liveness probe does not run.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        let s = env.inspect("slow");
        let app = container(&s, "app");
        assert_eq!(app["restartCount"], 0, "{app}");
        assert_eq!(app["started"], false, "{app}");
        std::thread::sleep(Duration::from_millis(200));
    }
    env.exec_ok("slow", "app", &["touch", "/tmp/started"]);
    wait_until("the liveness kill", Duration::from_secs(20), || {
        restarts(&env, "slow", "app") >= 1
    });
    assert!(describe(&env, "slow").contains("Container app failed liveness probe"));
    env.finish();
}

#[test]
fn a_sidecars_startup_probe_holds_the_next_init_container() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"{HEAD}metadata: {{name: gate}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: side
    image: busybox
    restartPolicy: Always
    command: [sleep, "1000"]
    startupProbe: {{exec: {{command: [cat, /tmp/up]}}, periodSeconds: 1, failureThreshold: 60}}
  - name: init
    image: busybox
    command: ["true"]
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
"#
    );
    let mut run = run_in_background(&env, "gate", &yaml);
    wait_pod_exists(&env, "gate");
    wait_until("the sidecar running", Duration::from_secs(20), || {
        try_container(&env.inspect("gate"), "side")
            .is_some_and(|c| c["state"]["running"].is_object())
    });
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let s = env.inspect("gate");
        assert_eq!(
            container(&s, "init")["state"]["waiting"]["reason"],
            "PodInitializing",
            "{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    env.exec_ok("gate", "side", &["touch", "/tmp/up"]);
    env.wait_phase("gate", "Running", false);
    let s = env.inspect("gate");
    assert_eq!(container(&s, "init")["state"]["terminated"]["exitCode"], 0);
    assert_eq!(container(&s, "side")["started"], true);
    assert!(run.wait().unwrap().success());
    env.finish();
}

#[test]
fn post_start_runs_before_the_next_container_and_its_failure_kills_and_restarts() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"{HEAD}metadata: {{name: hooks}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: shared, emptyDir: {{}}}}]
  initContainers:
  - name: side
    image: busybox
    restartPolicy: Always
    command: [sleep, "1000"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
    lifecycle: {{postStart: {{exec: {{command: [sh, -c, "sleep 1; echo hook-done > /shared/hook"]}}}}}}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "cat /shared/hook > /shared/seen 2>&1; exec sleep 1000"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  - name: bad
    image: busybox
    command: [sleep, "1000"]
    lifecycle: {{postStart: {{exec: {{command: [sh, -c, "echo nope; exit 3"]}}}}}}
"#
    );
    let status = env.run("hooks", &yaml);
    let seen = env.pod_dir(&uid(&status)).join("volumes/shared/seen");
    wait_until("app to start", Duration::from_secs(20), || seen.exists());
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "hook-done\n");
    wait_until("bad restarted", Duration::from_secs(30), || {
        restarts(&env, "hooks", "bad") >= 1
    });
    let text = describe(&env, "hooks");
    for want in [
        "FailedPostStartHook  ",
        "PostStartHook failed",
        "Killing",
        "FailedPostStartHook\n",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    env.finish();
}

#[test]
fn pre_stop_runs_within_the_grace_period_before_the_stop_signal() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"{HEAD}metadata: {{name: prestop}}
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{{name: shared, emptyDir: {{}}}}]
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "trap 'echo term >> /shared/order; exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, "echo prestop >> /shared/order; sleep 1; echo prestop-end >> /shared/order"]}}}}
"#
    );
    let status = env.run("prestop", &yaml);
    let started = Instant::now();
    env.ok(&["pod", "stop", "prestop"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let order = env.pod_dir(&uid(&status)).join("volumes/shared/order");
    assert_eq!(
        std::fs::read_to_string(order).unwrap(),
        "prestop\nprestop-end\nterm\n"
    );
    let s = env.inspect("prestop");
    assert_eq!(container(&s, "app")["state"]["terminated"]["exitCode"], 0);
    env.finish();
}

#[test]
fn active_deadline_stops_the_pod_and_fails_it() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"{HEAD}metadata: {{name: deadline}}
spec:
  activeDeadlineSeconds: 2
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#
    );
    let started = Instant::now();
    env.run("deadline", &yaml);
    let s = env.wait_phase("deadline", "Failed", true);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(s["status"]["reason"], "DeadlineExceeded", "{s}");
    assert_eq!(
        s["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    let text = describe(&env, "deadline");
    assert!(text.contains("Normal   DeadlineExceeded"), "{text}");
    assert!(
        text.contains("Reason:           DeadlineExceeded"),
        "{text}"
    );
    env.finish();
}

#[test]
fn a_killed_sandbox_is_replaced_and_the_pod_starts_again_in_it() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"{HEAD}metadata: {{name: phoenix}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {{name: init, image: busybox, command: ["true"]}}
  containers:
  - {{name: app, image: busybox, command: [sleep, "1000"]}}
"#
    );
    let status = env.run("phoenix", &yaml);
    let uid = uid(&status);
    let old = env.status_file(&uid);
    let old_sandbox = old["sandbox_pid"].as_i64().unwrap() as i32;
    let old_app = old["pids"]["app"].as_i64().unwrap() as i32;
    let old_net = ns_inode(old_sandbox, "net");
    // Held open so that the old namespace lives on and the kernel cannot give
    // its inode number to the new one (numbers of freed namespaces are reused).
    let old_net_handle = std::fs::File::open(format!("/proc/{old_sandbox}/ns/net")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_sandbox),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("a new sandbox and app", Duration::from_secs(30), || {
        let f = env.status_file(&uid);
        let s = env.inspect("phoenix");
        f["sandbox_pid"]
            .as_i64()
            .is_some_and(|p| p as i32 != old_sandbox)
            && f["pids"]["app"]
                .as_i64()
                .is_some_and(|p| p as i32 != old_app)
            && container(&s, "app")["state"]["running"].is_object()
    });
    let f = env.status_file(&uid);
    let sandbox = f["sandbox_pid"].as_i64().unwrap() as i32;
    let app = f["pids"]["app"].as_i64().unwrap() as i32;
    assert_ne!(ns_inode(sandbox, "net"), old_net);
    assert_eq!(ns_inode(app, "net"), ns_inode(sandbox, "net"));
    assert!(!is_alive(old_sandbox) && !is_alive(old_app));
    let s = env.inspect("phoenix");
    assert_eq!(container(&s, "app")["restartCount"], 1, "{s}");
    assert_eq!(container(&s, "init")["restartCount"], 1, "{s}");
    assert_eq!(s["status"]["phase"], "Running");
    // Nothing of the old sandbox is left: one sandbox in the runtime's state,
    // and no process in the old network namespace.
    let state: Vec<String> = std::fs::read_dir(env.pod_dir(&uid).join("oci"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(state.iter().filter(|n| *n == "_sandbox").count(), 1);
    let in_old_net = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_link(e.path().join("ns/net"))
                .is_ok_and(|l| l.to_string_lossy() == old_net)
        })
        .count();
    assert_eq!(
        in_old_net, 0,
        "processes left in the old sandbox's network namespace"
    );
    drop(old_net_handle);
    let text = describe(&env, "phoenix");
    assert!(
        text.contains("Pod sandbox changed, it will be killed and re-created."),
        "{text}"
    );
    env.finish();
}

#[test]
fn fifty_mib_of_output_stays_within_the_log_bound_and_tail_reads_the_newest_lines() {
    let env = PodEnv::new();
    let pad = "x".repeat(120);
    let yaml = format!(
        r#"{HEAD}metadata: {{name: chatty}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: chatty
    image: busybox
    command: [sh, -c, "seq 1 400000 | sed 's/$/ {pad}/'; exec sleep 1000"]
"#
    );
    let path = env.manifest("chatty", &yaml);
    let out = output_of(
        env.cmd(&["pod", "run", "-d", "-f", path.to_str().unwrap()])
            .env("PEAPOD_CONTAINER_LOG_MAX_SIZE", "1Mi")
            .env("PEAPOD_CONTAINER_LOG_MAX_FILES", "3"),
    );
    assert!(out.status.success(), "{out:?}");
    let last = format!("400000 {pad}\n");
    wait_until("all the output logged", Duration::from_secs(120), || {
        env.ok(&["pod", "logs", "chatty", "--tail", "1"]) == last
    });
    let uid = uid(&env.inspect("chatty"));
    let dir = env.pod_dir(&uid).join("logs/chatty");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(files.len() <= 3, "{files:?}");
    assert!(total <= 3 << 20, "{total} bytes in {files:?}");
    let tail = env.ok(&["pod", "logs", "chatty", "--tail", "3"]);
    let want: String = (399_998..=400_000)
        .map(|i| format!("{i} {pad}\n"))
        .collect();
    assert_eq!(tail, want);
    let limited = env.ok(&["pod", "logs", "chatty", "--tail", "2", "--limit-bytes", "6"]);
    assert_eq!(limited, "399999");
    let stamped = env.ok(&["pod", "logs", "chatty", "--tail", "1", "--timestamps"]);
    assert!(
        stamped.ends_with(&last) && stamped.starts_with("20"),
        "{stamped}"
    );
    env.finish();
}

#[test]
fn probes_that_cannot_run_are_refused_at_admission_or_reported_as_events() {
    let env = PodEnv::new();
    let bad = format!(
        "{HEAD}metadata: {{name: bad}}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    livenessProbe: {{httpGet: {{port: web}}}}\n"
    );
    let path = env.manifest("bad", &bad);
    let out = env.peapod(&["pod", "run", "-d", "-f", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.containers[0].livenessProbe.httpGet.port: port name \"web\" is not declared in the container's ports"),
        "{stderr}"
    );
    let yaml = format!(
        r#"{HEAD}metadata: {{name: nocmd}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sleep, "1000"]
    livenessProbe: {{exec: {{command: [/no/such/command]}}, periodSeconds: 1, failureThreshold: 1}}
"#
    );
    env.run("nocmd", &yaml);
    wait_until("the probe's event", Duration::from_secs(20), || {
        describe(&env, "nocmd").contains("Liveness probe")
    });
    let text = describe(&env, "nocmd");
    assert!(text.contains("/no/such/command"), "{text}");
    env.finish();
}

/// A test image holding examples/grpc_health (built if missing) and the
/// libraries it links, made with scripts/lib/mkimage.py.
fn grpc_health_image(env: &PodEnv) {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let binary = profile_dir.join("examples/grpc_health");
    if !binary.exists() {
        let target = profile_dir.parent().unwrap();
        let built = Command::new(env!("CARGO"))
            .args(["build", "--example", "grpc_health"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(built.success(), "cargo build --example grpc_health");
    }
    let rootfs = env.work.path().join("grpc-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy(&binary, rootfs.join("grpc_health")).unwrap();
    let ldd = Command::new("ldd").arg(&binary).output().unwrap();
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            let to = rootfs.join(word.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(word, &to).unwrap();
        }
    }
    let tar = env.work.path().join("grpc-health.tar");
    let made = Command::new("python3")
        .arg(repo().join("scripts/lib/mkimage.py"))
        .arg("--rootfs")
        .arg(&rootfs)
        .args(["--name", "localhost/grpc-health:latest"])
        .args(["--entrypoint", "[\"/grpc_health\"]"])
        .arg("--output")
        .arg(&tar)
        .status()
        .unwrap();
    assert!(made.success(), "mkimage.py");
    env.ok(&["image", "import", tar.to_str().unwrap()]);
}

#[test]
fn grpc_liveness_follows_a_real_grpc_health_server() {
    let env = PodEnv::new();
    grpc_health_image(&env);
    let status_dir = env.work.path().join("grpc-status");
    std::fs::create_dir_all(&status_dir).unwrap();
    let status_file = status_dir.join("status");
    std::fs::write(&status_file, "=SERVING\n").unwrap();
    let yaml = format!(
        r#"{HEAD}metadata: {{name: grpc}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: status, hostPath: {{path: {dir}}}}}]
  containers:
  - name: server
    image: localhost/grpc-health:latest
    args: ["127.0.0.1:9000", /status/status]
    volumeMounts: [{{name: status, mountPath: /status}}]
    livenessProbe: {{grpc: {{port: 9000}}, initialDelaySeconds: 2, periodSeconds: 1, failureThreshold: 2}}
    readinessProbe: {{grpc: {{port: 9000}}, periodSeconds: 1}}
"#,
        dir = status_dir.display()
    );
    env.run("grpc", &yaml);
    wait_until("the server ready", Duration::from_secs(20), || {
        container(&env.inspect("grpc"), "server")["ready"] == true
    });
    // Passing: three liveness periods without a restart.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(restarts(&env, "grpc", "server"), 0);
    assert_eq!(container(&env.inspect("grpc"), "server")["ready"], true);
    std::fs::write(&status_file, "=NOT_SERVING\n").unwrap();
    wait_until("the liveness kill", Duration::from_secs(20), || {
        restarts(&env, "grpc", "server") >= 1
    });
    let text = describe(&env, "grpc");
    assert!(
        text.contains("service unhealthy (responded with \"NOT_SERVING\")"),
        "{text}"
    );
    env.finish();
}
