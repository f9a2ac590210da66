//! The pod's events as the supervisor records them (see `pod::events`): the
//! kubelet's reasons and messages, each about the pod or one container.

use super::Supervisor;
use crate::pod::events::EventType;
use crate::pod::status::ContainerState;

impl Supervisor {
    /// "name_namespace(uid)", as the kubelet names a pod in messages.
    pub(super) fn pod_ref(&self) -> String {
        format!("{}_{}({})", self.pod.name, self.pod.namespace, self.pod.uid)
    }

    /// Records an event about the pod, or about one of its containers.
    pub(super) fn record(
        &mut self,
        kind: EventType,
        reason: &str,
        container: Option<&str>,
        message: &str,
    ) {
        let object = match container {
            None => String::new(),
            Some(name) if self.pod.init_containers.iter().any(|c| c.name == name) => {
                format!("spec.initContainers{{{name}}}")
            }
            Some(name) => format!("spec.containers{{{name}}}"),
        };
        self.events
            .record(kind, reason, &object, message, chrono::Utc::now());
    }

    /// The kubelet's Killing event, once per run, with why it is stopped.
    pub(super) fn record_killing(&mut self, container: &str) {
        if !self.killing_recorded.insert(container.to_string()) {
            return;
        }
        let message = self
            .kill_reasons
            .remove(container)
            .unwrap_or_else(|| format!("Stopping container {container}"));
        self.record(EventType::Normal, "Killing", Some(container), &message);
    }

    /// The events of a run that started: the container, its start (the
    /// image's are recorded before, `images.rs`).
    pub(super) fn record_started(&mut self, container: &str) {
        self.killing_recorded.remove(container);
        let created = format!("Created container: {container}");
        self.record(EventType::Normal, "Created", Some(container), &created);
        let started = format!("Started container {container}");
        self.record(EventType::Normal, "Started", Some(container), &started);
    }

    /// A BackOff event for each container that has just begun to wait in
    /// CrashLoopBackOff.
    pub(super) fn record_backoffs(&mut self, states: &[(String, ContainerState)]) {
        let waiting: Vec<String> = states
            .iter()
            .filter(
                |(_, s)| matches!(s, ContainerState::Waiting(w) if w.reason == "CrashLoopBackOff"),
            )
            .map(|(name, _)| name.clone())
            .collect();
        let pod_ref = self.pod_ref();
        for name in &waiting {
            if !self.backing_off.contains(name) {
                let message =
                    format!("Back-off restarting failed container {name} in pod {pod_ref}");
                self.record(EventType::Warning, "BackOff", Some(name), &message);
            }
        }
        self.backing_off = waiting;
    }
}
