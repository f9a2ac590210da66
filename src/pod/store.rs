//! The pods of this node on disk: `<root>/pods/<uid>/` holds the admitted model
//! (pod.json), the images it resolved (images.json), the status the supervisor
//! writes (status.json), logs, volumes and the pod's OCI state.

use std::fs;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::Pod;
use super::spec::PodPaths;
use super::status::{Phase, PodStatusView};
use crate::error::{Context, IoError, JsonError};
use crate::image::{Image, ImageConfig};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("pod {0:?} not found")]
    NotFound(String),
    #[error("pod {namespace}/{name} already exists (uid {uid})")]
    Exists {
        namespace: String,
        name: String,
        uid: String,
    },
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Json(#[from] JsonError),
}

/// The cgroup parent of pods unless `--cgroup-prefix` says otherwise.
pub const DEFAULT_CGROUP_PREFIX: &str = "peapod";

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
    pub phase: Phase,
    pub supervisor_pid: i32,
    pub sandbox_pid: Option<i32>,
    /// Host PIDs of running containers, by name (for `pod stop` without a supervisor).
    pub pids: std::collections::BTreeMap<String, i32>,
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
    pub starts: std::collections::BTreeMap<i32, u64>,
}

/// One pod's folder.
#[derive(Debug, Clone)]
pub struct PodDir {
    pub paths: PodPaths,
}

impl PodDir {
    pub fn dir(&self) -> &Path {
        &self.paths.dir
    }
    pub fn pod_file(&self) -> PathBuf {
        self.paths.dir.join("pod.json")
    }
    pub fn images_file(&self) -> PathBuf {
        self.paths.dir.join("images.json")
    }
    pub fn status_file(&self) -> PathBuf {
        self.paths.dir.join("status.json")
    }
    pub fn api_socket(&self) -> PathBuf {
        self.paths.dir.join("api.sock")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.paths.dir.join("logs")
    }
    pub fn io_dir(&self) -> PathBuf {
        self.paths.dir.join("io")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.paths.dir.join("supervisor.log")
    }
    /// The cgroup parent (under each hierarchy) the pod was started with.
    pub fn cgroup_prefix_file(&self) -> PathBuf {
        self.paths.dir.join("cgroup-prefix")
    }

    pub fn cgroup_prefix(&self) -> String {
        std::fs::read_to_string(self.cgroup_prefix_file())
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_CGROUP_PREFIX.to_string())
    }

    pub fn pod(&self) -> Result<Pod, StoreError> {
        read_json(&self.pod_file())
    }

    pub fn images(&self) -> Result<std::collections::BTreeMap<String, ResolvedImage>, StoreError> {
        read_json(&self.images_file())
    }

    pub fn status(&self) -> Option<StatusFile> {
        read_json(&self.status_file()).ok()
    }

    pub fn write_status(&self, status: &StatusFile) -> Result<(), StoreError> {
        write_json_atomic(&self.status_file(), status)
    }
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StoreError> {
    let bytes = fs::read(path).context(|| format!("read {}", path.display()))?;
    Ok(serde_json::from_slice(&bytes).context(|| path.display().to_string())?)
}

/// Writes through a temporary file and rename, so readers never see half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).context(|| path.display().to_string())?;
    fs::write(&tmp, bytes).context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).context(|| format!("rename {}", path.display()))?;
    Ok(())
}

/// All pods under `<root>/pods`.
pub struct PodStore {
    dir: PathBuf,
}

impl PodStore {
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join("pods"),
        }
    }

    pub fn pod_dir(&self, uid: &str) -> PodDir {
        PodDir {
            paths: PodPaths::new(self.dir.join(uid)),
        }
    }

    /// Every pod folder with a readable pod.json, with its model.
    pub fn list(&self) -> Vec<(PodDir, Pod)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut pods: Vec<(PodDir, Pod)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let dir = PodDir {
                    paths: PodPaths::new(e.path()),
                };
                let pod = dir.pod().ok()?;
                Some((dir, pod))
            })
            .collect();
        pods.sort_by(|a, b| (&a.1.namespace, &a.1.name).cmp(&(&b.1.namespace, &b.1.name)));
        pods
    }

    /// Finds a pod by `name`, `namespace/name` or uid.
    pub fn find(&self, key: &str) -> Result<(PodDir, Pod), StoreError> {
        let (namespace, name) = match key.split_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, key),
        };
        let mut found: Vec<(PodDir, Pod)> = self
            .list()
            .into_iter()
            .filter(|(_, p)| {
                p.uid == key || (p.name == name && namespace.is_none_or(|ns| ns == p.namespace))
            })
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            _ => Err(StoreError::NotFound(key.to_string())),
        }
    }

    /// Makes the folder of a newly admitted pod (0700), refusing a second pod
    /// with the same namespace and name.
    pub fn create(&self, pod: &Pod) -> Result<PodDir, StoreError> {
        if let Some((_, other)) = self
            .list()
            .into_iter()
            .find(|(_, p)| p.name == pod.name && p.namespace == pod.namespace)
        {
            return Err(StoreError::Exists {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: other.uid,
            });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .context(|| format!("create {}", self.dir.display()))?;
        let dir = self.pod_dir(&pod.uid);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.dir())
            .context(|| format!("create {}", dir.dir().display()))?;
        fs::set_permissions(dir.dir(), fs::Permissions::from_mode(0o700))
            .context(|| format!("chmod {}", dir.dir().display()))?;
        Ok(dir)
    }
}

/// The lock a pod's supervisor holds for its whole life (`supervisor.lock` in
/// the pod's folder). Fails if another supervisor holds it.
pub fn lock_supervisor(dir: &PodDir) -> Result<nix::fcntl::Flock<File>, String> {
    let path = dir.dir().join("supervisor.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| format!("another supervisor holds {}", path.display()))
}

/// Whether a supervisor holds the pod's lock (it is alive, answering or not).
pub fn supervisor_running(dir: &PodDir) -> bool {
    match lock_supervisor(dir) {
        // We got it, so nobody else had it; dropping the file releases it.
        Ok(_) => false,
        Err(_) => dir.dir().join("supervisor.lock").exists(),
    }
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
    fn pod_dir(tmp: &tempfile::TempDir, images_json: &str) -> PodDir {
        let dir = PodStore::new(tmp.path()).pod_dir("uid");
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
        let dir = PodStore::new(tmp.path()).pod_dir("uid");
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
