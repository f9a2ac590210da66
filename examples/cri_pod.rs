//! A small CRI client for `scripts/bench-pod`: runs pods through a CRI runtime
//! service (containerd's CRI plugin) the way a kubelet starts them, and prints
//! one JSON line of timings per pod on stdout.
//!
//! Each iteration: RunPodSandbox; CreateContainer + StartContainer of the init
//! container (`true`), polling ContainerStatus until it has exited (0); then
//! CreateContainer + StartContainer of two app containers (`sleep 3600`). The
//! time from just before RunPodSandbox to the return of the second app's
//! StartContainer is `total_ms`. Untimed afterwards: both apps are checked to
//! be running, the memory of the runtime's shim process(es) for this pod is
//! read from /proc (`--shim-name`, matched on `-id <sandbox id>` in their
//! command line), then StopPodSandbox + RemovePodSandbox.
//!
//! usage: cargo run --release --example cri_pod -- --socket S [--handler runc]
//!        [--iterations N] [--prefix P] [--start-index I] [--log-dir D]
//!        [--cgroup-parent /peapod-bench-pod] [--image localhost/busybox:latest]
//!        [--namespace peapod-bench] [--shim-name containerd-shim-runc-v2]
//!        [--poll-us 1000]
//!
//! Exit status: 0 when every pod ran, 1 on the first failure (after trying to
//! remove the pod it was working on).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, LinuxContainerConfig, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

type Client = RuntimeServiceClient<Channel>;
type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long the init container may take before the iteration fails.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);

struct Options {
    socket: PathBuf,
    handler: String,
    iterations: u32,
    prefix: String,
    start_index: u32,
    log_dir: PathBuf,
    cgroup_parent: String,
    image: String,
    namespace: String,
    shim_name: String,
    poll: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: cri_pod --socket S [--handler runc] [--iterations N] [--prefix P] \
         [--start-index I] [--log-dir D] [--cgroup-parent /peapod-bench-pod] \
         [--image localhost/busybox:latest] [--namespace peapod-bench] \
         [--shim-name containerd-shim-runc-v2] [--poll-us 1000]"
    );
    std::process::exit(2);
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        socket: PathBuf::new(),
        handler: "runc".into(),
        iterations: 1,
        prefix: format!("cri-{}", std::process::id()),
        start_index: 0,
        log_dir: std::env::temp_dir().join("cri_pod-logs"),
        cgroup_parent: "/peapod-bench-pod".into(),
        image: "localhost/busybox:latest".into(),
        namespace: "peapod-bench".into(),
        shim_name: "containerd-shim-runc-v2".into(),
        poll: Duration::from_micros(1000),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            usage();
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| -> Result<u32, String> {
            v.parse()
                .map_err(|_| format!("{flag}: not a whole number: {v}"))
        };
        match flag.as_str() {
            "--socket" => opts.socket = value.into(),
            "--handler" => opts.handler = value,
            "--iterations" => opts.iterations = number(&value)?,
            "--prefix" => opts.prefix = value,
            "--start-index" => opts.start_index = number(&value)?,
            "--log-dir" => opts.log_dir = value.into(),
            "--cgroup-parent" => opts.cgroup_parent = value,
            "--image" => opts.image = value,
            "--namespace" => opts.namespace = value,
            "--shim-name" => opts.shim_name = value,
            "--poll-us" => opts.poll = Duration::from_micros(number(&value)?.into()),
            _ => return Err(format!("unknown flag: {flag}")),
        }
    }
    if opts.socket.as_os_str().is_empty() {
        return Err("--socket is required".into());
    }
    Ok(opts)
}

async fn connect(socket: &Path) -> Result<Client, Error> {
    let path = socket.to_path_buf();
    // The URI is not used: every connection goes to the Unix socket.
    let channel = Endpoint::try_from("http://[::1]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    Ok(RuntimeServiceClient::new(channel))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn sandbox_config(opts: &Options, name: &str, uid: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: opts.namespace.clone(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: opts.log_dir.join(uid).to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/{uid}", opts.cgroup_parent.trim_end_matches('/')),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(opts: &Options, name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: opts.image.clone(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create_and_start(
    client: &mut Client,
    sandbox_id: &str,
    sandbox: &PodSandboxConfig,
    config: ContainerConfig,
) -> Result<String, Error> {
    let name = config.metadata.as_ref().map(|m| m.name.clone());
    let id = client
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .map_err(|e| {
            format!(
                "CreateContainer {}: {}",
                name.unwrap_or_default(),
                e.message()
            )
        })?
        .into_inner()
        .container_id;
    client
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .map_err(|e| format!("StartContainer {id}: {}", e.message()))?;
    Ok(id)
}

async fn container_state(client: &mut Client, id: &str) -> Result<(ContainerState, i32), Error> {
    let status = client
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .map_err(|e| format!("ContainerStatus {id}: {}", e.message()))?
        .into_inner()
        .status
        .ok_or_else(|| format!("ContainerStatus {id}: no status"))?;
    let state = ContainerState::try_from(status.state).unwrap_or(ContainerState::ContainerUnknown);
    Ok((state, status.exit_code))
}

/// Rss, Pss, Anonymous and private (Private_Clean + Private_Dirty) memory
/// (KiB) of one process, from /proc/PID/smaps_rollup.
fn memory_kib(pid: u32) -> Option<[u64; 4]> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |key: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some([
        field("Rss:")?,
        field("Pss:")?,
        field("Anonymous:")?,
        field("Private_Clean:")? + field("Private_Dirty:")?,
    ])
}

/// PIDs of the processes named `shim_name` whose command line has `-id ID`
/// and mentions `address` (this containerd's socket).
fn shim_pids(shim_name: &str, address: &str, id: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        let Some(argv0) = args.first() else { continue };
        if !argv0.ends_with(shim_name.as_bytes()) {
            continue;
        }
        let has_id = args
            .windows(2)
            .any(|w| w[0] == b"-id" && w[1] == id.as_bytes());
        let has_address = args.contains(&address.as_bytes());
        if has_id && has_address {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// PIDs and summed Rss, Pss, Anonymous, private (KiB) of the shim(s) of one sandbox.
fn shim_memory(opts: &Options, sandbox_id: &str) -> Result<(Vec<u32>, [u64; 4]), Error> {
    let address = opts.socket.to_string_lossy();
    let pids = shim_pids(&opts.shim_name, &address, sandbox_id);
    if pids.is_empty() {
        return Err(format!(
            "no {} process with -id {sandbox_id} and {address} in its command line",
            opts.shim_name
        )
        .into());
    }
    let mut memory = [0u64; 4];
    for pid in &pids {
        let m = memory_kib(*pid).ok_or_else(|| format!("cannot read /proc/{pid}/smaps_rollup"))?;
        for (sum, v) in memory.iter_mut().zip(m) {
            *sum += v;
        }
    }
    Ok((pids, memory))
}

async fn remove_sandbox(client: &mut Client, id: &str) -> Result<(), Error> {
    client
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .map_err(|e| format!("StopPodSandbox {id}: {}", e.message()))?;
    client
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .map_err(|e| format!("RemovePodSandbox {id}: {}", e.message()))?;
    Ok(())
}

/// Everything after RunPodSandbox succeeded: on error the caller removes the sandbox.
async fn run_members(
    client: &mut Client,
    opts: &Options,
    sandbox_id: &str,
    sandbox: &PodSandboxConfig,
    t0: Instant,
    timings: &mut Vec<(&'static str, f64)>,
) -> Result<(), Error> {
    let t = Instant::now();
    let init = create_and_start(
        client,
        sandbox_id,
        sandbox,
        container_config(opts, "init", &["true"]),
    )
    .await?;
    let deadline = Instant::now() + INIT_TIMEOUT;
    let mut polls = 0u32;
    loop {
        let (state, code) = container_state(client, &init).await?;
        polls += 1;
        match state {
            ContainerState::ContainerExited if code == 0 => break,
            ContainerState::ContainerExited => {
                return Err(format!("init container {init} exited with {code}").into())
            }
            _ if Instant::now() > deadline => {
                return Err(format!("init container {init} still {state:?} after 30s").into())
            }
            _ => tokio::time::sleep(opts.poll).await,
        }
    }
    timings.push(("init_ms", ms(t.elapsed())));
    let t = Instant::now();
    let mut apps = Vec::new();
    for name in ["app1", "app2"] {
        let config = container_config(opts, name, &["sleep", "3600"]);
        apps.push(create_and_start(client, sandbox_id, sandbox, config).await?);
    }
    timings.push(("apps_ms", ms(t.elapsed())));
    timings.push(("total_ms", ms(t0.elapsed())));
    timings.push(("init_polls", polls.into()));
    for id in &apps {
        let (state, _) = container_state(client, id).await?;
        if state != ContainerState::ContainerRunning {
            return Err(format!("app container {id} is {state:?}, not running").into());
        }
    }
    Ok(())
}

async fn one_pod(client: &mut Client, opts: &Options, index: u32) -> Result<(), Error> {
    let name = format!("{}-{index}", opts.prefix);
    let uid = format!("{name}-uid");
    let sandbox = sandbox_config(opts, &name, &uid);
    std::fs::create_dir_all(&sandbox.log_directory)
        .map_err(|e| format!("cannot create {}: {e}", sandbox.log_directory))?;

    let mut timings = Vec::new();
    let t0 = Instant::now();
    let sandbox_id = client
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: opts.handler.clone(),
        })
        .await
        .map_err(|e| format!("RunPodSandbox {name}: {}", e.message()))?
        .into_inner()
        .pod_sandbox_id;
    timings.push(("sandbox_ms", ms(t0.elapsed())));

    let result = run_members(client, opts, &sandbox_id, &sandbox, t0, &mut timings).await;
    // The shim(s) serving this pod, measured while the pod runs.
    let measured = match &result {
        Ok(()) => shim_memory(opts, &sandbox_id),
        Err(_) => Ok((Vec::new(), [0; 4])),
    };
    let t = Instant::now();
    let removed = remove_sandbox(client, &sandbox_id).await;
    let teardown = ms(t.elapsed());
    result?;
    removed?;
    let (pids, memory) = measured?;

    let mut line = format!("{{\"pod\":\"{name}\",\"sandbox_id\":\"{sandbox_id}\"");
    for (key, value) in &timings {
        line.push_str(&format!(",\"{key}\":{value}"));
    }
    let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    line.push_str(&format!(
        ",\"teardown_ms\":{teardown},\"shim_pids\":[{}],\"shim_rss_kib\":{},\"shim_pss_kib\":{},\"shim_anon_kib\":{},\"shim_private_kib\":{}}}",
        pids.join(","),
        memory[0],
        memory[1],
        memory[2],
        memory[3]
    ));
    println!("{line}");
    Ok(())
}

async fn run(opts: Options) -> Result<(), Error> {
    let mut client = connect(&opts.socket).await?;
    let version = client
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .map_err(|e| format!("Version: {}", e.message()))?
        .into_inner();
    eprintln!(
        "cri_pod: {} {} (CRI {}), handler {}",
        version.runtime_name, version.runtime_version, version.runtime_api_version, opts.handler
    );
    for i in 0..opts.iterations {
        one_pod(&mut client, &opts, opts.start_index + i).await?;
    }
    Ok(())
}

fn main() {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("cri_pod: {e}");
            usage();
        }
    };
    // One thread: the client only waits on the socket, and it keeps the
    // client's own CPU use out of the way of the runtime being measured.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(opts)) {
        eprintln!("cri_pod: error: {e}");
        std::process::exit(1);
    }
}
