//! A container's cgroup as runc treats it: sub-cgroups go with `delete
//! --force`; a cgroup that already has processes is used with a warning, a
//! frozen one is refused.

use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::conformance_mounts::{stderr, Rt};

/// `delete --force` of a running container whose cgroup has sub-cgroups (one
/// holding a process) removes them all, in every hierarchy.
#[test]
fn delete_force_removes_sub_cgroups() {
    let env = TestEnv::new("subcgroups");
    for rt in [Rt::Runc, Rt::Peapod] {
        let id = rt.id(&env, "c");
        let config = env.config(&id, &["sleep", "1000"]);
        let out = rt.run_detached(&env, &id, &config);
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let dirs = env.cgroup_dirs(&id);
        assert!(!dirs.is_empty());
        for dir in &dirs {
            let mut at = dir.clone();
            for name in ["sub", "leaf"] {
                let below = at.join(name);
                std::fs::create_dir(&below).unwrap();
                // A new cpuset cgroup takes no process until it has cpus and mems.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    if let Ok(value) = std::fs::read_to_string(at.join(file)) {
                        std::fs::write(below.join(file), value.trim()).unwrap();
                    }
                }
                at = below;
            }
        }
        // A process of the container moved into a sub-cgroup of each hierarchy.
        let out = rt.cmd(&env, &["exec", "--detach", &id, "sleep", "999"]);
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let pids = std::fs::read_to_string(dirs[0].join("cgroup.procs")).unwrap();
        let init = env.cgroup_dirs(&id);
        let moved: i32 = pids
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .max()
            .unwrap();
        for dir in &init {
            let procs = dir.join("sub/leaf/cgroup.procs");
            std::fs::write(&procs, moved.to_string())
                .unwrap_or_else(|e| panic!("{}: {e}", procs.display()));
        }
        let out = rt.cmd(&env, &["delete", "--force", &id]);
        assert!(out.status.success(), "{rt:?} delete: {}", stderr(&out));
        let left = env.cgroup_dirs(&id);
        assert!(left.is_empty(), "{rt:?}: cgroups left: {left:?}");
        wait_until("the moved process to end", Duration::from_secs(10), || {
            !is_alive(moved)
        });
    }
    env.finish();
}

/// `create` into a cgroup that already holds a process warns (runc 1.2's
/// "cgroup is not empty") and goes on; into a frozen cgroup it is refused,
/// naming the cgroup.
#[test]
fn create_into_busy_or_frozen_cgroup() {
    let env = TestEnv::new("busycg");
    let id = env.id("busy");
    let cgroup = env.cgroups_path(&id);
    let mut outsider = Command::new("sleep").arg("1000").spawn().unwrap();
    // runc counts the processes of the devices hierarchy, every container's.
    let devices = cgroup_mounts()
        .into_iter()
        .find(|m| m.ends_with("devices"))
        .expect("devices hierarchy")
        .join(cgroup.trim_start_matches('/'));
    std::fs::create_dir_all(&devices).unwrap();
    std::fs::write(devices.join("cgroup.procs"), outsider.id().to_string()).unwrap();
    let bundle = env.bundle(&id, &env.config(&id, &["sleep", "1000"]));
    let out = env.peapod(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("level=warning") && err.contains("not empty"),
        "no warning: {err}"
    );
    env.ok(&["delete", "--force", &id]);
    let _ = outsider.kill();
    let _ = outsider.wait();

    let id = env.id("frozen");
    let freezer = cgroup_mounts()
        .into_iter()
        .find(|m| m.ends_with("freezer"))
        .expect("freezer hierarchy")
        .join(env.cgroups_path(&id).trim_start_matches('/'));
    std::fs::create_dir_all(&freezer).unwrap();
    std::fs::write(freezer.join("freezer.state"), "FROZEN").unwrap();
    let bundle = env.bundle(&id, &env.config(&id, &["sleep", "1000"]));
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &id],
        "is frozen",
    );
    assert!(env.ok(&["list", "--quiet"]).trim().is_empty());
    std::fs::write(freezer.join("freezer.state"), "THAWED").unwrap();
    std::fs::remove_dir(&freezer).unwrap();
    env.finish();
}

/// `events --interval D` streams stats lines, reports an OOM kill in the
/// container as `{"type":"oom",...}` (runc's line), and ends by itself once
/// the container stops (runc 1.1's goes on until it is killed).
#[test]
fn events_stream_stats_and_oom_until_stop() {
    let env = TestEnv::new("events");
    for rt in [Rt::Runc, Rt::Peapod] {
        let id = rt.id(&env, "oom");
        let mut config = env.config(
            &id,
            &[
                "sh",
                "-c",
                "sleep 0.5; head -c 500m /dev/zero | tail; sleep 1",
            ],
        );
        config["linux"]["resources"] = serde_json::json!({
            "memory": { "limit": 16 << 20, "swap": 16 << 20 }
        });
        let out = rt.run_detached(&env, &id, &config);
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let log = env.work.path().join(format!("events-{}", rt.name()));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match rt {
            Rt::Peapod => env.cmd(&[]),
            Rt::Runc => {
                let mut c = Command::new("runc");
                c.arg("--root").arg(env.work.path().join("runc-state"));
                c
            }
        };
        let mut events = cmd
            .args(["events", "--interval", "100ms", &id])
            .stdout(file)
            .spawn()
            .unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = events.try_wait().unwrap() {
                break Some(status);
            }
            // runc 1.1's events goes on after the container stops: stop it once
            // it has reported the OOM kill.
            let runc_done = matches!(rt, Rt::Runc)
                && std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"type\":\"oom\""));
            if runc_done || std::time::Instant::now() > end {
                let _ = events.kill();
                let _ = events.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = std::fs::read_to_string(&log).unwrap();
        rt.remove(&env, &id);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert!(
            lines
                .iter()
                .any(|v| v["type"] == "stats" && v["id"] == id.as_str()),
            "{rt:?}: no stats: {text}"
        );
        assert!(
            lines
                .iter()
                .any(|v| v["type"] == "oom" && v["id"] == id.as_str()),
            "{rt:?}: no oom: {text}"
        );
        if let Rt::Peapod = rt {
            assert!(
                status.is_some(),
                "{rt:?}: events still running after the container stopped"
            );
        }
    }
    env.finish();
}
