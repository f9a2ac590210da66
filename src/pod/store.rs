//! The pods of this node on disk: `<root>/pods/<uid>/` holds the admitted model
//! (pod.json), the images it resolved (images.json), the status the supervisor
//! writes (status.json), logs, volumes and the pod's OCI state.

use std::fs;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::Pod;
use super::spec::{ImageDefaults, PodPaths};
use super::status::{Phase, PodStatusView};

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
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The cgroup parent of pods unless `--cgroup-prefix` says otherwise.
pub const DEFAULT_CGROUP_PREFIX: &str = "peapod";

/// The image a container runs, as resolved at admission.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResolvedImage {
    pub reference: String,
    pub name: String,
    pub id: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// The image's StopSignal, sent instead of SIGTERM to stop the container.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

impl ResolvedImage {
    /// The signal that asks the container to stop: the image's StopSignal (as
    /// containerd's CRI sends it), else SIGTERM.
    pub fn stop_signal(&self) -> nix::sys::signal::Signal {
        let Some(wanted) = self.stop_signal.as_deref() else {
            return nix::sys::signal::Signal::SIGTERM;
        };
        crate::oci::signal::parse(wanted).unwrap_or_else(|e| {
            tracing::warn!(
                "{}: the image's StopSignal: {e}; sending SIGTERM",
                self.reference
            );
            nix::sys::signal::Signal::SIGTERM
        })
    }

    pub fn defaults(&self) -> ImageDefaults {
        ImageDefaults {
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
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
    let bytes = fs::read(path).map_err(io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
        path: path.display().to_string(),
        source,
    })
}

/// Writes through a temporary file and rename, so readers never see half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json {
        path: path.display().to_string(),
        source,
    })?;
    fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename", path))
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
            .map_err(io("create", &self.dir))?;
        let dir = self.pod_dir(&pod.uid);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.dir())
            .map_err(io("create", dir.dir()))?;
        fs::set_permissions(dir.dir(), fs::Permissions::from_mode(0o700))
            .map_err(io("chmod", dir.dir()))?;
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
