//! The runc-compatible verbs against real namespaces, cgroups and mounts.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[test]
fn lifecycle_create_start_state_kill_delete() {
    let env = TestEnv::new("lifecycle");
    let id = env.id("c");
    let bundle = env.bundle(&id, &env.config(&id, &["sleep", "1000"]));
    let pid_file = env.work.path().join("init.pid");
    env.ok(&[
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    let state = env.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(
        state["ociVersion"].as_str().unwrap().chars().next(),
        Some('1')
    );
    assert_eq!(state["bundle"], bundle.to_str().unwrap());
    let pid = state["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0 && is_alive(pid));
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    // The state folder is private, as runc's.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.state_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(!env.cgroup_dirs(&id).is_empty(), "container cgroup missing");

    // Before start, the init is still libcontainer's waiting process, not sleep.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_ne!(comm.trim(), "sleep");
    env.ok(&["start", &id]);
    assert_eq!(env.status(&id), "running");
    wait_until("init to exec sleep", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    env.fails(&["start", &id], "is running");
    env.fails(&["delete", &id], "cannot delete it without --force");

    // PID 1 of a pid namespace ignores signals it has no handler for: after TERM
    // the container is still running (and its state must say so), KILL ends it.
    env.ok(&["kill", &id, "TERM"]);
    assert_eq!(env.status(&id), "running");
    assert!(is_alive(pid));
    env.ok(&["kill", &id, "9"]);
    env.wait_status(&id, "stopped");
    assert_eq!(env.state(&id)["pid"], 0);
    env.fails(&["kill", &id, "KILL"], "is stopped");
    env.ok(&["delete", &id]);
    env.fails(&["state", &id], &format!("container does not exist: {id}"));
    assert!(env.cgroup_dirs(&id).is_empty());
    assert!(!is_alive(pid));
    env.finish();
}

#[test]
fn delete_of_created_and_force_delete_of_running() {
    let env = TestEnv::new("delete");
    let created = env.id("created");
    let bundle = env.bundle(&created, &env.config(&created, &["sleep", "1000"]));
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &created]);
    let pid = env.state(&created)["pid"].as_i64().unwrap() as i32;
    env.ok(&["delete", &created]);
    wait_until("created init to go", Duration::from_secs(5), || {
        !is_alive(pid)
    });

    let (running, pid) = env.start_sleeper("running");
    env.ok(&["delete", "--force", &running]);
    wait_until("running init to go", Duration::from_secs(5), || {
        !is_alive(pid)
    });
    // Deleting again with --force is fine (cleanup can be repeated), without it is not.
    env.ok(&["delete", "--force", &running]);
    env.fails(&["delete", &running], "container does not exist");
    env.finish();
}

#[test]
fn run_returns_the_container_exit_code() {
    let env = TestEnv::new("run-exit");
    let id = env.id("exit");
    let bundle = env.bundle(
        &id,
        &env.config(&id, &["sh", "-c", "echo out; echo err >&2; exit 42"]),
    );
    let out = env.peapod(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // Without a pid namespace of its own, sh is not PID 1 and can be killed by its own signal.
    let id = env.id("signal");
    let mut config = env.config(&id, &["sh", "-c", "kill -KILL $$"]);
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    let bundle = env.bundle(&id, &config);
    let out = env.peapod(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(128 + 9), "killed by SIGKILL is 137");
    env.finish();
}

#[test]
fn run_forwards_signals_to_the_container() {
    let env = TestEnv::new("run-signal");
    let id = env.id("trap");
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done";
    let bundle = env.bundle(&id, &env.config(&id, &["sh", "-c", script]));
    let mut child = env
        .cmd(&["run", "--bundle", bundle.to_str().unwrap(), &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "container ended before it was ready");
        seen.extend_from_slice(&buf[..n]);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    assert_eq!(status.code(), Some(7));
    assert!(String::from_utf8_lossy(&seen).contains("got-term"));
    env.finish();
}

#[test]
fn exec_runs_in_the_container_with_overrides() {
    let env = TestEnv::new("exec");
    let (id, pid) = env.start_sleeper("c");
    let out = env.peapod(&[
        "exec",
        "--env",
        "GREETING=hi",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        &id,
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -u):$(id -g) $(hostname); exit 5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi /tmp 1000:1000 peapod-test\n"
    );

    // The exec'd process is in the container's namespaces and cgroup.
    let exec_pid = env.exec_detached(&id, &["sleep", "1000"]);
    for ns in ["net", "ipc", "uts", "pid", "mnt"] {
        assert_eq!(ns_inode(exec_pid, ns), ns_inode(pid, ns), "{ns} namespace");
    }
    let pids: Vec<i32> = serde_json::from_str(&env.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&pid) && pids.contains(&exec_pid), "{pids:?}");
    let table = env.ok(&["ps", &id]);
    assert!(
        table.starts_with("UID") && table.contains("sleep 1000"),
        "{table}"
    );

    // A missing executable or working directory is an error naming it.
    env.fails(&["exec", &id, "/bin/nope"], "/bin/nope");
    env.fails(
        &["exec", "--cwd", "/nonexist", &id, "true"],
        "cwd /nonexist: no such directory",
    );
    env.ok(&["kill", "--all", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    env.fails(&["exec", &id, "true"], "is stopped");
    env.ok(&["delete", &id]);
    env.finish();
}

/// Receives the pty master from a console socket and reads until `needle` shows.
pub(crate) fn read_console(master: std::os::fd::OwnedFd, needle: &str) -> String {
    let mut file = std::fs::File::from(master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} on the tty: {seen:?}"
        );
        // Wait for output with the deadline: a blocking read would wait for
        // ever on a terminal whose process never writes the needle.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&file),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("poll the tty: {e}"),
        }
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn terminal_through_console_socket_for_create_and_exec() {
    let env = TestEnv::new("tty");
    let sock = env.work.path().join("console.sock");
    let listener = peapod::oci::console::ConsoleListener::bind(&sock).unwrap();

    let id = env.id("c");
    let mut config = env.config(&id, &["sh", "-c", "tty; echo init-tty-ok; sleep 1000"]);
    config["process"]["terminal"] = json!(true);
    let bundle = env.bundle(&id, &config);
    env.ok(&[
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]);
    let master = listener.receive_master().unwrap();
    assert!(nix::unistd::isatty(master.as_raw_fd()).unwrap());
    env.ok(&["start", &id]);
    let text = read_console(master, "init-tty-ok");
    assert!(text.contains("/dev/pts/"), "{text}");

    env.ok(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "tty; stty size; echo exec-tty-ok; sleep 1000",
    ]);
    let text = read_console(listener.receive_master().unwrap(), "exec-tty-ok");
    assert!(text.contains("/dev/pts/"), "{text}");

    // A terminal container without a console socket is refused, naming the field.
    let other = env.id("notty");
    let mut config = env.config(&other, &["true"]);
    config["process"]["terminal"] = json!(true);
    let bundle = env.bundle(&other, &config);
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &other],
        "process.terminal",
    );
    env.ok(&["delete", "--force", &id]);
    env.finish();
}

#[test]
fn run_in_foreground_proxies_a_terminal() {
    let env = TestEnv::new("run-tty");
    let id = env.id("c");
    let mut config = env.config(&id, &["sh", "-c", "tty; echo fg-tty-ok; exit 3"]);
    config["process"]["terminal"] = json!(true);
    let bundle = env.bundle(&id, &config);
    let out = env.peapod(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("/dev/pts/0") && text.contains("fg-tty-ok"),
        "{text}"
    );
    env.finish();
}

#[test]
fn list_pause_resume_update_events() {
    let env = TestEnv::new("ops");
    let (id, pid) = env.start_sleeper("c");
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["pid"], pid);
    assert_eq!(listed[0]["status"], "running");
    let table = env.ok(&["list"]);
    assert!(
        table.starts_with("ID") && table.contains(&id) && table.contains("running"),
        "{table}"
    );
    assert_eq!(env.ok(&["list", "-q"]).trim(), id);

    env.ok(&["pause", &id]);
    assert_eq!(env.status(&id), "paused");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let freezer = cgroup_mounts()
        .into_iter()
        .map(|m| m.join(&env.cgroup_parent).join(&id))
        .find_map(|d| {
            std::fs::read_to_string(d.join("freezer.state"))
                .or_else(|_| std::fs::read_to_string(d.join("cgroup.freeze")))
                .ok()
        })
        .expect("freezer file");
    assert!(
        matches!(freezer.trim(), "FROZEN" | "1"),
        "freezer {freezer:?}, stat {stat}"
    );
    env.fails(&["pause", &id], "is paused");
    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id), "running");

    env.ok(&["update", "--memory", "64m", "--pids-limit", "50", &id]);
    let dirs = env.cgroup_dirs(&id);
    let read = |names: &[&str]| {
        dirs.iter()
            .flat_map(|d| names.iter().map(move |n| d.join(n)))
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
    };
    assert_eq!(
        read(&["memory.limit_in_bytes", "memory.max"]).as_deref(),
        Some("67108864")
    );
    assert_eq!(read(&["pids.max"]).as_deref(), Some("50"));
    // Resources JSON on stdin, as containerd sends it.
    let mut child = env
        .cmd(&["update", "--resources", "-", &id])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids":{"limit":77}}"#)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(read(&["pids.max"]).as_deref(), Some("77"));
    env.fails(&["update", "--memory", "lots", &id], "invalid size");

    let event: serde_json::Value =
        serde_json::from_str(&env.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], id.as_str());
    assert!(
        event["data"]["pids"]["current"].as_u64().unwrap() >= 1,
        "{event}"
    );
    env.ok(&["delete", "--force", &id]);
    env.finish();
}

#[test]
fn config_settings_take_effect_inside() {
    let env = TestEnv::new("config");
    let id = env.id("c");
    let host_dir = env.work.path().join("shared");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("from-host"), "host-data").unwrap();
    let script = r#"
        echo hostname=$(hostname)
        echo env=$MY_VAR
        echo cwd=$(pwd)
        echo ids=$(id -u):$(id -g):$(id -G)
        echo capeff=$(grep CapEff /proc/self/status | cut -f2)
        echo capbnd=$(grep CapBnd /proc/self/status | cut -f2)
        echo nnp=$(grep NoNewPrivs /proc/self/status | cut -f2)
        echo nofile=$(ulimit -n)
        touch /rootfs-write 2>/dev/null && echo rootfs=rw || echo rootfs=ro
        [ -c /proc/timer_list ] && echo timer_list=masked || echo timer_list=visible
        echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo procsys=rw || echo procsys=ro
        echo bind=$(cat /mnt/shared/from-host)
        echo bindro=$(touch /mnt/shared/x 2>/dev/null && echo rw || echo ro)
        echo tmpfs=$(grep ' /data ' /proc/mounts | cut -d' ' -f3)
        echo lo=$(ip link show lo | grep -c 'UP')
        echo pid1=$$
    "#;
    let mut config = env.config(&id, &["sh", "-c", script]);
    config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("MY_VAR=from-config"));
    config["process"]["cwd"] = json!("/tmp");
    config["process"]["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [2000] });
    config["hostname"] = json!("configured-host");
    config["process"]["rlimits"] = json!([{ "type": "RLIMIT_NOFILE", "hard": 512, "soft": 256 }]);
    // Only CAP_KILL and CAP_NET_BIND_SERVICE, so the masks are known.
    let caps = json!(["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps, "inheritable": caps
    });
    let mounts = config["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({ "destination": "/mnt/shared", "type": "bind", "source": host_dir,
                        "options": ["rbind", "ro"] }),
    );
    mounts.push(json!({ "destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"] }));
    let bundle = env.bundle(&id, &config);
    let out = env.peapod(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .to_string()
    };
    assert_eq!(field("hostname"), "configured-host");
    assert_eq!(field("env"), "from-config");
    assert_eq!(field("cwd"), "/tmp");
    assert_eq!(field("ids"), "1000:1000:1000 2000");
    // CAP_KILL is bit 5, CAP_NET_BIND_SERVICE bit 10.
    let mask = format!("{:016x}", (1u64 << 5) | (1 << 10));
    assert_eq!(
        field("capeff"),
        mask,
        "ambient caps keep effective for uid 1000"
    );
    assert_eq!(field("capbnd"), mask);
    assert_eq!(field("nnp"), "1");
    assert_eq!(field("nofile"), "256");
    assert_eq!(field("rootfs"), "ro");
    assert!(
        Path::new("/proc/timer_list").is_file(),
        "host has /proc/timer_list"
    );
    assert_eq!(
        field("timer_list"),
        "masked",
        "masked path is /dev/null inside"
    );
    assert_eq!(field("procsys"), "ro");
    assert_eq!(field("bind"), "host-data");
    assert_eq!(field("bindro"), "ro");
    assert_eq!(field("tmpfs"), "tmpfs");
    assert_eq!(field("lo"), "1", "lo must be up in a new network namespace");
    assert_eq!(field("pid1"), "1", "own pid namespace");
    assert!(!host_dir.join("x").exists());
    env.finish();
}

#[test]
fn seccomp_from_the_spec_is_enforced() {
    let env = TestEnv::new("seccomp");
    let id = env.id("c");
    let mut config = env.config(
        &id,
        &["sh", "-c", "mkdir /tmp/d && echo made || echo denied"],
    );
    config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }]
    });
    let bundle = env.bundle(&id, &config);
    let out = env.peapod(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "denied");
    env.finish();
}

#[test]
fn joining_namespaces_by_path() {
    let env = TestEnv::new("join");
    let (sandbox, sandbox_pid) = env.start_sleeper("sandbox");
    let id = env.id("member");
    let mut config = env.config(&id, &["sleep", "1000"]);
    config["linux"]["namespaces"] = json!([
        { "type": "pid" }, { "type": "mount" },
        { "type": "network", "path": format!("/proc/{sandbox_pid}/ns/net") },
        { "type": "ipc", "path": format!("/proc/{sandbox_pid}/ns/ipc") },
        { "type": "uts", "path": format!("/proc/{sandbox_pid}/ns/uts") }
    ]);
    // The joined uts namespace keeps the sandbox's hostname; a hostname here would
    // rename the sandbox, so pods leave it out.
    config.as_object_mut().unwrap().remove("hostname");
    let bundle = env.bundle(&id, &config);
    env.ok(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.state(&id)["pid"].as_i64().unwrap() as i32;
    for ns in ["net", "ipc", "uts"] {
        assert_eq!(ns_inode(pid, ns), ns_inode(sandbox_pid, ns), "{ns} shared");
    }
    for ns in ["pid", "mnt"] {
        assert_ne!(ns_inode(pid, ns), ns_inode(sandbox_pid, ns), "{ns} private");
    }
    let out = env.ok(&["exec", &id, "hostname"]);
    assert_eq!(out.trim(), "peapod-test");
    // Loopback is shared: the member sees the sandbox's lo, already up.
    let out = env.ok(&["exec", &id, "sh", "-c", "ip link show lo | grep -c UP"]);
    assert_eq!(out.trim(), "1");
    env.ok(&["delete", "--force", &id]);
    env.ok(&["delete", "--force", &sandbox]);
    env.finish();
}

#[test]
fn bad_input_is_named_and_leaves_nothing() {
    let env = TestEnv::new("bad");
    let id = env.id("c");
    // Bundle folder that does not exist.
    env.fails(
        &["create", "--bundle", "/nonexistent/peapod", &id],
        "bundle /nonexistent/peapod: no such directory",
    );
    // No config.json.
    let empty = env.work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    env.fails(
        &["create", "--bundle", empty.to_str().unwrap(), &id],
        "config.json: no such file",
    );
    // Malformed config.json.
    let broken = env.work.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": [}",
    )
    .unwrap();
    env.fails(
        &["create", "--bundle", broken.to_str().unwrap(), &id],
        "config.json: invalid config",
    );
    // Missing executable: refused at create, and everything undone.
    let bundle = env.bundle(&id, &env.config(&id, &["/bin/not-there"]));
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &id],
        "/bin/not-there",
    );
    env.fails(
        &["run", "--bundle", bundle.to_str().unwrap(), &id],
        "/bin/not-there",
    );
    assert!(env.cgroup_dirs(&id).is_empty());
    // Unknown ids.
    for verb in ["state", "start", "pause", "resume", "delete"] {
        env.fails(
            &[verb, "no-such-container"],
            "container does not exist: no-such-container",
        );
    }
    env.fails(
        &["kill", "no-such-container", "TERM"],
        "container does not exist",
    );
    env.fails(
        &["exec", "no-such-container", "true"],
        "container does not exist",
    );
    env.fails(&["state", "../escape"], "invalid container id");
    // Duplicate id and invalid signal on a live container.
    let (live, _) = env.start_sleeper("live");
    let bundle = env.bundle(&live, &env.config(&live, &["true"]));
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &live],
        &format!("container with id exists: {live}"),
    );
    env.fails(&["kill", &live, "SIGNOPE"], "invalid signal: SIGNOPE");
    env.fails(&["kill", &live, "99"], "invalid signal: 99");
    assert_eq!(env.status(&live), "running");
    env.ok(&["delete", "--force", &live]);
    env.finish();
}

#[test]
fn spec_and_features() {
    let env = TestEnv::new("spec");
    let dir = env.work.path().join("new-bundle");
    std::fs::create_dir(&dir).unwrap();
    env.ok(&["spec", "--bundle", dir.to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], json!(["sh"]));
    assert_eq!(spec["process"]["terminal"], json!(true));
    assert!(spec["linux"]["maskedPaths"].as_array().unwrap().len() > 3);
    env.fails(&["spec", "--bundle", dir.to_str().unwrap()], "file exists");
    let features: serde_json::Value = serde_json::from_str(&env.ok(&["features"])).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert!(features["linux"]["seccomp"]["enabled"].as_bool().unwrap());
    env.finish();
}

#[test]
fn json_log_carries_the_error_for_containerd() {
    let env = TestEnv::new("log");
    let log = env.work.path().join("log.json");
    let out = env.peapod(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "missing-one",
    ]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert_eq!(last["msg"], "container does not exist: missing-one");
    assert!(last["time"].as_str().unwrap().contains('T'));
    env.finish();
}

#[test]
fn bundle_without_cgroups_path_and_tmpcopyup_mounts() {
    let env = TestEnv::new("adjust");
    let id = env.id("c");
    let mut config = env.config(
        &id,
        &[
            "sh",
            "-c",
            "cat /etc/passwd | head -1; ls -ld /etc | cut -c1-10; sleep 1000",
        ],
    );
    config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("cgroupsPath");
    // /etc as a fresh tmpfs, filled from the image (podman's --read-only does this).
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/etc", "type": "tmpfs", "source": "tmpfs",
        "options": ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]
    }));
    let bundle = env.bundle(&id, &config);
    let log = env.work.path().join("out.log");
    let out = std::fs::File::create(&log).unwrap();
    let status = env
        .cmd(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id])
        .stdout(out)
        .status()
        .unwrap();
    assert!(status.success());
    // The user's bundle is reported, not peapod's adjusted copy.
    assert_eq!(env.state(&id)["bundle"], bundle.to_str().unwrap());
    wait_until("output", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 2)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("root:x:0:0"), "{text}");
    assert!(text.contains("drwxr-xr-x"), "{text}");
    let mounts: Vec<_> = cgroup_mounts()
        .into_iter()
        .map(|m| m.join("peapod").join(&id))
        .collect();
    assert!(
        mounts.iter().any(|p| p.exists()),
        "default cgroup /peapod/{id} missing"
    );
    // tmpfs writes stay inside: the host rootfs is untouched.
    env.ok(&["exec", &id, "sh", "-c", "echo x > /etc/new-file"]);
    assert!(!busybox_rootfs().join("etc/new-file").exists());
    env.ok(&["delete", "--force", &id]);
    assert!(mounts.iter().all(|p| !p.exists()), "cgroup left");
    // The default parent goes with its last container (another test's may
    // still be in it).
    for m in cgroup_mounts() {
        let parent = m.join("peapod");
        let empty = std::fs::read_dir(&parent)
            .map(|entries| !entries.flatten().any(|e| e.path().is_dir()))
            .unwrap_or(false);
        assert!(
            !empty,
            "empty default cgroup parent {} left",
            parent.display()
        );
    }
    env.finish();
}

/// The lines of /proc/PID/status that say how a process is confined.
fn confinement(pid: i32) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let keys = [
        "Uid:",
        "Gid:",
        "Groups:",
        "CapInh:",
        "CapPrm:",
        "CapEff:",
        "CapBnd:",
        "CapAmb:",
        "NoNewPrivs:",
        "Seccomp:",
        "Seccomp_filters:",
    ];
    let mut lines: Vec<String> = status
        .lines()
        .filter(|l| keys.iter().any(|k| l.starts_with(k)))
        .map(String::from)
        .collect();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    lines.extend(
        limits
            .lines()
            .filter(|l| l.starts_with("Max open files") || l.starts_with("Max processes"))
            .map(String::from),
    );
    lines.push(std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap());
    lines
}

/// An exec'd process is confined exactly as the container's own process:
/// seccomp filter (loaded before the capability drop without no_new_privs, last
/// with it), no_new_privs, every capability set, rlimits, user and groups, cgroups.
#[test]
fn exec_inherits_the_containers_confinement() {
    let env = TestEnv::new("exec-confined");
    for nnp in [true, false] {
        let id = env.id(if nnp { "nnp" } else { "privs" });
        let mut config = env.config(&id, &["sleep", "1000"]);
        let caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"];
        config["process"]["noNewPrivileges"] = json!(nnp);
        config["process"]["user"] =
            json!({ "uid": 1000, "gid": 1000, "additionalGids": [2000, 3000] });
        config["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps,
            "ambient": ["CAP_NET_BIND_SERVICE"]
        });
        config["process"]["rlimits"] = json!([
            { "type": "RLIMIT_NOFILE", "hard": 512, "soft": 256 },
            { "type": "RLIMIT_NPROC", "hard": 4000, "soft": 3000 }
        ]);
        config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }]
        });
        let bundle = env.bundle(&id, &config);
        env.ok(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
        let init = env.state(&id)["pid"].as_i64().unwrap() as i32;
        let init_view = confinement(init);
        assert!(
            init_view.iter().any(|l| l == "Seccomp:\t2"),
            "{init_view:?}"
        );

        let exec_pid = env.exec_detached(&id, &["sleep", "1000"]);
        assert_eq!(confinement(exec_pid), init_view, "no_new_privs {nnp}");

        // The filter really applies to what exec runs.
        let out = env.ok(&[
            "exec",
            &id,
            "sh",
            "-c",
            "mkdir /tmp/d && echo made || echo denied; grep Seccomp: /proc/self/status",
        ]);
        assert_eq!(out, "denied\nSeccomp:\t2\n", "no_new_privs {nnp}");
        env.ok(&["delete", "--force", &id]);
    }
    env.finish();
}
