//! Container logs in the CRI format the kubelet uses:
//! `<RFC 3339 nano time> <stdout|stderr> <F|P> <text>`, one file per run of a
//! container (`<restart count>.log`), kept across restarts.
//!
//! Bounded as the kubelet's container log manager bounds them
//! (containerLogMaxSize, containerLogMaxFiles): a run's log that would grow
//! past the size is rotated (renamed `<run>.log.<time>`, a new `<run>.log`
//! opened) and only the newest files of the run are kept; of older runs only
//! the previous run's files stay. Rotated files are not compressed (the
//! kubelet gzips them): the supervisor that writes them is single-threaded.
//! Readers (`pod logs`) read a run across its files, oldest first.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The kubelet's containerLogMaxSize default (10Mi).
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
/// The kubelet's containerLogMaxFiles default.
pub const DEFAULT_MAX_FILES: u32 = 5;

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
        // One pass and one drain: draining line by line moved the rest of
        // the read each time (quadratic in the number of lines per read).
        let mut start = 0;
        while let Some(n) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let mut line = &self.pending[start..start + n];
            start += n + 1;
            while line.len() > MAX_RECORD {
                records.push((false, line[..MAX_RECORD].to_vec()));
                line = &line[MAX_RECORD..];
            }
            records.push((true, line.to_vec()));
        }
        while self.pending.len() - start > MAX_RECORD {
            records.push((false, self.pending[start..start + MAX_RECORD].to_vec()));
            start += MAX_RECORD;
        }
        self.pending.drain(..start);
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

/// How a container's logs are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// A file is rotated before it would grow past this many bytes.
    pub max_size: u64,
    /// Files kept of one run, the one being written included (at least 2).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// The log of the run being written, rotated as it grows.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
}

impl LogWriter {
    /// Opens (appending to) a run's log.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<Self> {
        let file = open_log(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        })
    }

    /// Writes one record, rotating first if it would not fit.
    pub fn write_record(&mut self, record: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + record.len() as u64 > self.rotation.max_size {
            self.rotate()?;
        }
        self.file.write_all(record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let stamp = Utc::now().format("%Y%m%d-%H%M%S%.9f");
        let mut rotated = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        if rotated.exists() {
            rotated = PathBuf::from(format!("{}.{stamp}-1", self.path.display()));
        }
        std::fs::rename(&self.path, &rotated)?;
        self.file = open_log(&self.path)?;
        self.size = 0;
        let old = rotated_files(&self.path);
        let keep = self.rotation.max_files.max(2) as usize - 1;
        for path in &old[..old.len().saturating_sub(keep)] {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

/// The rotated files of the log at `path`, oldest first.
fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with(&prefix))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Every file of one run's log, oldest first (the one being written last).
pub fn run_files(logs_dir: &Path, container: &str, run: u32) -> Vec<PathBuf> {
    let current = log_path(logs_dir, container, run);
    let mut files = rotated_files(&current);
    files.push(current);
    files
}

/// Removes the log files of a container's runs before `keep_from` (the
/// kubelet keeps the logs of the current and the previous instance).
pub fn remove_runs_before(logs_dir: &Path, container: &str, keep_from: u32) {
    for run in runs(logs_dir, container) {
        if run < keep_from {
            for path in run_files(logs_dir, container, run) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// What `pod logs` prints, as `kubectl logs` has it.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Only the last this many records.
    pub tail: Option<usize>,
    /// Only records written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Each record with its time first (RFC 3339 with nanoseconds).
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

/// Prints records as `kubectl logs` does, counting the bytes against the limit.
pub struct Printer {
    options: ReadOptions,
    written: u64,
}

impl Printer {
    pub fn new(options: ReadOptions) -> Self {
        Self {
            options,
            written: 0,
        }
    }

    /// The byte limit is reached: nothing more is printed.
    pub fn full(&self) -> bool {
        self.options.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// Prints one record (a line of a CRI log file, without its newline) if
    /// it passes the filters.
    pub fn print(&mut self, line: &str, out: &mut dyn Write) -> io::Result<()> {
        let Some(rec) = parse_record(line) else {
            return Ok(());
        };
        if let Some(since) = self.options.since {
            let time = DateTime::parse_from_rfc3339(&rec.time).map(|t| t.with_timezone(&Utc));
            if time.is_ok_and(|t| t < since) {
                return Ok(());
            }
        }
        let mut text = Vec::with_capacity(rec.text.len() + 40);
        if self.options.timestamps {
            text.extend_from_slice(rec.time.as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(rec.text.as_bytes());
        if rec.full {
            text.push(b'\n');
        }
        if let Some(limit) = self.options.limit_bytes {
            let room = limit.saturating_sub(self.written) as usize;
            text.truncate(room);
        }
        self.written += text.len() as u64;
        out.write_all(&text)
    }

    /// Prints the records of a run's files (oldest first), after the filters
    /// and the tail; returns the offset reached in the last file (where
    /// following it goes on).
    pub fn print_files(&mut self, files: &[PathBuf], out: &mut dyn Write) -> io::Result<u64> {
        let (lines, offset) = match self.options.tail {
            Some(n) => tail_lines(files, n, self.options.since)?,
            None => {
                let mut lines = Vec::new();
                let mut offset = 0;
                for path in files {
                    lines.clear();
                    offset = read_lines(path, 0, &mut lines)?;
                    for line in &lines {
                        if self.full() {
                            break;
                        }
                        self.print(line, out)?;
                    }
                }
                return Ok(offset);
            }
        };
        for line in &lines {
            if self.full() {
                break;
            }
            self.print(line, out)?;
        }
        Ok(offset)
    }
}

/// The complete lines of a file from `offset` (a line still being written is
/// left); returns the offset after the last complete line.
pub fn read_lines(path: &Path, offset: u64, lines: &mut Vec<String>) -> io::Result<u64> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(offset),
        Err(e) => return Err(e),
    };
    read_lines_from(&mut file, offset, lines)
}

fn read_lines_from(file: &mut File, offset: u64, lines: &mut Vec<String>) -> io::Result<u64> {
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    for line in bytes[..end].split(|b| *b == b'\n') {
        if !line.is_empty() {
            lines.push(String::from_utf8_lossy(line).into_owned());
        }
    }
    Ok(offset + end as u64)
}

/// The last `n` records of a run's files (those since `since`), oldest
/// first, and the offset reached in the last file.
fn tail_lines(
    files: &[PathBuf],
    n: usize,
    since: Option<DateTime<Utc>>,
) -> io::Result<(Vec<String>, u64)> {
    let mut tail: Vec<String> = Vec::new();
    let mut offset = None;
    for path in files.iter().rev() {
        let mut lines = Vec::new();
        let reached = read_lines(path, 0, &mut lines)?;
        offset.get_or_insert(reached);
        if tail.len() >= n {
            break;
        }
        if let Some(since) = since {
            lines.retain(|l| {
                parse_record(l)
                    .and_then(|r| DateTime::parse_from_rfc3339(&r.time).ok())
                    .is_none_or(|t| t.with_timezone(&Utc) >= since)
            });
        }
        let take = (n - tail.len()).min(lines.len());
        let mut newest: Vec<String> = lines.split_off(lines.len() - take);
        newest.append(&mut tail);
        tail = newest;
    }
    Ok((tail, offset.unwrap_or(0)))
}

/// Follows the file being written at `path` from `offset`, across rotations:
/// what is new since the last call. A rotation (the path now names another
/// file) ends the old file first, then reads the new one from its start.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
}

impl Follower {
    /// Starts at the end of what was printed: `offset` bytes of the file now at `path`.
    pub fn new(path: &Path, offset: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            file: File::open(path).ok(),
            offset,
        }
    }

    /// The new complete records.
    pub fn poll(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        if let Some(file) = self.file.as_mut() {
            self.offset = read_lines_from(file, self.offset, lines)?;
        }
        let now = std::fs::metadata(&self.path).ok();
        let same = match (&self.file, &now) {
            (Some(file), Some(now)) => file.metadata().is_ok_and(|m| m.ino() == now.ino()),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.file = File::open(&self.path).ok();
            self.offset = 0;
            if let Some(file) = self.file.as_mut() {
                self.offset = read_lines_from(file, 0, lines)?;
            }
        }
        Ok(())
    }
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
    fn a_read_of_many_short_lines_is_split_in_one_pass() {
        let mut s = LineSplitter::default();
        let mut read = b"x\n".repeat(8192);
        read.extend_from_slice(&vec![b'y'; 2 * MAX_RECORD + 1]);
        let recs = s.feed(&read);
        assert_eq!(recs.len(), 8192 + 2);
        assert!(recs[..8192].iter().all(|r| *r == (true, b"x".to_vec())));
        assert!(recs[8192..].iter().all(|r| !r.0 && r.1.len() == MAX_RECORD));
        assert_eq!(s.finish(), Some((true, b"y".to_vec())));
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

    fn record(i: usize) -> Vec<u8> {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::seconds(i as i64);
        format_record(t, Stream::Stdout, true, format!("line {i:05}").as_bytes())
    }

    #[test]
    fn a_growing_log_is_rotated_and_bounded_and_read_across_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_size: 1000,
            max_files: 3,
        };
        let path = log_path(dir.path(), "web", 0);
        let mut log = LogWriter::open(&path, rotation).unwrap();
        let mut follower = Follower::new(&path, 0);
        let mut followed = Vec::new();
        let n = 500;
        for i in 0..n {
            log.write_record(&record(i)).unwrap();
            if i % 7 == 0 {
                follower.poll(&mut followed).unwrap();
            }
        }
        let files = run_files(dir.path(), "web", 0);
        assert_eq!(files.len(), 3, "{files:?}");
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(total <= 3000, "{total}");
        // Newest lines, in order, across the files.
        let mut out = Vec::new();
        let options = ReadOptions {
            tail: Some(40),
            ..ReadOptions::default()
        };
        Printer::new(options).print_files(&files, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let want: String = (n - 40..n).map(|i| format!("line {i:05}\n")).collect();
        assert_eq!(text, want);
        // Following saw every line (it never fell more than a file behind).
        follower.poll(&mut followed).unwrap();
        assert_eq!(followed.len(), n);
        assert!(followed[n - 1].ends_with("line 00499"));
    }

    #[test]
    fn since_timestamps_and_limit_bytes_filter_what_is_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "web", 0);
        let mut log = LogWriter::open(&path, Rotation::default()).unwrap();
        for i in 0..10 {
            log.write_record(&record(i)).unwrap();
        }
        let print = |options: ReadOptions| {
            let mut out = Vec::new();
            Printer::new(options)
                .print_files(std::slice::from_ref(&path), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let since = DateTime::parse_from_rfc3339("2026-01-02T03:04:13Z")
            .unwrap()
            .with_timezone(&Utc);
        let text = print(ReadOptions {
            since: Some(since),
            timestamps: true,
            ..ReadOptions::default()
        });
        assert_eq!(
            text,
            "2026-01-02T03:04:13.000000000Z line 00008\n2026-01-02T03:04:14.000000000Z line 00009\n"
        );
        assert_eq!(
            print(ReadOptions {
                limit_bytes: Some(15),
                ..ReadOptions::default()
            }),
            "line 00000\nline"
        );
        assert_eq!(
            print(ReadOptions {
                tail: Some(2),
                since: Some(since),
                ..ReadOptions::default()
            }),
            "line 00008\nline 00009\n"
        );
        assert_eq!(
            print(ReadOptions {
                tail: Some(0),
                ..ReadOptions::default()
            }),
            ""
        );
    }

    #[test]
    fn only_the_previous_runs_logs_stay() {
        let dir = tempfile::tempdir().unwrap();
        for run in 0..4 {
            open_log(&log_path(dir.path(), "web", run)).unwrap();
        }
        std::fs::write(
            format!(
                "{}.20260101-000000.000000000",
                log_path(dir.path(), "web", 1).display()
            ),
            "",
        )
        .unwrap();
        remove_runs_before(dir.path(), "web", 2);
        assert_eq!(runs(dir.path(), "web"), vec![2, 3]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("web")).unwrap().count(),
            2
        );
    }
}
