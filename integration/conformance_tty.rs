//! Terminals as runc makes them: the init's pty belongs to the process's
//! user, and `process.consoleSize` is its first size, for `create`/`run` and
//! for `exec`.

use serde_json::json;

use crate::common::*;
use crate::conformance_mounts::{stderr, Rt};
use crate::runtime::read_console;

const REPORT: &str = "echo owner=$(stat -c %u $(tty)) size=$(stty size) done; sleep 1000";

#[test]
fn init_pty_owned_by_the_user_and_sized() {
    let env = TestEnv::new("tty-owner");
    for rt in [Rt::Runc, Rt::Peapod] {
        let sock = env.work.path().join(format!("console-{}.sock", rt.name()));
        let listener = peapod::oci::console::ConsoleListener::bind(&sock).unwrap();
        let id = rt.id(&env, "c");
        let mut config = env.config(&id, &["sh", "-c", REPORT]);
        config["process"]["terminal"] = json!(true);
        config["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
        config["process"]["consoleSize"] = json!({ "height": 33, "width": 111 });
        let bundle = env.bundle(&id, &config);
        let out = rt.cmd(
            &env,
            &[
                "create",
                "--bundle",
                bundle.to_str().unwrap(),
                "--console-socket",
                sock.to_str().unwrap(),
                &id,
            ],
        );
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let master = listener.receive_master().unwrap();
        let out = rt.cmd(&env, &["start", &id]);
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let seen = read_console(master, "done");

        // exec with a process.json: its own consoleSize.
        let mut process = config["process"].clone();
        process["args"] = json!(["sh", "-c", "echo exec-size=$(stty size) done"]);
        process["consoleSize"] = json!({ "height": 44, "width": 99 });
        let process_file = env.work.path().join(format!("process-{}.json", rt.name()));
        std::fs::write(&process_file, process.to_string()).unwrap();
        let out = rt.cmd(
            &env,
            &[
                "exec",
                "--detach",
                "--console-socket",
                sock.to_str().unwrap(),
                "--process",
                process_file.to_str().unwrap(),
                &id,
            ],
        );
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let exec_seen = read_console(listener.receive_master().unwrap(), "done");
        rt.remove(&env, &id);
        assert!(seen.contains("owner=1000 "), "{rt:?}: {seen:?}");
        assert!(seen.contains("size=33 111 "), "{rt:?}: {seen:?}");
        assert!(
            exec_seen.contains("exec-size=44 99 "),
            "{rt:?}: {exec_seen:?}"
        );
    }

    // The foreground `run` (peapod's own console; its stdin is no terminal here).
    let id = env.id("fg");
    let mut config = env.config(
        &id,
        &[
            "sh",
            "-c",
            "echo owner=$(stat -c %u $(tty)) size=$(stty size) done",
        ],
    );
    config["process"]["terminal"] = json!(true);
    config["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
    config["process"]["consoleSize"] = json!({ "height": 33, "width": 111 });
    let bundle = env.bundle(&id, &config);
    let out = env.peapod(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("owner=1000 size=33 111 done"), "{text:?}");
    env.finish();
}
