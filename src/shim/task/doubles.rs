//! Test doubles of the Task service's two seams: a runtime whose processes
//! exit when the test says so (or when killed), and an event sender. Both
//! write to one journal, so a test sees runtime calls and events in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::shim::events::{EventSender, TaskEvent};
use crate::shim::process::{Processes, Spawned, Target};
use crate::shim::stdio::{IoPaths, Streams};
use crate::shim::Error;

/// How long a test waits for something the service does in the background.
const DEADLINE: Duration = Duration::from_secs(5);

/// What happened, in order: `runtime …` calls and `event …` events.
#[derive(Clone)]
pub struct Journal(Arc<watch::Sender<Vec<String>>>);

impl Journal {
    fn new() -> Self {
        Journal(Arc::new(watch::channel(Vec::new()).0))
    }

    fn push(&self, entry: String) {
        self.0.send_modify(|all| all.push(entry));
    }

    pub fn entries(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    /// Where `entry` is in the journal.
    pub fn position(&self, entry: &str) -> Option<usize> {
        self.0.borrow().iter().position(|e| e == entry)
    }

    /// The events sent, in order.
    pub fn events(&self) -> Vec<String> {
        let all = self.0.borrow();
        let events = all.iter().filter_map(|e| e.strip_prefix("event "));
        events.map(str::to_string).collect()
    }

    /// Waits (at most DEADLINE) until `entry` is in the journal.
    pub async fn until(&self, entry: &str) {
        let mut rx = self.0.subscribe();
        let seen = rx.wait_for(|all| all.iter().any(|e| e == entry));
        if tokio::time::timeout(DEADLINE, seen).await.is_err() {
            panic!("no {entry:?} after {DEADLINE:?}: {:#?}", self.entries());
        }
    }
}

struct Live {
    container: String,
    exit: oneshot::Sender<i32>,
}

#[derive(Default)]
struct State {
    last_pid: i32,
    live: HashMap<i32, Live>,
    inits: HashMap<String, i32>,
    /// Verbs that fail once, with the runtime's message.
    failing: HashMap<&'static str, String>,
    /// The init exits with this code as soon as it is started.
    exit_at_start: Option<i32>,
}

/// A runtime double; a process's handle is its pid.
#[derive(Clone)]
pub struct FakeRuntime {
    journal: Journal,
    state: Arc<Mutex<State>>,
}

impl FakeRuntime {
    /// Makes `pid` exit with `code`; false if it is not running.
    pub fn exit(&self, pid: u32, code: i32) -> bool {
        let live = self.state.lock().unwrap().live.remove(&(pid as i32));
        live.is_some_and(|l| l.exit.send(code).is_ok())
    }

    /// Makes the next `verb` fail with the runtime's error `msg`.
    pub fn fail(&self, verb: &'static str, msg: &str) {
        self.state
            .lock()
            .unwrap()
            .failing
            .insert(verb, msg.to_string());
    }

    /// Makes the next init started exit at once with `code` (`true`).
    pub fn exit_at_start(&self, code: i32) {
        self.state.lock().unwrap().exit_at_start = Some(code);
    }

    /// Records the call; fails it if the test asked for that.
    fn call(&self, verb: &'static str, entry: String) -> Result<(), Error> {
        self.journal.push(format!("runtime {entry}"));
        match self.state.lock().unwrap().failing.remove(verb) {
            None => Ok(()),
            Some(msg) => Err(Error::Runtime {
                verb: verb.to_string(),
                not_found: msg.contains("does not exist"),
                msg,
            }),
        }
    }

    fn spawn(&self, container: &str) -> Spawned<i32> {
        let (exit, exited) = oneshot::channel();
        let mut state = self.state.lock().unwrap();
        state.last_pid += 1;
        let pid = 100 + state.last_pid;
        let container = container.to_string();
        state.live.insert(pid, Live { container, exit });
        Spawned {
            pid,
            handle: pid,
            exited,
            streams: Streams::default(),
        }
    }
}

#[async_trait]
impl Processes for FakeRuntime {
    type Handle = i32;

    async fn create(
        &self,
        c: Target<'_>,
        _io: &IoPaths,
        systemd_cgroup: bool,
    ) -> Result<Spawned<i32>, Error> {
        let flag = if systemd_cgroup {
            "--systemd-cgroup "
        } else {
            ""
        };
        self.call("create", format!("create {flag}{}", c.id))?;
        let spawned = self.spawn(c.id);
        let mut state = self.state.lock().unwrap();
        state.inits.insert(c.id.to_string(), spawned.pid);
        Ok(spawned)
    }

    async fn start(&self, c: Target<'_>) -> Result<(), Error> {
        self.call("start", format!("start {}", c.id))?;
        let (code, init) = {
            let mut state = self.state.lock().unwrap();
            (state.exit_at_start.take(), state.inits.get(c.id).copied())
        };
        if let (Some(code), Some(pid)) = (code, init) {
            self.exit(pid as u32, code);
        }
        Ok(())
    }

    async fn exec(
        &self,
        c: Target<'_>,
        exec_id: &str,
        process: &[u8],
        _io: &IoPaths,
    ) -> Result<Spawned<i32>, Error> {
        let args = String::from_utf8_lossy(process);
        self.call("exec", format!("exec {} {exec_id} {args}", c.id))?;
        Ok(self.spawn(c.id))
    }

    fn signal(&self, pid: &i32, signal: i32) -> Result<(), Error> {
        self.journal.push(format!("runtime signal {pid} {signal}"));
        if !self.state.lock().unwrap().live.contains_key(pid) {
            return Err(Error::NotFound("process already finished".into()));
        }
        if signal == libc::SIGKILL {
            self.exit(*pid as u32, 128 + signal);
        }
        Ok(())
    }

    async fn kill_all(&self, c: Target<'_>, signal: u32) -> Result<(), Error> {
        self.call("kill", format!("kill-all {} {signal}", c.id))?;
        if signal == libc::SIGKILL as u32 {
            let pids: Vec<i32> = {
                let state = self.state.lock().unwrap();
                let mine = state.live.iter().filter(|(_, l)| l.container == c.id);
                mine.map(|(pid, _)| *pid).collect()
            };
            for pid in pids {
                self.exit(pid as u32, 128 + libc::SIGKILL);
            }
        }
        Ok(())
    }

    async fn delete(&self, c: Target<'_>, force: bool) -> Result<(), Error> {
        let force = if force { "--force " } else { "" };
        self.call("delete", format!("delete {force}{}", c.id))
    }

    async fn pause(&self, c: Target<'_>) -> Result<(), Error> {
        self.call("pause", format!("pause {}", c.id))
    }

    async fn resume(&self, c: Target<'_>) -> Result<(), Error> {
        self.call("resume", format!("resume {}", c.id))
    }

    async fn update(&self, c: Target<'_>, resources: &[u8]) -> Result<(), Error> {
        let resources = String::from_utf8_lossy(resources);
        self.call("update", format!("update {} {resources}", c.id))
    }

    async fn pids(&self, c: Target<'_>) -> Result<Vec<u32>, Error> {
        self.call("ps", format!("ps {}", c.id))?;
        let state = self.state.lock().unwrap();
        let mine = state.live.iter().filter(|(_, l)| l.container == c.id);
        let mut pids: Vec<u32> = mine.map(|(pid, _)| *pid as u32).collect();
        pids.sort();
        Ok(pids)
    }
}

/// An event sender double: each event a line of the journal.
pub struct FakeEvents {
    journal: Journal,
}

fn describe(event: &TaskEvent) -> String {
    match event {
        TaskEvent::Create(e) => format!("create {} pid={}", e.container_id, e.pid),
        TaskEvent::Start(e) => format!("start {} pid={}", e.container_id, e.pid),
        TaskEvent::ExecAdded(e) => format!("exec-added {} {}", e.container_id, e.exec_id),
        TaskEvent::ExecStarted(e) => {
            format!(
                "exec-started {} {} pid={}",
                e.container_id, e.exec_id, e.pid
            )
        }
        TaskEvent::Exit(e) => format!(
            "exit {} {} pid={} status={}",
            e.container_id, e.id, e.pid, e.exit_status
        ),
        TaskEvent::Delete(e) => format!(
            "delete {} pid={} status={}",
            e.container_id, e.pid, e.exit_status
        ),
        TaskEvent::Paused(e) => format!("paused {}", e.container_id),
        TaskEvent::Resumed(e) => format!("resumed {}", e.container_id),
    }
}

#[async_trait]
impl EventSender for FakeEvents {
    fn send(&self, event: TaskEvent) {
        self.journal.push(format!("event {}", describe(&event)));
    }

    async fn flush(&self) {
        self.journal.push("flush".to_string());
    }

    fn watch_oom(&self, _id: &str, _pid: i32) -> Option<JoinHandle<()>> {
        None
    }
}

/// Both doubles, over one journal.
pub fn doubles() -> (FakeRuntime, FakeEvents, Journal) {
    let journal = Journal::new();
    let runtime = FakeRuntime {
        journal: journal.clone(),
        state: Arc::default(),
    };
    let events = FakeEvents {
        journal: journal.clone(),
    };
    (runtime, events, journal)
}
