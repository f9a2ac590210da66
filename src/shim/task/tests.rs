//! containerd's rules for a task, checked against the doubles of both seams:
//! no containerd, no root, no processes.

use std::sync::Arc;
use std::time::Duration;

use containerd_shim::asynchronous::ExitSignal;
use containerd_shim_protos::api::{
    CreateTaskRequest, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, ResumeRequest, ShutdownRequest, StartRequest, StateRequest, Status,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext};
use serde_json::json;

use super::doubles::{doubles, FakeEvents, FakeRuntime, Journal};
use super::exits::pid_namespace_shared;
use super::lifecycle::{accept_options, is_systemd_cgroups_path};
use super::TaskService;

const KILL: i32 = libc::SIGKILL;
const TERM: u32 = libc::SIGTERM as u32;

/// The container's pid namespace, as its config.json says.
#[derive(Clone, Copy, Debug)]
enum PidNs {
    Own,
    /// Joined by path (another container's, as `ctr run --with-ns`).
    Joined,
    /// The host's: no pid namespace entry.
    Host,
}

/// A Task service over the doubles, with bundles in a temporary folder.
struct Shim {
    svc: TaskService<FakeRuntime, FakeEvents>,
    runtime: FakeRuntime,
    journal: Journal,
    exit: Arc<ExitSignal>,
    dir: tempfile::TempDir,
}

fn ctx() -> TtrpcContext {
    TtrpcContext {
        mh: Default::default(),
        metadata: Default::default(),
        timeout_nano: 0,
    }
}

/// What containerd gets for a failed call.
fn refusal<T: std::fmt::Debug>(answer: ttrpc::Result<T>) -> (ttrpc::Code, String) {
    match answer {
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message().to_string()),
        other => panic!("not refused with a status: {other:?}"),
    }
}

impl Shim {
    fn new() -> Self {
        let (runtime, events, journal) = doubles();
        let exit = Arc::new(ExitSignal::default());
        Shim {
            svc: TaskService::new(runtime.clone(), events, exit.clone()),
            runtime,
            journal,
            exit,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn bundle(&self, id: &str, pid_ns: PidNs) -> String {
        let pid = match pid_ns {
            PidNs::Own => json!([{ "type": "pid" }]),
            PidNs::Joined => json!([{ "type": "pid", "path": "/proc/42/ns/pid" }]),
            PidNs::Host => json!([]),
        };
        let mut namespaces = pid.as_array().unwrap().clone();
        namespaces.push(json!({ "type": "mount" }));
        let config = json!({ "linux": { "namespaces": namespaces } });
        let bundle = self.dir.path().join(id);
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        bundle.to_string_lossy().into_owned()
    }

    async fn try_create(&self, id: &str, pid_ns: PidNs) -> ttrpc::Result<u32> {
        let req = CreateTaskRequest {
            id: id.into(),
            bundle: self.bundle(id, pid_ns),
            ..Default::default()
        };
        self.svc.create(&ctx(), req).await.map(|r| r.pid)
    }

    async fn create(&self, id: &str, pid_ns: PidNs) -> u32 {
        self.try_create(id, pid_ns).await.unwrap()
    }

    /// Creates and starts `id`; its init's pid.
    async fn run(&self, id: &str, pid_ns: PidNs) -> u32 {
        let pid = self.create(id, pid_ns).await;
        assert_eq!(self.start(id, "").await, pid);
        pid
    }

    async fn try_start(&self, id: &str, exec_id: &str) -> ttrpc::Result<u32> {
        let req = StartRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.svc.start(&ctx(), req).await.map(|r| r.pid)
    }

    async fn start(&self, id: &str, exec_id: &str) -> u32 {
        self.try_start(id, exec_id).await.unwrap()
    }

    async fn try_exec(&self, id: &str, exec_id: &str, process: &[u8]) -> ttrpc::Result<Empty> {
        let req = ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            spec: Some(Any {
                value: process.to_vec(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.svc.exec(&ctx(), req).await
    }

    /// Adds and starts an exec; its pid.
    async fn exec(&self, id: &str, exec_id: &str) -> u32 {
        self.try_exec(id, exec_id, br#"{"args":["sleep"]}"#)
            .await
            .unwrap();
        self.start(id, exec_id).await
    }

    async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> ttrpc::Result<Empty> {
        let req = KillRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            signal,
            all,
            ..Default::default()
        };
        self.svc.kill(&ctx(), req).await
    }

    async fn delete(&self, id: &str, exec_id: &str) -> ttrpc::Result<DeleteResponse> {
        let req = DeleteRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.svc.delete(&ctx(), req).await
    }

    async fn status(&self, id: &str, exec_id: &str) -> Status {
        let req = StateRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let state = self.svc.state(&ctx(), req).await.unwrap();
        state.status.enum_value().unwrap()
    }

    /// Makes `pid` exit and waits until the service has reported it.
    async fn exits(&self, id: &str, exec_id: &str, pid: u32, code: i32) {
        assert!(self.runtime.exit(pid, code), "{pid} is not running");
        let who = if exec_id.is_empty() { id } else { exec_id };
        let exit = format!("event exit {id} {who} pid={pid} status={code}");
        self.journal.until(&exit).await;
    }

    fn before(&self, first: &str, then: &str) -> bool {
        let at = |e: &str| self.journal.position(e);
        match (at(first), at(then)) {
            (Some(a), Some(b)) => a < b,
            _ => panic!(
                "{first:?} or {then:?} missing: {:#?}",
                self.journal.entries()
            ),
        }
    }

    async fn shut_down(&self) -> bool {
        let req = ShutdownRequest::default();
        self.svc.shutdown(&ctx(), req).await.unwrap();
        // Polled once: ready only if the shim was told to exit.
        tokio::time::timeout(Duration::ZERO, self.exit.wait())
            .await
            .is_ok()
    }
}

fn wait_request(id: &str, exec_id: &str) -> WaitRequest {
    WaitRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn events_follow_containerds_order() {
    let s = Shim::new();
    let init = s.run("c1", PidNs::Own).await;
    let exec = s.exec("c1", "e1").await;
    s.exits("c1", "e1", exec, 3).await;
    let deleted = s.delete("c1", "e1").await.unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (exec, 3));
    s.exits("c1", "", init, 0).await;
    s.delete("c1", "").await.unwrap();
    assert_eq!(
        s.journal.events(),
        [
            format!("create c1 pid={init}"),
            format!("start c1 pid={init}"),
            "exec-added c1 e1".into(),
            format!("exec-started c1 e1 pid={exec}"),
            format!("exit c1 e1 pid={exec} status=3"),
            format!("exit c1 c1 pid={init} status=0"),
            format!("delete c1 pid={init} status=0"),
        ]
    );
}

#[tokio::test]
async fn an_init_that_exits_while_starting_is_reported_started_first() {
    let s = Shim::new();
    s.runtime.exit_at_start(0);
    let init = s.run("c1", PidNs::Own).await;
    let exit = format!("event exit c1 c1 pid={init} status=0");
    s.journal.until(&exit).await;
    assert!(s.before(&format!("event start c1 pid={init}"), &exit));
    assert_eq!(s.status("c1", "").await, Status::STOPPED);
}

#[tokio::test]
async fn execs_are_killed_and_reported_before_their_init() {
    let s = Shim::new();
    let init = s.run("c1", PidNs::Own).await;
    let e1 = s.exec("c1", "e1").await;
    let e2 = s.exec("c1", "e2").await;
    assert!(s.runtime.exit(init, 0));
    let init_exit = format!("event exit c1 c1 pid={init} status=0");
    s.journal.until(&init_exit).await;
    for (exec_id, pid) in [("e1", e1), ("e2", e2)] {
        assert!(s.before(&format!("runtime signal {pid} {KILL}"), &init_exit));
        let exit = format!("event exit c1 {exec_id} pid={pid} status=137");
        assert!(s.before(&exit, &init_exit), "{exec_id}");
    }
    // Its own pid namespace took everything else with it.
    let entries = s.journal.entries();
    assert!(!entries.iter().any(|e| e.starts_with("runtime kill-all")));
}

#[tokio::test]
async fn without_its_own_pid_namespace_what_an_init_leaves_is_killed_first() {
    for pid_ns in [PidNs::Joined, PidNs::Host] {
        let s = Shim::new();
        let init = s.run("c1", pid_ns).await;
        let exec = s.exec("c1", "e1").await;
        s.exits("c1", "", init, 3).await;
        let init_exit = format!("event exit c1 c1 pid={init} status=3");
        let kill_all = format!("runtime kill-all c1 {KILL}");
        assert!(s.before(&kill_all, &init_exit), "{pid_ns:?}");
        let exec_exit = format!("event exit c1 e1 pid={exec} status=137");
        assert!(s.before(&exec_exit, &init_exit), "{pid_ns:?}");
    }
}

#[tokio::test]
async fn delete_answers_as_containerd_expects() {
    let s = Shim::new();
    // Never started: its init still waits, so the delete is forced.
    let created = s.create("c0", PidNs::Own).await;
    let deleted = s.delete("c0", "").await.unwrap();
    assert_eq!(deleted.pid, created);
    let event = format!("event delete c0 pid={created} status=0");
    assert!(s.before("runtime delete --force c0", &event));

    let init = s.run("c1", PidNs::Own).await;
    let (code, msg) = refusal(s.delete("c1", "").await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    let exec = s.exec("c1", "e1").await;
    let (code, msg) = refusal(s.delete("c1", "e1").await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");

    // Deleted twice: NotFound, which containerd takes as already deleted.
    s.exits("c1", "e1", exec, 2).await;
    assert_eq!(s.delete("c1", "e1").await.unwrap().exit_status, 2);
    let (code, msg) = refusal(s.delete("c1", "e1").await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{msg}");
    s.exits("c1", "", init, 0).await;
    // A runtime failure keeps the task, for containerd to try again.
    s.runtime.fail("delete", "device or resource busy");
    let (code, msg) = refusal(s.delete("c1", "").await);
    assert!(
        code == ttrpc::Code::UNKNOWN && msg.contains("busy"),
        "{msg}"
    );
    // Gone from the runtime already: deleted all the same.
    s.runtime.fail("delete", "container does not exist: c1");
    s.delete("c1", "").await.unwrap();
    let (code, msg) = refusal(s.delete("c1", "").await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{msg}");
    assert!(msg.contains("c1"), "{msg}");
    let deletes = s.journal.events();
    let deletes: Vec<_> = deletes.iter().filter(|e| e.starts_with("delete")).collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
}

#[tokio::test]
async fn shutdown_is_refused_while_containers_remain() {
    let s = Shim::new();
    let c1 = s.run("c1", PidNs::Own).await;
    let c2 = s.run("c2", PidNs::Own).await;
    assert!(!s.shut_down().await);
    s.exits("c1", "", c1, 0).await;
    s.delete("c1", "").await.unwrap();
    assert!(!s.shut_down().await);
    s.exits("c2", "", c2, 0).await;
    s.delete("c2", "").await.unwrap();
    assert!(s.shut_down().await);
    // The last events were flushed to containerd before the shim goes.
    assert!(s.before(&format!("event delete c2 pid={c2} status=0"), "flush"));
}

#[tokio::test]
async fn kill_follows_containerds_rules() {
    let s = Shim::new();
    let init = s.run("c1", PidNs::Own).await;
    // The init alone, or the whole container.
    s.kill("c1", "", TERM, false).await.unwrap();
    s.kill("c1", "", TERM, true).await.unwrap();
    let entries = s.journal.entries();
    let last = &entries[entries.len() - 2..];
    assert_eq!(
        last,
        [
            format!("runtime signal {init} {TERM}"),
            format!("runtime kill-all c1 {TERM}")
        ]
    );
    // An exec, even with --all, is signalled alone.
    let exec = s.exec("c1", "e1").await;
    s.kill("c1", "e1", TERM, true).await.unwrap();
    assert_eq!(
        s.journal.entries().last().unwrap(),
        &format!("runtime signal {exec} {TERM}")
    );

    let (code, msg) = refusal(s.kill("c1", "nope", TERM, false).await);
    assert!(
        code == ttrpc::Code::NOT_FOUND && msg.contains("nope"),
        "{msg}"
    );
    s.try_exec("c1", "e2", b"{}").await.unwrap();
    let (code, msg) = refusal(s.kill("c1", "e2", TERM, false).await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");

    // An exec that already exited: nothing is signalled.
    s.exits("c1", "e1", exec, 0).await;
    let signals = || {
        let entries = s.journal.entries();
        let signal = format!("runtime signal {exec} ");
        entries.iter().filter(|e| e.starts_with(&signal)).count()
    };
    let before = signals();
    let (code, msg) = refusal(s.kill("c1", "e1", TERM, false).await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{msg}");
    assert!(
        msg.contains("already finished") && msg.contains("e1"),
        "{msg}"
    );
    assert_eq!(signals(), before);
}

#[tokio::test]
async fn wait_returns_the_exit() {
    let s = Shim::new();
    let init = s.run("c1", PidNs::Own).await;
    let exec = s.exec("c1", "e1").await;
    let waiting = |exec_id: &'static str| {
        let svc = s.svc.clone();
        tokio::spawn(async move { svc.wait(&ctx(), wait_request("c1", exec_id)).await })
    };
    let (for_init, for_exec) = (waiting(""), waiting("e1"));
    s.exits("c1", "e1", exec, 5).await;
    let waited: WaitResponse = for_exec.await.unwrap().unwrap();
    assert_eq!(waited.exit_status, 5);
    assert!(waited.exited_at.is_some());
    assert!(!for_init.is_finished());
    s.exits("c1", "", init, 9).await;
    assert_eq!(for_init.await.unwrap().unwrap().exit_status, 9);
    // After the exit: at once.
    let again = s.svc.wait(&ctx(), wait_request("c1", "e1")).await.unwrap();
    assert_eq!(again.exit_status, 5);
}

#[tokio::test]
async fn pause_and_resume_freeze_the_container_and_its_execs() {
    let s = Shim::new();
    s.run("c1", PidNs::Own).await;
    s.exec("c1", "e1").await;
    let pause = PauseRequest {
        id: "c1".into(),
        ..Default::default()
    };
    s.svc.pause(&ctx(), pause).await.unwrap();
    assert_eq!(s.status("c1", "").await, Status::PAUSED);
    assert_eq!(s.status("c1", "e1").await, Status::PAUSED);
    let resume = ResumeRequest {
        id: "c1".into(),
        ..Default::default()
    };
    s.svc.resume(&ctx(), resume).await.unwrap();
    assert_eq!(s.status("c1", "e1").await, Status::RUNNING);
    let events = s.journal.events();
    assert_eq!(events[events.len() - 2..], ["paused c1", "resumed c1"]);
}

#[tokio::test]
async fn exec_needs_a_running_init_and_a_new_id() {
    let s = Shim::new();
    s.create("c1", PidNs::Own).await;
    s.try_exec("c1", "e1", b"{}").await.unwrap();
    let (code, msg) = refusal(s.try_start("c1", "e1").await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    s.start("c1", "").await;
    let (code, msg) = refusal(s.try_exec("c1", "e1", b"{}").await);
    assert_eq!(code, ttrpc::Code::ALREADY_EXISTS, "{msg}");
    let (code, msg) = refusal(s.try_exec("c1", "e2", b"not json").await);
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    s.start("c1", "e1").await;
    let (code, msg) = refusal(s.try_start("c1", "e1").await);
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
}

#[tokio::test]
async fn a_failed_create_leaves_no_task_and_sends_no_event() {
    let s = Shim::new();
    s.runtime.fail(
        "create",
        "exec: \"no-such-command\": executable file missing",
    );
    let (code, msg) = refusal(s.try_create("c1", PidNs::Own).await);
    assert!(
        code == ttrpc::Code::UNKNOWN && msg.contains("no-such-command"),
        "{msg}"
    );
    assert!(s.journal.events().is_empty());
    assert!(s.shut_down().await);
    let s = Shim::new();
    s.runtime.fail("create", "bad");
    assert!(s.try_create("c1", PidNs::Own).await.is_err());
    s.create("c1", PidNs::Own).await;
    let (code, msg) = refusal(s.try_create("c1", PidNs::Own).await);
    assert_eq!(code, ttrpc::Code::ALREADY_EXISTS, "{msg}");
}

#[tokio::test]
async fn pids_name_their_execs_and_update_passes_the_resources() {
    let s = Shim::new();
    let init = s.run("c1", PidNs::Own).await;
    let exec = s.exec("c1", "e1").await;
    let req = PidsRequest {
        id: "c1".into(),
        ..Default::default()
    };
    let pids = s.svc.pids(&ctx(), req).await.unwrap().processes;
    let listed: Vec<(u32, bool)> = pids.iter().map(|p| (p.pid, p.info.is_some())).collect();
    assert_eq!(listed, [(init, false), (exec, true)]);
    let req = UpdateTaskRequest {
        id: "c1".into(),
        resources: Some(Any {
            value: br#"{"pids":{"limit":5}}"#.to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    s.svc.update(&ctx(), req).await.unwrap();
    let entries = s.journal.entries();
    assert_eq!(
        entries.last().unwrap(),
        r#"runtime update c1 {"pids":{"limit":5}}"#
    );
}

#[test]
fn init_exit_kills_all_without_a_pid_namespace_of_its_own() {
    let own = json!({ "linux": { "namespaces": [{ "type": "mount" }, { "type": "pid" }] } });
    assert!(!pid_namespace_shared(&own));
    let joined = json!({ "linux": { "namespaces": [
        { "type": "pid", "path": "/proc/42/ns/pid" }] } });
    assert!(pid_namespace_shared(&joined));
    let host = json!({ "linux": { "namespaces": [{ "type": "network" }] } });
    assert!(pid_namespace_shared(&host));
    assert!(pid_namespace_shared(&json!({})));
}

#[test]
fn runtime_options_from_cri_and_ctr_are_accepted() {
    for url in [
        "",
        "runtimeoptions.v1.Options",
        "type.googleapis.com/runtimeoptions.v1.Options",
        "containerd.runc.v1.Options",
    ] {
        assert!(accept_options(url).is_ok(), "{url}");
    }
    let err = accept_options("example.v1.Other").unwrap_err().to_string();
    assert!(
        err.starts_with("options:") && err.contains("example.v1.Other"),
        "{err}"
    );
}

#[test]
fn systemd_cgroups_paths_have_runcs_slice_prefix_name_form() {
    for systemd in [
        // containerd's CRI under a kubelet with the systemd driver
        "kubepods-besteffort-pod0a1b2c3d_4e5f.slice:cri-containerd:abc123",
        "system.slice:docker:abc",
        // runc's default slice
        ":peapod:abc",
    ] {
        assert!(is_systemd_cgroups_path(systemd), "{systemd}");
    }
    for cgroupfs in [
        "/kubepods/besteffort/pod0a1b/abc123",
        "kubepods/abc",
        "",
        "a.slice:b",
        "/a.slice:b:c",
        "a.slice:b:",
    ] {
        assert!(!is_systemd_cgroups_path(cgroupfs), "{cgroupfs}");
    }
}

/// The runtime's create gets `--systemd-cgroup` when runc's options say
/// `SystemdCgroup = true` or the cgroupsPath is in systemd's form, else not.
#[tokio::test]
async fn systemd_cgroup_from_runc_options_or_the_cgroups_path_reaches_the_runtime() {
    use containerd_shim_protos::protobuf::Message;
    use containerd_shim_protos::shim::oci::Options as RuncOptions;

    let s = Shim::new();
    let create = |id: &'static str, cgroups_path: &str, systemd_option: Option<bool>| {
        let bundle = s.dir.path().join(id);
        std::fs::create_dir_all(&bundle).unwrap();
        let config =
            json!({ "linux": { "cgroupsPath": cgroups_path, "namespaces": [{ "type": "pid" }] } });
        std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        let options = systemd_option.map(|on| Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: RuncOptions {
                systemd_cgroup: on,
                ..Default::default()
            }
            .write_to_bytes()
            .unwrap(),
            ..Default::default()
        });
        CreateTaskRequest {
            id: id.into(),
            bundle: bundle.to_string_lossy().into_owned(),
            options: options.into(),
            ..Default::default()
        }
    };
    let cases = [
        (
            "c1",
            "kubepods-burstable-podx.slice:cri-containerd:c1",
            None,
            true,
        ),
        ("c2", "system.slice:ctr:c2", Some(true), true),
        ("c3", "/kubepods/burstable/podx/c3", Some(true), true),
        ("c4", "/kubepods/burstable/podx/c4", Some(false), false),
        ("c5", "/kubepods/burstable/podx/c5", None, false),
    ];
    for (id, path, option, systemd) in cases {
        s.svc
            .create(&ctx(), create(id, path, option))
            .await
            .unwrap();
        let flag = if systemd { "--systemd-cgroup " } else { "" };
        let entry = format!("runtime create {flag}{id}");
        assert!(
            s.journal.position(&entry).is_some(),
            "{entry:?} not in {:?}",
            s.journal.entries()
        );
    }
    let bad = Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: vec![0xff, 0xff],
        ..Default::default()
    };
    let mut req = create("c6", "/x/c6", None);
    req.options = Some(bad).into();
    let err = s.svc.create(&ctx(), req).await.unwrap_err().to_string();
    assert!(err.contains("containerd.runc.v1.Options"), "{err}");
}
