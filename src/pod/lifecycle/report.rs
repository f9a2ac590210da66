//! What the machine reports: the pod's phase, its conditions (with the time
//! each last changed) and every container's status.

use chrono::{DateTime, Utc};

use super::members::{Member, Role, Run};
use super::Lifecycle;
use crate::pod::status::{ConditionStatus, ConditionType, Phase, PodCondition, PodStatusView};

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        if self.init_failed || self.deadline_exceeded {
            return Phase::Failed;
        }
        let apps = || self.members.iter().filter(|m| m.role == Role::App);
        let terminal = || {
            if apps().all(Member::succeeded) {
                Phase::Succeeded
            } else {
                Phase::Failed
            }
        };
        if self.sandbox_stopped {
            return terminal();
        }
        if !self.ever_initialized || apps().any(|m| !m.has_run()) {
            return Phase::Pending;
        }
        let sidecar_alive = || {
            self.members
                .iter()
                .any(|m| m.role == Role::Sidecar && m.alive())
        };
        if apps().any(|m| !matches!(m.run, Run::Exited)) || sidecar_alive() {
            return Phase::Running;
        }
        terminal()
    }

    pub fn status(&self) -> PodStatusView {
        let phase = self.phase();
        let mut conditions = self.conditions(phase);
        for (condition, transition) in conditions.iter_mut().zip(&self.transitions) {
            condition.last_transition_time = transition.map(|(_, since)| since);
        }
        let view = |role: fn(Role) -> bool| {
            self.members
                .iter()
                .filter(|m| role(m.role))
                .map(|m| m.status(self.idle_reason, &self.pod_ref))
                .collect()
        };
        let (reason, message) = match self.deadline_exceeded {
            true => {
                let (reason, message) = super::DEADLINE_EXCEEDED;
                (Some(reason.to_owned()), Some(message.to_owned()))
            }
            false => (None, None),
        };
        PodStatusView {
            phase,
            reason,
            message,
            conditions,
            start_time: self.start_time,
            init_container_statuses: view(|r| r != Role::App),
            container_statuses: view(|r| r == Role::App),
            // The network's part is the supervisor's to fill in.
            pod_ips: Vec::new(),
            host_ips: Vec::new(),
            qos_class: None,
        }
    }

    fn conditions(&self, phase: Phase) -> Vec<PodCondition> {
        let names = |filter: &dyn Fn(&Member) -> bool| {
            let names: Vec<&str> = self
                .members
                .iter()
                .filter(|m| filter(m))
                .map(|m| m.name.as_str())
                .collect();
            names.join(" ")
        };
        let initialized = if phase == Phase::Succeeded {
            (true, Some("PodCompleted"), None)
        } else if self.initialized {
            (true, None, None)
        } else {
            let pending = names(&|m| m.role != Role::App && !m.init_done());
            (
                false,
                Some("ContainersNotInitialized"),
                Some(format!("containers with incomplete status: [{pending}]")),
            )
        };
        let ready = match phase {
            Phase::Succeeded => (false, Some("PodCompleted"), None),
            Phase::Failed => (false, Some("PodFailed"), None),
            Phase::Pending | Phase::Running => {
                let unready = names(&|m| m.role != Role::Init && !m.is_ready());
                if unready.is_empty() {
                    (true, None, None)
                } else {
                    (
                        false,
                        Some("ContainersNotReady"),
                        Some(format!("containers with unready status: [{unready}]")),
                    )
                }
            }
        };
        ConditionType::ALL
            .iter()
            .map(|&kind| {
                let (status, reason, message) = match kind {
                    ConditionType::PodReadyToStartContainers => {
                        (self.begun && !self.sandbox_stopped, None, None)
                    }
                    ConditionType::Initialized => initialized.clone(),
                    ConditionType::Ready | ConditionType::ContainersReady => ready.clone(),
                    ConditionType::PodScheduled => (true, None, None),
                };
                PodCondition {
                    kind,
                    status: status.into(),
                    reason: reason.map(str::to_owned),
                    message,
                    last_transition_time: None,
                }
            })
            .collect()
    }

    pub(super) fn record_transitions(&mut self, wall: DateTime<Utc>) {
        let conditions = self.conditions(self.phase());
        for (condition, transition) in conditions.iter().zip(&mut self.transitions) {
            let status = condition.status == ConditionStatus::True;
            if transition.is_none_or(|(was, _)| was != status) {
                *transition = Some((status, wall));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::lifecycle::tests::*;
    use crate::pod::status::{from_k8s, to_k8s};

    #[test]
    fn phase_follows_the_app_containers() {
        let cases = [
            (
                "all succeed",
                TestPod::new(Never).app("a").app("b"),
                vec![
                    PhaseIs(Phase::Pending),
                    At(0, begin(), vec![start("a"), start("b")]),
                    At(1, started("a"), vec![]),
                    PhaseIs(Phase::Pending),
                    At(1, started("b"), vec![]),
                    PhaseIs(Phase::Running),
                    At(2, exited("a", 0), vec![]),
                    PhaseIs(Phase::Running),
                    At(3, exited("b", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
            (
                "one fails",
                TestPod::new(Never).app("a").app("b"),
                vec![
                    At(0, begin(), vec![start("a"), start("b")]),
                    At(1, started("a"), vec![]),
                    At(1, started("b"), vec![]),
                    At(2, exited("a", 1), vec![]),
                    PhaseIs(Phase::Running),
                    At(3, exited("b", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Failed),
                ],
            ),
            (
                "OnFailure: running while a failed one will restart",
                TestPod::new(OnFailure).app("a").app("b"),
                vec![
                    At(0, begin(), vec![start("a"), start("b")]),
                    At(1, started("a"), vec![]),
                    At(1, started("b"), vec![]),
                    At(2, exited("a", 0), vec![]),
                    At(3, exited("b", 1), vec![start("b")]),
                    PhaseIs(Phase::Running),
                    At(3, started("b"), vec![]),
                    At(4, exited("b", 1), vec![]),
                    State("b", "Waiting:CrashLoopBackOff"),
                    PhaseIs(Phase::Running),
                    At(14, tick(), vec![start("b")]),
                    PhaseIs(Phase::Running),
                    At(14, started("b"), vec![]),
                    At(15, exited("b", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                    Restarts("b", 2),
                ],
            ),
            (
                "pending while an init container crash-loops",
                TestPod::new(Always).init("i").app("a"),
                vec![
                    At(0, begin(), vec![start("i")]),
                    At(0, start_failed("i"), vec![start("i")]),
                    PhaseIs(Phase::Pending),
                    At(0, start_failed("i"), vec![]),
                    State("i", "Waiting:CrashLoopBackOff"),
                    PhaseIs(Phase::Pending),
                    At(10, tick(), vec![start("i")]),
                    At(10, started("i"), vec![]),
                    At(11, exited("i", 0), vec![start("a")]),
                    PhaseIs(Phase::Pending),
                    At(11, started("a"), vec![]),
                    PhaseIs(Phase::Running),
                ],
            ),
            (
                "running while a sidecar stops after the apps",
                TestPod::new(Never).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(1, started("a"), vec![]),
                    PhaseIs(Phase::Running),
                    At(2, exited("a", 0), vec![term("s")]),
                    PhaseIs(Phase::Running),
                    State("s", "Running"),
                    At(3, killed("s", 15), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
            (
                "a failed app: Failed once the sidecar has stopped",
                TestPod::new(Never).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(1, started("a"), vec![]),
                    At(2, exited("a", 1), vec![term("s")]),
                    PhaseIs(Phase::Running),
                    At(3, exited("s", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Failed),
                ],
            ),
            (
                "a sidecar being restarted counts as alive",
                TestPod::new(Never).sidecar("s").app("a"),
                vec![
                    At(0, begin(), vec![start("s")]),
                    At(0, started("s"), vec![start("a")]),
                    At(0, started("a"), vec![]),
                    At(5, exited("s", 1), vec![start("s")]),
                    At(6, exited("a", 0), vec![]),
                    PhaseIs(Phase::Running),
                    Deadline(None),
                    At(7, started("s"), vec![term("s")]),
                    PhaseIs(Phase::Running),
                    At(8, exited("s", 0), vec![SANDBOX]),
                    PhaseIs(Phase::Succeeded),
                ],
            ),
        ];
        for (name, pod, steps) in cases {
            run(name, pod, &steps);
        }
    }

    #[test]
    fn status_is_a_kubernetes_pod_status() {
        let steps = [
            At(0, begin(), vec![start("s")]),
            At(1, started("s"), vec![start("i")]),
            At(2, started("i"), vec![]),
            At(3, exited("i", 0), vec![start("a")]),
            At(4, started("a"), vec![]),
            At(10, killed("a", 9), vec![start("a")]),
            At(10, started("a"), vec![]),
            At(11, exited("a", 1), vec![]),
            At(21, tick(), vec![start("a")]),
            At(21, started("a"), vec![]),
            At(30, exited("a", 2), vec![]),
        ];
        let pod = TestPod::new(Always).sidecar("s").init("i").app("a");
        let (pod, clock) = run("status", pod, &steps);
        let status = pod.status();
        assert_eq!(status.phase, Phase::Running);
        assert_eq!(status.start_time, Some(clock.at(0).wall));

        let json = serde_json::to_value(to_k8s(&status)).unwrap();
        let a = &json["containerStatuses"][0];
        assert_eq!(a["name"], "a");
        assert_eq!(a["image"], "a:latest");
        assert_eq!(a["restartCount"], 2);
        assert_eq!(a["ready"], false);
        assert_eq!(a["started"], false);
        assert_eq!(a["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            a["state"]["waiting"]["message"],
            "back-off 20s restarting failed container=a pod=web_default(uid-1)"
        );
        assert_eq!(a["lastState"]["terminated"]["exitCode"], 2);
        assert_eq!(a["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(
            a["lastState"]["terminated"]["startedAt"],
            "2024-05-01T12:00:21Z"
        );
        assert_eq!(
            a["lastState"]["terminated"]["finishedAt"],
            "2024-05-01T12:00:30Z"
        );
        assert_eq!(json["startTime"], "2024-05-01T12:00:00Z");
        let inits = &json["initContainerStatuses"];
        assert_eq!(inits[0]["name"], "s");
        assert_eq!(
            inits[0]["state"]["running"]["startedAt"],
            "2024-05-01T12:00:01Z"
        );
        assert_eq!(inits[0]["ready"], true);
        assert_eq!(inits[0]["lastState"], serde_json::json!({}));
        assert_eq!(inits[1]["state"]["terminated"]["reason"], "Completed");
        assert_eq!(inits[1]["ready"], true);

        let conditions: Vec<(String, String)> = json["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap().into(),
                    c["status"].as_str().unwrap().into(),
                )
            })
            .collect();
        let want = [
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", "False"),
            ("ContainersReady", "False"),
            ("PodScheduled", "True"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(t, s)| (t.to_string(), s.to_string()))
            .collect();
        assert_eq!(conditions, want);
        let ready = status.condition(ConditionType::Ready).unwrap();
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a]")
        );
        // Ready went true at 21 s (a started again) and false at 30 s.
        assert_eq!(ready.last_transition_time, Some(clock.at(30).wall));
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.last_transition_time, Some(clock.at(3).wall));

        // Kubernetes' own types read it, and so do ours.
        let k8s: k8s_openapi::api::core::v1::PodStatus = serde_json::from_value(json).unwrap();
        assert_eq!(k8s.phase.as_deref(), Some("Running"));
        let k8s_a = &k8s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(k8s_a.restart_count, 2);
        let last = k8s_a
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(last.exit_code, 2);
        assert_eq!(k8s.init_container_statuses.as_ref().unwrap().len(), 2);
        assert_eq!(k8s.conditions.as_ref().unwrap().len(), 5);
        assert_eq!(from_k8s(k8s).unwrap(), status);
    }

    #[test]
    fn conditions_before_and_after() {
        let pod = TestPod::new(Never).init("i").app("a");
        let (mut pod, clock) = run("conditions", pod, &[]);
        let status = pod.status();
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.status, ConditionStatus::False);
        assert_eq!(
            initialized.reason.as_deref(),
            Some("ContainersNotInitialized")
        );
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [i]")
        );
        assert_eq!(initialized.last_transition_time, None);
        let ready_to_start = status
            .condition(ConditionType::PodReadyToStartContainers)
            .unwrap();
        assert_eq!(ready_to_start.status, ConditionStatus::False);

        pod.handle(begin(), clock.at(0));
        pod.handle(started("i"), clock.at(1));
        pod.handle(exited("i", 0), clock.at(2));
        pod.handle(started("a"), clock.at(3));
        let status = pod.status();
        for kind in ConditionType::ALL {
            let condition = status.condition(kind).unwrap();
            assert_eq!(condition.status, ConditionStatus::True, "{kind:?}");
        }
        let ready = status.condition(ConditionType::Ready).unwrap();
        assert_eq!(ready.last_transition_time, Some(clock.at(3).wall));
        assert!(status.container("a").unwrap().ready);
        assert!(status.container("a").unwrap().started);

        pod.handle(exited("a", 0), clock.at(4));
        let status = pod.status();
        assert_eq!(status.phase, Phase::Succeeded);
        let ready = status.condition(ConditionType::ContainersReady).unwrap();
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
        // The kubelet's GeneratePodInitializedCondition on a Succeeded pod.
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.status, ConditionStatus::True);
        assert_eq!(initialized.reason.as_deref(), Some("PodCompleted"));
        assert_eq!(initialized.message, None);
        assert_eq!(initialized.last_transition_time, Some(clock.at(2).wall));
        let sandbox = status
            .condition(ConditionType::PodReadyToStartContainers)
            .unwrap();
        assert_eq!(sandbox.status, ConditionStatus::False);
        assert_eq!(sandbox.last_transition_time, Some(clock.at(4).wall));
    }

    #[test]
    fn conditions_while_a_sidecar_outlives_the_apps() {
        let pod = TestPod::new(Never).sidecar("s").app("a");
        let steps = [
            At(0, begin(), vec![start("s")]),
            At(1, started("s"), vec![start("a")]),
            At(2, started("a"), vec![]),
            At(3, exited("a", 0), vec![term("s")]),
        ];
        let (mut pod, clock) = run("sidecar outlives", pod, &steps);
        let status = pod.status();
        assert_eq!(status.phase, Phase::Running);
        for kind in [ConditionType::Ready, ConditionType::ContainersReady] {
            let ready = status.condition(kind).unwrap();
            assert_eq!(ready.status, ConditionStatus::False, "{kind:?}");
            assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
            assert_eq!(
                ready.message.as_deref(),
                Some("containers with unready status: [a]")
            );
            assert_eq!(ready.last_transition_time, Some(clock.at(3).wall));
        }
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.status, ConditionStatus::True);
        assert_eq!(initialized.reason, None);
        assert!(status.container("s").unwrap().ready);

        assert_eq!(pod.handle(killed("s", 15), clock.at(4)), vec![SANDBOX]);
        let status = pod.status();
        assert_eq!(status.phase, Phase::Succeeded);
        let ready = status.condition(ConditionType::Ready).unwrap();
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
        assert_eq!(ready.last_transition_time, Some(clock.at(3).wall));
        let initialized = status.condition(ConditionType::Initialized).unwrap();
        assert_eq!(initialized.status, ConditionStatus::True);
        assert_eq!(initialized.reason.as_deref(), Some("PodCompleted"));
        assert_eq!(initialized.last_transition_time, Some(clock.at(1).wall));
    }
}
