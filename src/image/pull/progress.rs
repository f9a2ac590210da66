//! What a pull reports while it runs: per layer on a terminal (bytes and rate,
//! redrawn in place), one line per layer on a pipe, or JSON lines for a parent
//! process (the pod engine) to read.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Events of one pull. Every method has a default: a sink ignores them all.
pub trait Progress {
    /// The reference is resolved to a manifest.
    fn resolved(&mut self, _name: &str, _manifest: &str) {}
    /// A layer transfer starts (`size` compressed bytes).
    fn layer_started(&mut self, _digest: &str, _size: u64) {}
    /// `done` bytes of the layer have arrived so far.
    fn layer_progress(&mut self, _digest: &str, _done: u64, _size: u64) {}
    /// The layer is fetched, verified and unpacked.
    fn layer_done(&mut self, _digest: &str, _size: u64, _elapsed: Duration) {}
    /// The layer was already in the store (or another pull just brought it).
    fn layer_present(&mut self, _digest: &str) {}
}

/// One progress for the threads of a pull, each event under its lock.
pub(crate) struct Shared<'a, 'p>(pub &'a std::sync::Mutex<&'p mut (dyn Progress + Send)>);

impl Shared<'_, '_> {
    fn with(&self, f: impl FnOnce(&mut dyn Progress)) {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut **guard);
    }
}

impl Progress for Shared<'_, '_> {
    fn resolved(&mut self, name: &str, manifest: &str) {
        self.with(|p| p.resolved(name, manifest));
    }
    fn layer_started(&mut self, digest: &str, size: u64) {
        self.with(|p| p.layer_started(digest, size));
    }
    fn layer_progress(&mut self, digest: &str, done: u64, size: u64) {
        self.with(|p| p.layer_progress(digest, done, size));
    }
    fn layer_done(&mut self, digest: &str, size: u64, elapsed: Duration) {
        self.with(|p| p.layer_done(digest, size, elapsed));
    }
    fn layer_present(&mut self, digest: &str) {
        self.with(|p| p.layer_present(digest));
    }
}

/// Ignores everything.
pub struct Silent;
impl Progress for Silent {}

/// How `peapod image pull` reports.
pub fn for_output(json: bool) -> Box<dyn Progress + Send> {
    use std::io::IsTerminal;
    if json {
        Box::new(JsonLines(io::stdout()))
    } else if io::stdout().is_terminal() {
        Box::new(Terminal::default())
    } else {
        Box::new(Lines(io::stdout()))
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// `1.5 MiB`, as `image ls` prints sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    format!("{}/s", human_size((bytes as f64 / secs) as u64))
}

/// One line per layer, written when it is done.
pub struct Lines<W: Write>(pub W);

impl<W: Write> Progress for Lines<W> {
    fn resolved(&mut self, name: &str, manifest: &str) {
        let _ = writeln!(self.0, "{name}: resolved to {manifest}");
    }
    fn layer_done(&mut self, digest: &str, size: u64, elapsed: Duration) {
        let _ = writeln!(
            self.0,
            "layer {}: {} in {:.2}s ({})",
            short(digest),
            human_size(size),
            elapsed.as_secs_f64(),
            rate(size, elapsed)
        );
    }
    fn layer_present(&mut self, digest: &str) {
        let _ = writeln!(self.0, "layer {}: already present", short(digest));
    }
}

/// A line redrawn as bytes arrive (the layer that moved last), at most ten
/// times a second; a line per layer once it is done.
#[derive(Default)]
pub struct Terminal {
    started: std::collections::HashMap<String, Instant>,
    drawn: Option<Instant>,
}

impl Progress for Terminal {
    fn resolved(&mut self, name: &str, manifest: &str) {
        println!("{name}: resolved to {manifest}");
    }
    fn layer_started(&mut self, digest: &str, size: u64) {
        self.started.insert(digest.to_string(), Instant::now());
        self.drawn = None;
        self.layer_progress(digest, 0, size);
    }
    fn layer_progress(&mut self, digest: &str, done: u64, size: u64) {
        let now = Instant::now();
        if self
            .drawn
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
            && done < size
        {
            return;
        }
        self.drawn = Some(now);
        let elapsed = self
            .started
            .get(digest)
            .map_or(Duration::ZERO, |t| now.duration_since(*t));
        let mut out = io::stdout().lock();
        let _ = write!(
            out,
            "\r\x1b[2Klayer {}: {} / {} ({})",
            short(digest),
            human_size(done),
            human_size(size),
            rate(done, elapsed)
        );
        let _ = out.flush();
    }
    fn layer_done(&mut self, digest: &str, size: u64, elapsed: Duration) {
        self.started.remove(digest);
        println!(
            "\r\x1b[2Klayer {}: {} in {:.2}s ({})",
            short(digest),
            human_size(size),
            elapsed.as_secs_f64(),
            rate(size, elapsed)
        );
    }
    fn layer_present(&mut self, digest: &str) {
        println!("layer {}: already present", short(digest));
    }
}

/// One JSON object a line, for a parent process: `{"event":"layer",...}`.
pub struct JsonLines<W: Write>(pub W);

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event<'a> {
    Resolved {
        name: &'a str,
        manifest: &'a str,
    },
    Layer {
        digest: &'a str,
        size: u64,
        seconds: f64,
    },
    LayerPresent {
        digest: &'a str,
    },
}

impl<W: Write> JsonLines<W> {
    fn emit(&mut self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(self.0, "{line}");
            let _ = self.0.flush();
        }
    }
}

impl<W: Write> Progress for JsonLines<W> {
    fn resolved(&mut self, name: &str, manifest: &str) {
        self.emit(&Event::Resolved { name, manifest });
    }
    fn layer_done(&mut self, digest: &str, size: u64, elapsed: Duration) {
        self.emit(&Event::Layer {
            digest,
            size,
            seconds: elapsed.as_secs_f64(),
        });
    }
    fn layer_present(&mut self, digest: &str) {
        self.emit(&Event::LayerPresent { digest });
    }
}

/// A reader that reports how much of a layer has gone through it.
pub(crate) struct Counting<'a, R> {
    pub inner: R,
    pub progress: &'a mut dyn Progress,
    pub digest: &'a str,
    pub size: u64,
    pub done: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.done += n as u64;
            self.progress
                .layer_progress(self.digest, self.done, self.size);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_gets_one_line_per_layer() {
        let mut out = Lines(Vec::new());
        let d = format!("sha256:{}", "ab".repeat(32));
        out.layer_started(&d, 3 << 20);
        out.layer_progress(&d, 1 << 20, 3 << 20);
        out.layer_done(&d, 3 << 20, Duration::from_millis(1500));
        out.layer_present(&d);
        let text = String::from_utf8(out.0).unwrap();
        assert_eq!(
            text,
            "layer abababababab: 3.0 MiB in 1.50s (2.0 MiB/s)\nlayer abababababab: already present\n"
        );
    }

    #[test]
    fn json_lines_parse_back() {
        let mut out = JsonLines(Vec::new());
        out.layer_done("sha256:x", 10, Duration::from_secs(2));
        let v: serde_json::Value = serde_json::from_slice(&out.0).unwrap();
        assert_eq!(v["event"], "layer");
        assert_eq!(v["size"], 10);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
    }
}
