//! Running one plugin binary: the CNI_* environment, the request on stdin, the
//! answer on stdout, a deadline. Single-threaded: one poll() over the pipes and
//! a pidfd, so it can run inside the pod engine's single-threaded processes.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Deserialize;

use crate::oci::console::set_nonblocking;

/// Plugins answer with a few KiB; a runaway one must not fill our memory.
const MAX_OUTPUT: usize = 4 << 20;
/// libcni retries "text file busy" (a plugin being installed) a few times.
const BUSY_RETRIES: u32 = 5;
const BUSY_PAUSE: Duration = Duration::from_millis(200);

/// The parameters of one call, as the spec names them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Invocation<'a> {
    pub command: &'static str,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
    /// CNI_PATH: the plugin folders, ':'-separated.
    pub path: &'a str,
}

/// The spec's error result (`code`, `msg`, `details`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PluginError {
    #[serde(default)]
    pub code: Option<u64>,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(code) = self.code {
            write!(f, "error {code}: ")?;
        }
        f.write_str(self.msg.trim())?;
        if !self.details.trim().is_empty() && self.details.trim() != self.msg.trim() {
            write!(f, " ({})", self.details.trim())?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot run it: {0}")]
    Spawn(std::io::Error),
    #[error("talking to it: {0}")]
    Io(std::io::Error),
    #[error("killed after {0:?} without an answer")]
    Timeout(Duration),
    #[error("{error}")]
    Failed {
        status: ExitStatus,
        error: PluginError,
    },
}

/// Runs `plugin` with `stdin` as its request and returns its stdout. A
/// non-zero exit is `Failed` with the plugin's JSON error, or its stderr when
/// stdout holds none. The plugin and anything it started are killed once
/// `timeout` has passed.
pub fn run(
    plugin: &Path,
    call: &Invocation,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ExecError> {
    let deadline = Instant::now() + timeout;
    let mut child = spawn(plugin, call)?;
    let output = talk(&mut child, stdin, deadline);
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            // Its own process group: kill whatever it delegated to as well.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            return Err(match e {
                Talk::Timeout => ExecError::Timeout(timeout),
                Talk::Io(e) => ExecError::Io(e),
            });
        }
    };
    let status = child.wait().map_err(ExecError::Io)?;
    if status.success() {
        if !output.stderr.is_empty() {
            tracing::debug!(
                "{}: {}",
                plugin.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        return Ok(output.stdout);
    }
    Err(ExecError::Failed {
        status,
        error: plugin_error(status, &output.stdout, &output.stderr),
    })
}

fn spawn(plugin: &Path, call: &Invocation) -> Result<Child, ExecError> {
    let mut attempt = 0;
    loop {
        // The environment is inherited (portmap needs PATH for iptables), the
        // CNI variables set over it, as libcni does.
        let spawned = Command::new(plugin)
            .env("CNI_COMMAND", call.command)
            .env("CNI_CONTAINERID", call.container_id)
            .env("CNI_NETNS", call.netns)
            .env("CNI_IFNAME", call.ifname)
            .env("CNI_ARGS", call.args)
            .env("CNI_PATH", call.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        match spawned {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(BUSY_PAUSE);
            }
            Err(e) => return Err(ExecError::Spawn(e)),
            Ok(child) => return Ok(child),
        }
    }
}

struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum Talk {
    Timeout,
    Io(std::io::Error),
}

impl From<std::io::Error> for Talk {
    fn from(e: std::io::Error) -> Self {
        Talk::Io(e)
    }
}

impl From<nix::Error> for Talk {
    fn from(e: nix::Error) -> Self {
        Talk::Io(e.into())
    }
}

/// Feeds stdin and collects stdout and stderr until the plugin has exited (its
/// pidfd) and the pipes are drained. A plugin that exits while something it
/// started still holds its stdout is not waited for beyond its own exit.
fn talk(child: &mut Child, request: &[u8], deadline: Instant) -> Result<Output, Talk> {
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    for fd in [
        stdin.as_ref().map(|f| f.as_fd()),
        stdout.as_ref().map(|f| f.as_fd()),
        stderr.as_ref().map(|f| f.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        set_nonblocking(fd)?;
    }
    let pidfd = pidfd_open(child.id());
    let mut out = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let mut written = 0;
    let mut exited = false;
    loop {
        if written == request.len() {
            stdin = None;
        }
        if exited || (stdout.is_none() && stderr.is_none()) {
            // Whatever the plugin wrote before exiting is in the pipes now.
            if let Some(pipe) = stdout.as_mut() {
                drain(pipe, &mut out.stdout)?;
            }
            if let Some(pipe) = stderr.as_mut() {
                drain(pipe, &mut out.stderr)?;
            }
            if exited || pidfd.is_none() {
                return Ok(out);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Talk::Timeout);
        }
        let mut fds = Vec::with_capacity(4);
        let mut roles = Vec::with_capacity(4);
        for (fd, events, role) in [
            (
                stdin.as_ref().map(AsFd::as_fd),
                PollFlags::POLLOUT,
                Role::Stdin,
            ),
            (
                stdout.as_ref().map(AsFd::as_fd),
                PollFlags::POLLIN,
                Role::Stdout,
            ),
            (
                stderr.as_ref().map(AsFd::as_fd),
                PollFlags::POLLIN,
                Role::Stderr,
            ),
            (
                pidfd.as_ref().map(AsFd::as_fd),
                PollFlags::POLLIN,
                Role::Exit,
            ),
        ] {
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd, events));
                roles.push(role);
            }
        }
        let wait =
            PollTimeout::try_from(left.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, wait) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let ready: Vec<(Role, PollFlags)> = fds
            .iter()
            .zip(&roles)
            .filter_map(|(fd, role)| fd.revents().filter(|r| !r.is_empty()).map(|r| (*role, r)))
            .collect();
        drop(fds);
        for (role, events) in ready {
            match role {
                Role::Stdin => {
                    let pipe = stdin.as_mut().expect("polled stdin is open");
                    if events.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
                        // The plugin does not read (any more): its answer will say why.
                        written = request.len();
                        continue;
                    }
                    match pipe.write(&request[written..]) {
                        Ok(n) => written += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == ErrorKind::BrokenPipe => written = request.len(),
                        Err(e) => return Err(e.into()),
                    }
                }
                Role::Stdout => {
                    if read_some(stdout.as_mut().expect("polled"), &mut out.stdout)? {
                        stdout = None;
                    }
                }
                Role::Stderr => {
                    if read_some(stderr.as_mut().expect("polled"), &mut out.stderr)? {
                        stderr = None;
                    }
                }
                Role::Exit => exited = true,
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Stdin,
    Stdout,
    Stderr,
    Exit,
}

/// Reads what is there; true at end of file.
fn read_some(pipe: &mut impl Read, into: &mut Vec<u8>) -> Result<bool, Talk> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(into.len());
                into.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn drain(pipe: &mut impl Read, into: &mut Vec<u8>) -> Result<(), Talk> {
    read_some(pipe, into).map(drop)
}

/// A pidfd to learn the plugin's exit inside poll(); None on kernels before 5.3
/// (then the end of its output is the end of the call).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The error a failed plugin reported: its JSON error result on stdout, else
/// its stderr, else how it ended (libcni's `pluginErr`).
fn plugin_error(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> PluginError {
    let stdout_text = String::from_utf8_lossy(stdout);
    if !stdout_text.trim().is_empty() {
        if let Ok(error) = serde_json::from_slice::<PluginError>(stdout) {
            if error.code.is_some() || !error.msg.is_empty() {
                return error;
            }
        }
        return PluginError {
            msg: format!("{status} with unreadable output {:?}", stdout_text.trim()),
            ..Default::default()
        };
    }
    let stderr_text = String::from_utf8_lossy(stderr);
    let msg = match stderr_text.trim() {
        "" => format!("{status} without a message"),
        text => format!("{status}: {}", one_line(text)),
    };
    PluginError {
        msg,
        ..Default::default()
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fake plugin: a shell script, run for real.
    pub(crate) fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn call() -> Invocation<'static> {
        Invocation {
            command: "ADD",
            container_id: "c1",
            netns: "/run/netns/x",
            ifname: "eth0",
            args: "IgnoreUnknown=1;K8S_POD_NAME=web",
            path: "/opt/cni/bin",
        }
    }

    #[test]
    fn the_request_goes_in_and_the_answer_comes_out_with_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = script(
            dir.path(),
            "echoenv",
            r#"read -r line; printf '{"in":%s,"env":"%s %s %s %s %s %s"}' "$line" "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH""#,
        );
        let out = run(&plugin, &call(), b"{\"a\":1}\n", Duration::from_secs(10)).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["in"]["a"], 1);
        assert_eq!(
            value["env"],
            "ADD c1 /run/netns/x eth0 IgnoreUnknown=1;K8S_POD_NAME=web /opt/cni/bin"
        );
    }

    #[test]
    fn a_large_request_and_answer_do_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = script(dir.path(), "cat", "cat");
        let big = vec![b'x'; 1 << 20];
        let out = run(&plugin, &call(), &big, Duration::from_secs(20)).unwrap();
        assert_eq!(out.len(), big.len());
    }

    #[test]
    fn errors_come_from_json_then_stderr_then_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"Invalid Configuration","details":"Network 10.0.0.0/31 too small"}'; exit 1"#,
                "error 7: Invalid Configuration (Network 10.0.0.0/31 too small)",
            ),
            (
                r#"echo '{"code":11,"msg":"try again"}'; exit 1"#,
                "error 11: try again",
            ),
            ("echo 'boom\nbang' >&2; exit 3", "exit status: 3: boom bang"),
            ("exit 4", "exit status: 4 without a message"),
            (
                "echo 'not json'; exit 1",
                "with unreadable output \"not json\"",
            ),
            ("kill -9 $$", "signal: 9"),
        ];
        for (body, want) in cases {
            let plugin = script(dir.path(), "fails", body);
            match run(&plugin, &call(), b"{}", Duration::from_secs(10)) {
                Err(ExecError::Failed { error, .. }) => {
                    assert!(error.to_string().contains(want), "{body}: {error}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        let err = run(
            &dir.path().join("missing"),
            &call(),
            b"{}",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, ExecError::Spawn(_)), "{err}");
    }

    #[test]
    fn a_hanging_plugin_and_its_children_are_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let plugin = script(
            dir.path(),
            "hang",
            &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        );
        let started = Instant::now();
        let err = run(&plugin, &call(), b"{}", Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, ExecError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was in the plugin's process group: killed too (it may
        // linger as a zombie of init for a moment, never as a sleeper).
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!state.contains(") S "), "{state}");
    }

    #[test]
    fn an_exit_with_a_grandchild_holding_stdout_ends_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("daemon.pid");
        let body = format!(
            "echo '{{}}'; sleep 30 & echo $! > {}; exit 0",
            pidfile.display()
        );
        let plugin = script(dir.path(), "daemon", &body);
        let started = Instant::now();
        let out = run(&plugin, &call(), b"{}", Duration::from_secs(20));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        assert_eq!(String::from_utf8_lossy(&out.unwrap()).trim(), "{}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
