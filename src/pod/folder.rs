//! One pod's folder on the host, `<root>/pods/<uid>/`: the one place that knows
//! its layout, the records kept in it, and whether a supervisor looks after it.
//!
//! ```text
//! pod.json        the admitted model          images.json   images by container
//! settings.json   the node settings it runs with
//! network.json    how it is on the network (host, loopback, CNI: what to undo)
//! status.json     what the supervisor publishes (written atomically)
//! supervisor.lock held by the pod's supervisor for its whole life
//! api.sock        the supervisor's socket (one request line, one reply line)
//! supervisor.log  the supervisor's stderr       events.jsonl  the pod's events
//! oci/            the runtime's state of the pod's containers
//! bundles/<c>/    each container's config.json and overlay rootfs
//! io/             the containers' output FIFOs     logs/<c>/<run>.log
//! etc/            hosts, hostname, resolv.conf     shm/   volumes/<v>/
//! termination/<c> each container's terminationMessagePath file
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::model::Pod;
use super::settings::Settings;
use super::status::{Phase, PodStatusView};
use crate::error::{Context, IoError, JsonError};
use crate::image::{Image, ImageConfig};

/// The sandbox's id in the pod's runtime state and its cgroup's leaf name
/// (`_` is not allowed in container names, so it cannot clash).
pub const SANDBOX: &str = "_sandbox";

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("another supervisor holds {0}")]
    Locked(PathBuf),
}

/// One pod's folder.
#[derive(Debug, Clone)]
pub struct PodFolder {
    dir: PathBuf,
}

/// The image a container runs, as resolved at admission: one entry of the pod's
/// images.json, by container name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference the manifest gave.
    pub reference: String,
    pub name: String,
    pub id: String,
    /// Flattened: its fields sit beside the name, as in files written before it
    /// was one type (a running pod stays adoptable across an upgrade).
    #[serde(flatten)]
    pub config: ImageConfig,
}

impl ResolvedImage {
    pub fn new(reference: &str, image: &Image) -> Self {
        Self {
            reference: reference.to_string(),
            name: image.name.clone(),
            id: image.id.clone(),
            config: image.config.clone(),
        }
    }
}

/// What the supervisor publishes about the pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusFile {
    pub supervisor_pid: i32,
    pub sandbox_pid: Option<i32>,
    /// Host PIDs of running containers, by name.
    pub pids: BTreeMap<String, i32>,
    pub finished: bool,
    /// Written as Kubernetes' v1 PodStatus.
    #[serde(with = "super::status::k8s_json")]
    pub status: PodStatusView,
    /// What a replacement supervisor carries on from (see `pod adopt`).
    #[serde(default)]
    pub lifecycle: Option<super::lifecycle::Snapshot>,
    /// Start times (clock ticks since boot) of the processes in `pids` and of
    /// the sandbox, so that a recycled PID is never taken for one of ours.
    #[serde(default)]
    pub starts: BTreeMap<i32, u64>,
}

impl StatusFile {
    pub fn phase(&self) -> Phase {
        self.status.phase
    }
}

impl PodFolder {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // The records.

    pub fn pod_file(&self) -> PathBuf {
        self.dir.join("pod.json")
    }
    pub fn images_file(&self) -> PathBuf {
        self.dir.join("images.json")
    }
    pub fn settings_file(&self) -> PathBuf {
        self.dir.join("settings.json")
    }
    pub fn status_file(&self) -> PathBuf {
        self.dir.join("status.json")
    }
    pub fn network_file(&self) -> PathBuf {
        self.dir.join("network.json")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("supervisor.lock")
    }
    pub fn api_socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    /// The pod's events (see `pod::events`).
    pub fn events_file(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    /// Written by peapod before settings.json existed: the pod's cgroup parent.
    fn legacy_cgroup_prefix_file(&self) -> PathBuf {
        self.dir.join("cgroup-prefix")
    }

    pub fn pod(&self) -> Result<Pod, FolderError> {
        read_json(&self.pod_file())
    }

    pub fn images(&self) -> Result<BTreeMap<String, ResolvedImage>, FolderError> {
        read_json(&self.images_file())
    }

    /// The settings the pod was started with. A pod started before they were
    /// recorded runs with the defaults and the cgroup parent it recorded.
    pub fn settings(&self) -> Result<Settings, FolderError> {
        if self.settings_file().exists() {
            return read_json(&self.settings_file());
        }
        let mut settings = Settings::default();
        if let Ok(prefix) = fs::read_to_string(self.legacy_cgroup_prefix_file()) {
            if !prefix.trim().is_empty() {
                settings.cgroup_prefix = prefix.trim().to_string();
            }
        }
        Ok(settings)
    }

    pub fn status(&self) -> Option<StatusFile> {
        read_json(&self.status_file()).ok()
    }

    pub fn write_status(&self, status: &StatusFile) -> Result<(), FolderError> {
        write_json_atomic(&self.status_file(), status)
    }

    // What the runtime and the containers use.

    /// The OCI runtime's state folder for this pod's containers.
    pub fn oci_root(&self) -> PathBuf {
        self.dir.join("oci")
    }
    /// A container's bundle folder (config.json, and the overlay's rootfs/upper/work).
    pub fn bundle(&self, container: &str) -> PathBuf {
        self.dir.join("bundles").join(container)
    }
    pub fn io_dir(&self) -> PathBuf {
        self.dir.join("io")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    /// The file a container's terminationMessagePath is (one run at a time).
    pub fn termination_log(&self, container: &str) -> PathBuf {
        self.dir.join("termination").join(container)
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("etc/hosts")
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("etc/hostname")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("etc/resolv.conf")
    }
    /// The pod's /dev/shm: a tmpfs shared by every container of the pod.
    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
    pub fn volume(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }

    // Its supervisor.

    /// Takes the lock a pod's supervisor holds for its whole life. Fails if
    /// another supervisor holds it.
    pub fn lock_supervisor(&self) -> Result<nix::fcntl::Flock<File>, FolderError> {
        let path = self.lock_file();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context(|| format!("open {}", path.display()))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| FolderError::Locked(path))
    }

    /// Whether a supervisor looks after the pod: its lock is held, which only a
    /// live process can do (busy or not, answering or not).
    pub fn supervised(&self) -> bool {
        if !self.lock_file().exists() {
            return false;
        }
        // Taking it means nobody had it; dropping it releases it at once.
        matches!(self.lock_supervisor(), Err(FolderError::Locked(_)))
    }

    /// Sends one request line ("stop") to the supervisor; returns its reply line.
    pub fn request(&self, request: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(self.api_socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(format!("{request}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line.trim_end().to_string())
    }
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, FolderError> {
    let bytes = fs::read(path).context(|| format!("read {}", path.display()))?;
    Ok(serde_json::from_slice(&bytes).context(|| path.display().to_string())?)
}

/// Writes through a temporary file and rename, so readers never see half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), FolderError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).context(|| path.display().to_string())?;
    fs::write(&tmp, bytes).context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).context(|| format!("rename {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::*;

    /// images.json as peapod wrote it before the image config was one type (the
    /// shape checked against that code's output): `stop_signal` is the image's
    /// text, and files from before it was recorded lack it ("old").
    const IMAGES_JSON_BEFORE: &str = r#"{
  "app": {
    "reference": "busybox",
    "name": "localhost/busybox:latest",
    "id": "sha256:2e8b6a4bb5a6e4c0e6b2de6b61d2f0e5e6e1c1a6f5b6c6f1e2d3c4b5a6978877",
    "entrypoint": [],
    "cmd": [
      "sh"
    ],
    "env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ],
    "working_dir": null,
    "user": null,
    "stop_signal": null
  },
  "old": {
    "reference": "busybox",
    "name": "localhost/busybox:latest",
    "id": "sha256:2e8b6a4bb5a6e4c0e6b2de6b61d2f0e5e6e1c1a6f5b6c6f1e2d3c4b5a6978877",
    "entrypoint": [],
    "cmd": [
      "sh"
    ],
    "env": [],
    "working_dir": null,
    "user": null
  },
  "web": {
    "reference": "localhost/web:v1",
    "name": "localhost/web:v1",
    "id": "sha256:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b",
    "entrypoint": [
      "/bin/web"
    ],
    "cmd": [],
    "env": [],
    "working_dir": "/srv",
    "user": "1000:1000",
    "stop_signal": "QUIT"
  }
}"#;

    /// A pod folder whose images.json holds `images_json`.
    fn pod_dir(tmp: &tempfile::TempDir, images_json: &str) -> PodFolder {
        let dir = PodFolder::new(tmp.path().join("uid"));
        fs::create_dir_all(dir.dir()).unwrap();
        fs::write(dir.images_file(), images_json).unwrap();
        dir
    }

    #[test]
    fn reads_images_json_written_before_the_image_config_was_one_type() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = pod_dir(&tmp, IMAGES_JSON_BEFORE);
        let images = dir.images().unwrap();

        let app = &images["app"];
        assert_eq!(app.reference, "busybox");
        assert_eq!(app.name, "localhost/busybox:latest");
        assert_eq!(app.config.cmd, ["sh"]);
        assert_eq!(app.config.working_dir, None);
        assert_eq!(app.config.stop_signal, Signal::SIGTERM);

        let web = &images["web"];
        assert_eq!(web.config.entrypoint, ["/bin/web"]);
        assert_eq!(web.config.working_dir.as_deref(), Some("/srv"));
        assert_eq!(web.config.user.as_deref(), Some("1000:1000"));
        assert_eq!(web.config.stop_signal, Signal::SIGQUIT);

        assert_eq!(images["old"].config.stop_signal, Signal::SIGTERM);
    }

    #[test]
    fn images_json_keeps_its_flat_shape_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = pod_dir(&tmp, IMAGES_JSON_BEFORE);
        let images = dir.images().unwrap();
        write_json_atomic(&dir.images_file(), &images).unwrap();

        let raw: serde_json::Value = read_json(&dir.images_file()).unwrap();
        assert_eq!(raw["web"]["stop_signal"], "SIGQUIT");
        assert_eq!(raw["web"]["user"], "1000:1000");
        assert_eq!(raw["app"]["stop_signal"], "SIGTERM");
        assert_eq!(dir.images().unwrap(), images);
    }

    #[test]
    fn io_and_json_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PodFolder::new(tmp.path().join("uid"));
        let missing = dir.images().unwrap_err().to_string();
        assert_eq!(
            missing,
            format!(
                "read {}: No such file or directory (os error 2)",
                dir.images_file().display()
            )
        );
        let dir = pod_dir(&tmp, "{");
        let bad = dir.images().unwrap_err().to_string();
        assert!(
            bad.starts_with(&format!(
                "{}: EOF while parsing",
                dir.images_file().display()
            )),
            "{bad}"
        );
    }
}
