//! For the pod engine: a pull runs as a child process (`peapod image pull
//! --json`), never inside the caller, so that no HTTP or TLS thread lives in a
//! process that calls libcontainer, and a slow registry never blocks an event
//! loop. The caller polls the child's stdout (non-blocking) and reaps it.
//!
//! The child writes one JSON object a line: progress events, then one outcome
//! per image, `{"event":"pulled",...}` or `{"event":"failed",...}`.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::image::registry::RegistrySettings;

/// How one image's pull ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PullOutcome {
    Pulled {
        /// As asked for.
        reference: String,
        /// As stored.
        name: String,
        id: String,
        /// Compressed bytes of the image (config and layers), as the kubelet reports it.
        size: u64,
        seconds: f64,
        up_to_date: bool,
    },
    Failed {
        reference: String,
        error: String,
    },
}

/// A running `peapod image pull`.
pub struct PullChild {
    child: Child,
    stdout: ChildStdout,
    buffer: Vec<u8>,
    images: Vec<String>,
    /// When the pull was asked for (the kubelet's "including waiting" starts here).
    pub started: Instant,
}

/// The arguments that carry `settings` and the store to the child.
pub fn pull_args(images: &[String], store: &Path, settings: &RegistrySettings) -> Vec<String> {
    let mut args = vec!["image".to_string(), "pull".into(), "--json".into()];
    args.push(format!("--image-store={}", store.display()));
    for host in &settings.insecure {
        args.push(format!("--insecure-registry={host}"));
    }
    args.push(format!(
        "--registry-hosts-dir={}",
        settings.hosts_dir.display()
    ));
    args.push(format!("--registry-ca-dir={}", settings.ca_dir.display()));
    if let Some(credentials) = &settings.credentials {
        args.push(format!("--registry-credentials={}", credentials.display()));
    }
    args.push("--".into());
    args.extend(images.iter().cloned());
    args
}

/// Starts `peapod image pull` for `images`; returns at once.
pub fn spawn(
    peapod: &Path,
    images: &[String],
    store: &Path,
    settings: &RegistrySettings,
) -> io::Result<PullChild> {
    let mut command = Command::new(peapod);
    // SAFETY: sigprocmask is async-signal-safe; the caller (a pod supervisor)
    // blocks the signals it reads from a signalfd, which the pull must not inherit.
    unsafe {
        command.pre_exec(|| {
            let empty = nix::sys::signal::SigSet::empty();
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&empty),
                None,
            )
            .map_err(io::Error::from)
        });
    }
    let mut child = command
        .args(pull_args(images, store, settings))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    crate::oci::console::set_nonblocking(stdout.as_fd()).map_err(io::Error::from)?;
    Ok(PullChild {
        child,
        stdout,
        buffer: Vec::new(),
        images: images.to_vec(),
        started: Instant::now(),
    })
}

impl PullChild {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pipe to poll(2) for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stdout.as_fd()
    }

    /// Reads what the child wrote so far; once it has exited (reaped here),
    /// the outcome of every image, in the order asked.
    pub fn poll(&mut self) -> io::Result<Option<Vec<PullOutcome>>> {
        self.drain()?;
        let Some(status) = self.child.try_wait()? else {
            return Ok(None);
        };
        self.drain()?;
        let text = String::from_utf8_lossy(&self.buffer);
        Ok(Some(outcomes(&text, &self.images, &status.to_string())))
    }

    /// Reads what the child wrote so far, for a caller that reaps it itself
    /// (a supervisor reaps every child); true once its stdout is closed.
    pub fn read_available(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.stdout.read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The outcome of every image once the child was reaped by the caller
    /// with `status` (what it wrote before is still in the pipe).
    pub fn ended(&mut self, status: &str) -> Vec<PullOutcome> {
        let _ = self.read_available();
        let text = String::from_utf8_lossy(&self.buffer);
        outcomes(&text, &self.images, status)
    }

    /// Stops the pull (SIGKILL) and reaps it; what it left is swept by the next pull.
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(drop)
    }

    fn drain(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.stdout.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The outcome for each of `images` from the child's output; an image the
/// child said nothing about failed with its exit status.
pub fn outcomes(output: &str, images: &[String], status: &str) -> Vec<PullOutcome> {
    let said: Vec<PullOutcome> = output
        .lines()
        .filter_map(|line| serde_json::from_str::<PullOutcome>(line).ok())
        .collect();
    images
        .iter()
        .map(|image| {
            said.iter()
                .find(|o| match o {
                    PullOutcome::Pulled { reference, .. }
                    | PullOutcome::Failed { reference, .. } => reference == image,
                })
                .cloned()
                .unwrap_or_else(|| PullOutcome::Failed {
                    reference: image.clone(),
                    error: format!("peapod image pull ended ({status}) without a result"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_come_from_json_lines() {
        let output = concat!(
            "{\"event\":\"resolved\",\"name\":\"a\",\"manifest\":\"sha256:x\"}\n",
            "{\"event\":\"pulled\",\"reference\":\"a\",\"name\":\"docker.io/library/a:latest\",\"id\":\"sha256:1\",\"size\":10,\"seconds\":0.5,\"up_to_date\":false}\n",
            "{\"event\":\"failed\",\"reference\":\"b:1\",\"error\":\"not found\"}\n",
            "garbage\n"
        );
        let images = vec!["a".to_string(), "b:1".into(), "c".into()];
        let got = outcomes(output, &images, "exit status: 1");
        assert!(matches!(&got[0], PullOutcome::Pulled { size: 10, .. }));
        assert_eq!(
            got[1],
            PullOutcome::Failed {
                reference: "b:1".into(),
                error: "not found".into()
            }
        );
        match &got[2] {
            PullOutcome::Failed { error, .. } => {
                assert!(error.contains("exit status: 1"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settings_travel_as_flags() {
        let settings = RegistrySettings {
            insecure: vec!["127.0.0.1:5000".into()],
            credentials: Some("/c.json".into()),
            ..Default::default()
        };
        let args = pull_args(&["busybox".into()], Path::new("/s"), &settings);
        assert_eq!(&args[..4], ["image", "pull", "--json", "--image-store=/s"]);
        assert!(args.contains(&"--insecure-registry=127.0.0.1:5000".to_string()));
        assert!(args.contains(&"--registry-credentials=/c.json".to_string()));
        assert_eq!(args.last().unwrap(), "busybox");
    }
}
