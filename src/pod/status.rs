//! The pod's status: what [`Lifecycle`](super::lifecycle::Lifecycle) reports
//! (phase, conditions, each container's state), in peapod's own terms.
//!
//! Users only ever see it as Kubernetes' v1 `PodStatus`: [`to_k8s`] is the one
//! conversion, used where status.json is written (through [`k8s_json`]) and by
//! `pod inspect`. [`from_k8s`] reads status.json back for peapod's own commands.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::qos::QosClass;

/// Kubernetes' pod phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    const ALL: [Self; 4] = [Self::Pending, Self::Running, Self::Succeeded, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }
}

/// The pod's status, as Kubernetes' v1 `PodStatus` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodStatusView {
    pub phase: Phase,
    /// Why the pod is in its phase, when it is for a reason of its own
    /// ("DeadlineExceeded"), with a message.
    pub reason: Option<String>,
    pub message: Option<String>,
    pub conditions: Vec<PodCondition>,
    pub start_time: Option<DateTime<Utc>>,
    /// Init containers, sidecars included, in manifest order.
    pub init_container_statuses: Vec<ContainerStatusView>,
    /// App containers, in manifest order.
    pub container_statuses: Vec<ContainerStatusView>,
    /// podIPs (podIP is the first): from CNI, or the node's on hostNetwork.
    pub pod_ips: Vec<IpAddr>,
    /// hostIPs (hostIP is the first): the node's primary addresses.
    pub host_ips: Vec<IpAddr>,
    /// qosClass: Guaranteed, Burstable or BestEffort (`qos.rs`).
    pub qos_class: Option<QosClass>,
}

impl PodStatusView {
    /// Every container, init containers first, in manifest order.
    pub fn containers(&self) -> impl Iterator<Item = &ContainerStatusView> {
        self.init_container_statuses
            .iter()
            .chain(&self.container_statuses)
    }

    pub fn container(&self, name: &str) -> Option<&ContainerStatusView> {
        self.containers().find(|c| c.name == name)
    }

    pub fn condition(&self, kind: ConditionType) -> Option<&PodCondition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCondition {
    pub kind: ConditionType,
    pub status: ConditionStatus,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionType {
    PodReadyToStartContainers,
    Initialized,
    Ready,
    ContainersReady,
    PodScheduled,
}

impl ConditionType {
    /// The order the kubelet lists conditions in.
    pub const ALL: [Self; 5] = [
        Self::PodReadyToStartContainers,
        Self::Initialized,
        Self::Ready,
        Self::ContainersReady,
        Self::PodScheduled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PodReadyToStartContainers => "PodReadyToStartContainers",
            Self::Initialized => "Initialized",
            Self::Ready => "Ready",
            Self::ContainersReady => "ContainersReady",
            Self::PodScheduled => "PodScheduled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            Self::True
        } else {
            Self::False
        }
    }
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
        }
    }
}

/// One container's status, as Kubernetes' v1 `ContainerStatus` has it. Whether it
/// is an init container is which list of [`PodStatusView`] it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatusView {
    pub name: String,
    pub image: String,
    pub state: ContainerState,
    /// The previous termination (what `logs --previous` shows).
    pub last_state: Option<TerminatedState>,
    /// Running, started and its readiness probe passing; for a regular init
    /// container: exited 0.
    pub ready: bool,
    pub restart_count: u32,
    /// Running, its postStart hook done and its startup probe passed.
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Waiting(WaitingState),
    Running(RunningState),
    Terminated(TerminatedState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingState {
    /// "ContainerCreating", "PodInitializing" or "CrashLoopBackOff".
    pub reason: String,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningState {
    pub started_at: DateTime<Utc>,
}

/// How a container's run ended. Serialized as it is kept in lifecycle
/// snapshots (peapod's own record in status.json, read back by `pod adopt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminatedState {
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// "Completed", "Error", "OOMKilled", or the start failure's reason.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// None when the process never started.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339")]
    pub finished_at: DateTime<Utc>,
}

/// The status as Kubernetes writes it: what status.json and `pod inspect` show.
pub fn to_k8s(status: &PodStatusView) -> k8s::PodStatus {
    let containers = |list: &[ContainerStatusView]| list.iter().map(container_to_k8s).collect();
    k8s::PodStatus {
        phase: Some(status.phase.as_str().to_owned()),
        reason: status.reason.clone(),
        message: status.message.clone(),
        conditions: Some(
            status
                .conditions
                .iter()
                .map(|c| k8s::PodCondition {
                    type_: c.kind.as_str().to_owned(),
                    status: c.status.as_str().to_owned(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.map(time),
                    ..Default::default()
                })
                .collect(),
        ),
        start_time: status.start_time.map(time),
        init_container_statuses: Some(containers(&status.init_container_statuses))
            .filter(|list: &Vec<_>| !list.is_empty()),
        container_statuses: Some(containers(&status.container_statuses)),
        pod_ip: status.pod_ips.first().map(IpAddr::to_string),
        pod_ips: Some(
            (status.pod_ips.iter())
                .map(|ip| k8s::PodIP { ip: ip.to_string() })
                .collect(),
        )
        .filter(|ips: &Vec<_>| !ips.is_empty()),
        host_ip: status.host_ips.first().map(IpAddr::to_string),
        host_ips: Some(
            (status.host_ips.iter())
                .map(|ip| k8s::HostIP { ip: ip.to_string() })
                .collect(),
        )
        .filter(|ips: &Vec<_>| !ips.is_empty()),
        qos_class: status.qos_class.map(|c| c.as_str().to_owned()),
        ..Default::default()
    }
}

fn container_to_k8s(c: &ContainerStatusView) -> k8s::ContainerStatus {
    let state = match &c.state {
        ContainerState::Waiting(w) => k8s::ContainerState {
            waiting: Some(k8s::ContainerStateWaiting {
                reason: Some(w.reason.clone()),
                message: w.message.clone(),
            }),
            ..Default::default()
        },
        ContainerState::Running(r) => k8s::ContainerState {
            running: Some(k8s::ContainerStateRunning {
                started_at: Some(time(r.started_at)),
            }),
            ..Default::default()
        },
        ContainerState::Terminated(t) => terminated_to_k8s(t),
    };
    k8s::ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        state: Some(state),
        // `{}` without a previous termination, as the kubelet writes it.
        last_state: Some(
            c.last_state
                .as_ref()
                .map(terminated_to_k8s)
                .unwrap_or_default(),
        ),
        ready: c.ready,
        restart_count: i32::try_from(c.restart_count).unwrap_or(i32::MAX),
        started: Some(c.started),
        ..Default::default()
    }
}

fn terminated_to_k8s(t: &TerminatedState) -> k8s::ContainerState {
    k8s::ContainerState {
        terminated: Some(k8s::ContainerStateTerminated {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: Some(t.reason.clone()),
            message: t.message.clone(),
            started_at: t.started_at.map(time),
            finished_at: Some(time(t.finished_at)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Why a status read back from status.json is not one [`to_k8s`] could have written.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct StatusError {
    pub field: String,
    pub problem: String,
}

impl StatusError {
    fn new(field: &str, problem: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            problem: problem.into(),
        }
    }
}

/// A status as [`to_k8s`] wrote it, back in peapod's terms.
pub fn from_k8s(status: k8s::PodStatus) -> Result<PodStatusView, StatusError> {
    let phase = required("phase", status.phase)?;
    let phase = one_of("phase", &phase, &Phase::ALL, |p| p.as_str())?;
    let conditions = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let field = format!("conditions[{i}]");
            Ok(PodCondition {
                kind: one_of(
                    &format!("{field}.type"),
                    &c.type_,
                    &ConditionType::ALL,
                    |k| k.as_str(),
                )?,
                status: one_of(
                    &format!("{field}.status"),
                    &c.status,
                    &[ConditionStatus::True, ConditionStatus::False],
                    |s| s.as_str(),
                )?,
                reason: c.reason,
                message: c.message,
                last_transition_time: c.last_transition_time.map(date_time),
            })
        })
        .collect::<Result<_, StatusError>>()?;
    let containers = |list: Option<Vec<k8s::ContainerStatus>>, field: &str| {
        list.unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| container_from_k8s(c, &format!("{field}[{i}]")))
            .collect::<Result<Vec<_>, StatusError>>()
    };
    Ok(PodStatusView {
        phase,
        reason: status.reason,
        message: status.message,
        conditions,
        start_time: status.start_time.map(date_time),
        init_container_statuses: containers(
            status.init_container_statuses,
            "initContainerStatuses",
        )?,
        container_statuses: containers(status.container_statuses, "containerStatuses")?,
        pod_ips: ips(
            "podIPs",
            (status.pod_ips.unwrap_or_default().into_iter()).map(|ip| ip.ip),
        )?,
        host_ips: ips(
            "hostIPs",
            (status.host_ips.unwrap_or_default().into_iter()).map(|ip| ip.ip),
        )?,
        qos_class: match status.qos_class.as_deref() {
            None => None,
            Some(text) => Some(one_of(
                "qosClass",
                text,
                &[
                    QosClass::Guaranteed,
                    QosClass::Burstable,
                    QosClass::BestEffort,
                ],
                |c| c.as_str(),
            )?),
        },
    })
}

fn ips(field: &str, texts: impl Iterator<Item = String>) -> Result<Vec<IpAddr>, StatusError> {
    texts
        .enumerate()
        .map(|(i, text)| {
            text.parse().map_err(|_| {
                StatusError::new(
                    &format!("{field}[{i}].ip"),
                    format!("{text:?}: not an IP address"),
                )
            })
        })
        .collect()
}

fn container_from_k8s(
    c: k8s::ContainerStatus,
    field: &str,
) -> Result<ContainerStatusView, StatusError> {
    let state = required(&format!("{field}.state"), c.state)?;
    let state = match (state.waiting, state.running, state.terminated) {
        (Some(w), None, None) => ContainerState::Waiting(WaitingState {
            reason: w.reason.unwrap_or_default(),
            message: w.message,
        }),
        (None, Some(r), None) => ContainerState::Running(RunningState {
            started_at: date_time(required(
                &format!("{field}.state.running.startedAt"),
                r.started_at,
            )?),
        }),
        (None, None, Some(t)) => ContainerState::Terminated(terminated_from_k8s(
            t,
            &format!("{field}.state.terminated"),
        )?),
        _ => {
            return Err(StatusError::new(
                &format!("{field}.state"),
                "not exactly one of waiting, running, terminated",
            ))
        }
    };
    let last_state = match c.last_state.and_then(|s| s.terminated) {
        Some(t) => Some(terminated_from_k8s(
            t,
            &format!("{field}.lastState.terminated"),
        )?),
        None => None,
    };
    Ok(ContainerStatusView {
        name: c.name,
        image: c.image,
        state,
        last_state,
        ready: c.ready,
        restart_count: u32::try_from(c.restart_count).map_err(|_| {
            StatusError::new(&format!("{field}.restartCount"), "must not be negative")
        })?,
        started: c.started.unwrap_or(false),
    })
}

fn terminated_from_k8s(
    t: k8s::ContainerStateTerminated,
    field: &str,
) -> Result<TerminatedState, StatusError> {
    Ok(TerminatedState {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: t.reason.unwrap_or_default(),
        message: t.message,
        started_at: t.started_at.map(date_time),
        finished_at: date_time(required(&format!("{field}.finishedAt"), t.finished_at)?),
    })
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, StatusError> {
    value.ok_or_else(|| StatusError::new(field, "missing"))
}

fn one_of<T: Copy>(
    field: &str,
    value: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, StatusError> {
    all.iter()
        .copied()
        .find(|&item| name(item) == value)
        .ok_or_else(|| StatusError::new(field, format!("unexpected value {value:?}")))
}

/// A time as Kubernetes keeps it (written with whole seconds); beyond the
/// years 9999 it can write, the nearest it can.
fn time(t: DateTime<Utc>) -> Time {
    let nanos = i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0);
    Time(
        Timestamp::new(t.timestamp(), nanos).unwrap_or(if t.timestamp() < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        }),
    )
}

fn date_time(t: Time) -> DateTime<Utc> {
    let nanos = u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0);
    // Every jiff timestamp (years -9999 to 9999) is one chrono can hold.
    DateTime::from_timestamp(t.0.as_second(), nanos).unwrap_or_default()
}

/// `#[serde(with = "status::k8s_json")]`: a [`PodStatusView`] kept as
/// Kubernetes' `PodStatus` (see [`to_k8s`]).
pub mod k8s_json {
    use k8s_openapi::api::core::v1 as k8s;
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::PodStatusView;

    pub fn serialize<S: Serializer>(status: &PodStatusView, s: S) -> Result<S::Ok, S::Error> {
        super::to_k8s(status).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PodStatusView, D::Error> {
        super::from_k8s(k8s::PodStatus::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// A duration as Go prints it ("10s", "2m40s", "5m0s", "10ms"), as in kubelet messages.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        return if nanos == 0 {
            "0s".to_owned()
        } else {
            format!("{nanos}ns")
        };
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 1_000_000));
    }
    let secs = d.as_secs();
    let (hours, minutes) = (secs / 3600, secs / 60 % 60);
    let seconds = decimal(
        u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
    );
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// `value / unit` in decimal, without trailing zeros.
fn decimal(value: u128, unit: u128) -> String {
    let (whole, fraction) = (value / unit, value % unit);
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// RFC 3339 with whole seconds, as Kubernetes writes times.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(de::Error::custom)
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            time: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            #[derive(Deserialize)]
            struct Wire(#[serde(with = "super")] DateTime<Utc>);
            Ok(Option::<Wire>::deserialize(d)?.map(|Wire(time)| time))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: u32, millis: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, secs).unwrap()
            + chrono::Duration::milliseconds(millis)
    }

    fn sample() -> PodStatusView {
        let finished = TerminatedState {
            exit_code: 1,
            signal: None,
            reason: "Error".into(),
            message: Some("bye".into()),
            started_at: None,
            finished_at: at(3, 0),
        };
        PodStatusView {
            phase: Phase::Pending,
            reason: None,
            message: None,
            conditions: vec![PodCondition {
                kind: ConditionType::Initialized,
                status: ConditionStatus::False,
                reason: Some("ContainersNotInitialized".into()),
                message: Some("containers with incomplete status: [i]".into()),
                last_transition_time: Some(at(1, 0)),
            }],
            start_time: None,
            init_container_statuses: Vec::new(),
            container_statuses: vec![ContainerStatusView {
                name: "a".into(),
                image: "busybox".into(),
                state: ContainerState::Waiting(WaitingState {
                    reason: "CrashLoopBackOff".into(),
                    message: None,
                }),
                last_state: Some(finished),
                ready: false,
                restart_count: 3,
                started: false,
            }],
            pod_ips: Vec::new(),
            host_ips: Vec::new(),
            qos_class: Some(QosClass::Burstable),
        }
    }

    #[test]
    fn kubernetes_form_and_back() {
        let status = sample();
        let json = serde_json::to_value(to_k8s(&status)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "phase": "Pending",
                "conditions": [{
                    "type": "Initialized",
                    "status": "False",
                    "reason": "ContainersNotInitialized",
                    "message": "containers with incomplete status: [i]",
                    "lastTransitionTime": "2024-05-01T12:00:01Z",
                }],
                "containerStatuses": [{
                    "name": "a",
                    "image": "busybox",
                    "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "message": "bye",
                        "finishedAt": "2024-05-01T12:00:03Z",
                    }},
                    "ready": false,
                    "restartCount": 3,
                    "started": false,
                }],
                "qosClass": "Burstable",
            })
        );
        let k8s: k8s::PodStatus = serde_json::from_value(json).unwrap();
        assert_eq!(from_k8s(k8s).unwrap(), status);
    }

    #[test]
    fn addresses_as_kubernetes_writes_them() {
        let mut status = sample();
        status.pod_ips = vec!["10.86.0.12".parse().unwrap(), "fd00::c".parse().unwrap()];
        status.host_ips = vec!["192.0.2.2".parse().unwrap()];
        let json = serde_json::to_value(to_k8s(&status)).unwrap();
        assert_eq!(json["podIP"], "10.86.0.12");
        assert_eq!(
            json["podIPs"],
            serde_json::json!([{"ip": "10.86.0.12"}, {"ip": "fd00::c"}])
        );
        assert_eq!(json["hostIP"], "192.0.2.2");
        assert_eq!(json["hostIPs"], serde_json::json!([{"ip": "192.0.2.2"}]));
        let k8s: k8s::PodStatus = serde_json::from_value(json).unwrap();
        assert_eq!(from_k8s(k8s).unwrap(), status);
        // Without addresses, none of the four fields.
        let json = serde_json::to_value(to_k8s(&sample())).unwrap();
        for key in ["podIP", "podIPs", "hostIP", "hostIPs"] {
            assert!(json.get(key).is_none(), "{key}: {json}");
        }
    }

    /// Kubernetes writes whole seconds, cut (not rounded) as metav1.Time does.
    #[test]
    fn times_keep_whole_seconds() {
        let mut status = sample();
        status.start_time = Some(at(59, 999));
        let json = serde_json::to_value(to_k8s(&status)).unwrap();
        assert_eq!(json["startTime"], "2024-05-01T12:00:59Z");
        let k8s: k8s::PodStatus = serde_json::from_value(json).unwrap();
        assert_eq!(from_k8s(k8s).unwrap().start_time, Some(at(59, 0)));
    }

    #[test]
    fn what_to_k8s_never_writes_is_refused() {
        let json = serde_json::to_value(to_k8s(&sample())).unwrap();
        let cases = [
            (
                "/phase",
                serde_json::json!("Lost"),
                "phase: unexpected value \"Lost\"",
            ),
            ("/phase", serde_json::Value::Null, "phase: missing"),
            (
                "/conditions/0/status",
                serde_json::json!("Unknown"),
                "conditions[0].status: unexpected value \"Unknown\"",
            ),
            (
                "/containerStatuses/0/state",
                serde_json::json!({}),
                "containerStatuses[0].state: not exactly one of waiting, running, terminated",
            ),
            (
                "/containerStatuses/0/restartCount",
                serde_json::json!(-1),
                "containerStatuses[0].restartCount: must not be negative",
            ),
            (
                "/containerStatuses/0/lastState/terminated/finishedAt",
                serde_json::Value::Null,
                "containerStatuses[0].lastState.terminated.finishedAt: missing",
            ),
        ];
        for (pointer, value, want) in cases {
            let mut json = json.clone();
            *json.pointer_mut(pointer).unwrap() = value;
            let k8s: k8s::PodStatus = serde_json::from_value(json).unwrap();
            assert_eq!(from_k8s(k8s).unwrap_err().to_string(), want, "{pointer}");
        }
    }

    #[test]
    fn durations_print_as_go_does() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(5), "5ns"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_millis(10), "10ms"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(2500), "2.5s"),
            (Duration::from_secs(80), "1m20s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want);
        }
    }
}
