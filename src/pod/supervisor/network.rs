//! The supervisor's part of the pod's network: it is set up before the
//! sandbox is made (CNI plugins are forked processes that block for tens of
//! milliseconds: fine here, never in the steady-state loop), the pod's /etc
//! files are written from it, and its addresses go into the status and the
//! containers' Downward API values.
//!
//! A network that cannot be set up (a missing plugin, a broken config, a
//! failing ADD) leaves nothing behind and the pod Pending, as the kubelet
//! leaves it after `FailedCreatePodSandBox`: the reason and message are on
//! the pod's PodReadyToStartContainers condition, and the sandbox is tried
//! again after a back-off (the restart back-off's base, doubling to its
//! maximum, as the kubelet backs off a pod whose sync failed).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::Supervisor;
use crate::error::one_line;
use crate::image::Rootfs;
use crate::net::node;
use crate::pod::downward::RuntimeValues;
use crate::pod::error::Result;
use crate::pod::events::EventType;
use crate::pod::folder::SANDBOX;
use crate::pod::lifecycle::Input;
use crate::pod::network::{self, PodNetwork};
use crate::pod::status::{ConditionType, PodStatusView};

/// The kubelet's event reason for a sandbox that could not be made.
pub(super) const FAILED_SANDBOX: &str = "FailedCreatePodSandBox";

#[derive(Debug, Default)]
pub(super) struct NetworkState {
    network: Option<PodNetwork>,
    host_ips: Vec<IpAddr>,
    failure: Option<SandboxFailure>,
}

/// Why the sandbox could not be made, and when it is tried again.
#[derive(Debug)]
struct SandboxFailure {
    message: String,
    retry_at: Instant,
    delay: Duration,
}

impl Supervisor {
    /// The pod's network, its /etc files, then its sandbox; the lifecycle
    /// begins once the sandbox runs. A network that cannot be set up is
    /// retried later (Ok); any other failure is the caller's (Err), with the
    /// network undone.
    pub(super) fn make_sandbox(&mut self) -> Result<()> {
        self.net.host_ips = node::node_ips();
        let network = match network::setup(&self.pod, &self.folder, &self.settings) {
            Ok(network) => network,
            Err(e) => {
                let id = network::attachment_id(&self.pod);
                self.sandbox_failed(format!(
                    "failed to set up network for sandbox \"{id}\": {}",
                    one_line(&e)
                ));
                return Ok(());
            }
        };
        let netns = network.record.netns().map(Path::to_path_buf);
        let made = self
            .etc_files(&network)
            .and_then(|()| self.create_sandbox(netns.as_deref()));
        match made {
            Ok(pid) => {
                self.sandbox_pid = Some(pid);
                self.net.network = Some(network);
                self.net.failure = None;
                self.refresh_probe_target();
                self.feed(Input::Begin);
                Ok(())
            }
            Err(e) => {
                self.undo_sandbox();
                Err(e)
            }
        }
    }

    fn etc_files(&self, network: &PodNetwork) -> Result<()> {
        let files = network::etc_files(&self.pod, &self.settings, &network.pod_ips);
        for warning in &files.warnings {
            tracing::warn!("{warning}");
        }
        Ok(network::write_etc_files(&self.folder, &files)?)
    }

    /// What a failed attempt or a dead sandbox left: the sandbox's state and
    /// rootfs, the network.
    pub(super) fn undo_sandbox(&mut self) {
        self.net.network = None;
        self.delete_container(SANDBOX);
        if let Err(e) = Rootfs::unmount(&self.folder.bundle(SANDBOX)) {
            tracing::warn!("sandbox rootfs: {}", one_line(&e));
        }
        if let Err(e) = network::release(&self.folder, &self.settings) {
            tracing::warn!("undo the pod's network: {}", one_line(&e));
        }
    }

    fn sandbox_failed(&mut self, why: String) {
        let backoff = self.settings.backoff();
        let delay = match &self.net.failure {
            None => backoff.base,
            Some(before) => (before.delay * 2).min(backoff.max),
        };
        let message = format!("Failed to create pod sandbox: {why}");
        tracing::warn!("{FAILED_SANDBOX}: {message} (trying again in {delay:?})");
        self.record(EventType::Warning, FAILED_SANDBOX, None, &message);
        self.net.failure = Some(SandboxFailure {
            message,
            retry_at: Instant::now() + delay,
            delay,
        });
        self.publish();
    }

    /// When the sandbox is to be tried again, if it failed.
    pub(super) fn sandbox_retry_at(&self) -> Option<Instant> {
        self.net.failure.as_ref().map(|f| f.retry_at)
    }

    /// Whether the pod waits for its sandbox to be tried again.
    pub(super) fn sandbox_failing(&self) -> bool {
        self.net.failure.is_some()
    }

    /// Tries the sandbox again once its back-off has passed (not while the
    /// pod is being stopped).
    pub(super) fn retry_sandbox_if_due(&mut self) {
        let due = self
            .sandbox_retry_at()
            .is_some_and(|at| at <= Instant::now());
        if !due || self.done || self.lifecycle.is_stopping() || self.sandbox_pid.is_some() {
            return;
        }
        if let Err(e) = self.make_sandbox() {
            self.sandbox_failed(one_line(&e));
        }
    }

    /// Takes over the network of a pod whose supervisor died.
    pub(super) fn resume_network(&mut self) {
        self.net.host_ips = node::node_ips();
        self.net.network = network::resume(&self.folder, &self.settings);
    }

    /// The status's addresses, and a sandbox failure on its condition.
    pub(super) fn network_status(&self, status: &mut PodStatusView) {
        status.host_ips = self.net.host_ips.clone();
        status.pod_ips = self
            .net
            .network
            .as_ref()
            .map(|n| n.pod_ips.clone())
            .unwrap_or_default();
        if let Some(failure) = &self.net.failure {
            let ready = (status.conditions.iter_mut())
                .find(|c| c.kind == ConditionType::PodReadyToStartContainers);
            if let Some(condition) = ready {
                condition.reason = Some(FAILED_SANDBOX.into());
                condition.message = Some(failure.message.clone());
            }
        }
    }

    /// The pod's first IP, where probes without a host connect (inside the
    /// pod's namespace, as the kubelet's probes reach the pod's IP); none
    /// for a pod on loopback only or on the host's network.
    pub(super) fn probe_address(&self) -> Option<IpAddr> {
        if self.pod.host.network {
            return None;
        }
        self.net.network.as_ref()?.pod_ips.first().copied()
    }

    /// The Downward API's status values for a container starting now.
    pub(super) fn runtime_values(&self) -> RuntimeValues {
        RuntimeValues {
            pod_ips: (self.net.network.as_ref())
                .map(|n| n.pod_ips.clone())
                .unwrap_or_default(),
            host_ips: self.net.host_ips.clone(),
        }
    }
}
