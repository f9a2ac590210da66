//! The pod's security profile on a real kernel: seccomp RuntimeDefault and
//! Localhost profiles, the node's seccompDefault, sysctls safe and unsafe,
//! fsGroup on emptyDir volumes and the container's groups.

use std::os::unix::fs::MetadataExt;

use crate::common::*;
use crate::pod::PodEnv;

const SLEEP: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

fn seccomp_mode(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .unwrap_or_else(|| panic!("no Seccomp line in {status}"))
        .trim()
        .to_string()
}

/// `pod run` that must fail: its stderr; no pod folder of it may be left.
fn refused(env: &PodEnv, name: &str, yaml: &str, extra_env: &[(&str, &str)]) -> String {
    let pods = || {
        std::fs::read_dir(env.root.path().join("pods"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = pods();
    let path = env.manifest(name, yaml);
    let mut cmd = env.cmd(&["pod", "run", "-d", "-f", path.to_str().unwrap()]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = output_of(&mut cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{name} was accepted: {err}");
    assert_eq!(pods(), before, "{name}: a pod folder was left: {err}");
    err
}

/// RuntimeDefault filters every container and every exec (Seccomp: 2); a
/// syscall the profile forbids fails with EPERM where Unconfined allows it;
/// ordinary work (a shell, an HTTP server and client) goes on.
#[test]
fn runtime_default_filters_containers_and_execs_and_unconfined_does_not() {
    let env = PodEnv::new();
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: filtered }}
spec:
  securityContext: {{ seccompProfile: {{ type: RuntimeDefault }} }}
  containers:
    - name: web
      image: busybox
      command: ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"]
    - name: plain
      image: busybox
      command: ["sh", "-c", "{SLEEP}"]
    - name: open
      image: busybox
      command: ["sh", "-c", "{SLEEP}"]
      securityContext: {{ seccompProfile: {{ type: Unconfined }} }}
"#
    );
    let pod = env.run("filtered", &yaml);
    env.wait_phase("filtered", "Running", false);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    wait_until(
        "the containers' pids",
        std::time::Duration::from_secs(10),
        || {
            let p = env.pids(&uid);
            ["web", "plain", "open"].iter().all(|c| p[c].is_i64())
        },
    );
    let pids = env.pids(&uid);
    for (name, want) in [("web", "2"), ("plain", "2"), ("open", "0")] {
        let pid = pids[name]
            .as_i64()
            .unwrap_or_else(|| panic!("{name}: {pids}"));
        let init = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert_eq!(seccomp_mode(&init), want, "{name}'s init");
        let own = env.exec_ok("filtered", name, &["cat", "/proc/self/status"]);
        assert_eq!(seccomp_mode(&own), want, "an exec in {name}");
    }
    // The sandbox runs under the pod's profile too.
    let sandbox = env.status_file(&uid)["sandbox_pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{sandbox}/status")).unwrap();
    assert_eq!(seccomp_mode(&status), "2", "the sandbox");

    // unshare(CLONE_NEWUSER) needs no capability: only the filter refuses it.
    let out = env.exec("filtered", "plain", &["unshare", "-U", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Operation not permitted"),
        "{err}"
    );
    env.exec_ok("filtered", "open", &["unshare", "-U", "true"]);

    let page = env.exec_ok(
        "filtered",
        "plain",
        &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
    );
    assert_eq!(page.trim(), "hello");
    env.exec_ok(
        "filtered",
        "plain",
        &["sh", "-c", "ls / >/dev/null && sleep 0 && date"],
    );
    env.finish();
}

/// The node's seccompDefault makes RuntimeDefault the default; a Localhost
/// profile from the node's folder is enforced; one that leaves the folder
/// is refused naming the field, with nothing left behind.
#[test]
fn seccomp_default_and_localhost_profiles() {
    let env = PodEnv::new();
    let folder = env.root.path().join("seccomp");
    std::fs::create_dir_all(folder.join("team")).unwrap();
    std::fs::write(
        folder.join("team/no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    std::fs::write(
        env.work.path().join("outside.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(
        env.work.path().join("outside.json"),
        folder.join("escape.json"),
    )
    .unwrap();

    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: local }}
spec:
  containers:
    - name: nomkdir
      image: busybox
      command: ["sh", "-c", "{SLEEP}"]
      securityContext: {{ seccompProfile: {{ type: Localhost, localhostProfile: team/no-mkdir.json }} }}
    - name: defaulted
      image: busybox
      command: ["sh", "-c", "{SLEEP}"]
"#
    );
    let path = env.manifest("local", &yaml);
    let mut cmd = env.cmd(&["pod", "run", "-d", "-f", path.to_str().unwrap()]);
    cmd.env("PEAPOD_SECCOMP_DEFAULT", "true");
    let out = output_of(&mut cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_phase("local", "Running", false);
    let status = env.exec_ok("local", "defaulted", &["cat", "/proc/self/status"]);
    assert_eq!(seccomp_mode(&status), "2", "seccompDefault");
    let out = env.exec("local", "nomkdir", &["mkdir", "/tmp/made"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Operation not permitted"),
        "{err}"
    );
    env.exec_ok("local", "nomkdir", &["touch", "/tmp/file"]);
    env.exec_ok("local", "defaulted", &["mkdir", "/tmp/made"]);
    env.ok(&["pod", "rm", "--force", "local"]);

    let escape = yaml.replace("team/no-mkdir.json", "escape.json");
    let err = refused(&env, "local", &escape, &[]);
    assert!(
        err.contains("spec.containers[0].securityContext.seccompProfile.localhostProfile")
            && err.contains("leaves the node's profile folder"),
        "{err}"
    );
    let dotdot = yaml.replace("team/no-mkdir.json", "../outside.json");
    let err = refused(&env, "local", &dotdot, &[]);
    assert!(
        err.contains("localhostProfile: must not contain '..'"),
        "{err}"
    );
    let missing = yaml.replace("team/no-mkdir.json", "team/none.json");
    let err = refused(&env, "local", &missing, &[]);
    assert!(
        err.contains("localhostProfile") && err.contains("No such file"),
        "{err}"
    );
    env.finish();
}

/// Safe sysctls are set in the pod's namespaces; an unsafe one is refused
/// naming the field unless the node allows it; a net sysctl on a
/// hostNetwork pod is refused.
#[test]
fn sysctls_safe_unsafe_and_host_network() {
    let env = PodEnv::new();
    let yaml = |name: &str, sysctls: &str, host_network: bool| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{ name: {name} }}
spec:
  hostNetwork: {host_network}
  securityContext:
    sysctls: [{sysctls}]
  containers:
    - name: c
      image: busybox
      command: ["sh", "-c", "{SLEEP}"]
"#
        )
    };
    let safe = "{name: kernel.shm_rmid_forced, value: '1'}, {name: net.ipv4.ip_unprivileged_port_start, value: '80'}";
    env.run("safe", &yaml("safe", safe, false));
    env.wait_phase("safe", "Running", false);
    let read = |pod: &str, path: &str| env.exec_ok(pod, "c", &["cat", path]).trim().to_string();
    assert_eq!(read("safe", "/proc/sys/kernel/shm_rmid_forced"), "1");
    assert_eq!(
        read("safe", "/proc/sys/net/ipv4/ip_unprivileged_port_start"),
        "80"
    );
    // The host's values are untouched.
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    assert_ne!(host.trim(), "80");

    let somaxconn = "{name: net.core.somaxconn, value: '1234'}";
    let err = refused(&env, "unsafe", &yaml("unsafe", somaxconn, false), &[]);
    assert!(
        err.contains(
            "spec.securityContext.sysctls[0].name: \"net.core.somaxconn\" not allowed: unsafe"
        ),
        "{err}"
    );
    let err = refused(
        &env,
        "global",
        &yaml("global", "{name: vm.swappiness, value: '1'}", false),
        &[],
    );
    assert!(err.contains("not a namespaced sysctl"), "{err}");
    let err = refused(
        &env,
        "hostnet",
        &yaml(
            "hostnet",
            "{name: net.ipv4.tcp_syncookies, value: '1'}",
            true,
        ),
        &[],
    );
    assert!(err.contains("not allowed with host net enabled"), "{err}");

    let path = env.manifest("unsafe", &yaml("unsafe", somaxconn, false));
    let mut cmd = env.cmd(&["pod", "run", "-d", "-f", path.to_str().unwrap()]);
    cmd.env("PEAPOD_ALLOWED_UNSAFE_SYSCTLS", "kernel.msgmax,net.core.*");
    let out = output_of(&mut cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_phase("unsafe", "Running", false);
    assert_eq!(read("unsafe", "/proc/sys/net/core/somaxconn"), "1234");
    env.finish();
}

/// fsGroup owns an emptyDir (group and setgid folder) but not a hostPath,
/// and joins the container's groups with supplementalGroups; Merge adds the
/// image's memberships of the user, Strict does not.
#[test]
fn fs_group_owns_empty_dirs_and_joins_the_groups() {
    let env = PodEnv::new();
    let host_dir = env.work.path().join("host");
    std::fs::create_dir(&host_dir).unwrap();
    let host_gid = std::fs::metadata(&host_dir).unwrap().gid();
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{ name: groups }}
spec:
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000]
  volumes:
    - {{ name: scratch, emptyDir: {{}} }}
    - {{ name: host, hostPath: {{ path: {host} }} }}
  containers:
    - name: c
      image: busybox
      command: ["sh", "-c", "{SLEEP}"]
      volumeMounts:
        - {{ name: scratch, mountPath: /data }}
        - {{ name: host, mountPath: /host }}
"#,
        host = host_dir.display()
    );
    env.run("groups", &yaml);
    env.wait_phase("groups", "Running", false);
    let ids = env.exec_ok("groups", "c", &["id"]);
    assert!(ids.starts_with("uid=1000(app) gid=3000"), "{ids}");
    let groups = env.exec_ok("groups", "c", &["id", "-G"]);
    let mut groups: Vec<u32> = groups
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    groups.sort();
    assert_eq!(groups, [2000, 3000, 4000]);
    let made = env.exec_ok(
        "groups",
        "c",
        &[
            "sh",
            "-c",
            "mkdir /data/sub && touch /data/f && stat -c '%g %a' /data /data/sub /data/f",
        ],
    );
    let lines: Vec<&str> = made.lines().collect();
    assert_eq!(lines[0], "2000 2777", "{made}");
    assert!(
        lines[1].starts_with("2000 2"),
        "the setgid bit is inherited: {made}"
    );
    assert!(lines[2].starts_with("2000 "), "{made}");
    assert_eq!(
        std::fs::metadata(&host_dir).unwrap().gid(),
        host_gid,
        "hostPath untouched"
    );
    env.ok(&["pod", "rm", "--force", "groups"]);

    // The fixture's /etc/group lists no members: in this test's own image
    // store, user app (1000) joins group wheel (10) and nogroup (65534).
    let layers = env.store.path().join("layers");
    let group_file = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().path().join("etc/group"))
        .find(|p| p.is_file())
        .expect("a layer with etc/group");
    let mut text = std::fs::read_to_string(&group_file).unwrap();
    text = text.replace("nogroup:x:65534:", "nogroup:x:65534:app");
    text.push_str("wheel:x:10:root,app\n");
    std::fs::write(&group_file, text).unwrap();
    let groups_of = |yaml: &str| {
        env.run("groups", yaml);
        env.wait_phase("groups", "Running", false);
        let text = env.exec_ok("groups", "c", &["id", "-G"]);
        env.ok(&["pod", "rm", "--force", "groups"]);
        let mut groups: Vec<u32> = text
            .split_whitespace()
            .map(|g| g.parse().unwrap())
            .collect();
        groups.sort();
        groups
    };
    assert_eq!(groups_of(&yaml), [10, 2000, 3000, 4000, 65534], "Merge");
    let strict = yaml.replace(
        "supplementalGroups: [4000]",
        "supplementalGroups: [4000]\n    supplementalGroupsPolicy: Strict",
    );
    assert_eq!(groups_of(&strict), [2000, 3000, 4000], "Strict");
    env.finish();
}
