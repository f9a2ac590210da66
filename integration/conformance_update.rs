//! `update` as runc does it: its flags, `--resources` JSON, real-time CPU
//! bandwidth, device rules, and a container under a parent (pod) cgroup with
//! a CPU limit of its own. The files written on this host (cgroup v1) are
//! compared with runc's for the same commands.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::common::*;
use crate::conformance_mounts::{stderr, Rt};

/// The cgroup v1 files `update` writes, and what they hold, in container `id`'s cgroup.
fn files(env: &TestEnv, id: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for (controller, names) in [
        (
            "memory",
            &[
                "memory.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.memsw.limit_in_bytes",
            ][..],
        ),
        (
            "cpu",
            &[
                "cpu.shares",
                "cpu.cfs_quota_us",
                "cpu.cfs_period_us",
                "cpu.rt_period_us",
                "cpu.rt_runtime_us",
            ][..],
        ),
        ("cpuset", &["cpuset.cpus", "cpuset.mems"][..]),
        ("pids", &["pids.max"][..]),
        ("blkio", &["blkio.weight", "blkio.bfq.weight"][..]),
        ("devices", &["devices.list"][..]),
    ] {
        let dir = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(env.cgroups_path(id).trim_start_matches('/'));
        for name in names {
            if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
                // libcontainer allows /dev/console (5:1) from create on; runc
                // does not. Not update's doing: left out of the comparison.
                let mut lines: Vec<&str> = text.lines().filter(|l| *l != "c 5:1 rwm").collect();
                lines.sort();
                out.push((name.to_string(), lines.join(",")));
            }
        }
    }
    out
}

fn parent_dir(env: &TestEnv, controller: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(&env.cgroup_parent)
}

#[test]
fn update_writes_what_runc_writes() {
    let env = TestEnv::new("update");
    // The parent (a pod's cgroup) has a CPU limit and a real-time budget.
    let cpu = parent_dir(&env, "cpu");
    std::fs::create_dir_all(&cpu).unwrap();
    std::fs::write(cpu.join("cpu.cfs_quota_us"), "50000").unwrap();
    std::fs::write(cpu.join("cpu.rt_runtime_us"), "20000").unwrap();
    let resources = env.work.path().join("resources.json");
    std::fs::write(
        &resources,
        json!({
            "memory": { "limit": 100 << 20, "reservation": 50 << 20, "swap": 200 << 20 },
            "cpu": { "shares": 300, "quota": 20000, "period": 100000 },
            "pids": { "limit": 70 },
            "devices": [
                { "allow": false, "access": "rwm" },
                { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" },
                { "allow": true, "type": "c", "major": 1, "minor": 5, "access": "r" },
            ]
        })
        .to_string(),
    )
    .unwrap();
    let steps: Vec<Vec<&str>> = vec![
        vec![
            "--memory",
            "64m",
            "--memory-reservation",
            "32m",
            "--memory-swap",
            "128m",
            "--cpu-share",
            "512",
            "--cpu-period",
            "10000",
            "--cpu-quota",
            "4000",
            "--cpuset-cpus",
            "0",
            "--cpuset-mems",
            "0",
            "--pids-limit",
            "50",
            "--blkio-weight",
            "300",
        ],
        vec!["--cpu-rt-period", "1000000", "--cpu-rt-runtime", "10000"],
        vec!["--resources", resources.to_str().unwrap()],
        vec![
            "--memory",
            "-1",
            "--memory-swap",
            "-1",
            "--cpu-quota",
            "-1",
            "--pids-limit",
            "-1",
        ],
    ];
    let mut seen = vec![];
    for rt in [Rt::Runc, Rt::Peapod] {
        let id = rt.id(&env, "u");
        let out = rt.run_detached(&env, &id, &env.config(&id, &["sleep", "1000"]));
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let mut after = vec![];
        for step in &steps {
            let mut args = vec!["update"];
            args.extend(step.iter().copied());
            args.push(&id);
            let out = rt.cmd(&env, &args);
            assert!(out.status.success(), "{rt:?} {step:?}: {}", stderr(&out));
            after.push(files(&env, &id));
        }
        // The container still reaches /dev/null after the device rules changed.
        let null = rt.sh(&env, &id, "echo x > /dev/null");
        rt.remove(&env, &id);
        assert!(null.status.success(), "{rt:?}: {}", stderr(&null));
        seen.push(after);
    }
    let rt_runtime = seen[0][1].iter().find(|(f, _)| f == "cpu.rt_runtime_us");
    assert_eq!(rt_runtime.map(|(_, v)| v.as_str()), Some("10000"));
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(
            seen[1][i], seen[0][i],
            "after {step:?}: peapod (left) and runc (right) differ"
        );
    }
    env.finish();
}
