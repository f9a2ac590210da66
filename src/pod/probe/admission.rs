//! What can be checked about probes and hooks when a pod is admitted, and
//! their conversion into [`Health`]. The rules are the API server's
//! (`ValidateProbe`, `validateLifecycle`, `SetDefaults_Probe`), plus what the
//! kubelet would only find out at run time (an undeclared port name, a
//! `tcpSocket` hook) and what peapod does not do (host names).
//!
//! The admission code calls [`container`] once per container (app containers
//! and sidecars; regular init containers may have none of these) with the
//! container's field path, and turns an [`AdmissionError`] into its own error
//! (the file name in front). Exec commands come back unexpanded: it applies
//! its `$(VAR)` expansion through [`Health::map_commands`].

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::spec::Handler;
use super::spec::{Health, Hook, HttpGet, Probe, ProbeKind, Scheme, Timing};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("{field}: {problem}")]
    Unsupported { field: String, problem: String },
}

impl AdmissionError {
    pub fn field(&self) -> &str {
        match self {
            AdmissionError::Invalid { field, .. } | AdmissionError::Unsupported { field, .. } => {
                field
            }
        }
    }

    pub fn problem(&self) -> &str {
        match self {
            AdmissionError::Invalid { problem, .. }
            | AdmissionError::Unsupported { problem, .. } => problem,
        }
    }
}

type Result<T> = std::result::Result<T, AdmissionError>;

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> AdmissionError {
    AdmissionError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn unsupported(field: impl Into<String>, problem: impl Into<String>) -> AdmissionError {
    AdmissionError::Unsupported {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The probes and hooks of container `c`, whose manifest field is `field`
/// (`spec.containers[0]`), in a pod with terminationGracePeriodSeconds `grace`.
pub fn container(field: &str, c: &k8s::Container, grace: Duration) -> Result<Health> {
    let mut health = Health::default();
    for (kind, probe) in [
        (ProbeKind::Startup, &c.startup_probe),
        (ProbeKind::Liveness, &c.liveness_probe),
        (ProbeKind::Readiness, &c.readiness_probe),
    ] {
        let Some(p) = probe else { continue };
        let converted = self::probe(&format!("{field}.{}", kind.field()), kind, p, c)?;
        match kind {
            ProbeKind::Startup => health.startup = Some(converted),
            ProbeKind::Liveness => health.liveness = Some(converted),
            ProbeKind::Readiness => health.readiness = Some(converted),
        }
    }
    if let Some(lifecycle) = &c.lifecycle {
        let at = format!("{field}.lifecycle");
        if lifecycle.stop_signal.is_some() {
            return Err(unsupported(format!("{at}.stopSignal"), "unsupported"));
        }
        if let Some(h) = &lifecycle.post_start {
            health.post_start = Some(hook(&format!("{at}.postStart"), h, c, grace)?);
        }
        if let Some(h) = &lifecycle.pre_stop {
            health.pre_stop = Some(hook(&format!("{at}.preStop"), h, c, grace)?);
        }
    }
    Ok(health)
}

/// One probe; `field` is its path (`spec.containers[0].livenessProbe`).
pub fn probe(field: &str, kind: ProbeKind, p: &k8s::Probe, c: &k8s::Container) -> Result<Probe> {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ];
    let handler = match handlers.iter().filter(|set| **set).count() {
        0 => return Err(invalid(field, "must specify a handler type")),
        1 => {
            if let Some(exec) = &p.exec {
                Handler::Exec {
                    command: command(&format!("{field}.exec"), exec)?,
                }
            } else if let Some(http) = &p.http_get {
                Handler::HttpGet(http_get(&format!("{field}.httpGet"), http, c)?)
            } else if let Some(tcp) = &p.tcp_socket {
                let at = format!("{field}.tcpSocket");
                Handler::TcpSocket {
                    host: host(&format!("{at}.host"), tcp.host.as_deref())?,
                    port: port(&format!("{at}.port"), &tcp.port, c)?,
                }
            } else if let Some(grpc) = &p.grpc {
                Handler::Grpc {
                    port: port_number(&format!("{field}.grpc.port"), grpc.port.into())?,
                    service: grpc.service.clone().unwrap_or_default(),
                }
            } else {
                unreachable!("one handler is set")
            }
        }
        _ => return Err(invalid(field, "may not specify more than 1 handler type")),
    };
    let defaults = Timing::default();
    let seconds = |name: &str, value: Option<i32>, default: Duration| -> Result<Duration> {
        match value.unwrap_or(0) {
            v if v < 0 => Err(invalid(
                format!("{field}.{name}"),
                "must be greater than or equal to 0",
            )),
            // SetDefaults_Probe: 0 is "not set".
            0 => Ok(default),
            v => Ok(Duration::from_secs(v as u64)),
        }
    };
    let count = |name: &str, value: Option<i32>, default: u32| -> Result<u32> {
        match value.unwrap_or(0) {
            v if v < 0 => Err(invalid(
                format!("{field}.{name}"),
                "must be greater than or equal to 0",
            )),
            0 => Ok(default),
            v => Ok(v as u32),
        }
    };
    let timing = Timing {
        initial_delay: seconds(
            "initialDelaySeconds",
            p.initial_delay_seconds,
            Duration::ZERO,
        )?,
        period: seconds("periodSeconds", p.period_seconds, defaults.period)?,
        timeout: seconds("timeoutSeconds", p.timeout_seconds, defaults.timeout)?,
        success_threshold: count("successThreshold", p.success_threshold, 1)?,
        failure_threshold: count("failureThreshold", p.failure_threshold, 3)?,
    };
    // validateLivenessProbe / validateStartupProbe.
    if kind != ProbeKind::Readiness && timing.success_threshold != 1 {
        return Err(invalid(format!("{field}.successThreshold"), "must be 1"));
    }
    let termination_grace = match p.termination_grace_period_seconds {
        None => None,
        Some(_) if kind == ProbeKind::Readiness => {
            return Err(invalid(
                format!("{field}.terminationGracePeriodSeconds"),
                "must not be set for readinessProbes",
            ))
        }
        Some(s) if s <= 0 => {
            return Err(invalid(
                format!("{field}.terminationGracePeriodSeconds"),
                "must be greater than 0",
            ))
        }
        Some(s) => Some(Duration::from_secs(s as u64)),
    };
    Ok(Probe {
        handler,
        timing,
        termination_grace,
    })
}

/// A postStart or preStop handler; `grace` bounds a sleep.
pub fn hook(
    field: &str,
    h: &k8s::LifecycleHandler,
    c: &k8s::Container,
    grace: Duration,
) -> Result<Hook> {
    let set = [
        h.exec.is_some(),
        h.http_get.is_some(),
        h.sleep.is_some(),
        h.tcp_socket.is_some(),
    ];
    match set.iter().filter(|s| **s).count() {
        0 => return Err(invalid(field, "must specify a handler type")),
        1 => {}
        _ => return Err(invalid(field, "may not specify more than 1 handler type")),
    }
    if h.tcp_socket.is_some() {
        // The API keeps the field for compatibility; the kubelet fails such a hook.
        return Err(unsupported(
            format!("{field}.tcpSocket"),
            "unsupported: lifecycle hooks cannot use tcpSocket",
        ));
    }
    if let Some(exec) = &h.exec {
        return Ok(Hook::Exec {
            command: command(&format!("{field}.exec"), exec)?,
        });
    }
    if let Some(http) = &h.http_get {
        return Ok(Hook::HttpGet(http_get(
            &format!("{field}.httpGet"),
            http,
            c,
        )?));
    }
    let seconds = h.sleep.as_ref().map_or(0, |s| s.seconds);
    // validateSleepAction (zero allowed, as with PodLifecycleSleepActionAllowZero).
    if seconds < 0 || seconds as u64 > grace.as_secs() {
        return Err(invalid(
            format!("{field}.sleep.seconds"),
            format!(
                "must be non-negative and not greater than terminationGracePeriodSeconds ({})",
                grace.as_secs()
            ),
        ));
    }
    Ok(Hook::Sleep(Duration::from_secs(seconds as u64)))
}

fn command(field: &str, exec: &k8s::ExecAction) -> Result<Vec<String>> {
    match &exec.command {
        Some(command) if !command.is_empty() => Ok(command.clone()),
        _ => Err(invalid(format!("{field}.command"), "required")),
    }
}

fn http_get(field: &str, http: &k8s::HTTPGetAction, c: &k8s::Container) -> Result<HttpGet> {
    let scheme = match http.scheme.as_deref() {
        None | Some("") | Some("HTTP") => Scheme::Http,
        Some("HTTPS") => Scheme::Https,
        Some(other) => {
            return Err(unsupported(
                format!("{field}.scheme"),
                format!("unsupported value {other:?}: supported values: \"HTTP\", \"HTTPS\""),
            ))
        }
    };
    let path = http.path.clone().unwrap_or_default();
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(invalid(
            format!("{field}.path"),
            "must not contain spaces or control characters",
        ));
    }
    let mut headers = Vec::new();
    for (i, h) in http.http_headers.iter().flatten().enumerate() {
        let at = format!("{field}.httpHeaders[{i}]");
        // IsHTTPHeaderName.
        if h.name.is_empty()
            || !h
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                format!("{at}.name"),
                "a valid HTTP header must consist of alphanumeric characters or '-'",
            ));
        }
        if h.value.contains(['\r', '\n', '\0']) {
            return Err(invalid(
                format!("{at}.value"),
                "must not contain line breaks",
            ));
        }
        headers.push((h.name.clone(), h.value.clone()));
    }
    Ok(HttpGet {
        host: host(&format!("{field}.host"), http.host.as_deref())?,
        port: port(&format!("{field}.port"), &http.port, c)?,
        path,
        scheme,
        headers,
    })
}

fn host(field: &str, host: Option<&str>) -> Result<Option<IpAddr>> {
    match host {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            unsupported(
                field,
                format!(
                    "unsupported: {text:?} is not an IP address (peapod resolves no host names)"
                ),
            )
        }),
    }
}

/// A port by number, or by the name of one of the container's ports.
fn port(field: &str, port: &IntOrString, c: &k8s::Container) -> Result<u16> {
    match port {
        IntOrString::Int(n) => port_number(field, (*n).into()),
        IntOrString::String(name) => {
            if let Some(problem) = port_name_problem(name) {
                return Err(invalid(field, problem));
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| port_number(field, p.container_port.into()))
                .unwrap_or_else(|| {
                    Err(invalid(
                        field,
                        format!("port name {name:?} is not declared in the container's ports"),
                    ))
                })
        }
    }
}

fn port_number(field: &str, n: i64) -> Result<u16> {
    u16::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(field, "must be between 1 and 65535, inclusive"))
}

/// IsValidPortName (an IANA_SVC_NAME).
fn port_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 15 {
        return Some("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if name.contains("--") {
        return Some("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must not begin or end with a hyphen");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some("must contain at least one letter (a-z)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> k8s::Container {
        serde_yaml_ng::from_str(yaml).expect("test container parses")
    }

    fn admit(yaml: &str) -> Result<Health> {
        super::container(
            "spec.containers[0]",
            &container(yaml),
            Duration::from_secs(30),
        )
    }

    fn error(yaml: &str) -> String {
        admit(yaml).expect_err(yaml).to_string()
    }

    #[test]
    fn defaults_are_the_api_servers() {
        // SetDefaults_Probe: timeout 1, period 10, success 1, failure 3.
        let h = admit("{name: a, livenessProbe: {tcpSocket: {port: 80}}}").unwrap();
        let probe = h.liveness.unwrap();
        assert_eq!(probe.timing, Timing::default());
        assert_eq!(
            probe.handler,
            Handler::TcpSocket {
                host: None,
                port: 80
            }
        );
        let h = admit(
            "{name: a, readinessProbe: {httpGet: {port: 8080}, initialDelaySeconds: 5, periodSeconds: 2,
              timeoutSeconds: 3, successThreshold: 2, failureThreshold: 4}}",
        )
        .unwrap();
        let probe = h.readiness.unwrap();
        assert_eq!(
            probe.timing,
            Timing {
                initial_delay: Duration::from_secs(5),
                period: Duration::from_secs(2),
                timeout: Duration::from_secs(3),
                success_threshold: 2,
                failure_threshold: 4,
            }
        );
        let Handler::HttpGet(get) = probe.handler else {
            panic!()
        };
        assert_eq!(
            (get.path.as_str(), get.scheme, get.port),
            ("", Scheme::Http, 8080)
        );
    }

    #[test]
    fn every_handler_converts() {
        let h = admit(
            r#"{name: a, ports: [{name: web, containerPort: 8443}],
                startupProbe: {exec: {command: [cat, /tmp/ok]}},
                livenessProbe: {grpc: {port: 9000, service: api}, terminationGracePeriodSeconds: 5},
                readinessProbe: {httpGet: {port: web, scheme: HTTPS, path: "/ready?x=1", host: "::1",
                                 httpHeaders: [{name: X-Probe, value: "1"}, {name: Host, value: example}]}},
                lifecycle: {postStart: {httpGet: {port: 80}}, preStop: {sleep: {seconds: 3}}}}"#,
        )
        .unwrap();
        assert_eq!(
            h.startup.unwrap().handler,
            Handler::Exec {
                command: vec!["cat".into(), "/tmp/ok".into()]
            }
        );
        let live = h.liveness.unwrap();
        assert_eq!(
            live.handler,
            Handler::Grpc {
                port: 9000,
                service: "api".into()
            }
        );
        assert_eq!(live.termination_grace, Some(Duration::from_secs(5)));
        let Handler::HttpGet(get) = h.readiness.unwrap().handler else {
            panic!()
        };
        assert_eq!(get.port, 8443);
        assert_eq!(get.scheme, Scheme::Https);
        assert_eq!(get.host, Some("::1".parse().unwrap()));
        assert_eq!(get.headers[1], ("Host".to_string(), "example".to_string()));
        assert!(matches!(h.post_start, Some(Hook::HttpGet(_))));
        assert_eq!(h.pre_stop, Some(Hook::Sleep(Duration::from_secs(3))));
    }

    #[test]
    fn bad_probes_and_hooks_name_the_field() {
        let at = "spec.containers[0]";
        let cases = [
            // ValidateProbe: exactly one handler.
            ("{name: a, livenessProbe: {periodSeconds: 3}}", format!("{at}.livenessProbe: must specify a handler type")),
            ("{name: a, readinessProbe: {exec: {command: [x]}, tcpSocket: {port: 1}}}", format!("{at}.readinessProbe: may not specify more than 1 handler type")),
            // Non-negative fields.
            ("{name: a, livenessProbe: {tcpSocket: {port: 1}, periodSeconds: -1}}", format!("{at}.livenessProbe.periodSeconds: must be greater than or equal to 0")),
            ("{name: a, readinessProbe: {tcpSocket: {port: 1}, failureThreshold: -2}}", format!("{at}.readinessProbe.failureThreshold: must be greater than or equal to 0")),
            // validateLivenessProbe / validateStartupProbe.
            ("{name: a, livenessProbe: {tcpSocket: {port: 1}, successThreshold: 2}}", format!("{at}.livenessProbe.successThreshold: must be 1")),
            ("{name: a, startupProbe: {tcpSocket: {port: 1}, successThreshold: 3}}", format!("{at}.startupProbe.successThreshold: must be 1")),
            ("{name: a, readinessProbe: {tcpSocket: {port: 1}, terminationGracePeriodSeconds: 3}}", format!("{at}.readinessProbe.terminationGracePeriodSeconds: must not be set for readinessProbes")),
            ("{name: a, livenessProbe: {tcpSocket: {port: 1}, terminationGracePeriodSeconds: 0}}", format!("{at}.livenessProbe.terminationGracePeriodSeconds: must be greater than 0")),
            // Ports.
            ("{name: a, livenessProbe: {tcpSocket: {port: 0}}}", format!("{at}.livenessProbe.tcpSocket.port: must be between 1 and 65535, inclusive")),
            ("{name: a, livenessProbe: {grpc: {port: 70000}}}", format!("{at}.livenessProbe.grpc.port: must be between 1 and 65535, inclusive")),
            ("{name: a, livenessProbe: {httpGet: {port: http}}}", format!("{at}.livenessProbe.httpGet.port: port name \"http\" is not declared in the container's ports")),
            ("{name: a, livenessProbe: {httpGet: {port: \"8080\"}}}", format!("{at}.livenessProbe.httpGet.port: must contain at least one letter (a-z)")),
            ("{name: a, livenessProbe: {httpGet: {port: Web}}}", format!("{at}.livenessProbe.httpGet.port: must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")),
            // Requests we could not send.
            ("{name: a, livenessProbe: {httpGet: {port: 1, scheme: FTP}}}", format!("{at}.livenessProbe.httpGet.scheme: unsupported value \"FTP\": supported values: \"HTTP\", \"HTTPS\"")),
            ("{name: a, livenessProbe: {httpGet: {port: 1, path: \"/a b\"}}}", format!("{at}.livenessProbe.httpGet.path: must not contain spaces or control characters")),
            ("{name: a, livenessProbe: {httpGet: {port: 1, httpHeaders: [{name: \"X Y\", value: v}]}}}", format!("{at}.livenessProbe.httpGet.httpHeaders[0].name: a valid HTTP header must consist of alphanumeric characters or '-'")),
            ("{name: a, livenessProbe: {httpGet: {port: 1, host: example.com}}}", format!("{at}.livenessProbe.httpGet.host: unsupported: \"example.com\" is not an IP address (peapod resolves no host names)")),
            ("{name: a, livenessProbe: {exec: {command: []}}}", format!("{at}.livenessProbe.exec.command: required")),
            // Hooks.
            ("{name: a, lifecycle: {postStart: {}}}", format!("{at}.lifecycle.postStart: must specify a handler type")),
            ("{name: a, lifecycle: {preStop: {tcpSocket: {port: 1}}}}", format!("{at}.lifecycle.preStop.tcpSocket: unsupported: lifecycle hooks cannot use tcpSocket")),
            ("{name: a, lifecycle: {preStop: {sleep: {seconds: 31}}}}", format!("{at}.lifecycle.preStop.sleep.seconds: must be non-negative and not greater than terminationGracePeriodSeconds (30)")),
            ("{name: a, lifecycle: {preStop: {exec: {command: [x]}, sleep: {seconds: 1}}}}", format!("{at}.lifecycle.preStop: may not specify more than 1 handler type")),
            ("{name: a, lifecycle: {stopSignal: SIGUSR1}}", format!("{at}.lifecycle.stopSignal: unsupported")),
        ];
        for (yaml, expected) in cases {
            assert_eq!(error(yaml), expected, "{yaml}");
        }
    }

    #[test]
    fn exec_commands_can_be_expanded_by_the_caller() {
        let mut h = admit(
            "{name: a, livenessProbe: {exec: {command: [cat, $(F)]}}, lifecycle: {preStop: {exec: {command: [rm, $(F)]}}}}",
        )
        .unwrap();
        h.map_commands(|w| w.replace("$(F)", "/tmp/f"));
        assert_eq!(
            h.liveness.unwrap().handler,
            Handler::Exec {
                command: vec!["cat".into(), "/tmp/f".into()]
            }
        );
        assert_eq!(
            h.pre_stop,
            Some(Hook::Exec {
                command: vec!["rm".into(), "/tmp/f".into()]
            })
        );
    }
}
