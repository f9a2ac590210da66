//! Container logs in the CRI format the kubelet uses:
//! `<RFC 3339 nano time> <stdout|stderr> <F|P> <text>`, one file per run of a
//! container (`<restart count>.log`), kept across restarts.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

/// Longest line written as one record; longer lines are split into partial (P) records.
const MAX_RECORD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Turns a byte stream into CRI records, keeping an unfinished line until its end
/// arrives (or the stream closes).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns complete records as (is_full_line, text).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
        self.pending.extend_from_slice(bytes);
        let mut records = vec![];
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=pos).collect();
            line.pop();
            while line.len() > MAX_RECORD {
                let rest = line.split_off(MAX_RECORD);
                records.push((false, std::mem::replace(&mut line, rest)));
            }
            records.push((true, line));
        }
        while self.pending.len() > MAX_RECORD {
            let rest = self.pending.split_off(MAX_RECORD);
            records.push((false, std::mem::replace(&mut self.pending, rest)));
        }
        records
    }

    /// The stream ended: whatever is pending becomes a last full record.
    pub fn finish(&mut self) -> Option<(bool, Vec<u8>)> {
        (!self.pending.is_empty()).then(|| (true, std::mem::take(&mut self.pending)))
    }
}

pub fn format_record(time: DateTime<Utc>, stream: Stream, full: bool, text: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{} {} {} ",
        time.to_rfc3339_opts(SecondsFormat::Nanos, true),
        stream.name(),
        if full { "F" } else { "P" }
    )
    .into_bytes();
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// One record parsed back.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    pub time: String,
    pub stream: String,
    pub full: bool,
    pub text: String,
}

pub fn parse_record(line: &str) -> Option<Record> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?.to_string();
    let stream = parts.next()?.to_string();
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default().to_string();
    Some(Record {
        time,
        stream,
        full: tag.starts_with('F'),
        text,
    })
}

/// `<logs>/<container>/<n>.log`
pub fn log_path(logs_dir: &Path, container: &str, run: u32) -> PathBuf {
    logs_dir.join(container).join(format!("{run}.log"))
}

pub fn open_log(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// The runs of a container that have a log, in order.
pub fn runs(logs_dir: &Path, container: &str) -> Vec<u32> {
    let mut runs: Vec<u32> = std::fs::read_dir(logs_dir.join(container))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    runs.sort_unstable();
    runs
}

/// Prints the text of a CRI log file as `kubectl logs` does (partial records
/// joined), from byte `offset`; returns the offset reached.
pub fn print_log(path: &Path, offset: u64, out: &mut dyn Write) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = io::BufReader::new(file);
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            // A record still being written: leave it for the next read.
            return Ok(pos);
        }
        pos += n as u64;
        if let Some(rec) = parse_record(line.trim_end_matches('\n')) {
            out.write_all(rec.text.as_bytes())?;
            if rec.full {
                out.write_all(b"\n")?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_keeps_partials() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"hel"), vec![]);
        assert_eq!(
            s.feed(b"lo\nworld\nx"),
            vec![(true, b"hello".to_vec()), (true, b"world".to_vec())]
        );
        assert_eq!(s.finish(), Some((true, b"x".to_vec())));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_become_partial_records() {
        let mut s = LineSplitter::default();
        let mut long = vec![b'a'; MAX_RECORD + 10];
        long.push(b'\n');
        let recs = s.feed(&long);
        assert_eq!(recs.len(), 2);
        assert!(!recs[0].0 && recs[0].1.len() == MAX_RECORD);
        assert!(recs[1].0 && recs[1].1.len() == 10);
    }

    #[test]
    fn records_round_trip_and_print_like_kubectl() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000000006Z")
            .unwrap()
            .with_timezone(&Utc);
        let line = format_record(t, Stream::Stderr, true, b"boom here");
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "2026-01-02T03:04:05.000000006Z stderr F boom here\n"
        );
        let rec = parse_record(String::from_utf8(line).unwrap().trim_end()).unwrap();
        assert_eq!(rec.stream, "stderr");
        assert_eq!(rec.text, "boom here");

        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "web", 0);
        let mut f = open_log(&path).unwrap();
        f.write_all(&format_record(t, Stream::Stdout, false, b"par"))
            .unwrap();
        f.write_all(&format_record(t, Stream::Stdout, true, b"tial"))
            .unwrap();
        f.write_all(b"2026-01-02T03:04:05Z stdout F unfinished")
            .unwrap();
        let mut out = vec![];
        let pos = print_log(&path, 0, &mut out).unwrap();
        assert_eq!(out, b"partial\n");
        assert!(pos > 0);
        assert_eq!(runs(dir.path(), "web"), vec![0]);
    }
}
