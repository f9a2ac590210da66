//! `linux.resources.devices` enforced as runc enforces it, on v1 (the devices
//! controller) and on v2 (an eBPF program on the container's cgroup, built
//! with libcgroups' `cgroupsv2_devices`): a container keeps CAP_MKNOD, so
//! only the device rules stop it from making and opening any device node.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use serde_json::json;

use crate::common::*;
use crate::conformance::code;
use crate::conformance_mounts::{stderr, Rt};

/// A device of the host, not in runc's default list, that root can open for
/// reading without a capability: the test allows reading it to prove the
/// rules are applied one by one, not just "deny everything".
fn readable_device() -> (char, u64, u64) {
    for node in [
        "/dev/loop0",
        "/dev/loop-control",
        "/dev/fuse",
        "/dev/cpu_dma_latency",
    ] {
        let Ok(meta) = std::fs::metadata(node) else {
            continue;
        };
        if std::fs::File::open(node).is_err() {
            continue;
        }
        let kind = if meta.file_type().is_block_device() {
            'b'
        } else {
            'c'
        };
        let rdev = meta.rdev();
        return (
            kind,
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev),
        );
    }
    panic!("no readable loop, fuse or cpu_dma_latency device here");
}

/// runc's default spec denies every device, then allows one device for
/// reading: in the container (with CAP_MKNOD, as by default) a node made with
/// mknod in /dev (a tmpfs without `nodev`, unlike /tmp) for a device outside
/// the list (/dev/sda, 8:0) cannot be opened
/// (EPERM, before the driver is asked), the listed one opens for reading but
/// not for writing, and the default devices (/dev/null, /dev/zero) work.
#[test]
fn device_rules_deny_mknod_devices_outside_the_allowed_list() {
    let env = TestEnv::new("devices");
    let (kind, major, minor) = readable_device();
    let script = format!(
        "mknod /dev/sda b 8 0 && mknod /dev/allowed {kind} {major} {minor} || exit 9
         (exec 3</dev/sda) 2>&1 && echo sda-opened
         (exec 3</dev/allowed) 2>&1 && echo allowed-read
         (exec 3>/dev/allowed) 2>&1 && echo allowed-written
         echo x >/dev/null && head -c 1 /dev/zero >/dev/null && echo defaults-work"
    );
    for rt in [Rt::Runc, Rt::Peapod] {
        let id = rt.id(&env, "dev");
        let mut config = env.config(&id, &["sleep", "1000"]);
        config["linux"]["resources"] = json!({ "devices": [
            { "allow": false, "access": "rwm" },
            { "allow": true, "type": kind.to_string(), "major": major, "minor": minor, "access": "r" }
        ]});
        let out = rt.run_detached(&env, &id, &config);
        assert!(out.status.success(), "{rt:?}: {}", stderr(&out));
        let out = rt.sh(&env, &id, &script);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        rt.remove(&env, &id);
        assert_eq!(code(&out), 0, "{rt:?}: {text}{}", stderr(&out));
        let lines: Vec<&str> = text.lines().collect();
        // busybox sh: "sh: can't open /dev/sda: Operation not permitted"
        let denied = |node: &str| {
            lines.iter().any(|l| {
                l.contains(&format!("/dev/{node}:")) && l.contains("Operation not permitted")
            })
        };
        assert!(denied("sda"), "{rt:?}: /dev/sda not refused: {text}");
        assert!(!lines.contains(&"sda-opened"), "{rt:?}: {text}");
        assert!(lines.contains(&"allowed-read"), "{rt:?}: {text}");
        assert!(denied("allowed"), "{rt:?}: write not refused: {text}");
        assert!(!lines.contains(&"allowed-written"), "{rt:?}: {text}");
        assert!(lines.contains(&"defaults-work"), "{rt:?}: {text}");
    }
    env.finish();
}
