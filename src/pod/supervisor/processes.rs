//! The pod's processes ending: reaped as our children, or, for a pod taken over
//! from a supervisor that died, watched through pidfds with their exit
//! statuses from the kernel's process events (see `pod/exits.rs`).

use std::io::Write;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::output::LogRun;
use super::{now, Supervisor};
use crate::pod::cgroups::{container_cgroup, pod_cgroup};
use crate::pod::error::{Error, Result};
use crate::pod::exits::{Exit, ExitEvents};
use crate::pod::lifecycle::{Input, Lifecycle};
use crate::pod::settings::CgroupDriver;

/// How long an adopted process's exit event may come after its pidfd woke.
const EXIT_EVENT_PATIENCE: Duration = Duration::from_millis(200);

impl Supervisor {
    /// Takes over a pod whose supervisor died: its lifecycle from status.json,
    /// its output FIFOs, and a pidfd on each of its processes that still runs.
    /// They are no longer our children: their exit statuses come from the
    /// kernel's process events, or are unknown without them.
    pub(super) fn resume_pod(&mut self) -> Result<()> {
        let refuse = |why: &str| Error::Supervisor(why.to_string());
        let status = self
            .folder
            .status()
            .ok_or_else(|| refuse("the pod has no status.json"))?;
        if status.finished {
            return Err(refuse("the pod has finished: there is nothing to adopt"));
        }
        let snapshot = status.lifecycle.as_ref().ok_or_else(|| {
            refuse("the pod's status.json has no lifecycle record to carry on from")
        })?;
        self.lifecycle = Lifecycle::restore(&self.pod, self.settings.backoff(), snapshot, now())?;
        self.resume_network();
        self.open_outputs()?;
        // Subscribed before the look at which processes still run, so that
        // no exit falls between.
        self.exits = match ExitEvents::subscribe() {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::warn!(
                    "process exit events: {e}; adopted containers' exit codes will be unknown"
                );
                None
            }
        };
        let same = |pid: &i32| {
            let recorded = status.starts.get(pid).copied();
            recorded.is_some() && crate::oci::process_start_time(*pid) == recorded
        };
        if let Some(pid) = status.sandbox_pid.filter(same) {
            self.watch(pid)?;
            self.sandbox_pid = Some(pid);
        }
        let mut lost = Vec::new();
        for name in self.lifecycle.alive_containers() {
            match status.pids.get(&name).filter(|pid| same(pid)) {
                Some(&pid) => {
                    self.watch(pid)?;
                    self.running.insert(pid, name.clone());
                    // Its output goes on into the run's log file.
                    self.open_run_log(&name, LogRun::Current)?;
                }
                None => lost.push(name),
            }
        }
        if self.watched.is_empty() {
            self.exits = None;
        }
        self.probes_resume();
        for name in lost {
            self.delete_container(&name);
            self.feed(Input::Lost { container: name });
        }
        if self.sandbox_pid.is_none() && !self.lifecycle.replacing_sandbox() {
            // Nothing can run without the sandbox: a new one is made, or
            // the pod stops (as the kubelet decides).
            self.feed(Input::SandboxDied);
        }
        // A pull the dead supervisor had under way is started again.
        let names: Vec<String> = self.containers().map(|c| c.name.clone()).collect();
        for container in names {
            self.apply(Input::ImageReady { container });
        }
        self.feed(Input::Tick);
        // Taken over, whatever the phase: `pod adopt` may return.
        if let Some(mut ready) = self.ready.take() {
            let _ = ready.write_all(b"ok\n");
        }
        Ok(())
    }

    /// Watches a process that is not our child, through a pidfd.
    fn watch(&mut self, pid: i32) -> Result<()> {
        let not_ours = |why: String| Error::Supervisor(format!("pidfd_open {pid}: {why}"));
        let fd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).ok_or_else(|| not_ours("not a pid".into()))?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| not_ours(e.to_string()))?;
        self.watched.push((pid, fd));
        Ok(())
    }

    /// Watched processes whose pidfd woke: their exits, with the status the
    /// kernel's process events gave (if they came in time).
    pub(super) fn watched_ended(&mut self, ready: impl Fn(usize) -> bool, exits_ready: bool) {
        if exits_ready {
            let watched = &self.watched;
            if let Some(exits) = self.exits.as_mut() {
                exits.read(|pid| watched.iter().any(|(p, _)| *p == pid));
            }
        }
        let gone: Vec<i32> = (0..self.watched.len())
            .filter(|i| ready(*i))
            .map(|i| self.watched[i].0)
            .collect();
        for pid in gone {
            self.watched.retain(|(p, _)| *p != pid);
            let exit = self
                .exits
                .as_mut()
                .and_then(|e| e.take(pid, EXIT_EVENT_PATIENCE))
                .map(|exit| match exit {
                    Exit::Code(code) => (code, None),
                    Exit::Signal(sig) => (128 + sig, Some(sig)),
                });
            if self.watched.is_empty() {
                self.exits = None;
            }
            if self.process_ended(pid, exit) {
                break;
            }
        }
    }

    /// Reaps every child that ended.
    pub(super) fn reap(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let ended = match status {
                WaitStatus::Exited(pid, code) => (pid.as_raw(), code, None),
                WaitStatus::Signaled(pid, sig, _) => {
                    (pid.as_raw(), 128 + sig as i32, Some(sig as i32))
                }
                _ => continue,
            };
            let (pid, code, signal) = ended;
            if self.pulls.is_pull(pid) {
                self.pull_ended(pid, &format!("exit code {code}"));
                continue;
            }
            if self.process_ended(pid, Some((code, signal))) {
                return;
            }
        }
    }

    /// Whether the OOM killer ended this run of `name`. Each run has a fresh
    /// cgroup, so any kill counted there was in this run. Under the systemd
    /// driver the scope's cgroup may be gone already (systemd removes it when
    /// its last process ends), so a kill the pod cgroup counted that no
    /// container was given yet goes to a container that died of SIGKILL.
    fn oom_killed(&mut self, name: &str, signal: Option<i32>) -> bool {
        let layout = crate::sys::cgroup::Layout::host();
        let own = layout
            .cgroup(container_cgroup(&self.settings, &self.pod, name))
            .oom_kills();
        if self.settings.cgroup_driver != CgroupDriver::Systemd {
            return own > 0;
        }
        let pod = layout
            .cgroup(pod_cgroup(&self.settings, &self.pod))
            .oom_kills();
        let killed = own > 0 || (signal == Some(libc::SIGKILL) && pod > self.pod_oom_kills);
        if killed {
            self.pod_oom_kills = (self.pod_oom_kills + own.max(1)).min(pod);
        }
        killed
    }

    /// A process of the pod ended, with its exit code and signal if it was our
    /// child. Returns true once the pod is done (the sandbox is gone).
    fn process_ended(&mut self, pid: i32, exit: Option<(i32, Option<i32>)>) -> bool {
        if Some(pid) == self.sandbox_pid {
            self.sandbox_pid = None;
            if self.lifecycle.is_finished() {
                self.finish();
                return true;
            }
            // The sandbox died under the pod: its containers are stopped, and
            // a new one is made, or the pod stops (the lifecycle decides).
            tracing::warn!("the pod's sandbox (pid {pid}) died");
            self.feed(Input::SandboxDied);
            return self.done;
        }
        if let Some(name) = self.running.remove(&pid) {
            self.health_container_ended(&name);
            self.drain_outputs(&name);
            // Its terminal ends with the run.
            self.outputs.retain(|o| !(o.tty && o.container == name));
            let oom_killed = self.oom_killed(&name, exit.and_then(|(_, signal)| signal));
            // The exited container's cgroup and state go now; its logs stay.
            self.delete_container(&name);
            let input = match exit {
                Some((exit_code, signal)) => Input::Exited {
                    message: self.termination_message(&name, exit_code),
                    container: name,
                    exit_code,
                    signal,
                    oom_killed,
                },
                None => Input::Lost { container: name },
            };
            self.feed(input);
        }
        false
    }
}
