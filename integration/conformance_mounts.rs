//! Mounts as runc makes them: propagation of host bind mounts, destinations
//! that are symbolic links, read-only /dev and cgroup hierarchies. Each test
//! runs the same bundle under runc and peapod.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::common::*;
use crate::conformance::{code, runc};

/// The runtime a scenario runs under.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rt {
    Runc,
    Peapod,
}

impl Rt {
    pub(crate) fn cmd(self, env: &TestEnv, args: &[&str]) -> Output {
        match self {
            Rt::Runc => runc(env, args),
            Rt::Peapod => env.peapod(args),
        }
    }

    /// A container id for this runtime in this test.
    pub(crate) fn id(self, env: &TestEnv, short: &str) -> String {
        env.id(&format!("{short}-{}", self.name()))
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Rt::Runc => "runc",
            Rt::Peapod => "peapod",
        }
    }

    /// Runs `config` detached as `id`; returns the output of `run`.
    pub(crate) fn run_detached(self, env: &TestEnv, id: &str, config: &Value) -> Output {
        let bundle = env.bundle(id, config);
        self.cmd(
            env,
            &["run", "--detach", "--bundle", bundle.to_str().unwrap(), id],
        )
    }

    /// `sh -c script` in container `id`; its output.
    pub(crate) fn sh(self, env: &TestEnv, id: &str, script: &str) -> Output {
        self.cmd(env, &["exec", id, "sh", "-c", script])
    }

    pub(crate) fn remove(self, env: &TestEnv, id: &str) {
        let out = self.cmd(env, &["delete", "--force", id]);
        assert_eq!(code(&out), 0, "{self:?} delete {id}: {}", stderr(&out));
    }
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn host(script: &str) {
    let out = output_of(Command::new("sh").arg("-c").arg(script));
    assert!(out.status.success(), "{script}: {}", stderr(&out));
}

fn add_cap(config: &mut Value, cap: &str) {
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!(cap));
    }
}

/// A host folder bind-mounted with `rshared` (containerd's CRI for
/// Bidirectional) or `rslave` (HostToContainer), with the same
/// `rootfsPropagation`: a mount made on the host under it appears in the
/// container, and with `rshared` one made in the container appears on the host.
#[test]
fn bind_mount_propagation_as_runc() {
    let env = TestEnv::new("propagation");
    for rt in [Rt::Runc, Rt::Peapod] {
        for mode in ["rshared", "rslave"] {
            let dir = env.work.path().join(format!("host-{}-{mode}", rt.name()));
            let h = dir.to_str().unwrap();
            host(&format!(
                "mkdir -p {h} && mount --bind {h} {h} && mount --make-shared {h} && mkdir {h}/from-host {h}/from-ctr"
            ));
            let id = rt.id(&env, mode);
            let mut config = env.config(&id, &["sleep", "1000"]);
            add_cap(&mut config, "CAP_SYS_ADMIN");
            config["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/mnt", "type": "bind", "source": h, "options": ["rbind", mode]
            }));
            config["linux"]["rootfsPropagation"] = json!(mode);
            let out = rt.run_detached(&env, &id, &config);
            if code(&out) != 0 {
                host(&format!("umount -R -l {h}"));
                panic!("{rt:?} {mode}: run failed: {}", stderr(&out));
            }

            host(&format!(
                "mount -t tmpfs tmpfs {h}/from-host && touch {h}/from-host/seen"
            ));
            let seen = rt.sh(&env, &id, "test -f /mnt/from-host/seen");
            let ctr = rt.sh(
                &env,
                &id,
                "mount -t tmpfs tmpfs /mnt/from-ctr && touch /mnt/from-ctr/seen",
            );
            let back = Path::new(h).join("from-ctr/seen").exists();
            rt.remove(&env, &id);
            host(&format!("umount -R -l {h}"));

            assert_eq!(code(&seen), 0, "{rt:?} {mode}: host mount not seen inside");
            assert_eq!(code(&ctr), 0, "{rt:?} {mode}: {}", stderr(&ctr));
            assert_eq!(
                back,
                mode == "rshared",
                "{rt:?} {mode}: a container's mount seen on the host: {back}"
            );
        }
    }
    env.finish();
}

/// `/dev` mounted with `ro` is read-only (its submounts are not), and a
/// `cgroup` mount with `ro` is read-only with every hierarchy below it.
/// (libcontainer 0.7 leaves both writable.)
#[test]
fn read_only_dev_and_cgroup_mounts() {
    let env = TestEnv::new("ro-mounts");
    for rt in [Rt::Runc, Rt::Peapod] {
        let id = rt.id(&env, "ro");
        let mut config = env.config(&id, &["sleep", "1000"]);
        let mounts = config["mounts"].as_array_mut().unwrap();
        for m in mounts.iter_mut() {
            if m["destination"] == "/dev" {
                m["options"].as_array_mut().unwrap().push(json!("ro"));
            }
        }
        mounts.push(json!({
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
        }));
        let out = rt.run_detached(&env, &id, &config);
        assert_eq!(code(&out), 0, "{rt:?}: {}", stderr(&out));
        let listed = rt.sh(
            &env,
            &id,
            "awk '$2 == \"/dev\" || $2 ~ \"^/sys/fs/cgroup\" { print $2, $4 }' /proc/mounts",
        );
        let touch = rt.sh(&env, &id, "touch /dev/x");
        let shm = rt.sh(&env, &id, "touch /dev/shm/x");
        rt.remove(&env, &id);

        let text = String::from_utf8_lossy(&listed.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 3, "{rt:?}: {text}");
        for line in &lines {
            let (point, options) = line.split_once(' ').unwrap();
            if point == "/sys/fs/cgroup" && matches!(rt, Rt::Runc) {
                // runc 1.1 leaves the tmpfs holding the hierarchies writable
                // (later runc makes it read-only too, as peapod does).
                continue;
            }
            assert!(
                options.split(',').any(|o| o == "ro"),
                "{rt:?}: {point} is not read-only: {text}"
            );
        }
        assert_ne!(code(&touch), 0, "{rt:?}: /dev is writable");
        assert_eq!(code(&shm), 0, "{rt:?}: /dev/shm: {}", stderr(&shm));
    }
    env.finish();
}

/// A copy of the busybox rootfs this test can plant links in.
fn own_rootfs(env: &TestEnv, name: &str) -> std::path::PathBuf {
    let dir = env.work.path().join(name);
    let out = output_of(Command::new("cp").arg("-a").arg(busybox_rootfs()).arg(&dir));
    assert!(out.status.success(), "cp: {}", stderr(&out));
    dir
}

/// Whether anything is mounted at or below `path` on the host.
fn mounted_under(path: &Path) -> bool {
    let p = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(p)))
}

/// A rootfs whose /proc or /sys is a symbolic link (here to a host folder) is
/// refused, as runc refuses it; a mount whose destination goes through a link
/// to a host path is made inside the rootfs (the link resolved with the rootfs
/// as `/`) or, where the rootfs lacks the link's target, refused by peapod
/// (runc makes the target in the rootfs); never on the host.
#[test]
fn links_in_the_rootfs_never_reach_the_host() {
    let env = TestEnv::new("links");
    let target = env.work.path().join("host-target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("marker"), "host").unwrap();
    for rt in [Rt::Runc, Rt::Peapod] {
        for dir in ["proc", "sys"] {
            let rootfs = own_rootfs(&env, &format!("rootfs-{}-{dir}", rt.name()));
            std::fs::remove_dir(rootfs.join(dir)).unwrap();
            std::os::unix::fs::symlink(&target, rootfs.join(dir)).unwrap();
            let id = rt.id(&env, dir);
            let mut config = env.config(&id, &["true"]);
            config["root"] = json!({ "path": rootfs });
            let out = rt.run_detached(&env, &id, &config);
            assert_ne!(code(&out), 0, "{rt:?}: /{dir} as a link was accepted");
            let err = stderr(&out);
            assert!(
                err.contains("must be mounted on ordinary directory"),
                "{rt:?} /{dir}: {err}"
            );
            if let Rt::Peapod = rt {
                assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            }
            rt.cmd(&env, &["delete", "--force", &id]);
            assert!(!mounted_under(&target), "{rt:?}: mounted on the host");
        }

        // /data -> the host folder, /up -> far above the rootfs.
        let rootfs = own_rootfs(&env, &format!("rootfs-{}-data", rt.name()));
        // The fixture has no /data; a leftover from another run must not matter.
        match std::fs::remove_dir_all(rootfs.join("data")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("/data: {e}"),
            _ => {}
        }
        std::os::unix::fs::symlink(&target, rootfs.join("data")).unwrap();
        std::os::unix::fs::symlink("../../../../../../../../..", rootfs.join("up")).unwrap();
        let up = format!("/up{}/sub", target.display());
        for destination in [up.as_str(), "/data/sub"] {
            let id = rt.id(
                &env,
                if destination == "/data/sub" {
                    "data"
                } else {
                    "up"
                },
            );
            let mut config = env.config(&id, &["sleep", "1000"]);
            config["root"] = json!({ "path": rootfs });
            config["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "destination": destination, "type": "tmpfs", "source": "tmpfs" }));
            let out = rt.run_detached(&env, &id, &config);
            assert!(!mounted_under(&target), "{rt:?}: mounted on the host");
            let refused = matches!(rt, Rt::Peapod) && destination == "/data/sub";
            if refused {
                // runc makes the link's target in the rootfs; peapod names the link.
                let err = stderr(&out);
                assert_ne!(code(&out), 0, "{rt:?} {destination}: accepted");
                assert!(
                    err.contains("/data is a symbolic link to a path the rootfs does not have"),
                    "{err}"
                );
                assert_eq!(err.trim_end().lines().count(), 1, "{err}");
                continue;
            }
            assert_eq!(code(&out), 0, "{rt:?} {destination}: {}", stderr(&out));
            // Inside, the link leads to the rootfs's own copy of the path.
            let inside = rt.sh(&env, &id, "grep -q host-target/sub /proc/mounts");
            rt.remove(&env, &id);
            assert_eq!(
                code(&inside),
                0,
                "{rt:?} {destination}: not in the container"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        1,
        "the host folder was written to"
    );
    env.finish();
}
