//! Runs the single-threaded `peapod` runtime CLI for each container
//! operation, as containerd's runc shim runs runc: libcontainer never runs in
//! the shim's own (multi-threaded) process.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::reaper::Reaper;
use super::Error;

/// The `peapod` binary and the state root the shim gives it.
pub struct Runtime {
    pub bin: PathBuf,
    pub root: PathBuf,
    reaper: Arc<Reaper>,
}

/// The standard streams a runtime invocation (and so a detached container
/// created by it) gets: stdin `None` is /dev/null (or `run`'s input); stdout
/// and stderr `None` are captured in memory for the shim, so `create` and
/// `exec` always name all three (`open_streams`).
#[derive(Default)]
pub struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// An anonymous in-memory file (stdout of `ps`, stdin of `update`).
fn memfile(name: &str) -> Result<File, Error> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| Error::InvalidArgument(format!("memfd name {name:?}")))?;
    nix::sys::memfd::memfd_create(&cname, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .map(File::from)
        .map_err(|e| Error::io("memfd_create", e.into()))
}

fn read_all(mut f: File) -> String {
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_string(&mut s);
    s
}

/// The runtime's error message: the last `error`-level `msg` of its JSON
/// log, else its stderr.
fn error_message(log: Option<&Path>, stderr: &str) -> String {
    let from_log = log
        .and_then(|l| std::fs::read_to_string(l).ok())
        .and_then(|text| {
            text.lines().rev().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                (v["level"] == "error").then(|| v["msg"].as_str().map(str::to_string))?
            })
        });
    let stderr = stderr.trim();
    match from_log {
        Some(msg) if stderr.is_empty() || stderr.contains(&msg) => msg,
        _ if !stderr.is_empty() => stderr.to_string(),
        Some(msg) => msg,
        None => "no error message".to_string(),
    }
}

impl Runtime {
    pub fn new(bin: PathBuf, root: PathBuf, reaper: Arc<Reaper>) -> Self {
        Runtime { bin, root, reaper }
    }

    /// Runs `peapod --root R [--log L --log-format json] args…` to its exit;
    /// returns its stdout, or its error message.
    pub async fn run(
        &self,
        log: Option<&Path>,
        args: &[OsString],
        stdio: ChildStdio,
        input: Option<&[u8]>,
    ) -> Result<String, Error> {
        let verb = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root);
        if let Some(log) = log {
            cmd.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        cmd.args(args);
        // Output goes to in-memory files, never pipes: a detached container
        // inherits the runtime's stdio.
        let out = memfile("peapod-stdout")?;
        let err = memfile("peapod-stderr")?;
        match stdio.stdin {
            Some(fd) => cmd.stdin(Stdio::from(fd)),
            None => match input {
                Some(data) => {
                    let mut f = memfile("peapod-stdin")?;
                    f.write_all(data).map_err(|e| Error::io("write stdin", e))?;
                    f.seek(SeekFrom::Start(0))
                        .map_err(|e| Error::io("seek stdin", e))?;
                    cmd.stdin(Stdio::from(f))
                }
                None => cmd.stdin(Stdio::null()),
            },
        };
        let capture = stdio.stdout.is_none();
        match stdio.stdout {
            Some(fd) => cmd.stdout(Stdio::from(fd)),
            None => cmd.stdout(Stdio::from(
                out.try_clone().map_err(|e| Error::io("dup", e))?,
            )),
        };
        match stdio.stderr {
            Some(fd) => cmd.stderr(Stdio::from(fd)),
            None => cmd.stderr(Stdio::from(
                err.try_clone().map_err(|e| Error::io("dup", e))?,
            )),
        };
        let (_pid, exit) = self
            .reaper
            .spawn(&mut cmd)
            .map_err(|e| Error::io(format!("cannot run {}", self.bin.display()), e))?;
        // The Command holds our copies of the stdio fds: close them now, so
        // the container's streams have only the container as writer.
        drop(cmd);
        let started = std::time::Instant::now();
        let code = exit.await.unwrap_or(-1);
        log::debug!("peapod {verb}: exit {code} after {:?}", started.elapsed());
        let stdout = if capture {
            read_all(out)
        } else {
            String::new()
        };
        if code == 0 {
            return Ok(stdout);
        }
        let stderr = read_all(err);
        let msg = error_message(log, &stderr);
        Err(Error::Runtime {
            verb,
            not_found: msg.contains("does not exist") || msg.contains("not found"),
            msg,
        })
    }

    /// `run` with no stdio and no input.
    pub async fn call(&self, log: Option<&Path>, args: &[&str]) -> Result<String, Error> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        self.run(log, &args, ChildStdio::default(), None).await
    }
}
