//! Hooks and `create` flags as runc has them: the state on a hook's stdin
//! carries the bundle the user gave and the status the runtime spec gives
//! for that hook; `--pid-file` goes with every other `create` flag.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::*;
use crate::conformance_mounts::{stderr, Rt};

/// A hook that saves its stdin as `<dir>/<name>.json` (`dir` as the hook sees it).
fn saving_hook(dir: &Path, name: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat > {}/{name}.json", dir.display())]
    })
}

/// Each hook's state: the user's bundle folder (not peapod's adjusted copy)
/// and the spec's status: `creating` up to createContainer, `created` for
/// startContainer, `running` for poststart, `stopped` for poststop.
#[test]
fn hooks_get_the_users_bundle_and_their_status() {
    let env = TestEnv::new("hooks");
    for rt in [Rt::Runc, Rt::Peapod] {
        let out_dir = env.work.path().join(format!("hooks-{}", rt.name()));
        std::fs::create_dir(&out_dir).unwrap();
        let id = rt.id(&env, "h");
        let mut config = env.config(&id, &["sleep", "1000"]);
        config["hooks"] = json!({
            "prestart": [saving_hook(&out_dir, "prestart")],
            "createRuntime": [saving_hook(&out_dir, "createRuntime")],
            "createContainer": [saving_hook(&out_dir, "createContainer")],
            // Runs in the container: the folder is mounted there at /hooks.
            "startContainer": [saving_hook(Path::new("/hooks"), "startContainer")],
            "poststart": [saving_hook(&out_dir, "poststart")],
            "poststop": [saving_hook(&out_dir, "poststop")],
        });
        config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/hooks", "type": "bind", "source": out_dir, "options": ["rbind", "rw"]
        }));
        let bundle = env.bundle(&id, &config);
        let b = bundle.to_str().unwrap();
        let out = rt.cmd(&env, &["create", "--bundle", b, &id]);
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let out = rt.cmd(&env, &["start", &id]);
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        rt.remove(&env, &id);

        for (hook, status) in [
            ("prestart", "creating"),
            ("createRuntime", "creating"),
            ("createContainer", "creating"),
            ("startContainer", "created"),
            ("poststart", "running"),
            ("poststop", "stopped"),
        ] {
            let path = out_dir.join(format!("{hook}.json"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{rt:?}: {hook} did not run: {e}"));
            let state: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{rt:?} {hook}: {e}: {text}"));
            assert_eq!(state["id"], id.as_str(), "{rt:?} {hook}");
            assert_eq!(state["bundle"], b, "{rt:?} {hook}: {text}");
            // runc 1.1 still says `created` to poststart (runc 1.2 fixed it).
            let runc_poststart = matches!(rt, Rt::Runc) && hook == "poststart";
            let status = if runc_poststart { "created" } else { status };
            assert_eq!(state["status"], status, "{rt:?} {hook}: {text}");
        }
    }
    env.finish();
}

/// `create --pid-file` together with every other `create` flag: the pid file
/// names the init, the terminal comes over the console socket, fd 3 reaches
/// the container.
#[test]
fn create_pid_file_with_every_flag() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new("pidfile-flags");
    for rt in [Rt::Runc, Rt::Peapod] {
        let sock = env.work.path().join(format!("console-{}.sock", rt.name()));
        let listener = peapod::oci::console::ConsoleListener::bind(&sock).unwrap();
        let id = rt.id(&env, "c");
        let mut config = env.config(&id, &["sh", "-c", "readlink /proc/self/fd/3; sleep 1000"]);
        config["process"]["terminal"] = json!(true);
        let bundle = env.bundle(&id, &config);
        let pid_file = env.work.path().join(format!("{}.pid", rt.name()));
        let extra = std::fs::File::open(env.work.path()).unwrap();
        let extra_fd = extra.as_raw_fd();
        let args = [
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--console-socket",
            sock.to_str().unwrap(),
            "--preserve-fds",
            "1",
            "--no-pivot",
            "--no-new-keyring",
            &id,
        ];
        let mut cmd = match rt {
            Rt::Peapod => env.cmd(&args),
            Rt::Runc => {
                let mut c = std::process::Command::new("runc");
                c.arg("--root")
                    .arg(env.work.path().join("runc-state"))
                    .args(args);
                c
            }
        };
        // SAFETY: in the child before exec, fd 3 made our open descriptor
        // without close-on-exec: dup2 onto it, or, when it is fd 3 already
        // (dup2 would then leave close-on-exec set), clear the flag.
        unsafe {
            cmd.pre_exec(move || {
                if extra_fd == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    return Ok(());
                }
                nix::unistd::dup2(extra_fd, 3)
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let out = output_of(&mut cmd);
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let master = listener.receive_master().unwrap();
        let state: Value = serde_json::from_slice(&rt.cmd(&env, &["state", &id]).stdout).unwrap();
        let written = std::fs::read_to_string(&pid_file).unwrap();
        assert_eq!(written.trim(), state["pid"].to_string(), "{rt:?}");
        let out = rt.cmd(&env, &["start", &id]);
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let seen = crate::runtime::read_console(master, "peapod-work");
        rt.remove(&env, &id);
        assert!(
            seen.contains("peapod-work"),
            "{rt:?}: fd 3 is not the folder: {seen:?}"
        );
    }
    env.finish();
}
