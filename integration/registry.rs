//! Pulls from a real registry on loopback: Debian's `docker-registry` (CNCF
//! distribution 2.8) fed by `skopeo`. Nothing leaves 127.0.0.1: every name a test
//! pulls is `127.0.0.1:PORT/...`, or `registry.k8s.io/...` sent by a hosts.toml to
//! the loopback registry (its server included).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::common::{output_of, peapod_bin, require_root, wait_until};
use peapod::image::pull::policy::{decide, Decision, PullPolicy};
use peapod::image::{ImageStore, Rootfs};

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

pub(crate) fn busybox_archive() -> PathBuf {
    let path = crate::common::repo().join("bundles/images/busybox.tar");
    assert!(
        path.is_file(),
        "{} missing: run scripts/setup",
        path.display()
    );
    path
}

fn tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{name} is missing: run scripts/setup");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> Output {
    let out = output_of(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// How a test registry is reached.
#[derive(Default)]
pub(crate) struct Options {
    /// user and password (htpasswd, bcrypt)
    auth: Option<(&'static str, &'static str)>,
    tls: bool,
}

/// A docker-registry process with its own storage, config and access log.
pub(crate) struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    opts_tls: bool,
    auth: Option<(&'static str, &'static str)>,
}

impl Registry {
    pub(crate) fn start(opts: Options) -> Registry {
        require_root();
        tool("docker-registry");
        tool("skopeo");
        let dir = tempfile::Builder::new()
            .prefix("peapod-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let d = dir.path();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: peapod-test\n",
            d.join("data").display()
        );
        if opts.tls {
            tool("openssl");
            make_certificates(d);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.crt").display(),
                d.join("server.key").display()
            ));
        }
        if let Some((user, password)) = opts.auth {
            tool("htpasswd");
            let out = run(Command::new("htpasswd").args(["-Bbn", user, password]));
            fs::write(d.join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: peapod-test\n    path: {}\n",
                d.join("htpasswd").display()
            ));
        }
        fs::write(d.join("config.yml"), config).unwrap();
        let log = fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            dir,
            port,
            child: Some(child),
            opts_tls: opts.tls,
            auth: opts.auth,
        };
        wait_until("the registry to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        registry
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy SOURCE docker://HOST/DEST` with `extra` flags.
    pub(crate) fn push(&self, source: &str, dest: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((user, password)) = self.auth {
            cmd.arg(format!("--dest-creds={user}:{password}"));
        }
        cmd.args(extra)
            .arg(source)
            .arg(format!("docker://{}/{dest}", self.host()));
        run(&mut cmd);
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Blob GETs peapod made (access log lines), by digest.
    fn blob_gets(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .filter(|l| l.contains("\"peapod/"))
            .filter_map(|l| {
                let at = l.find("/blobs/")? + "/blobs/".len();
                Some(l[at..at + 71].to_string())
            })
            .collect()
    }

    /// The manifest a tag names, read from the registry's disk (skopeo may
    /// have recompressed the layers on the way).
    fn manifest(&self, repository: &str, tag: &str) -> Value {
        let link = self
            .dir
            .path()
            .join("data/docker/registry/v2/repositories")
            .join(repository)
            .join("_manifests/tags")
            .join(tag)
            .join("current/link");
        let digest = fs::read_to_string(link).unwrap();
        serde_json::from_slice(&fs::read(self.blob_file(digest.trim())).unwrap()).unwrap()
    }

    /// The file holding a blob on the registry's disk.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped registry again, on the same port with the same storage.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let d = self.dir.path();
        let log = fs::OpenOptions::new()
            .append(true)
            .open(d.join("registry.log"))
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let port = self.port;
        wait_until(
            "the registry to listen again",
            Duration::from_secs(20),
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(d: &Path) {
    let ssl = |args: &[&str]| {
        run(Command::new("openssl").current_dir(d).args(args));
    };
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=peapod test CA",
    ]);
    ssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    ssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// One test's client side: a store, hosts and CA folders, a credentials file.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::Builder::new()
            .prefix("peapod-node-")
            .tempdir()
            .unwrap();
        for sub in ["hosts", "certs"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        Node { dir }
    }

    fn store_path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn store(&self) -> ImageStore {
        ImageStore::open(&self.store_path()).unwrap()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `peapod image ARGS` against this node's settings (never the host's).
    fn image_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(peapod_bin());
        cmd.arg("image")
            .args(args)
            .arg(format!("--image-store={}", self.store_path().display()))
            .stdin(Stdio::null());
        for var in [
            "PEAPOD_INSECURE_REGISTRIES",
            "PEAPOD_REGISTRY_HOSTS_DIR",
            "PEAPOD_REGISTRY_CA_DIR",
            "PEAPOD_REGISTRY_CREDENTIALS",
            "PEAPOD_REGISTRY_CONFIG",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    fn pull_cmd(&self, reference: &str, insecure: &[&str]) -> Command {
        let mut cmd = self.image_cmd(&["pull"]);
        cmd.arg(format!(
            "--registry-hosts-dir={}",
            self.path("hosts").display()
        ))
        .arg(format!(
            "--registry-ca-dir={}",
            self.path("certs").display()
        ))
        .arg(format!(
            "--registry-credentials={}",
            self.path("config.json").display()
        ));
        for host in insecure {
            cmd.arg(format!("--insecure-registry={host}"));
        }
        cmd.arg(reference);
        cmd
    }

    fn pull(&self, reference: &str, insecure: &[&str]) -> Output {
        output_of(&mut self.pull_cmd(reference, insecure))
    }

    fn pull_ok(&self, reference: &str, insecure: &[&str]) -> String {
        let out = self.pull(reference, insecure);
        assert!(
            out.status.success(),
            "pull {reference} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pull_err(&self, reference: &str, insecure: &[&str]) -> String {
        let out = self.pull(reference, insecure);
        assert!(!out.status.success(), "pull {reference} should fail");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        err
    }

    fn entries(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.store_path().join(rel))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Nothing half-done in the store: no scratch left by pulls, no image, no layer.
    fn assert_empty(&self) {
        assert!(self.store().list().unwrap().is_empty());
        assert!(
            self.entries("layers").is_empty(),
            "{:?}",
            self.entries("layers")
        );
        assert!(self.entries("blobs/sha256").is_empty());
        let pulls: Vec<String> = self
            .entries("pulls")
            .into_iter()
            .filter(|e| e != "locks")
            .collect();
        assert!(pulls.is_empty(), "pull scratch left: {pulls:?}");
    }
}

/// An OCI image layout folder built here, for skopeo to push (`oci:DIR:TAG`).
struct Layout {
    dir: PathBuf,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    fn blob(&self, bytes: &[u8], media_type: &str) -> Value {
        let digest = sha256(bytes);
        let path = self
            .dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        fs::write(path, bytes).unwrap();
        json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    }

    /// A manifest over uncompressed `layers` (tar bytes), for `arch`.
    fn image(&self, layers: &[Vec<u8>], arch: &str, cmd: &str) -> Value {
        self.image_with(layers, arch, cmd, false)
    }

    /// The same, the layers zstd-compressed when `zstd` (skopeo keeps them so).
    fn image_with(&self, layers: &[Vec<u8>], arch: &str, cmd: &str, zstd: bool) -> Value {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": [cmd]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        });
        let config = self.blob(&serde_json::to_vec(&config).unwrap(), MT_CONFIG);
        let layers: Vec<Value> = layers
            .iter()
            .map(|l| match zstd {
                true => self.blob(&zstd::encode_all(&l[..], 3).unwrap(), MT_LAYER_ZSTD),
                false => self.blob(l, MT_LAYER),
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": config, "layers": layers
        });
        let mut desc = self.blob(&serde_json::to_vec(&manifest).unwrap(), MT_MANIFEST);
        desc["platform"] = json!({"architecture": arch, "os": "linux"});
        desc
    }

    fn index(&self, manifests: Vec<Value>) -> Value {
        let index = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests});
        self.blob(&serde_json::to_vec(&index).unwrap(), MT_INDEX)
    }

    /// index.json naming `desc` by `tag`.
    fn tag(&self, mut desc: Value, tag: &str) -> String {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let index = json!({"schemaVersion": 2, "manifests": [desc]});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        format!("oci:{}:{tag}", self.dir.display())
    }
}

/// A layer tar holding `files` (path, content).
fn layer(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, &data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Incompressible bytes (xorshift), so that a layer takes its size on disk.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn other_arch() -> &'static str {
    if std::env::consts::ARCH == "s390x" {
        "arm64"
    } else {
        "s390x"
    }
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn pull_by_tag_and_digest_with_gzip_and_zstd_layers() {
    let reg = Registry::start(Options::default());
    let host = reg.host();
    let archive = format!("oci-archive:{}", busybox_archive().display());
    reg.push(&archive, "x/busybox:gzip", &[]);
    // The same layer zstd-compressed, made here: skopeo would reuse the gzip blob it already pushed.
    let work = tempfile::tempdir().unwrap();
    let unpacked = work.path().join("busybox");
    run(Command::new("tar")
        .arg("-xf")
        .arg(busybox_archive())
        .arg("-C")
        .arg({
            fs::create_dir_all(&unpacked).unwrap();
            &unpacked
        }));
    let index: Value =
        serde_json::from_slice(&fs::read(unpacked.join("index.json")).unwrap()).unwrap();
    let blob = |d: &Value| {
        fs::read(
            unpacked
                .join("blobs/sha256")
                .join(d.as_str().unwrap().trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest: Value = serde_json::from_slice(&blob(&index["manifests"][0]["digest"])).unwrap();
    let config: Value = serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&blob(&manifest["layers"][0]["digest"])[..])
        .read_to_end(&mut tar)
        .unwrap();
    let layout = Layout::new(work.path().join("zstd"));
    let cmd = config["config"]["Cmd"][0].as_str().unwrap();
    let m = layout.image_with(&[tar], host_arch(), cmd, true);
    reg.push(&layout.tag(m, "z"), "x/busybox:zstd", &[]);
    let node = Node::new();

    let out = node.pull_ok(&format!("{host}/x/busybox:gzip"), &[&host]);
    assert!(
        out.contains("layer "),
        "one line per layer on a pipe: {out}"
    );
    let store = node.store();
    let gzip = store.resolve(&format!("{host}/x/busybox:gzip")).unwrap();
    assert_eq!(gzip.name, format!("{host}/x/busybox:gzip"));
    assert_eq!(gzip.config.cmd, ["sh"]);
    let dirs = store.layer_dirs(&gzip).unwrap();
    assert!(dirs[0].join("bin/busybox").is_file());

    // zstd: another blob, the same diff_id, so nothing new is unpacked.
    let layers_before = node.entries("layers");
    node.pull_ok(&format!("{host}/x/busybox:zstd"), &[&host]);
    let zstd = store.resolve(&format!("{host}/x/busybox:zstd")).unwrap();
    assert_eq!(zstd.layers, gzip.layers);
    assert_ne!(zstd.manifest_digest, gzip.manifest_digest);
    assert_eq!(zstd.config.cmd, ["sh"]);
    assert_eq!(node.entries("layers"), layers_before);
    let zstd_manifest: Value = serde_json::from_slice(
        &fs::read(
            store
                .root()
                .join("blobs/sha256")
                .join(zstd.manifest_digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(zstd_manifest["layers"][0]["mediaType"]
        .as_str()
        .unwrap()
        .ends_with("zstd"));
    // A fresh store unpacks the zstd layer itself.
    let fresh = Node::new();
    fresh.pull_ok(&format!("{host}/x/busybox:zstd"), &[&host]);
    let image = fresh
        .store()
        .resolve(&format!("{host}/x/busybox:zstd"))
        .unwrap();
    assert!(fresh.store().layer_dirs(&image).unwrap()[0]
        .join("bin/busybox")
        .is_file());

    // By digest: stored under name@digest, found by it.
    let by_digest = format!("{host}/x/busybox@{}", gzip.manifest_digest);
    node.pull_ok(&by_digest, &[&host]);
    assert_eq!(store.resolve(&by_digest).unwrap().id, gzip.id);
    assert!(store.list().unwrap().iter().any(|i| i.name == by_digest));
    let tagged_digest = format!("{host}/x/busybox:zstd@{}", gzip.manifest_digest);
    node.pull_ok(&tagged_digest, &[&host]);
    assert_eq!(store.resolve(&tagged_digest).unwrap().id, gzip.id);
    // A digest the registry does not have.
    let err = node.pull_err(
        &format!("{host}/x/busybox@sha256:{}", "0".repeat(64)),
        &[&host],
    );
    assert!(err.contains("not found"), "{err}");

    // image ls shows name, id, digest, size and last use.
    let out = run(&mut node.image_cmd(&["ls"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("NAME") && text.contains("LAST USED"),
        "{text}"
    );
    let line = text.lines().find(|l| l.contains(":gzip")).unwrap();
    assert!(line.contains(&gzip.id["sha256:".len()..][..12]), "{line}");
    assert!(
        line.contains(&gzip.manifest_digest["sha256:".len()..][..12]),
        "{line}"
    );
}

#[test]
fn an_index_gives_this_platform() {
    let reg = Registry::start(Options::default());
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::new(work.path().join("multi"));
    let native = layout.image(
        &[layer(&[("which", b"native".to_vec())])],
        host_arch(),
        "native",
    );
    let foreign = layout.image(
        &[layer(&[("which", b"foreign".to_vec())])],
        other_arch(),
        "foreign",
    );
    let index = layout.index(vec![foreign, native]);
    let source = layout.tag(index, "multi");
    reg.push(&source, "x/multi:1", &["--all"]);

    let node = Node::new();
    node.pull_ok(&format!("{host}/x/multi:1"), &[&host]);
    let image = node.store().resolve(&format!("{host}/x/multi:1")).unwrap();
    assert_eq!(image.config.cmd, ["native"]);
    let dir = &node.store().layer_dirs(&image).unwrap()[0];
    assert_eq!(fs::read(dir.join("which")).unwrap(), b"native");
    assert_eq!(
        node.entries("layers").len(),
        1,
        "the other platform is not fetched"
    );

    // An index without this platform is refused, naming what it has.
    let only_foreign = Layout::new(work.path().join("foreign"));
    let f = only_foreign.image(&[layer(&[("x", b"x".to_vec())])], other_arch(), "f");
    let source = only_foreign.tag(only_foreign.index(vec![f]), "f");
    reg.push(&source, "x/foreign:1", &["--all"]);
    let err = node.pull_err(&format!("{host}/x/foreign:1"), &[&host]);
    assert!(
        err.contains(&format!("linux/{}", host_arch())) && err.contains(other_arch()),
        "{err}"
    );
}

#[test]
fn an_altered_blob_is_refused_and_nothing_is_stored() {
    let reg = Registry::start(Options::default());
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::new(work.path().join("l"));
    let good = layer(&[("good", b"good".to_vec())]);
    let bad = layer(&[("bad", noise(1 << 20, 3))]);
    let manifest = layout.image(&[good, bad], host_arch(), "x");
    reg.push(&layout.tag(manifest, "t"), "x/tampered:1", &[]);

    // Same length, one byte changed: only the digest can tell.
    let digest = reg.manifest("x/tampered", "1")["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = reg.blob_file(&digest);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&path, bytes).unwrap();

    let node = Node::new();
    let err = node.pull_err(&format!("{host}/x/tampered:1"), &[&host]);
    assert!(
        err.contains(&digest) && err.contains("digest mismatch"),
        "{err}"
    );
    node.assert_empty();
}

#[test]
fn credentials_and_tls_errors_are_clear() {
    let reg = Registry::start(Options {
        auth: Some(("alice", "wonderland")),
        tls: true,
    });
    assert!(reg.opts_tls);
    let host = reg.host();
    reg.push(
        &format!("oci-archive:{}", busybox_archive().display()),
        "x/private:1",
        &[],
    );
    let node = Node::new();
    let name = format!("{host}/x/private:1");

    // The registry's CA is not trusted yet.
    let err = node.pull_err(&name, &[]);
    assert!(
        err.contains(&format!("https://{host}/v2/")) && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    let ca_dir = node.path(&format!("certs/{host}"));
    fs::create_dir_all(&ca_dir).unwrap();
    fs::copy(reg.dir.path().join("ca.crt"), ca_dir.join("ca.crt")).unwrap();

    // Trusted, but no credentials.
    let err = node.pull_err(&name, &[]);
    assert!(
        err.contains("authentication required") && err.contains(&host),
        "{err}"
    );
    // A wrong password.
    use base64::Engine as _;
    let auth = |user: &str, pw: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    };
    let config = |a: String| json!({"auths": {format!("https://{host}"): {"auth": a}}});
    fs::write(
        node.path("config.json"),
        config(auth("alice", "looking-glass")).to_string(),
    )
    .unwrap();
    let err = node.pull_err(&name, &[]);
    assert!(
        err.contains("refused the credentials of \"alice\""),
        "{err}"
    );
    node.assert_empty();
    // The right one.
    fs::write(
        node.path("config.json"),
        config(auth("alice", "wonderland")).to_string(),
    )
    .unwrap();
    node.pull_ok(&name, &[]);
    assert!(node.store().resolve(&name).is_ok());

    // A stopped registry.
    let mut reg = reg;
    reg.stop();
    let fresh = Node::new();
    let err = fresh.pull_err(&format!("{host}/x/private:1"), &[&host]);
    assert!(
        err.contains(&format!("http://{host}/v2/x/private/manifests/1"))
            && err.contains("cannot connect"),
        "{err}"
    );
    fresh.assert_empty();
}

#[test]
fn a_moved_tag_is_seen_by_always_not_by_if_not_present() {
    let reg = Registry::start(Options::default());
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let push = |content: &str| {
        let layout = Layout::new(work.path().join(content));
        let m = layout.image(
            &[layer(&[("v", content.as_bytes().to_vec())])],
            host_arch(),
            content,
        );
        reg.push(&layout.tag(m, "t"), "x/app:stable", &[]);
    };
    push("one");
    let node = Node::new();
    let name = format!("{host}/x/app:stable");
    let store = node.store();
    let ensure = |policy: PullPolicy| {
        let (presence, _) = store.presence(&name).unwrap();
        match decide(&name, policy, presence, false) {
            Decision::Pull => {
                node.pull_ok(&name, &[&host]);
                true
            }
            Decision::UseLocal => false,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(PullPolicy::default_for(&name), PullPolicy::IfNotPresent);
    assert!(ensure(PullPolicy::IfNotPresent), "absent: pulled");
    let one = store.resolve(&name).unwrap();
    assert_eq!(one.config.cmd, ["one"]);

    push("two");
    assert!(!ensure(PullPolicy::IfNotPresent), "present: not pulled");
    assert_eq!(store.resolve(&name).unwrap().id, one.id);
    assert!(ensure(PullPolicy::Always));
    let two = store.resolve(&name).unwrap();
    assert_eq!(two.config.cmd, ["two"]);
    // The old content is unused now: its layer is gone.
    assert!(store.layer_dirs(&one).is_err());
    assert_eq!(node.entries("layers").len(), 1);
}

#[test]
fn two_pulls_at_once_fetch_each_blob_once() {
    let reg = Registry::start(Options::default());
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::new(work.path().join("l"));
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| layer(&[(&format!("f{i}"), noise(4 << 20, i + 1))]))
        .collect();
    let m = layout.image(&layers, host_arch(), "x");
    reg.push(&layout.tag(m, "t"), "x/multi-layer:1", &[]);

    let node = Node::new();
    let name = format!("{host}/x/multi-layer:1");
    let mut a = node.pull_cmd(&name, &[&host]);
    let mut b = node.pull_cmd(&name, &[&host]);
    let (a, b) = (
        a.stdout(Stdio::null()).spawn().unwrap(),
        b.stdout(Stdio::null()).spawn().unwrap(),
    );
    for mut child in [a, b] {
        assert!(child.wait().unwrap().success());
    }
    let gets = reg.blob_gets();
    // The config and four layers, each once.
    assert_eq!(gets.len(), 5, "{gets:?}");
    let mut unique = gets.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{gets:?}");
    assert_eq!(node.entries("layers").len(), 4);
    assert!(node.store().resolve(&name).is_ok());
}

#[test]
fn a_mirror_serves_registry_k8s_io_from_loopback() {
    let reg = Registry::start(Options::default());
    let host = reg.host();
    reg.push(
        &format!("oci-archive:{}", busybox_archive().display()),
        "pause:3.9",
        &[],
    );
    let node = Node::new();
    let dir = node.path("hosts/registry.k8s.io");
    fs::create_dir_all(&dir).unwrap();
    // The server too is the loopback registry: a failing mirror never falls back to the internet.
    fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .unwrap();
    node.pull_ok("registry.k8s.io/pause:3.9", &[]);
    let image = node.store().resolve("registry.k8s.io/pause:3.9").unwrap();
    assert_eq!(image.name, "registry.k8s.io/pause:3.9");
    assert!(
        reg.log()
            .contains("\"GET /v2/pause/manifests/3.9 HTTP/1.1\" 200"),
        "the mirror answered"
    );
}

/// A loopback TCP relay that stops passing the registry's answers after `limit`
/// bytes: a pull through it hangs mid-transfer, at a known point.
struct StallingRelay {
    port: u16,
    relayed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl StallingRelay {
    fn start(upstream: u16, limit: u64) -> StallingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let relayed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (relayed.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                });
                let (mut s_in, mut c_out) = (server, client);
                let (r, s) = (r.clone(), s.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    loop {
                        if r.load(Ordering::SeqCst) >= limit {
                            // Hold the connection open without passing anything on.
                            while !s.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            return;
                        }
                        let Ok(n) = s_in.read(&mut buf) else { return };
                        if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        r.fetch_add(n as u64, Ordering::SeqCst);
                    }
                });
            }
        });
        StallingRelay {
            port,
            relayed,
            stop,
        }
    }
}

impl Drop for StallingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[test]
fn a_pull_killed_mid_transfer_leaves_nothing_complete() {
    let reg = Registry::start(Options::default());
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::new(work.path().join("l"));
    let small = layer(&[("small", b"small".to_vec())]);
    let big = layer(&[("big", noise(16 << 20, 7))]);
    let m = layout.image(&[small, big], host_arch(), "x");
    reg.push(&layout.tag(m, "t"), "x/big:1", &[]);

    let relay = StallingRelay::start(reg.port, 4 << 20);
    let through = format!("127.0.0.1:{}", relay.port);
    let node = Node::new();
    let mut pull = node
        .pull_cmd(&format!("{through}/x/big:1"), &[&through])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the pull to stall mid-layer",
        Duration::from_secs(60),
        || relay.relayed.load(Ordering::SeqCst) >= 4 << 20,
    );
    let started = Instant::now();
    // Partly unpacked in its scratch folder, then SIGKILL.
    wait_until(
        "a partial layer in the scratch folder",
        Duration::from_secs(30),
        || {
            node.entries("pulls").iter().any(|e| {
                let dir = node.store_path().join("pulls").join(e);
                e != "locks"
                    && dir.is_dir()
                    && fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some())
            })
        },
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    pull.kill().unwrap();
    pull.wait().unwrap();

    let store = node.store();
    assert!(
        store.list().unwrap().is_empty(),
        "no image after a killed pull"
    );
    assert!(store.resolve(&format!("{through}/x/big:1")).is_err());
    // The small layer may be committed (verified); the big one is not.
    assert!(node.entries("layers").len() <= 1);
    let out = run(&mut node.image_cmd(&["ls"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "only the header"
    );

    // The next pull sweeps the dead one's scratch and completes.
    drop(relay);
    node.pull_ok(&format!("{host}/x/big:1"), &[&host]);
    let image = store.resolve(&format!("{host}/x/big:1")).unwrap();
    assert_eq!(store.layer_dirs(&image).unwrap().len(), 2);
    let left: Vec<String> = node
        .entries("pulls")
        .into_iter()
        .filter(|e| e != "locks")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(node.entries("uses").is_empty());
}

/// A tmpfs of `mib` MiB for the store, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(mib: u64) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("peapod-gc-")
            .tempdir()
            .unwrap();
        run(Command::new("mount").args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mib}m,mode=0700"),
            "peapod-gc",
            dir.path().to_str().unwrap(),
        ]));
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Unmounts the rootfs even when the test fails, so the small disk can go too.
struct Mounted(Rootfs);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Rootfs::unmount(self.0.dir());
    }
}

#[test]
fn rm_prune_and_gc_free_disk_and_keep_images_in_use() {
    let reg = Registry::start(Options::default());
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    for (i, name) in ["used", "old", "new"].iter().enumerate() {
        let layout = Layout::new(work.path().join(name));
        let l = layer(&[(name, noise(10 << 20, i as u64 + 11))]);
        let m = layout.image(&[l], host_arch(), name);
        reg.push(&layout.tag(m, "t"), &format!("x/{name}:1"), &[]);
    }
    let disk = SmallDisk::new(64);
    let node_dir = disk.dir.path();
    let store_path = node_dir.join("store");
    let cmd = |args: &[&str]| {
        let mut c = Command::new(peapod_bin());
        c.arg("image")
            .args(args)
            .arg(format!("--image-store={}", store_path.display()))
            .env_remove("PEAPOD_REGISTRY_CONFIG")
            .stdin(Stdio::null());
        c
    };
    let pull_all = || {
        for name in ["used", "old", "new"] {
            run(cmd(&["pull"])
                .arg(format!(
                    "--registry-hosts-dir={}",
                    node_dir.join("h").display()
                ))
                .arg(format!(
                    "--registry-credentials={}",
                    work.path().join("none.json").display()
                ))
                .arg(format!("--insecure-registry={host}"))
                .arg(format!("{host}/x/{name}:1")));
        }
    };
    fs::write(work.path().join("none.json"), "{}").unwrap();
    pull_all();
    let store = ImageStore::open(&store_path).unwrap();
    assert_eq!(store.list().unwrap().len(), 3);
    let used = store.resolve(&format!("{host}/x/used:1")).unwrap();
    let rootfs_dir = work.path().join("container");
    let rootfs = Mounted(Rootfs::mount(&store, &used, &rootfs_dir).unwrap());
    let rootfs = &rootfs.0;
    let available = || peapod::image::DiskUsage::of(&store_path).unwrap().available;

    // rm frees the image's layer.
    let before = available();
    run(&mut cmd(&["rm", &format!("{host}/x/new:1")]));
    assert!(available() >= before + (9 << 20), "rm freed the layer");

    // prune removes everything unused, never the mounted image.
    let out = run(&mut cmd(&["prune"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("removed {host}/x/old:1")), "{text}");
    assert!(!text.contains("used:1"), "{text}");
    let names: Vec<String> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, [format!("{host}/x/used:1")]);
    assert!(rootfs.path().join("used").is_file());

    // GC: 3 x 10 MiB on 64 MiB is ~47 %. Above 45 %, down to 38 %: the least
    // recently used unused image goes (old, pulled first), new stays, used stays.
    pull_all();
    let gc = |high: &str, low: &str| {
        let out = run(&mut cmd(&[
            "gc",
            "--high-threshold",
            high,
            "--low-threshold",
            low,
            "--minimum-age",
            "0s",
        ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = gc("90", "50");
    assert_eq!(
        text.trim(),
        "freed 0 B",
        "below the high threshold: nothing"
    );
    assert_eq!(store.list().unwrap().len(), 3);
    let text = gc("45", "38");
    let removed: Vec<&str> = text.lines().filter(|l| l.starts_with("removed")).collect();
    assert_eq!(removed, [format!("removed {host}/x/old:1")], "{text}");
    let names: Vec<String> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        [format!("{host}/x/new:1"), format!("{host}/x/used:1")]
    );
    // Asked for more than can be freed: everything unused goes, the mounted image stays.
    let text = gc("1", "0");
    assert!(text.contains("new:1") && !text.contains("used:1"), "{text}");
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(rootfs.path().join("used").is_file());

    Rootfs::unmount(rootfs.dir()).unwrap();
    run(&mut cmd(&["prune"]));
    assert!(store.list().unwrap().is_empty());
    assert!(fs::read_dir(store_path.join("layers"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn the_pod_engine_pulls_through_a_watched_child() {
    use peapod::image::pull::child::{self, PullOutcome};
    use peapod::image::registry::RegistrySettings;
    let reg = Registry::start(Options::default());
    let host = reg.host();
    reg.push(
        &format!("oci-archive:{}", busybox_archive().display()),
        "x/busybox:1",
        &[],
    );
    let node = Node::new();
    let settings = RegistrySettings {
        insecure: vec![host.clone()],
        hosts_dir: node.path("hosts"),
        ca_dir: node.path("certs"),
        credentials: Some(node.path("config.json")),
        ..Default::default()
    };
    let images = vec![format!("{host}/x/busybox:1"), format!("{host}/x/missing:1")];
    let mut pull = child::spawn(
        Path::new(peapod_bin()),
        &images,
        &node.store_path(),
        &settings,
    )
    .unwrap();
    assert!(pull.pid() > 0);
    let mut outcomes = None;
    wait_until("the pull child to finish", Duration::from_secs(60), || {
        outcomes = pull.poll().unwrap();
        outcomes.is_some()
    });
    let outcomes = outcomes.unwrap();
    match &outcomes[0] {
        PullOutcome::Pulled { name, size, .. } => {
            assert_eq!(name, &images[0]);
            assert!(*size > 0);
        }
        other => panic!("{other:?}"),
    }
    match &outcomes[1] {
        PullOutcome::Failed { error, .. } => assert!(error.contains("not found"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert!(node.store().resolve(&images[0]).is_ok());
}
