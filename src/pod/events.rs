//! The pod's events, as the kubelet records them (Pulled, Created, Started,
//! Killing, Unhealthy, BackOff, FailedPostStartHook, SandboxChanged,
//! DeadlineExceeded, ...), kept in the pod's folder for `pod describe`.
//!
//! The supervisor appends one JSON line per event to `events.jsonl`; an event
//! like one already recorded (same type, reason, object and message) is
//! counted in it, as the kubelet's event correlator does, by appending the
//! aggregate again with its new count and last time: readers keep the last
//! line of each. The file is bounded: past [`MAX_FILE`] bytes it is compacted
//! (rewritten with one line per event), keeping the [`MAX_EVENTS`] most
//! recent events.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many distinct events are kept.
pub const MAX_EVENTS: usize = 64;
/// The size the file is compacted at.
pub const MAX_FILE: u64 = 64 * 1024;
/// Longer messages are cut (the API server's limit is 1 KiB as well).
const MAX_MESSAGE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event, with how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub reason: String,
    /// The involved object's field path: "" for the pod, or
    /// "spec.containers{web}" / "spec.initContainers{setup}".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object: String,
    pub message: String,
    pub count: u32,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

impl Event {
    fn same(&self, other: &Event) -> bool {
        self.kind == other.kind
            && self.reason == other.reason
            && self.object == other.object
            && self.message == other.message
    }
}

/// The supervisor's end: what it recorded (at most [`MAX_EVENTS`]), and the file.
pub struct EventLog {
    path: PathBuf,
    events: Vec<Event>,
    size: u64,
}

impl EventLog {
    /// Opens the log of a pod folder, carrying on with what it holds (a
    /// supervisor that adopts the pod).
    pub fn open(path: &Path) -> Self {
        let events = read(path);
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        Self {
            path: path.to_path_buf(),
            events,
            size,
        }
    }

    /// Records an event at `now`; an error writing the file is logged, not fatal.
    pub fn record(
        &mut self,
        kind: EventType,
        reason: &str,
        object: &str,
        message: &str,
        now: DateTime<Utc>,
    ) {
        let mut message = message.to_string();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let new = Event {
            kind,
            reason: reason.to_string(),
            object: object.to_string(),
            message,
            count: 1,
            first: now,
            last: now,
        };
        let event = match self.events.iter().position(|e| e.same(&new)) {
            Some(i) => {
                let mut e = self.events.remove(i);
                e.count = e.count.saturating_add(1);
                e.last = now;
                e
            }
            None => new,
        };
        self.events.push(event);
        if self.events.len() > MAX_EVENTS {
            self.events.remove(0);
        }
        if let Err(e) = self.write() {
            tracing::warn!("record event in {}: {e}", self.path.display());
        }
    }

    fn write(&mut self) -> io::Result<()> {
        let Some(last) = self.events.last() else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(last)?;
        line.push(b'\n');
        if self.size + line.len() as u64 > MAX_FILE {
            return self.compact();
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Rewrites the file with one line per event kept.
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut text = Vec::new();
        for e in &self.events {
            serde_json::to_writer(&mut text, e)?;
            text.push(b'\n');
        }
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &self.path)?;
        self.size = text.len() as u64;
        Ok(())
    }
}

/// The events a pod's file holds, each once (its last record), oldest first
/// by the time it last happened. A missing or damaged file gives what can be read.
pub fn read(path: &Path) -> Vec<Event> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let mut events: Vec<Event> = Vec::new();
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        events.retain(|e| !e.same(&event));
        events.push(event);
    }
    events.sort_by_key(|e| e.last);
    let cut = events.len().saturating_sub(MAX_EVENTS);
    events.drain(..cut);
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    #[test]
    fn repeated_events_are_counted_and_read_back_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&path);
        let web = "spec.containers{web}";
        log.record(
            EventType::Normal,
            "Started",
            web,
            "Started container web",
            at(0),
        );
        for i in 1..=3 {
            log.record(
                EventType::Warning,
                "Unhealthy",
                web,
                "Liveness probe failed: boom",
                at(i),
            );
        }
        log.record(
            EventType::Normal,
            "Killing",
            web,
            "Stopping container web",
            at(5),
        );
        let events = read(&path);
        let got: Vec<(&str, u32)> = events
            .iter()
            .map(|e| (e.reason.as_str(), e.count))
            .collect();
        assert_eq!(got, vec![("Started", 1), ("Unhealthy", 3), ("Killing", 1)]);
        assert_eq!((events[1].first, events[1].last), (at(1), at(3)));
        // A new supervisor carries on with the counts.
        let mut log = EventLog::open(&path);
        log.record(
            EventType::Warning,
            "Unhealthy",
            web,
            "Liveness probe failed: boom",
            at(9),
        );
        let events = read(&path);
        assert_eq!(events.last().map(|e| e.count), Some(4));
    }

    #[test]
    fn the_file_stays_bounded_in_size_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&path);
        let long = "x".repeat(5000);
        for i in 0..2000 {
            let message = format!("{i} {}", &long[..(i % 7) * 100]);
            log.record(EventType::Warning, "Unhealthy", "", &message, at(i as i64));
            assert!(std::fs::metadata(&path).unwrap().len() <= MAX_FILE);
        }
        log.record(EventType::Warning, "Long", "", &long, at(3000));
        let events = read(&path);
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events.last().unwrap().message.len(), MAX_MESSAGE);
        assert!(events[0].message.starts_with("1937 "));
    }
}
