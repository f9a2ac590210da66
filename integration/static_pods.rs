//! `peapod static` for real: a daemon on a manifest folder, real pods following
//! the files, a restart that adopts, and nothing left behind.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::pod::PodEnv;

const NODE: &str = "it-node";
/// How long a pod may take to follow its file (the daemon reacts at once; this
/// is slack for a loaded 2-core machine).
const FOLLOW: Duration = Duration::from_secs(15);

/// A static pod that stops at once on SIGTERM.
fn manifest(name: &str, marker: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{ name: {name} }}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: main
      image: busybox
      command: ["sh", "-c", "trap 'exit 0' TERM; echo {marker}; sleep 3600 & wait"]
"#
    )
}

/// One test's daemon over its own manifest folder, with PodEnv's root, image
/// store and cgroup parent.
struct StaticEnv {
    /// Taken by `finish`.
    pods_env: Option<PodEnv>,
    manifests: tempfile::TempDir,
    daemon: Option<Child>,
    log: PathBuf,
}

impl StaticEnv {
    fn new() -> Self {
        let env = PodEnv::new();
        let log = env.work.path().join("daemon.log");
        Self {
            pods_env: Some(env),
            manifests: tempfile::Builder::new()
                .prefix("peapod-manifests-")
                .tempdir()
                .unwrap(),
            daemon: None,
            log,
        }
    }

    fn env(&self) -> &PodEnv {
        self.pods_env.as_ref().unwrap()
    }

    fn path(&self, file: &str) -> PathBuf {
        self.manifests.path().join(file)
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.path(file), text).unwrap();
    }

    fn start(&mut self) {
        assert!(self.daemon.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .env()
            .cmd(&[
                "static",
                "--manifest-dir",
                self.manifests.path().to_str().unwrap(),
                "--node-name",
                NODE,
                "--rescan-seconds",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        wait_until("the daemon's first scan", FOLLOW, || {
            self.status()["pid"] == self.daemon.as_ref().unwrap().id()
        });
    }

    /// SIGTERM, as systemd stops it; it must exit 0 and leave its pods.
    fn stop(&mut self) {
        let mut child = self.daemon.take().expect("daemon running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let mut code = None;
        wait_until("the daemon to exit", Duration::from_secs(10), || {
            code = child.try_wait().unwrap();
            code.is_some()
        });
        assert!(
            code.unwrap().success(),
            "daemon: {:?}\n{}",
            code,
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn status(&self) -> Value {
        std::fs::read(self.env().root.path().join("static/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    fn file_status(&self, file: &str) -> Value {
        self.status()["files"][self.path(file).to_str().unwrap()].clone()
    }

    /// Pod name to uid, for every pod in the store.
    fn pods(&self) -> BTreeMap<String, String> {
        let Ok(dirs) = std::fs::read_dir(self.env().root.path().join("pods")) else {
            return BTreeMap::new();
        };
        dirs.filter_map(|d| d.ok())
            .filter_map(|d| {
                let pod: Value =
                    serde_json::from_slice(&std::fs::read(d.path().join("pod.json")).ok()?).ok()?;
                Some((
                    pod["name"].as_str()?.to_string(),
                    pod["uid"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// The pod's status.json once the pod runs with all its containers, each
    /// with a live process.
    fn running(&self, uid: &str) -> Option<Value> {
        let status: Value = serde_json::from_slice(
            &std::fs::read(self.env().pod_dir(uid).join("status.json")).ok()?,
        )
        .ok()?;
        let apps = status["status"]["containerStatuses"].as_array()?;
        let all_running = status["status"]["phase"] == "Running"
            && !apps.is_empty()
            && apps.iter().all(|c| c["state"]["running"].is_object())
            && apps.iter().all(|c| {
                status["pids"][c["name"].as_str().unwrap_or_default()]
                    .as_i64()
                    .is_some_and(|pid| is_alive(pid as i32))
            });
        all_running.then_some(status)
    }

    /// Waits until exactly `names` are in the store, each running, and returns
    /// their uids.
    fn wait_pods(&self, names: &[&str]) -> BTreeMap<String, String> {
        let mut pods = BTreeMap::new();
        let wanted: Vec<String> = names.iter().map(|n| format!("{n}-{NODE}")).collect();
        wait_until(&format!("pods {wanted:?} running"), FOLLOW, || {
            pods = self.pods();
            pods.keys().eq(wanted.iter()) && pods.values().all(|uid| self.running(uid).is_some())
        });
        pods
    }

    /// Waits until `name` runs as a pod other than `old` (and `old` is gone).
    fn wait_replaced(&self, name: &str, old: &str) -> String {
        let full = format!("{name}-{NODE}");
        let mut uid = String::new();
        wait_until(&format!("pod {full} replaced"), FOLLOW, || {
            uid = self.pods().get(&full).cloned().unwrap_or_default();
            !uid.is_empty()
                && uid != old
                && self.running(&uid).is_some()
                && !self.env().pod_dir(old).exists()
        });
        uid
    }

    fn uid(&self, name: &str) -> String {
        self.pods()[&format!("{name}-{NODE}")].clone()
    }

    /// Empties the folder, waits for the pods to go, stops the daemon and
    /// checks that nothing is left.
    fn finish(mut self) {
        for entry in std::fs::read_dir(self.manifests.path()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        wait_until("every static pod removed", FOLLOW, || {
            self.pods().is_empty() && self.status()["removing"] == serde_json::json!([])
        });
        self.stop();
        let root = self.env().root.path().to_str().unwrap().to_string();
        let left = processes_mentioning(&root);
        assert!(left.is_empty(), "processes left: {left:?}");
        self.pods_env.take().unwrap().finish();
    }
}

impl Drop for StaticEnv {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
}

/// Processes whose command line names `text` (supervisors name their pod folder).
fn processes_mentioning(text: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(text))
        .collect()
}

fn started_at(status: &Value) -> Value {
    status["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].clone()
}

#[test]
fn static_pods_follow_added_changed_renamed_and_removed_files() {
    let mut s = StaticEnv::new();
    s.start();
    // A second daemon on the same root is refused.
    let out = s.env().peapod(&[
        "static",
        "--manifest-dir",
        s.manifests.path().to_str().unwrap(),
        "--node-name",
        NODE,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("another peapod static daemon"),
        "{err}"
    );

    s.write("web.yaml", &manifest("web", "one"));
    let first = s.wait_pods(&["web"])["web-it-node"].clone();
    let ps = s.env().ok(&["pod", "ps"]);
    let line = ps.lines().find(|l| l.starts_with("web-it-node")).unwrap();
    assert!(
        line.contains("Running") && line.ends_with(s.path("web.yaml").to_str().unwrap()),
        "{ps}"
    );
    let inspect = s.env().inspect("web-it-node");
    let annotations = &inspect["metadata"]["annotations"];
    assert_eq!(annotations["kubernetes.io/config.source"], "file");
    assert_eq!(annotations["kubernetes.io/config.hash"], first.as_str());
    assert_eq!(
        s.file_status("web.yaml")["state"],
        "running",
        "{}",
        s.status()
    );
    assert!(s.env().logs("web-it-node", "main").contains("one"));

    // Editors' files are not manifests.
    for junk in [".web.yaml.swp", "web.yaml~", ".#web.yaml", "notes.txt"] {
        s.write(junk, &manifest("junk", "junk"));
    }
    // Changed content: a new pod (new uid) replaces the old one.
    s.write("web.yaml", &manifest("web", "two"));
    let second = s.wait_replaced("web", &first);
    assert!(s.env().logs("web-it-node", "main").contains("two"));

    // Renamed: the file is part of the pod's identity, so it is replaced too.
    std::fs::rename(s.path("web.yaml"), s.path("site.yaml")).unwrap();
    s.wait_replaced("web", &second);
    assert_eq!(s.pods().len(), 1, "{:?}", s.pods());
    let inspect = s.env().inspect("web-it-node");
    assert_eq!(
        inspect["metadata"]["annotations"]["peapod.io/static-file"],
        s.path("site.yaml").to_str().unwrap()
    );

    // A second file, then removal of the first.
    s.write("db.json", &manifest("db", "db"));
    s.wait_pods(&["db", "web"]);
    std::fs::remove_file(s.path("site.yaml")).unwrap();
    let db = s.wait_pods(&["db"])["db-it-node"].clone();
    assert!(s.log().contains("site.yaml is gone"), "{}", s.log());

    // `pod rm` on a static pod: its file still declares it, so it comes back.
    let supervisor = s.running(&db).unwrap()["supervisor_pid"].clone();
    s.env().ok(&["pod", "rm", "--force", "db-it-node"]);
    wait_until("db started again", FOLLOW, || {
        s.running(&db)
            .is_some_and(|st| st["supervisor_pid"] != supervisor)
    });
    s.finish();
}

#[test]
fn static_daemon_restart_adopts_running_pods_and_cleans_up_gone_ones() {
    let mut s = StaticEnv::new();
    for name in ["keep", "gone", "edit"] {
        s.write(&format!("{name}.yaml"), &manifest(name, name));
    }
    s.start();
    let before = s.wait_pods(&["edit", "gone", "keep"]);
    let keep = s.running(&before["keep-it-node"]).unwrap();
    s.stop();
    // The pods outlive the daemon.
    assert!(s.running(&before["keep-it-node"]).is_some());
    std::fs::remove_file(s.path("gone.yaml")).unwrap();
    s.write("edit.yaml", &manifest("edit", "edited"));
    s.start();
    let after = s.wait_pods(&["edit", "keep"]);
    // Same uid, same container start and process: adopted, not restarted.
    assert_eq!(after["keep-it-node"], before["keep-it-node"]);
    let keep_now = s.running(&after["keep-it-node"]).unwrap();
    assert_eq!(started_at(&keep_now), started_at(&keep));
    assert_eq!(keep_now["pids"], keep["pids"]);
    assert_eq!(keep_now["supervisor_pid"], keep["supervisor_pid"]);
    // The changed file's pod is replaced; that may finish after `gone` went.
    let edited = s.wait_replaced("edit", &before["edit-it-node"]);
    assert_ne!(edited, before["edit-it-node"]);
    assert!(!s.env().pod_dir(&before["gone-it-node"]).exists());
    s.finish();
}

#[test]
fn static_invalid_and_half_written_manifests_break_no_pod() {
    let mut s = StaticEnv::new();
    s.write("good.yaml", &manifest("good", "good"));
    s.write(
        "bad.yaml",
        &manifest("bad", "bad").replace(
            "image: busybox",
            "image: busybox\n      imagePullPolicy: Always\n      colour: blue",
        ),
    );
    s.start();
    let pods = s.wait_pods(&["good"]);
    let good = pods["good-it-node"].clone();
    wait_until("bad.yaml reported", FOLLOW, || {
        s.file_status("bad.yaml")["state"] == "invalid"
    });
    let bad = s.file_status("bad.yaml");
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.contains("bad.yaml") && error.contains("spec.containers[0].colour"),
        "{bad}"
    );
    assert!(s.log().contains("spec.containers[0].colour"), "{}", s.log());

    // (A valid pod whose image is not in the store runs and pulls it:
    // integration/pod_pull.rs.)
    // The same pod name as good.yaml's, from a later file: a conflict.
    s.write("zz-dup.yaml", &manifest("good", "dup"));
    wait_until("zz-dup.yaml reported", FOLLOW, || {
        s.file_status("zz-dup.yaml")["state"] == "conflict"
    });
    let dup = s.file_status("zz-dup.yaml");
    assert!(
        dup["error"].as_str().unwrap().contains("good.yaml"),
        "{dup}"
    );
    assert_eq!(s.pods().len(), 1, "{:?}", s.pods());
    assert_eq!(s.uid("good"), good);
    std::fs::remove_file(s.path("zz-dup.yaml")).unwrap();

    // A good manifest turned invalid keeps the pod of its last good content;
    // turned back, it is the same pod (same uid), never restarted.
    let good_status = s.running(&good).unwrap();
    s.write(
        "good.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: { name: good\n",
    );
    wait_until("good.yaml reported invalid", FOLLOW, || {
        s.file_status("good.yaml")["state"] == "invalid"
    });
    assert_eq!(s.file_status("good.yaml")["uid"], good.as_str());
    s.write("good.yaml", &manifest("good", "good"));
    wait_until("good.yaml valid again", FOLLOW, || {
        s.file_status("good.yaml")["state"] == "running"
    });
    assert_eq!(s.uid("good"), good);
    assert_eq!(
        started_at(&s.running(&good).unwrap()),
        started_at(&good_status)
    );

    // Half a file (a valid pod on its own, with one container of two) is not
    // acted on while the writer still has it open, across two rescans.
    let full = manifest("half", "first")
        + "    - name: second\n      image: busybox\n      command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n";
    let (head, tail) = full.split_at(manifest("half", "first").len());
    let mut file = std::fs::File::create(s.path("half.yaml")).unwrap();
    file.write_all(head.as_bytes()).unwrap();
    file.flush().unwrap();
    let scans = s.status()["scans"].as_u64().unwrap();
    wait_until("two rescans", FOLLOW, || {
        s.status()["scans"].as_u64().unwrap() >= scans + 2
    });
    assert!(!s.pods().contains_key("half-it-node"), "{:?}", s.pods());
    let state = s.file_status("half.yaml")["state"].clone();
    assert!(state == "writing" || state == "invalid", "{}", s.status());
    file.write_all(tail.as_bytes()).unwrap();
    drop(file);
    let pods = s.wait_pods(&["good", "half"]);
    let half = s.running(&pods["half-it-node"]).unwrap();
    assert_eq!(
        half["status"]["containerStatuses"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{half}"
    );
    s.finish();
}

#[test]
fn static_twenty_manifests_at_once_all_come_up() {
    let mut s = StaticEnv::new();
    s.start();
    // Written beside the folder, then moved in one after the other at once
    // (as a config tool would).
    let staging = s.env().work.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    for name in &names {
        std::fs::write(staging.join(format!("{name}.yaml")), manifest(name, name)).unwrap();
    }
    for name in &names {
        let file = format!("{name}.yaml");
        std::fs::rename(staging.join(&file), s.path(&file)).unwrap();
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let pods = s.wait_pods(&refs);
    assert_eq!(pods.len(), 20);
    s.finish();
}

#[test]
fn static_slow_stop_holds_up_no_other_file() {
    let mut s = StaticEnv::new();
    // Ignores SIGTERM: it goes only at the end of its grace period.
    let slow = manifest("slow", "slow")
        .replace(
            "terminationGracePeriodSeconds: 2",
            "terminationGracePeriodSeconds: 6",
        )
        .replace("trap 'exit 0' TERM", "trap '' TERM");
    s.write("slow.yaml", &slow);
    s.start();
    let uid = s.wait_pods(&["slow"])["slow-it-node"].clone();
    std::fs::remove_file(s.path("slow.yaml")).unwrap();
    wait_until("slow being removed", FOLLOW, || {
        s.status()["removing"][0] == uid.as_str()
    });
    s.write("fast.yaml", &manifest("fast", "fast"));
    let mut fast = None;
    wait_until("fast running", FOLLOW, || {
        fast = s.pods().get("fast-it-node").cloned();
        fast.as_ref().is_some_and(|f| s.running(f).is_some())
    });
    assert!(
        s.env().pod_dir(&uid).exists(),
        "the slow pod went before the fast one ran"
    );
    s.wait_pods(&["fast"]);
    s.finish();
}

/// Runs web.yaml, kills its pod's supervisor, and waits until the pod (same
/// uid) runs under a live supervisor again: the pod's status before and after.
fn kill_supervisor_and_wait(s: &mut StaticEnv) -> (Value, Value) {
    s.write("web.yaml", &manifest("web", "web"));
    s.start();
    let uid = s.wait_pods(&["web"])["web-it-node"].clone();
    let before = s.running(&uid).unwrap();
    let supervisor = before["supervisor_pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut after = Value::Null;
    wait_until("the pod supervised again", FOLLOW, || {
        after = s.running(&uid).unwrap_or_default();
        s.pods().get("web-it-node") == Some(&uid)
            && after["supervisor_pid"]
                .as_i64()
                .is_some_and(|pid| pid != supervisor && is_alive(pid as i32))
    });
    (before, after)
}

#[test]
fn static_pod_whose_supervisor_died_is_brought_back() {
    let mut s = StaticEnv::new();
    // Adopted, or (without adoption) stopped and started anew from the same
    // file: the same uid, running under a live supervisor again.
    kill_supervisor_and_wait(&mut s);
    s.finish();
}

#[test]
fn static_pod_whose_supervisor_died_is_adopted_without_restart() {
    let mut s = StaticEnv::new();
    let (before, after) = kill_supervisor_and_wait(&mut s);
    assert_eq!(started_at(&after), started_at(&before));
    assert_eq!(after["pids"], before["pids"]);
    // The daemon logs it once `pod adopt` has returned, which can be just
    // after the new supervisor published itself.
    wait_until("the daemon to log the adoption", FOLLOW, || {
        s.log().contains("adopted")
    });
    s.finish();
}

#[test]
fn static_bad_flags_and_config_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("static.yaml");
    std::fs::write(&config, "manifestDir: /x\nnodename: n\n").unwrap();
    let run = |args: &[&str]| {
        output_of(
            std::process::Command::new(peapod_bin())
                .arg("--root")
                .arg(dir.path().join("root"))
                .arg("static")
                .args(args),
        )
    };
    let cases: [(Vec<&str>, &[&str]); 4] = [
        (
            vec!["--config", config.to_str().unwrap()],
            &["static.yaml", "nodename"],
        ),
        (
            vec!["--config", "/nonexistent/static.yaml"],
            &["/nonexistent/static.yaml"],
        ),
        (vec!["--node-name", "Bad_Node"], &["nodeName", "Bad_Node"]),
        (
            vec!["--node-name", "n", "--rescan-seconds", "0"],
            &["rescanSeconds"],
        ),
    ];
    for (args, expected) in cases {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for word in expected {
            assert!(err.contains(word), "{args:?}: {err}");
        }
    }
}
