//! `checkpoint` with CRIU, as runc. On a host where `criu check` fails (this
//! project's machines: CRIU 3.17 cannot read the vDSO of kernel 6.18) both
//! runtimes fail the same way and the container goes on running.

use std::process::Command;

use crate::common::*;
use crate::conformance_mounts::{stderr, Rt};

fn criu_works() -> bool {
    output_of(Command::new("criu").arg("check"))
        .status
        .success()
}

#[test]
fn checkpoint_leaves_the_container_running_or_dumps_it() {
    let env = TestEnv::new("checkpoint");
    let works = criu_works();
    for rt in [Rt::Runc, Rt::Peapod] {
        let id = rt.id(&env, "c");
        let out = rt.run_detached(&env, &id, &env.config(&id, &["sleep", "1000"]));
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let images = env.work.path().join(format!("images-{}", rt.name()));
        let work = env.work.path().join(format!("work-{}", rt.name()));
        std::fs::create_dir(&work).unwrap();
        let out = rt.cmd(
            &env,
            &[
                "checkpoint",
                "--image-path",
                images.to_str().unwrap(),
                "--work-path",
                work.to_str().unwrap(),
                "--leave-running",
                &id,
            ],
        );
        let state = rt.cmd(&env, &["state", &id]);
        let running = String::from_utf8_lossy(&state.stdout).contains("\"running\"");
        if works {
            assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
            assert!(images.join("inventory.img").exists(), "{rt:?}: no images");
        } else {
            assert!(
                !out.status.success(),
                "{rt:?}: checkpoint without a working CRIU"
            );
            if let Rt::Peapod = rt {
                let err = stderr(&out);
                assert_eq!(err.trim_end().lines().count(), 1, "{err}");
                assert!(
                    err.contains("CRIU's log") && err.contains("dump.log"),
                    "{err}"
                );
            }
        }
        assert!(running, "{rt:?}: the container stopped");
        if let Rt::Peapod = rt {
            env.fails(
                &[
                    "checkpoint",
                    "--pre-dump",
                    "--image-path",
                    images.to_str().unwrap(),
                    &id,
                ],
                "--pre-dump: not supported",
            );
        }
        rt.remove(&env, &id);
    }
    env.finish();
}
