//! A tiny CRI client for `scripts/soak`: one CRI call (or a kubelet-like pair
//! of calls) per invocation, so that a script can put faults between them.
//!
//! usage: cri_ctl --socket S [--handler peapod] [--log-dir D]
//!        [--cgroup-parent /peapod-soak-cri] [--image localhost/busybox:latest]
//!        VERB ARGS...
//!
//!   run-sandbox NAME            RunPodSandbox; prints the sandbox id
//!   start SANDBOX NAME CTR CMD… CreateContainer + StartContainer of CTR in the
//!                               sandbox of pod NAME; prints the container id
//!   status ID                   ContainerStatus: `STATE EXIT_CODE REASON`
//!   remove SANDBOX              StopPodSandbox + RemovePodSandbox
//!   sandboxes                   ids of every sandbox containerd knows, one a line
//!   containers                  ids of every container containerd knows
//!
//! The pod's uid is `NAME-uid`, its cgroup parent `<cgroup-parent>/<uid>`,
//! its logs under `<log-dir>/<uid>`. Exit status 0, or 1 with the CRI error
//! on stderr.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, LinuxContainerConfig, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainersRequest,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

type Client = RuntimeServiceClient<Channel>;
type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    socket: PathBuf,
    handler: String,
    log_dir: PathBuf,
    cgroup_parent: String,
    image: String,
    verb: Vec<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        socket: PathBuf::new(),
        handler: "peapod".into(),
        log_dir: std::env::temp_dir().join("cri_ctl-logs"),
        cgroup_parent: "/peapod-soak-cri".into(),
        image: "localhost/busybox:latest".into(),
        verb: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if !arg.starts_with("--") {
            opts.verb.push(arg);
            opts.verb.extend(args.by_ref());
            break;
        }
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--socket" => opts.socket = value.into(),
            "--handler" => opts.handler = value,
            "--log-dir" => opts.log_dir = value.into(),
            "--cgroup-parent" => opts.cgroup_parent = value,
            "--image" => opts.image = value,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if opts.socket.as_os_str().is_empty() {
        return Err("--socket is required".into());
    }
    if opts.verb.is_empty() {
        return Err("a verb is required".into());
    }
    Ok(opts)
}

async fn connect(opts: &Options) -> Result<Client, Error> {
    let path = opts.socket.clone();
    // The URI is not used: every connection goes to the Unix socket.
    let channel = Endpoint::try_from("http://[::1]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", opts.socket.display()))?;
    Ok(RuntimeServiceClient::new(channel))
}

fn namespaces() -> Option<NamespaceOption> {
    Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    })
}

fn sandbox_config(opts: &Options, name: &str) -> PodSandboxConfig {
    let uid = format!("{name}-uid");
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.clone(),
            namespace: "peapod-soak".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: opts.log_dir.join(&uid).to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/{uid}", opts.cgroup_parent.trim_end_matches('/')),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: namespaces(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(opts: &Options, name: &str, command: &[String]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: opts.image.clone(),
            ..Default::default()
        }),
        command: command.to_vec(),
        log_path: format!("{name}/0.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: namespaces(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn run(opts: Options) -> Result<(), Error> {
    let mut client = connect(&opts).await?;
    let verb: Vec<&str> = opts.verb.iter().map(String::as_str).collect();
    match verb.as_slice() {
        ["run-sandbox", name] => {
            let config = sandbox_config(&opts, name);
            std::fs::create_dir_all(&config.log_directory)
                .map_err(|e| format!("cannot create {}: {e}", config.log_directory))?;
            let id = client
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: opts.handler.clone(),
                })
                .await
                .map_err(|e| format!("RunPodSandbox {name}: {}", e.message()))?
                .into_inner()
                .pod_sandbox_id;
            println!("{id}");
        }
        ["start", sandbox, name, ctr, command @ ..] if !command.is_empty() => {
            let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
            let id = client
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: sandbox.to_string(),
                    config: Some(container_config(&opts, ctr, &command)),
                    sandbox_config: Some(sandbox_config(&opts, name)),
                })
                .await
                .map_err(|e| format!("CreateContainer {ctr}: {}", e.message()))?
                .into_inner()
                .container_id;
            client
                .start_container(StartContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .map_err(|e| format!("StartContainer {id}: {}", e.message()))?;
            println!("{id}");
        }
        ["status", id] => {
            let status = client
                .container_status(ContainerStatusRequest {
                    container_id: id.to_string(),
                    verbose: false,
                })
                .await
                .map_err(|e| format!("ContainerStatus {id}: {}", e.message()))?
                .into_inner()
                .status
                .ok_or_else(|| format!("ContainerStatus {id}: no status"))?;
            let state =
                ContainerState::try_from(status.state).unwrap_or(ContainerState::ContainerUnknown);
            let reason = if status.reason.is_empty() {
                "-"
            } else {
                &status.reason
            };
            println!("{} {} {reason}", state.as_str_name(), status.exit_code);
        }
        ["remove", sandbox] => {
            client
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: sandbox.to_string(),
                })
                .await
                .map_err(|e| format!("StopPodSandbox {sandbox}: {}", e.message()))?;
            client
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: sandbox.to_string(),
                })
                .await
                .map_err(|e| format!("RemovePodSandbox {sandbox}: {}", e.message()))?;
        }
        ["sandboxes"] => {
            let items = client
                .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                .await
                .map_err(|e| format!("ListPodSandbox: {}", e.message()))?
                .into_inner()
                .items;
            for s in items {
                println!("{}", s.id);
            }
        }
        ["containers"] => {
            let items = client
                .list_containers(ListContainersRequest { filter: None })
                .await
                .map_err(|e| format!("ListContainers: {}", e.message()))?
                .into_inner()
                .containers;
            for c in items {
                println!("{}", c.id);
            }
        }
        _ => return Err(format!("unknown verb or arguments: {}", opts.verb.join(" ")).into()),
    }
    Ok(())
}

fn main() {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("cri_ctl: {e} (see the usage at the top of examples/cri_ctl.rs)");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(opts)) {
        eprintln!("cri_ctl: {e}");
        std::process::exit(1);
    }
}
