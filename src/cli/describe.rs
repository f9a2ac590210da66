//! `peapod pod describe NAME`: the pod as `kubectl describe pod` shows it:
//! the pod, its containers (state, last state, ready, restarts, probes,
//! mounts), conditions, volumes and the events its supervisor recorded.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::pod::events::{self, Event};
use crate::pod::model::{Container, Pod, VolumeSource};
use crate::pod::probe::{Handler, Probe, Scheme};
use crate::pod::status::{ContainerState, ContainerStatusView, PodStatusView, TerminatedState};
use crate::pod::{Engine, Settings};

pub fn describe(root: &Path, name: &str) -> Result<i32> {
    let engine = Engine::new(root, Settings::default());
    let (folder, pod) = engine.find(name)?;
    let status = folder.status().map(|s| s.status);
    let images = folder.images().unwrap_or_default();
    let events = events::read(&folder.events_file());
    let image_id = |c: &str| images.get(c).map(|i| i.id.clone());
    print!(
        "{}",
        render(&pod, status.as_ref(), &image_id, &events, Utc::now())
    );
    Ok(0)
}

/// The text of `describe`, as of `now`.
pub fn render(
    pod: &Pod,
    status: Option<&PodStatusView>,
    image_id: &dyn Fn(&str) -> Option<String>,
    events: &[Event],
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "{:<18}{value}", format!("{name}:"));
    };
    field(&mut out, "Name", &pod.name);
    field(&mut out, "Namespace", &pod.namespace);
    field(&mut out, "UID", &pod.uid);
    let start = status.and_then(|s| s.start_time);
    field(
        &mut out,
        "Start Time",
        &start.map_or("<unset>".into(), when),
    );
    field(&mut out, "Labels", &pairs(&pod.labels, "="));
    field(&mut out, "Annotations", &pairs(&pod.annotations, ": "));
    let phase = status.map_or("Unknown", |s| s.phase.as_str());
    field(&mut out, "Status", phase);
    if let Some(s) = status {
        if let Some(reason) = &s.reason {
            field(&mut out, "Reason", reason);
        }
        if let Some(message) = &s.message {
            field(&mut out, "Message", message);
        }
        // As kubectl: the first IP, then each.
        let first = s.pod_ips.first().map(ToString::to_string);
        field(&mut out, "IP", first.as_deref().unwrap_or(""));
        out.push_str("IPs:");
        if s.pod_ips.is_empty() {
            out.push_str("              <none>\n");
        } else {
            out.push('\n');
            for ip in &s.pod_ips {
                let _ = writeln!(out, "  IP:  {ip}");
            }
        }
    }
    let find = |init: bool, name: &str| {
        status.and_then(|s| {
            let list = match init {
                true => &s.init_container_statuses,
                false => &s.container_statuses,
            };
            list.iter().find(|c| c.name == name)
        })
    };
    if !pod.init_containers.is_empty() {
        out.push_str("Init Containers:\n");
        for c in &pod.init_containers {
            container(&mut out, c, find(true, &c.name), image_id(&c.name));
        }
    }
    out.push_str("Containers:\n");
    for c in &pod.containers {
        container(&mut out, c, find(false, &c.name), image_id(&c.name));
    }
    out.push_str("Conditions:\n");
    let _ = writeln!(out, "  {:<28}Status", "Type");
    for c in status.map(|s| s.conditions.as_slice()).unwrap_or_default() {
        let _ = writeln!(out, "  {:<28}{}", c.kind.as_str(), c.status.as_str());
    }
    out.push_str("Volumes:");
    if pod.volumes.is_empty() {
        out.push_str("  <none>\n");
    } else {
        out.push('\n');
        for v in &pod.volumes {
            let _ = writeln!(out, "  {}:", v.name);
            match &v.source {
                VolumeSource::EmptyDir {
                    memory,
                    size_limit_bytes,
                } => {
                    let _ = writeln!(
                        out,
                        "    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)"
                    );
                    let _ = writeln!(
                        out,
                        "    Medium:     {}",
                        if *memory { "Memory" } else { "" }
                    );
                    let limit = size_limit_bytes.map_or("<unset>".into(), |b| b.to_string());
                    let _ = writeln!(out, "    SizeLimit:  {limit}");
                }
                VolumeSource::HostPath { path, kind } => {
                    let _ = writeln!(
                        out,
                        "    Type:          HostPath (bare host directory volume)"
                    );
                    let _ = writeln!(out, "    Path:          {path}");
                    let _ = writeln!(out, "    HostPathType:  {kind:?}");
                }
            }
        }
    }
    let grace = pod.termination_grace.as_secs();
    let _ = writeln!(out, "Termination Grace Period:  {grace}s");
    if let Some(d) = pod.active_deadline {
        let _ = writeln!(out, "Active Deadline Seconds:   {}s", d.as_secs());
    }
    out.push_str("Events:");
    if events.is_empty() {
        out.push_str("  <none>\n");
        return out;
    }
    out.push('\n');
    let ages: Vec<String> = events
        .iter()
        .map(|e| match e.count {
            1 => human_age(now, e.last),
            n => format!(
                "{} (x{n} over {})",
                human_age(now, e.last),
                human_age(now, e.first)
            ),
        })
        .collect();
    let reason_width = events
        .iter()
        .map(|e| e.reason.len())
        .max()
        .unwrap_or(6)
        .max(6)
        + 2;
    let age_width = ages.iter().map(String::len).max().unwrap_or(3).max(3) + 2;
    let row = |out: &mut String, kind: &str, reason: &str, age: &str, from: &str, message: &str| {
        let _ = writeln!(
            out,
            "  {kind:<9}{reason:<reason_width$}{age:<age_width$}{from:<8}{message}"
        );
    };
    row(&mut out, "Type", "Reason", "Age", "From", "Message");
    row(&mut out, "----", "------", "----", "----", "-------");
    for (e, age) in events.iter().zip(&ages) {
        row(
            &mut out,
            e.kind.as_str(),
            &e.reason,
            age,
            "peapod",
            &e.message,
        );
    }
    out
}

fn container(
    out: &mut String,
    c: &Container,
    status: Option<&ContainerStatusView>,
    image_id: Option<String>,
) {
    let line = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "    {:<16}{value}", format!("{name}:"));
    };
    let _ = writeln!(out, "  {}:", c.name);
    line(out, "Image", &c.image);
    line(out, "Image ID", image_id.as_deref().unwrap_or(""));
    for (name, words) in [("Command", &c.command), ("Args", &c.args)] {
        if !words.is_empty() {
            let _ = writeln!(out, "    {name}:");
            for word in words {
                let _ = writeln!(out, "      {word}");
            }
        }
    }
    match status {
        Some(s) => {
            state(out, "State", &s.state);
            if let Some(last) = &s.last_state {
                state(out, "Last State", &ContainerState::Terminated(last.clone()));
            }
            line(out, "Ready", if s.ready { "True" } else { "False" });
            line(out, "Restart Count", &s.restart_count.to_string());
        }
        None => line(out, "State", "<unknown>"),
    }
    for (name, probe) in [
        ("Liveness", &c.health.liveness),
        ("Readiness", &c.health.readiness),
        ("Startup", &c.health.startup),
    ] {
        if let Some(p) = probe {
            line(out, name, &describe_probe(p));
        }
    }
    if c.env.is_empty() {
        line(out, "Environment", "<none>");
    } else {
        let _ = writeln!(out, "    Environment:");
        for var in &c.env {
            let _ = writeln!(out, "      {}:  {}", var.name, var.value);
        }
    }
    if c.mounts.is_empty() {
        line(out, "Mounts", "<none>");
    } else {
        let _ = writeln!(out, "    Mounts:");
        for m in &c.mounts {
            let sub = m
                .sub_path
                .as_ref()
                .map_or(String::new(), |p| format!(",path=\"{p}\""));
            let mode = if m.read_only { "ro" } else { "rw" };
            let _ = writeln!(
                out,
                "      {} from {} ({mode}{sub})",
                m.mount_path, m.volume
            );
        }
    }
}

fn state(out: &mut String, title: &str, s: &ContainerState) {
    let line = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "      {:<14}{value}", format!("{name}:"));
    };
    let head = |out: &mut String, value: &str| {
        let _ = writeln!(out, "    {:<16}{value}", format!("{title}:"));
    };
    match s {
        ContainerState::Waiting(w) => {
            head(out, "Waiting");
            line(out, "Reason", &w.reason);
            if let Some(m) = &w.message {
                line(out, "Message", m);
            }
        }
        ContainerState::Running(r) => {
            head(out, "Running");
            line(out, "Started", &when(r.started_at));
        }
        ContainerState::Terminated(t) => {
            head(out, "Terminated");
            terminated(out, t, &line);
        }
    }
}

fn terminated(out: &mut String, t: &TerminatedState, line: &dyn Fn(&mut String, &str, &str)) {
    line(out, "Reason", &t.reason);
    if let Some(m) = &t.message {
        line(out, "Message", m.trim_end());
    }
    line(out, "Exit Code", &t.exit_code.to_string());
    if let Some(signal) = t.signal {
        line(out, "Signal", &signal.to_string());
    }
    if let Some(started) = t.started_at {
        line(out, "Started", &when(started));
    }
    line(out, "Finished", &when(t.finished_at));
}

/// A probe as kubectl describes one.
pub fn describe_probe(p: &Probe) -> String {
    let what = match &p.handler {
        Handler::Exec { command } => format!("exec [{}]", command.join(" ")),
        Handler::HttpGet(get) => {
            let scheme = match get.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            };
            let host = get.host.map(|h| h.to_string()).unwrap_or_default();
            format!("http-get {scheme}://{host}:{}{}", get.port, get.path)
        }
        Handler::TcpSocket { host, port } => {
            let host = host.map(|h| h.to_string()).unwrap_or_default();
            format!("tcp-socket {host}:{port}")
        }
        Handler::Grpc { port, service } => format!("grpc <pod>:{port} {service}"),
    };
    let t = &p.timing;
    format!(
        "{what} delay={}s timeout={}s period={}s #success={} #failure={}",
        t.initial_delay.as_secs(),
        t.timeout.as_secs(),
        t.period.as_secs(),
        t.success_threshold,
        t.failure_threshold
    )
}

fn pairs(map: &std::collections::BTreeMap<String, String>, sep: &str) -> String {
    if map.is_empty() {
        return "<none>".into();
    }
    let lines: Vec<String> = map.iter().map(|(k, v)| format!("{k}{sep}{v}")).collect();
    lines.join(&format!("\n{:<18}", ""))
}

/// A time as kubectl describe prints it (RFC 1123 with a numeric zone).
fn when(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S %z").to_string()
}

/// How long ago, as kubectl's HumanDuration writes it ("45s", "3m10s", "2d").
pub fn human_age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        _ if m < 10 => match secs % 60 {
            0 => format!("{m}m"),
            s => format!("{m}m{s}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            m => format!("{h}h{m}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => match h % 24 {
            0 => format!("{d}d"),
            h => format!("{d}d{h}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::admission;
    use crate::pod::events::EventType;
    use crate::pod::status::{ContainerState, RunningState};
    use chrono::TimeZone;

    #[test]
    fn ages_read_as_kubectls() {
        let now = Utc.with_ymd_and_hms(2024, 5, 10, 12, 0, 0).unwrap();
        for (ago, want) in [
            (45, "45s"),
            (190, "3m10s"),
            (600, "10m"),
            (4 * 3600 + 60, "4h1m"),
            (30 * 3600, "30h"),
            (3 * 86400, "3d"),
        ] {
            assert_eq!(human_age(now, now - chrono::Duration::seconds(ago)), want);
        }
    }

    #[test]
    fn describe_shows_containers_probes_conditions_and_events() {
        let admitted = admission::parse(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, uid: u-1, labels: {app: web}}\n\
             spec: {activeDeadlineSeconds: 60, containers: [{name: a, image: busybox, command: [sleep, '1000'],\n\
               livenessProbe: {httpGet: {port: 8080, path: /healthz}, periodSeconds: 1},\n\
               readinessProbe: {exec: {command: [cat, /tmp/ready]}}}]}\n",
            "web.yaml",
        )
        .unwrap();
        let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 1, 0).unwrap();
        let t0 = now - chrono::Duration::seconds(60);
        let status = PodStatusView {
            phase: crate::pod::status::Phase::Running,
            reason: None,
            message: None,
            conditions: Vec::new(),
            start_time: Some(t0),
            init_container_statuses: Vec::new(),
            container_statuses: vec![ContainerStatusView {
                name: "a".into(),
                image: "busybox".into(),
                state: ContainerState::Running(RunningState { started_at: t0 }),
                last_state: None,
                ready: false,
                restart_count: 2,
                started: true,
            }],
            pod_ips: vec!["10.87.0.12".parse().unwrap()],
            host_ips: Vec::new(),
            qos_class: None,
        };
        let events = vec![Event {
            kind: EventType::Warning,
            reason: "Unhealthy".into(),
            object: "spec.containers{a}".into(),
            message: "Liveness probe failed: HTTP probe failed with statuscode: 500".into(),
            count: 3,
            first: t0 + chrono::Duration::seconds(10),
            last: now - chrono::Duration::seconds(5),
        }];
        let text = render(&admitted.pod, Some(&status), &|_| None, &events, now);
        for want in [
            "Name:             web\n",
            "Labels:           app=web\n",
            "Status:           Running\n",
            "IP:               10.87.0.12\nIPs:\n  IP:  10.87.0.12\n",
            "  a:\n",
            "    State:          Running\n",
            "      Started:      Wed, 01 May 2024 12:00:00 +0000\n",
            "    Ready:          False\n",
            "    Restart Count:  2\n",
            "    Liveness:       http-get http://:8080/healthz delay=0s timeout=1s period=1s #success=1 #failure=3\n",
            "    Readiness:      exec [cat /tmp/ready] delay=0s timeout=1s period=10s #success=1 #failure=3\n",
            "Active Deadline Seconds:   60s\n",
            "  Type     Reason     Age               From    Message\n",
            "  Warning  Unhealthy  5s (x3 over 50s)  peapod  Liveness probe failed: HTTP probe failed with statuscode: 500\n",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
    }
}
