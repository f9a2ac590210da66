//! `exec`: runs another process in a running container's namespaces and cgroup.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::unistd::Pid;
use serde_json::{json, Value};

use super::console::ConsoleListener;
use super::error::{Context, Error, Result};
use super::foreground::{self, ExitStatus};
use super::{status_name, Runtime};

#[derive(Default)]
pub struct ExecOptions<'a> {
    pub id: &'a str,
    /// A process.json; when absent the process is the container's own with the overrides below.
    pub process: Option<&'a Path>,
    pub args: Vec<String>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
    pub sub_cgroup: Option<String>,
}

/// What `exec` started: detached, or waited for in the foreground.
pub enum ExecOutcome {
    Detached(Pid),
    Exited(ExitStatus),
}

impl Runtime {
    pub fn exec(&self, opts: &ExecOptions) -> Result<ExecOutcome> {
        let container = self.load(opts.id)?;
        match container.status() {
            ContainerStatus::Created | ContainerStatus::Running => {}
            ContainerStatus::Paused if opts.ignore_paused => {}
            status => {
                return Err(Error::Status {
                    id: opts.id.to_string(),
                    status: status_name(status).into(),
                    action: "exec in it",
                })
            }
        }
        let process = self.exec_process(&container.bundle().join("config.json"), opts)?;
        if let (Some(pid), Some(cwd)) = (container.pid(), process["cwd"].as_str()) {
            // libcontainer's own failure here is an unnamed syscall error.
            let inside = format!("/proc/{pid}/root/{}", cwd.trim_start_matches('/'));
            if !std::path::Path::new(&inside).is_dir() {
                return Err(Error::Invalid(format!(
                    "exec in container {}: cwd {cwd}: no such directory in the container",
                    opts.id
                )));
            }
        }
        let terminal = process["terminal"].as_bool().unwrap_or(false);
        match (terminal, opts.console_socket, opts.detach) {
            (true, None, true) => {
                return Err(Error::Invalid(
                    "exec: a detached process with a terminal needs --console-socket".into(),
                ))
            }
            (false, Some(_), _) => {
                return Err(Error::Invalid(
                    "exec: --console-socket was given but the process has no terminal".into(),
                ))
            }
            _ => {}
        }
        // In the foreground with a terminal and no socket of the caller's, we take
        // the pty master ourselves and proxy it.
        let own_console = if terminal && opts.console_socket.is_none() {
            Some(ConsoleListener::bind(
                &container
                    .root
                    .join(format!("console-{}.sock", std::process::id())),
            )?)
        } else {
            None
        };
        let console_socket = opts
            .console_socket
            .or(own_console.as_ref().map(|c| c.path()));

        let process_path = container
            .root
            .join(format!("exec-{}.json", std::process::id()));
        write_private(&process_path, &process)?;
        sweep_exec_sockets(&container.root);
        let built = ContainerBuilder::new(opts.id.to_string(), SyscallType::default())
            .with_executor(DefaultExecutor {})
            .with_root_path(&self.root)
            .and_then(|b| b.with_pid_file(opts.pid_file))
            .map(|b| {
                b.with_console_socket(console_socket)
                    .with_preserved_fds(opts.preserve_fds)
                    .as_tenant()
                    .with_process(Some(&process_path))
                    .with_detach(terminal)
                    .with_ignore_paused(opts.ignore_paused)
                    .with_sub_cgroup(opts.sub_cgroup.clone())
            })
            .and_then(|b| super::with_default_sigpipe(|| b.build()));
        let _ = std::fs::remove_file(&process_path);
        let pid = built.context(|| format!("exec in container {}", opts.id))?;

        if opts.detach {
            return Ok(ExecOutcome::Detached(pid));
        }
        let master = match &own_console {
            Some(listener) => Some(listener.receive_master()?),
            None => None,
        };
        drop(own_console);
        Ok(ExecOutcome::Exited(foreground::wait(pid, master)?))
    }

    /// The process to run: the given process.json, or the container's own process
    /// with the command line's overrides, as runc builds it.
    fn exec_process(&self, config: &Path, opts: &ExecOptions) -> Result<Value> {
        if let Some(path) = opts.process {
            let text = std::fs::read(path).map_err(|e| Error::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            let value: Value = serde_json::from_slice(&text).map_err(|e| Error::Config {
                path: path.to_path_buf(),
                reason: format!("invalid process: {e}"),
            })?;
            if value["args"].as_array().is_none_or(|a| a.is_empty()) {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    reason: "args: required".into(),
                });
            }
            return Ok(value);
        }
        if opts.args.is_empty() {
            return Err(Error::Invalid(
                "exec: a command (or --process) is required".into(),
            ));
        }
        let text = std::fs::read(config).context(|| format!("read {}", config.display()))?;
        let spec: Value = serde_json::from_slice(&text).map_err(|e| Error::Config {
            path: config.to_path_buf(),
            reason: format!("invalid config: {e}"),
        })?;
        let mut process = spec["process"].clone();
        if !process.is_object() {
            process = json!({});
        }
        apply_overrides(&mut process, opts)?;
        Ok(process)
    }
}

fn apply_overrides(process: &mut Value, opts: &ExecOptions) -> Result<()> {
    process["args"] = json!(opts.args);
    process["terminal"] = json!(opts.tty);
    let mut env: Vec<String> = process["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for entry in &opts.env {
        let key = entry.split('=').next().unwrap_or_default();
        if key.is_empty() || !entry.contains('=') {
            return Err(Error::Invalid(format!(
                "--env {entry:?}: expected KEY=VALUE"
            )));
        }
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(entry.clone());
    }
    process["env"] = json!(env);
    if let Some(cwd) = &opts.cwd {
        if !cwd.is_absolute() {
            return Err(Error::Invalid(format!(
                "--cwd {}: must be an absolute path",
                cwd.display()
            )));
        }
        process["cwd"] = json!(cwd);
    }
    if process["cwd"].as_str().is_none_or(str::is_empty) {
        process["cwd"] = json!("/");
    }
    if let Some((uid, gid)) = opts.user {
        process["user"]["uid"] = json!(uid);
        process["user"]["gid"] = json!(gid.unwrap_or(0));
    }
    if !process["user"].is_object() {
        process["user"] = json!({ "uid": 0, "gid": 0 });
    }
    if !opts.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(opts.additional_gids);
    }
    for cap in &opts.caps {
        let cap = normalize_cap(cap)?;
        for set in ["bounding", "effective", "permitted"] {
            let list = &mut process["capabilities"][set];
            if !list.is_array() {
                *list = json!([]);
            }
            let arr = list.as_array_mut().expect("made an array above");
            if !arr.iter().any(|c| c == &json!(cap)) {
                arr.push(json!(cap));
            }
        }
    }
    if opts.no_new_privs {
        process["noNewPrivileges"] = json!(true);
    }
    Ok(())
}

/// `net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` all name the same capability.
fn normalize_cap(name: &str) -> Result<String> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<caps::Capability>()
        .map(|c| c.to_string())
        .map_err(|_| Error::Invalid(format!("--cap {name}: unknown capability")))
}

fn write_private(path: &Path, value: &Value) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .context(|| format!("create {}", path.display()))?;
    f.write_all(value.to_string().as_bytes())
        .context(|| format!("write {}", path.display()))
}

/// libcontainer leaves a socket file (`tenant-notify-*`, with a console
/// socket also `tenant-tty-*`) in the container's state folder for every
/// exec. Each is only used while its exec starts, and a concurrent exec's may
/// be in use right now: those older than a minute are removed.
fn sweep_exec_sockets(container_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(container_dir) else {
        return;
    };
    let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("tenant-notify-") || name.starts_with("tenant-tty-")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < stale);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> ExecOptions<'static> {
        ExecOptions {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn overrides_apply_over_the_container_process() {
        let mut p = json!({
            "args": ["sh"], "terminal": true, "cwd": "/",
            "env": ["PATH=/bin", "A=1"],
            "user": {"uid": 5, "gid": 5},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
        });
        let mut o = opts(&["ls", "-l"]);
        o.env = vec!["A=2".into(), "B=3".into()];
        o.cwd = Some("/tmp".into());
        o.user = Some((1000, Some(1001)));
        o.caps = vec!["net_admin".into(), "CAP_KILL".into()];
        o.no_new_privs = true;
        apply_overrides(&mut p, &o).unwrap();
        assert_eq!(p["args"], json!(["ls", "-l"]));
        assert_eq!(p["terminal"], json!(false));
        assert_eq!(p["env"], json!(["PATH=/bin", "A=2", "B=3"]));
        assert_eq!(p["cwd"], json!("/tmp"));
        assert_eq!(p["user"], json!({"uid": 1000, "gid": 1001}));
        assert_eq!(
            p["capabilities"]["bounding"],
            json!(["CAP_KILL", "CAP_NET_ADMIN"])
        );
        assert_eq!(p["noNewPrivileges"], json!(true));
    }

    #[test]
    fn bad_overrides_are_named() {
        let mut p = json!({});
        let mut o = opts(&["true"]);
        o.env = vec!["NOEQUALS".into()];
        assert!(apply_overrides(&mut p, &o)
            .unwrap_err()
            .to_string()
            .contains("--env \"NOEQUALS\""));
        let mut o = opts(&["true"]);
        o.cwd = Some("relative".into());
        assert!(apply_overrides(&mut p, &o)
            .unwrap_err()
            .to_string()
            .contains("--cwd relative"));
        let mut o = opts(&["true"]);
        o.caps = vec!["CAP_FLY".into()];
        assert!(apply_overrides(&mut p, &o)
            .unwrap_err()
            .to_string()
            .contains("--cap CAP_FLY"));
    }
}
