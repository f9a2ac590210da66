//! The containers' output: a FIFO per stream (or a terminal's master) read in
//! the poll loop and written to the run's CRI log file.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use nix::sys::stat::Mode as FileMode;

use super::Supervisor;
use crate::error::Context;
use crate::oci::Stdio;
use crate::pod::error::Result;
use crate::pod::logs::{self, format_record, log_path, LineSplitter, LogWriter, Stream};

/// One output stream of one container: a FIFO the container writes, we
/// read; or, for a container with `tty: true`, its terminal's master side
/// (one per run, all output as stdout, as CRI logs it).
pub(super) struct Output {
    pub(super) container: String,
    pub(super) stream: Stream,
    pub(super) fifo: File,
    pub(super) splitter: LineSplitter,
    pub(super) tty: bool,
    /// A terminal whose every slave is closed: dropped after this round.
    pub(super) closed: bool,
}

/// Which run's log file `open_run_log` opens.
#[derive(Debug, Clone, Copy)]
pub(super) enum LogRun {
    /// A new run: the file after the last one.
    Next,
    /// The run going on (a container kept by an adopting supervisor).
    Current,
}

impl Supervisor {
    /// One FIFO per output stream of every container, kept open for the pod's life.
    pub(super) fn open_outputs(&mut self) -> Result<()> {
        let io = self.folder.io_dir();
        std::fs::create_dir_all(&io).context(|| format!("create {}", io.display()))?;
        let names: Vec<String> = self.containers().map(|c| c.name.clone()).collect();
        for name in names {
            for stream in [Stream::Stdout, Stream::Stderr] {
                let fifo = self.open_fifo(&name, stream)?;
                self.outputs.push(Output {
                    container: name.clone(),
                    stream,
                    fifo,
                    splitter: LineSplitter::default(),
                    tty: false,
                    closed: false,
                });
            }
        }
        Ok(())
    }

    fn fifo_path(&self, name: &str, stream: Stream) -> PathBuf {
        self.folder
            .io_dir()
            .join(format!("{name}.{}", stream.name()))
    }

    /// Opened read-write: we are then always a writer too, so the FIFO never
    /// reports end-of-file between runs of the container.
    fn open_fifo(&self, name: &str, stream: Stream) -> Result<File> {
        let path = self.fifo_path(name, stream);
        if !path.exists() {
            nix::unistd::mkfifo(&path, FileMode::from_bits_truncate(0o600))
                .context(|| format!("mkfifo {}", path.display()))?;
        }
        Ok(OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .context(|| format!("open {}", path.display()))?)
    }

    /// The container's end of its FIFOs, read-write so that the container never
    /// gets SIGPIPE even if the supervisor is gone.
    pub(super) fn container_stdio(&self, name: &str) -> Result<Stdio> {
        let open = |stream| -> Result<OwnedFd> {
            let path = self.fifo_path(name, stream);
            Ok(OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map(OwnedFd::from)
                .context(|| format!("open {}", path.display()))?)
        };
        Ok(Stdio {
            stdin: File::open("/dev/null")
                .context(|| "open /dev/null".into())?
                .into(),
            stdout: open(Stream::Stdout)?,
            stderr: open(Stream::Stderr)?,
        })
    }

    /// Each run of a container logs to its own file, numbered by restarts.
    pub(super) fn open_run_log(&mut self, name: &str, which: LogRun) -> Result<()> {
        // The folder is the record of runs, so numbering survives a new supervisor.
        let last = logs::runs(&self.folder.logs_dir(), name).last().copied();
        let run = match which {
            LogRun::Next => last.map_or(0, |r| r + 1),
            LogRun::Current => last.unwrap_or(0),
        };
        let path = log_path(&self.folder.logs_dir(), name, run);
        let file = LogWriter::open(&path, self.settings.log_rotation())
            .context(|| format!("open {}", path.display()))?;
        self.logs.insert(name.to_string(), file);
        // The kubelet keeps the logs of a container's current and previous runs.
        logs::remove_runs_before(&self.folder.logs_dir(), name, run.saturating_sub(1));
        Ok(())
    }

    /// A line of peapod's own in a container's log (why it failed to start).
    pub(super) fn log_line(&mut self, name: &str, stream: Stream, text: &str) {
        if !self.logs.contains_key(name) && self.open_run_log(name, LogRun::Next).is_err() {
            return;
        }
        if let Some(file) = self.logs.get_mut(name) {
            let _ = file.write_record(&format_record(
                chrono::Utc::now(),
                stream,
                true,
                text.as_bytes(),
            ));
        }
    }

    pub(super) fn pump_output(&mut self, index: usize) {
        let mut buf = [0u8; 16384];
        loop {
            let out = &mut self.outputs[index];
            let n = match out.fifo.read(&mut buf) {
                Ok(0) => {
                    out.closed = out.tty;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A terminal whose slave side is closed reads EIO.
                    out.closed = out.tty && e.kind() != std::io::ErrorKind::WouldBlock;
                    return;
                }
            };
            let records = out.splitter.feed(&buf[..n]);
            let (name, stream) = (out.container.clone(), out.stream);
            if let Some(file) = self.logs.get_mut(&name) {
                let time = chrono::Utc::now();
                for (full, text) in records {
                    let _ = file.write_record(&format_record(time, stream, full, &text));
                }
            }
        }
    }

    /// Flushes a container's pending output (after it exited).
    pub(super) fn drain_outputs(&mut self, name: &str) {
        for i in 0..self.outputs.len() {
            if self.outputs[i].container == name {
                self.pump_output(i);
                let stream = self.outputs[i].stream;
                if let Some((full, text)) = self.outputs[i].splitter.finish() {
                    if let Some(file) = self.logs.get_mut(name) {
                        let record = format_record(chrono::Utc::now(), stream, full, &text);
                        let _ = file.write_record(&record);
                    }
                }
            }
        }
    }
}
