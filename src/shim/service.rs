//! The shim's life outside the Task API: `start` (one shim per pod),
//! `delete` (clean up after a dead container), and serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::{ExitSignal, Shim};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Flags, StartOpts};
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;

use super::cli::{PeapodCli, INIT_PID_FILE};
use super::events::ContainerdEvents;
use super::reaper::Reaper;
use super::runtime::Runtime;
use super::task::TaskService;

const RUNTIME_ID: &str = "io.containerd.peapod.v1";
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// Serves containerd: `start`, `delete`, or the ttrpc server itself.
pub async fn run() {
    let config = Config {
        // The shim reaps its own children (reaper.rs): it must see the exits
        // of the runtime CLI it runs as well as those of the containers.
        no_reaper: true,
        ..Default::default()
    };
    containerd_shim::asynchronous::run::<PeapodShim>(RUNTIME_ID, Some(config)).await;
}

/// The shim a container belongs to: its pod's sandbox for CRI containers
/// (so a pod has exactly one shim), else the container itself.
pub fn grouping(id: &str, config: &serde_json::Value) -> String {
    match config["annotations"][SANDBOX_ID].as_str() {
        Some(sandbox) if !sandbox.is_empty() => sandbox.to_string(),
        _ => id.to_string(),
    }
}

/// The runtime state root for a containerd namespace:
/// `$PEAPOD_SHIM_ROOT/<namespace>` (default `/run/peapod-shim`).
fn state_root(namespace: &str) -> PathBuf {
    let base = std::env::var_os("PEAPOD_SHIM_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/peapod-shim"));
    base.join(namespace)
}

/// The `peapod` binary: `$PEAPOD_SHIM_RUNTIME`, else `peapod` beside the shim.
fn runtime_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PEAPOD_SHIM_RUNTIME") {
        return PathBuf::from(bin);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("peapod")))
        .unwrap_or_else(|| PathBuf::from("peapod"))
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

pub(super) fn timestamp_now() -> Timestamp {
    now()
}

/// Whether a shim answers on `address` (`unix://path`).
fn shim_listening(address: &str) -> bool {
    let path = address.trim_start_matches("unix://");
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Removes the socket at `address` when nobody listens there any more (its
/// shim was killed: a shim that exits removes its own). A live shim's socket
/// is kept; only a refused connection proves it dead.
fn remove_stale_socket(address: &str) {
    let path = address.trim_start_matches("unix://");
    if path.is_empty() {
        return;
    }
    if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            if let Err(e) = std::fs::remove_file(path) {
                log::info!("remove the dead shim's socket {path}: {e}");
            }
        }
    }
}

/// Starts the shim server for `address` and returns once it listens (it
/// closes its stdout then). Unlike runc's shim, it keeps containerd's
/// oom_score_adj rather than one more: the runtime CLI inherits the shim's
/// score, and where the bounding set lacks CAP_SYS_RESOURCE a container
/// could then not be given the score containerd asked for.
fn spawn_server(opts: &StartOpts, address: &str) -> std::io::Result<()> {
    use std::io::Read;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["-namespace", &opts.namespace, "-id", &opts.id])
        .args(["-address", &opts.address, "-socket", address])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if opts.debug {
        cmd.arg("-debug");
    }
    let mut child = cmd.spawn()?;
    let mut sink = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut sink)?;
    }
    Ok(())
}

struct PeapodShim {
    exit: Arc<ExitSignal>,
    id: String,
    namespace: String,
    /// The socket this shim serves (`-socket`).
    socket: String,
}

#[async_trait]
impl Shim for PeapodShim {
    type T = TaskService<PeapodCli, ContainerdEvents>;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        PeapodShim {
            exit: Arc::new(ExitSignal::default()),
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            socket: args.socket.clone(),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // The working directory is the bundle. A broken config.json still
        // gets a shim: Create reports the error, naming the file.
        let config = std::fs::read("config.json")
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        let group = grouping(&opts.id, &config);
        let existing = containerd_shim::socket_address(&opts.address, &opts.namespace, &group);
        let address = if shim_listening(&existing) {
            existing
        } else {
            spawn_server(&opts, &existing).map_err(|e| containerd_shim::Error::IoError {
                context: "start the shim server".into(),
                err: e,
            })?;
            existing
        };
        std::fs::write("address", &address).map_err(|e| containerd_shim::Error::IoError {
            context: "write the bundle's address file".into(),
            err: e,
        })?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // Only this container's leftovers: the pod's shim (if alive) and the
        // pod's other containers are not touched.
        let bundle = std::env::current_dir().unwrap_or_default();
        let reaper = Reaper::start().map_err(|e| containerd_shim::Error::IoError {
            context: "watch SIGCHLD".into(),
            err: e,
        })?;
        let runtime = Runtime::new(runtime_binary(), state_root(&self.namespace), reaper);
        if let Err(e) = runtime.call(None, &["delete", "--force", &self.id]).await {
            log::info!("delete {}: {e}", self.id);
        }
        super::task::unmount_rootfs(&bundle.join("rootfs"));
        // Found by scripts/soak: after a SIGKILLed shim, containerd cleans up
        // with `delete` and nothing removed the dead shim's socket.
        if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
            remove_stale_socket(address.trim());
        }
        // containerd publishes this pid in the TaskExit of the dead task.
        let pid = std::fs::read_to_string(bundle.join(INIT_PID_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .unwrap_or(0);
        Ok(DeleteResponse {
            pid,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(now()).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // Our own socket goes with us: the crate would look for it through
        // the `address` file of the bundle we started in, which containerd
        // may have removed by now (the pod's sandbox is deleted last).
        let path = self.socket.trim_start_matches("unix://");
        if !path.is_empty() {
            let _ = std::fs::remove_file(path);
        }
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let root = state_root(&self.namespace);
        if let Err(e) = make_private_dir(&root) {
            log::error!("cannot create {}: {e}", root.display());
        }
        let reaper = Reaper::start().expect("watch SIGCHLD");
        let runtime = Runtime::new(runtime_binary(), root, reaper.clone());
        TaskService::new(
            PeapodCli::new(runtime, reaper, self.namespace.clone()),
            ContainerdEvents::new(publisher, self.namespace.clone()),
            self.exit.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{grouping, remove_stale_socket};
    use serde_json::json;

    #[test]
    fn only_a_socket_nobody_listens_on_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("live");
        let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let dead = tmp.path().join("dead");
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        assert!(dead.exists(), "a dropped listener leaves its socket file");
        remove_stale_socket(&format!("unix://{}", live.display()));
        remove_stale_socket(&format!("unix://{}", dead.display()));
        remove_stale_socket(&format!("unix://{}", tmp.path().join("missing").display()));
        assert!(live.exists(), "a live shim's socket was removed");
        assert!(!dead.exists(), "a dead shim's socket was kept");
    }

    #[test]
    fn a_pod_member_is_grouped_with_its_sandbox() {
        let member = json!({ "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "pod1" } });
        assert_eq!(grouping("c1", &member), "pod1");
        let sandbox = json!({ "annotations": {
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": "pod1" } });
        assert_eq!(grouping("pod1", &sandbox), "pod1");
    }

    #[test]
    fn other_containers_get_their_own_shim() {
        assert_eq!(grouping("c1", &json!({})), "c1");
        assert_eq!(grouping("c1", &serde_json::Value::Null), "c1");
        let empty = json!({ "annotations": { "io.kubernetes.cri.sandbox-id": "" } });
        assert_eq!(grouping("c1", &empty), "c1");
    }
}
