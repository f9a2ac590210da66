//! `hostUsers: false` on a real kernel: the pod's containers share one user
//! namespace mapping a range of host IDs of the pod's own; root in the
//! container is not root on the host; `procMount: Unmasked` only there.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::common::*;
use crate::pod::PodEnv;

const SLEEP: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

fn userns_pod(name: &str, host: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: {name} }}
spec:
  hostUsers: false
  terminationGracePeriodSeconds: 2
  volumes:
    - {{ name: scratch, emptyDir: {{}} }}
    - {{ name: host, hostPath: {{ path: "{host}", type: Directory }} }}
  containers:
    - name: a
      image: busybox
      command: ["sh", "-c", "{SLEEP}"]
      volumeMounts:
        - {{ name: scratch, mountPath: /scratch }}
        - {{ name: scratch, mountPath: /sub, subPath: deep }}
        - {{ name: host, mountPath: /host }}
{extra}    - name: b
      image: busybox
      command: ["sh", "-c", "{SLEEP}"]
      volumeMounts: [{{ name: scratch, mountPath: /scratch }}]
"#
    )
}

/// `0 <base> 65536` from a uid_map or gid_map text: the base.
fn mapped_base(map: &str) -> u32 {
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "one mapping expected: {map:?}");
    assert_eq!((fields[0], fields[2]), ("0", "65536"), "{map:?}");
    let base: u32 = fields[1].parse().unwrap();
    assert!(base >= 65536 && base.is_multiple_of(65536), "{map:?}");
    base
}

/// The mapping is not the identity and is the same for every container,
/// the sandbox and an exec; a file root makes in an emptyDir is the pod's
/// host root's; the rootfs is root's to write; a hostPath file of the host's
/// root is not; two pods get disjoint ranges; `pod rm` leaves no mount.
#[test]
fn pods_get_their_own_id_ranges_and_root_is_not_the_hosts() {
    let env = PodEnv::new();
    let host = env.work.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("owned-by-root"), "host\n").unwrap();
    // World-writable folder, root-owned file: only the file's owner may write it.
    std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();

    let unmasked = "      securityContext: { procMount: Unmasked }\n";
    let one = env.run(
        "one",
        &userns_pod("one", &host.display().to_string(), unmasked),
    );
    let fs_group = userns_pod("two", &host.display().to_string(), "")
        .replace("spec:\n", "spec:\n  securityContext: { fsGroup: 2000 }\n");
    let two = env.run("two", &fs_group);
    env.wait_phase("one", "Running", false);
    env.wait_phase("two", "Running", false);
    let uid_one = one["metadata"]["uid"].as_str().unwrap().to_string();
    let uid_two = two["metadata"]["uid"].as_str().unwrap().to_string();

    let map = env.exec_ok("one", "a", &["cat", "/proc/self/uid_map"]);
    let base = mapped_base(&map);
    assert_eq!(env.exec_ok("one", "a", &["cat", "/proc/self/gid_map"]), map);
    assert_eq!(env.exec_ok("one", "b", &["cat", "/proc/self/uid_map"]), map);
    wait_until("the containers' pids", Duration::from_secs(10), || {
        let p = env.pids(&uid_one);
        ["a", "b"].iter().all(|c| p[c].is_i64())
    });
    let pids = env.pids(&uid_one);
    let sandbox = env.status_file(&uid_one)["sandbox_pid"].as_i64().unwrap();
    let inode = ns_inode(sandbox as i32, "user");
    for c in ["a", "b"] {
        let pid = pids[c].as_i64().unwrap() as i32;
        assert_eq!(
            ns_inode(pid, "user"),
            inode,
            "{c} shares the sandbox's user namespace"
        );
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid_line.split_whitespace().nth(1) == Some(&base.to_string()),
            "{c}'s root is host uid {base}: {uid_line}"
        );
    }
    assert_ne!(
        ns_inode(sandbox as i32, "user"),
        ns_inode(std::process::id() as i32, "user")
    );
    let other = mapped_base(&env.exec_ok("two", "a", &["cat", "/proc/self/uid_map"]));
    assert_ne!(base, other, "two pods share a range");
    // fsGroup in a user namespace: the container's group 2000, the host's other + 2000.
    let group = env.exec_ok("two", "a", &["stat", "-c", "%g", "/scratch"]);
    assert_eq!(group, "2000\n");
    let dir = std::fs::metadata(env.pod_dir(&uid_two).join("volumes/scratch")).unwrap();
    assert_eq!(dir.gid(), other + 2000);
    env.exec_ok("two", "b", &["sh", "-c", "id -G | grep -qw 2000"]);

    // emptyDir: the container's root makes files owned by the pod's host root.
    env.exec_ok("one", "a", &["sh", "-c", "echo hi > /scratch/made"]);
    let scratch = env.pod_dir(&uid_one).join("volumes/scratch/made");
    let meta = std::fs::metadata(&scratch).unwrap_or_else(|e| panic!("{}: {e}", scratch.display()));
    assert_eq!((meta.uid(), meta.gid()), (base, base));
    // A subPath folder the engine made there is root's too.
    env.exec_ok("one", "a", &["touch", "/sub/made"]);
    assert_eq!(
        env.exec_ok("one", "b", &["stat", "-c", "%u:%g", "/scratch/made"]),
        "0:0\n"
    );
    // The image is seen as root's, and root writes its own rootfs.
    assert_eq!(
        env.exec_ok("one", "a", &["stat", "-c", "%u:%g", "/bin/sh"]),
        "0:0\n"
    );
    env.exec_ok(
        "one",
        "a",
        &["sh", "-c", "echo x > /etc/new && echo y >> /etc/passwd"],
    );
    env.exec_ok(
        "one",
        "a",
        &["sh", "-c", "echo 127.0.0.2 extra >> /etc/hosts"],
    );

    // hostPath: a file of the host's root is nobody's in the container and stays unwritable.
    assert_eq!(
        env.exec_ok("one", "a", &["stat", "-c", "%u", "/host/owned-by-root"]),
        "65534\n"
    );
    let write = env.exec(
        "one",
        "a",
        &["sh", "-c", "echo pwned > /host/owned-by-root"],
    );
    assert!(
        !write.status.success(),
        "the container's root wrote a host root's file"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("owned-by-root")).unwrap(),
        "host\n"
    );

    // procMount: Unmasked: a has /proc as the kernel shows it, b the masked one.
    let mounts_a = env.exec_ok("one", "a", &["cat", "/proc/self/mountinfo"]);
    let mounts_b = env.exec_ok("one", "b", &["cat", "/proc/self/mountinfo"]);
    let masks = |m: &str| {
        let points: Vec<&str> = m
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .collect();
        points.contains(&"/proc/keys") || points.contains(&"/proc/sys")
    };
    assert!(!masks(&mounts_a), "a's /proc is masked: {mounts_a}");
    assert!(masks(&mounts_b), "b's /proc is not masked");

    let pins: Vec<_> = [&uid_one, &uid_two]
        .iter()
        .map(|u| env.pod_dir(u).join("userns"))
        .collect();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for pin in &pins {
        assert!(
            mountinfo.contains(pin.to_str().unwrap()),
            "{} not pinned",
            pin.display()
        );
    }
    env.ok(&["pod", "rm", "--force", "one"]);
    env.ok(&["pod", "stop", "two"]);
    env.wait_phase("two", "Succeeded", true);
    env.ok(&["pod", "rm", "two"]);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = env.root.path().to_str().unwrap().to_string();
    assert!(!mountinfo.contains(&root), "mounts left under {root}");

    // The freed range is the next pod's.
    let three = env.run(
        "three",
        &userns_pod("three", &host.display().to_string(), ""),
    );
    env.wait_phase("three", "Running", false);
    let again = mapped_base(&env.exec_ok("three", "a", &["cat", "/proc/self/uid_map"]));
    assert_eq!(
        again,
        base.min(other),
        "the lowest free range is not reused"
    );
    drop(three);
    env.finish();
}

/// procMount: Unmasked needs the pod's own user namespace; hostUsers: false
/// cannot go with the host's namespaces. Nothing is left of a refused pod.
#[test]
fn unmasked_proc_and_host_namespaces_are_refused_naming_the_field() {
    let env = PodEnv::new();
    let cases = [
        (
            "{containers: [{name: a, image: busybox, securityContext: {procMount: Unmasked}}]}",
            "spec.containers[0].securityContext.procMount: `hostUsers` must be false to use `Unmasked`",
        ),
        (
            "{hostUsers: false, hostNetwork: true, containers: [{name: a, image: busybox}]}",
            "spec.hostNetwork: when `hostUsers` is false, `hostNetwork` must be false",
        ),
        (
            "{hostUsers: false, hostPID: true, containers: [{name: a, image: busybox}]}",
            "spec.hostPID: when `hostUsers` is false, `hostPID` must be false",
        ),
    ];
    for (i, (spec, want)) in cases.iter().enumerate() {
        let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: bad{i}}}\nspec: {spec}\n");
        let path = env.manifest(&format!("bad{i}"), &yaml);
        let out = env.peapod(&["pod", "run", "-d", "-f", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "bad{i} was accepted");
        assert!(err.contains(want), "bad{i}: {err}");
    }
    let left = std::fs::read_dir(env.root.path().join("pods")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "a refused pod left a folder");
    env.finish();
}
