//! Behaving as runc wherever runc is expected: each test checks peapod against
//! runc's behaviour on the same bundle (runc is installed by scripts/setup).

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// runc with a private state folder under the test's work folder.
pub(crate) fn runc(env: &TestEnv, args: &[&str]) -> Output {
    let mut cmd = Command::new("runc");
    cmd.arg("--root")
        .arg(env.work.path().join("runc-state"))
        .args(args)
        .stdin(std::process::Stdio::null());
    output_of(&mut cmd)
}

/// A bundle for `id` running `args`, usable by both runtimes.
pub(crate) fn bundle(env: &TestEnv, id: &str, args: &[&str]) -> String {
    let config = env.config(id, args);
    env.bundle(id, &config).to_str().unwrap().to_string()
}

pub(crate) fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// runc's `kill ID 0` asks whether the container is alive and sends nothing.
#[test]
fn kill_with_signal_zero_probes() {
    let env = TestEnv::new("kill0");
    let id = env.id("c");
    let b = bundle(&env, &id, &["sleep", "1000"]);
    env.ok(&["run", "--detach", "--bundle", &b, &id]);
    let runc_id = env.id("runc");
    let rb = bundle(&env, &runc_id, &["sleep", "1000"]);
    assert_eq!(
        code(&runc(&env, &["run", "--detach", "--bundle", &rb, &runc_id])),
        0
    );

    for all in [false, true] {
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id.as_str(), "0"]);
        env.ok(&args);
        let mut rargs = vec!["kill"];
        if all {
            rargs.push("--all");
        }
        rargs.extend([runc_id.as_str(), "0"]);
        assert_eq!(code(&runc(&env, &rargs)), 0, "runc {rargs:?}");
    }
    // Nothing was sent: the container still runs.
    assert_eq!(env.status(&id), "running");

    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    env.fails(&["kill", &id, "0"], "is stopped");
    assert_eq!(code(&runc(&env, &["kill", &runc_id, "KILL"])), 0);
    wait_until("runc's container to stop", Duration::from_secs(10), || {
        String::from_utf8_lossy(&runc(&env, &["state", &runc_id]).stdout).contains("stopped")
    });
    assert_ne!(code(&runc(&env, &["kill", &runc_id, "0"])), 0);

    env.ok(&["delete", &id]);
    runc(&env, &["delete", "--force", &runc_id]);
    env.finish();
}

/// exec works in a created (not yet started) container, as runc's does; in a
/// paused one it is refused unless --ignore-paused, and then the process waits
/// in the frozen cgroup until the container is resumed.
#[test]
fn exec_in_created_and_paused_containers() {
    let env = TestEnv::new("exec-states");
    let id = env.id("c");
    let b = bundle(&env, &id, &["sleep", "1000"]);
    env.ok(&["create", "--bundle", &b, &id]);
    assert_eq!(env.status(&id), "created");
    assert_eq!(env.ok(&["exec", &id, "echo", "in-created"]), "in-created\n");
    let runc_id = env.id("runc");
    let rb = bundle(&env, &runc_id, &["sleep", "1000"]);
    assert_eq!(code(&runc(&env, &["create", "--bundle", &rb, &runc_id])), 0);
    let out = runc(&env, &["exec", &runc_id, "echo", "in-created"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in-created\n");
    runc(&env, &["delete", "--force", &runc_id]);
    // The container's own process is still waiting for start.
    assert_eq!(env.status(&id), "created");

    env.ok(&["start", &id]);
    env.ok(&["pause", &id]);
    env.fails(&["exec", &id, "true"], "paused");
    let pid = env.exec_detached_with(&id, &["--ignore-paused"], &["sh", "-c", "exec sleep 999"]);
    let state = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s[s.rfind(')').unwrap() + 2..].chars().next().unwrap())
            .unwrap_or('?')
    };
    // Frozen before it could exec: still peapod's child, not yet `sleep`.
    let comm = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_ne!(comm(pid).trim(), "sleep");
    env.ok(&["resume", &id]);
    wait_until(
        "the exec'd process to run once resumed",
        Duration::from_secs(10),
        || comm(pid).trim() == "sleep" && state(pid) != 'D',
    );
    env.ok(&["delete", "--force", &id]);
    env.finish();
}

/// A pid file that cannot be written fails exec before the process runs (runc
/// exits 255 there).
#[test]
fn exec_pid_file_in_a_missing_folder_fails_first() {
    let env = TestEnv::new("exec-pidfile");
    let (id, _) = env.start_sleeper("c");
    let out = env.peapod(&[
        "exec",
        "--pid-file",
        "/no/such/dir/pid",
        &id,
        "sh",
        "-c",
        "echo ran > /tmp/ran",
    ]);
    assert!(!out.status.success(), "exec with a bad pid file succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/no/such/dir/pid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = env.peapod(&["exec", &id, "cat", "/tmp/ran"]);
    assert!(
        !seen.status.success(),
        "the process ran: {}",
        String::from_utf8_lossy(&seen.stdout)
    );

    let runc_id = env.id("runc");
    let rb = bundle(&env, &runc_id, &["sleep", "1000"]);
    assert_eq!(
        code(&runc(&env, &["run", "--detach", "--bundle", &rb, &runc_id])),
        0
    );
    let out = runc(
        &env,
        &["exec", "--pid-file", "/no/such/dir/pid", &runc_id, "true"],
    );
    assert_ne!(code(&out), 0, "runc accepts a pid file in a missing folder");
    runc(&env, &["delete", "--force", &runc_id]);

    env.ok(&["delete", "--force", &id]);
    env.finish();
}

/// --debug gives debug lines on stderr, or in --log as text or json; without
/// it there are none.
#[test]
fn debug_flag_gives_debug_lines() {
    let env = TestEnv::new("debug");
    let (id, _) = env.start_sleeper("c");
    let out = env.peapod(&["--debug", "kill", &id, "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.contains("level=debug")),
        "{stderr}"
    );
    let quiet = env.peapod(&["kill", &id, "0"]);
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );

    for (format, needle) in [("text", "level=debug"), ("json", "\"level\":\"debug\"")] {
        let log = env.work.path().join(format!("log.{format}"));
        let log_arg = log.to_str().unwrap();
        env.ok(&[
            "--debug",
            "--log",
            log_arg,
            "--log-format",
            format,
            "exec",
            &id,
            "true",
        ]);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.lines().any(|l| l.contains(needle)), "{format}: {text}");
        if format == "json" {
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
                assert!(v["msg"].is_string() && v["time"].is_string(), "{line}");
            }
        }
    }
    env.ok(&["delete", "--force", &id]);
    env.finish();
}

/// `version` as runc prints it; -h/--help on every verb; `spec` writes a config
/// that validates against the runtime-spec's JSON schema.
#[test]
fn version_help_and_spec_schema() {
    let env = TestEnv::new("version");
    let text = env.ok(&["version"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("peapod version "), "{text}");
    for key in ["commit: ", "spec: ", "libseccomp: "] {
        assert!(
            lines.iter().any(|l| l.starts_with(key)),
            "no {key:?} in {text}"
        );
    }
    assert_eq!(env.ok(&["--version"]), text);
    assert_eq!(env.ok(&["-v"]), text);

    for verb in [
        "create", "start", "state", "kill", "delete", "run", "exec", "ps", "list", "pause",
        "resume", "events", "update", "spec", "features", "version", "pod", "image", "static",
    ] {
        for flag in ["-h", "--help"] {
            let out = env.ok(&[verb, flag]);
            assert!(out.contains("Usage: peapod"), "{verb} {flag}: {out}");
        }
    }

    let validator = repo().join("scripts/lib/validate-oci-config.py");
    for rootless in [false, true] {
        let dir = env.work.path().join(format!("spec-{rootless}"));
        std::fs::create_dir(&dir).unwrap();
        let mut args = vec!["spec", "--bundle", dir.to_str().unwrap()];
        if rootless {
            args.push("--rootless");
        }
        env.ok(&args);
        let out = output_of(
            Command::new("/usr/bin/python3")
                .arg(&validator)
                .arg(dir.join("config.json")),
        );
        assert!(
            out.status.success(),
            "spec (rootless {rootless}) does not validate: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.finish();
}
