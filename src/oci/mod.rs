//! The runtime layer: OCI container lifecycle over youki's libcontainer.
//!
//! Everything here must run in a single-threaded process (see the README's
//! Architecture section):
//! libcontainer clones from the calling thread and runs Rust code in the child.

mod adjust;
pub mod bundle;
pub mod cgroup;
pub mod checkpoint;
pub mod console;
pub mod copy_up;
mod create;
mod delete;
pub mod error;
pub mod events;
mod exec;
mod features;
mod foreground;
mod hooks;
mod init;
mod kill;
pub mod network;
mod pause;
mod ps;
mod remount;
pub mod seccomp;
pub mod signal;
pub mod spec;
mod start;
pub mod state;
pub mod update;
mod update_v2;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libcontainer::container::{Container, ContainerStatus};

pub use create::{CreateOptions, Stdio};
pub use error::{Error, Result};
pub use exec::{ExecOptions, ExecOutcome};
pub use features::features;
pub use foreground::ExitStatus;
pub use hooks::exec_hook;
pub use update::ResourceFlags;

use crate::error::Context;

/// The default state folder, as runc's is /run/runc.
pub const DEFAULT_ROOT: &str = "/run/peapod";

/// Our own record beside libcontainer's state.json: the init's start time, so a
/// recycled PID is never mistaken for the container (runc does the same).
const INIT_RECORD: &str = "peapod-init.json";

pub struct Runtime {
    root: PathBuf,
    systemd: bool,
}

impl Runtime {
    pub fn new(root: &Path, systemd: bool) -> Result<Self> {
        if systemd && !Path::new("/run/systemd/system").is_dir() {
            return Err(Error::Invalid(
                "--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); \
                 drop the flag to use cgroupfs"
                    .into(),
            ));
        }
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .context(|| "current directory".into())?
                .join(root)
        };
        Ok(Self { root, systemd })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the state folder, private to root (0700) like runc's.
    fn ensure_root(&self) -> Result<()> {
        if !self.root.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .context(|| format!("create state folder {}", self.root.display()))?;
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                .context(|| format!("chmod state folder {}", self.root.display()))?;
        }
        Ok(())
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Loads a container's state, with its status checked against the live process.
    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = self.container_dir(id);
        if !dir.join("state.json").is_file() {
            return Err(Error::NotExist(id.to_string()));
        }
        // libcontainer's load checks that /proc/PID exists, then reads
        // /proc/PID/stat: an init that ends and is reaped in between fails the
        // read. A second look then finds it gone, and the container stopped.
        let mut container = match Container::load(dir.clone()) {
            Ok(c) => c,
            Err(_) => Container::load(dir).context(|| format!("load state of container {id}"))?,
        };
        if container.status() != ContainerStatus::Stopped && !self.init_is_ours(&container) {
            container.set_status(ContainerStatus::Stopped);
        }
        Ok(container)
    }

    /// Records the init's start time and the user's bundle folder (libcontainer's
    /// state may name an adjusted copy, see adjust.rs).
    fn record_init(&self, container: &Container, bundle: &Path) -> Result<()> {
        let Some(pid) = container.pid() else {
            return Ok(());
        };
        let start = process_start_time(pid.as_raw())
            .ok_or_else(|| Error::Invalid(format!("container init {pid} vanished")))?;
        let path = container.root.join(INIT_RECORD);
        fs::write(
            &path,
            serde_json::json!({ "pid": pid.as_raw(), "start": start, "bundle": bundle })
                .to_string(),
        )
        .context(|| format!("write {}", path.display()))?;
        Ok(())
    }

    /// The bundle folder the user gave at create.
    pub fn user_bundle(container: &Container) -> PathBuf {
        fs::read(container.root.join(INIT_RECORD))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["bundle"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| container.bundle().clone())
    }

    fn init_is_ours(&self, container: &Container) -> bool {
        let Some(pid) = container.pid() else {
            return false;
        };
        let recorded = fs::read(container.root.join(INIT_RECORD))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["start"].as_u64());
        match recorded {
            // A record missing means the container was made by an older peapod: trust libcontainer.
            None => true,
            Some(start) => process_start_time(pid.as_raw()) == Some(start),
        }
    }

    /// All containers' ids in the state folder, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            e => e.context(|| format!("read state folder {}", self.root.display()))?,
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("state.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// The process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Container ids become folder names: keep them to runc's character set.
pub fn validate_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        Some("must not be empty")
    } else if id == "." || id == ".." {
        Some("must not be . or ..")
    } else if id.len() > 1024 {
        Some("longer than 1024 characters")
    } else if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c))
    {
        Some("only letters, digits and _ + - . are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidId {
            id: id.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The lowercase status word of the OCI state schema.
pub fn status_name(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

/// Runs `f` (a libcontainer call that forks the container's processes) with
/// SIGPIPE at its default disposition. Rust programs ignore SIGPIPE, and an
/// ignored signal stays ignored across fork and exec: containers would start
/// with it ignored (and `yes | head` would then never end by the signal).
pub(crate) fn with_default_sigpipe<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: only the dispositions change; no handler code of ours runs.
    let before = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let out = f();
    if let Ok(before) = before {
        // SAFETY: as above, putting back what was there.
        let _ = unsafe { signal(Signal::SIGPIPE, before) };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        assert!(validate_id("abc-1.2_3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "x\n"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_id(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn start_time_of_self_is_stable_and_absent_for_no_process() {
        let me = std::process::id() as i32;
        let a = process_start_time(me).expect("own start time");
        assert_eq!(Some(a), process_start_time(me));
        assert_eq!(process_start_time(i32::MAX), None);
    }

    #[test]
    fn relative_root_becomes_absolute() {
        let rt = Runtime::new(Path::new("rel-root"), false).unwrap();
        assert!(rt.root().is_absolute());
        assert!(rt.root().ends_with("rel-root"));
    }
}
