//! Entry points for the fuzz targets of `fuzz/` (cargo-fuzz, libFuzzer): one
//! function per parser of outside input, taking raw bytes. Each must return
//! (an error is a fine answer) and never panic, hang or write outside the
//! folder it is given; the checks here assert what must hold beyond that.
//! Not part of peapod's API: the parsers themselves stay crate-private.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::image::{archive, layer, manifest, reference, registry, ImageStore};
use crate::net::cni;
use crate::pod::probe::{grpc, hpack, http};
use crate::pod::{admission, logs, static_pods, supervisor};

/// A folder of this process's own under the temporary folder, made once.
fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peapod-fuzz-{what}-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("creating the fuzz scratch folder");
    dir
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A Pod manifest (YAML or JSON) through admission, as `pod run` and the
/// static daemon read one.
pub fn pod_manifest(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = admission::parse(text, "fuzz.yaml");
}

/// An OCI runtime `config.json`, loaded from a bundle as `peapod create` does.
pub fn oci_config(data: &[u8]) {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    let bundle = BUNDLE.get_or_init(|| {
        let dir = scratch("bundle");
        for sub in ["rootfs/bin", "rootfs/proc", "rootfs/etc"] {
            fs::create_dir_all(dir.join(sub)).expect("creating the fuzz rootfs");
        }
        let _ = std::os::unix::fs::symlink("/etc", dir.join("rootfs/link"));
        dir
    });
    fs::write(bundle.join("config.json"), data).expect("writing config.json");
    let _ = crate::oci::bundle::load(bundle);
}

/// An image reference as `image pull`, `pod run` and CRI give one.
pub fn image_reference(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(parsed) = reference::Reference::parse(text) {
        let canonical = parsed.canonical();
        let again = reference::Reference::parse(&canonical).unwrap_or_else(|e| {
            panic!("{text:?}: its canonical form {canonical:?} is refused: {e}")
        });
        assert_eq!(
            again.canonical(),
            canonical,
            "{text:?}: canonical is not stable"
        );
    }
    if let Ok(remote) = reference::remote_name(text) {
        let stored = remote.store_name();
        let _ = remote.reference();
        reference::remote_name(&stored)
            .unwrap_or_else(|e| panic!("{text:?}: its store name {stored:?} is refused: {e}"));
    }
    let _ = reference::canonical_name(text);
    let _ = reference::has_registry(text);
}

/// An image index, manifest or config (from an archive or a registry).
pub fn image_document(data: &[u8]) {
    if let Ok(doc) = manifest::Document::parse(data, "manifest", "fuzz") {
        if let Ok(manifest::Kind::Manifest { config, layers }) = doc.kind("manifest", "fuzz") {
            let _ = manifest::check_config_type(&config);
            let _ = config.digest();
            for layer in &layers {
                let _ = manifest::layer_compression(layer);
                let _ = layer.digest();
                let _ = layer.annotation(manifest::ANNOTATION_REF_NAME);
            }
        }
    }
    if let Ok(config) = manifest::ConfigFile::parse(data, "fuzz") {
        let _ = config.diff_ids("fuzz");
        let _ = config.image_config("fuzz");
    }
    if let Ok(token) = serde_json::from_slice::<registry::TokenResponse>(data) {
        let _ = token.into_token();
    }
}

/// Where the layer target checks that nothing outside its folder changed:
/// entries the fuzzer can aim symbolic links at (the seeds do), at a fixed
/// path so that every fuzzing process finds it.
pub const OUTSIDE: &str = "/tmp/peapod-fuzz-outside";
const OUTSIDE_MTIME: i64 = 1_000_000_000;

fn outside_listing(dir: &Path) -> Vec<(String, u32, i64, u64)> {
    let mut entries = vec![];
    for entry in walk(dir) {
        let meta = fs::symlink_metadata(&entry).expect("stat of the outside folder");
        entries.push((
            entry.display().to_string(),
            meta.mode(),
            meta.mtime(),
            meta.len(),
        ));
    }
    entries
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(read) = fs::read_dir(dir) {
        let mut children: Vec<_> = read.flatten().map(|e| e.path()).collect();
        children.sort();
        for child in children {
            if child.is_dir() && !child.is_symlink() {
                out.extend(walk(&child));
            } else {
                out.push(child);
            }
        }
    }
    out
}

fn make_outside() -> Vec<(String, u32, i64, u64)> {
    let dir = Path::new(OUTSIDE);
    if !dir.join("d/e").is_dir() {
        fs::create_dir_all(dir.join("d/e")).expect("creating the outside folder");
        fs::write(dir.join("canary"), b"canary").expect("writing the canary");
        fs::write(dir.join("d/canary"), b"canary").expect("writing the canary");
    }
    for path in walk(dir) {
        let t = nix::sys::time::TimeSpec::new(OUTSIDE_MTIME, 0);
        let _ = nix::sys::stat::utimensat(
            None,
            &path,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    outside_listing(dir)
}

/// A layer tar unpacked into a fresh folder: whatever its paths, links and
/// hard links, nothing outside that folder may change.
pub fn layer_tar(data: &[u8]) {
    static BEFORE: OnceLock<Vec<(String, u32, i64, u64)>> = OnceLock::new();
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let before = BEFORE.get_or_init(make_outside);
    let base = BASE.get_or_init(|| {
        let base = scratch("layer");
        fs::create_dir_all(base.join("d/e")).expect("creating the fuzz base");
        fs::write(base.join("canary"), b"canary").expect("writing the canary");
        base
    });
    let root = base.join("root");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir(&root).expect("creating the layer folder");
    // Read once the layer folder is made: making it changes the base's own
    // mtime, which the listing would take for the layer's doing when the
    // clock's second turns in between (a false alarm seen by scripts/fuzz).
    let base_before = outside_listing(base);
    let _ = layer::unpack_tar(data, &root, "fuzz");
    let after = outside_listing(Path::new(OUTSIDE));
    assert_eq!(&after, before, "the layer changed {OUTSIDE}");
    // Everything of the base but the layer's own folder.
    let outside_root = |list: Vec<(String, u32, i64, u64)>| -> Vec<_> {
        let root = root.display().to_string();
        list.into_iter()
            .filter(|(p, ..)| *p != root && !p.starts_with(&format!("{root}/")))
            .collect()
    };
    let base_after = outside_listing(base);
    assert_eq!(
        outside_root(base_after),
        outside_root(base_before),
        "the layer changed its folder's siblings"
    );
    fs::remove_dir_all(&root).expect("removing the layer folder");
}

/// An OCI image archive (a tar of an OCI layout) imported into an empty store.
pub fn image_archive(data: &[u8]) {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| scratch("archive"));
    let store_dir = base.join("store");
    let _ = fs::remove_dir_all(&store_dir);
    let file = base.join("image.tar");
    fs::File::create(&file)
        .and_then(|mut f| f.write_all(data))
        .expect("writing the archive");
    let store = ImageStore::open(&store_dir).expect("opening the fuzz store");
    if let Ok(images) = store.import(&file, None) {
        for image in &images {
            let _ = store.layer_dirs(image);
        }
    }
    let layout = archive::Layout::open(&file, &base.join("scratch"));
    if let Ok(layout) = layout {
        let _ = layout.index();
        let _ = layout.stem();
    }
    let _ = fs::remove_file(base.join("scratch"));
}

/// A `WWW-Authenticate` challenge from a registry.
pub fn www_authenticate(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = registry::parse_challenge(text);
}

/// A `hosts.toml` (containerd's registry host configuration).
pub fn hosts_toml(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let settings = registry::RegistrySettings::default();
    for name in ["docker.io", "localhost:5000", "[::1]:5000"] {
        let _ = registry::parse_hosts(
            text,
            Path::new("/etc/peapod/certs.d/x/hosts.toml"),
            name,
            &settings,
        );
    }
}

/// A Docker `config.json` of registry credentials.
pub fn docker_config(data: &[u8]) {
    if let Ok(creds) = registry::Credentials::parse(data, Path::new("config.json")) {
        for host in ["docker.io", "registry-1.docker.io", "a.b.example:5000", ""] {
            let _ = creds.for_host(host);
        }
    }
    let Some(text) = text(data) else { return };
    let _ = registry::normalize_host(text);
    if let Ok(file) = serde_yaml_ng::from_str::<registry::RegistryConfigFile>(text) {
        let _ = registry::RegistrySettings::resolve(&file, Default::default());
    }
}

/// A CNI network config (a `.conf` and a `.conflist`).
pub fn cni_config(data: &[u8]) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| scratch("cni"));
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(data) else {
        return;
    };
    if let Ok(list) = cni::config::parse_single(object.clone()) {
        let _ = list.types();
    }
    if let Ok(list) = cni::config::parse_list(object, dir) {
        let _ = list.types();
    }
}

/// A CNI plugin's result (what `ADD` prints).
pub fn cni_result(data: &[u8]) {
    let Ok(value) = serde_json::from_slice(data) else {
        return;
    };
    if let Ok(result) = cni::result::CniResult::parse(&value) {
        let _ = result.pod_ips();
    }
}

/// A request line on a pod supervisor's socket.
pub fn supervisor_request(data: &[u8]) {
    let _ = supervisor::parse_api_request(data);
}

/// A container's output through the line splitter into CRI log records, and
/// those records read back by `pod logs`: text and line ends survive.
pub fn cri_log(data: &[u8]) {
    // The first byte chooses where the stream is cut into reads.
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1) * 64;
    let mut splitter = logs::LineSplitter::default();
    let mut records = vec![];
    for chunk in data.chunks(step) {
        records.extend(splitter.feed(chunk));
    }
    records.extend(splitter.finish());
    let time = chrono::DateTime::from_timestamp(1_700_000_000, 5).expect("a valid time");
    let mut joined = vec![];
    for (full, text) in &records {
        let line = logs::format_record(time, logs::Stream::Stdout, *full, text);
        joined.extend_from_slice(text);
        if *full {
            joined.push(b'\n');
        }
        let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        let record = logs::parse_record(&line).expect("a record we wrote parses");
        assert_eq!(record.full, *full);
        if let Ok(text) = std::str::from_utf8(text) {
            assert_eq!(record.text, text);
        }
    }
    let mut expected = data.to_vec();
    if !expected.is_empty() && expected.last() != Some(&b'\n') {
        expected.push(b'\n');
    }
    assert_eq!(joined, expected, "the records do not add up to the output");
    // Lines of a log file as `pod logs` reads them, whatever wrote them.
    let mut printer = logs::Printer::new(logs::ReadOptions {
        tail: None,
        since: chrono::DateTime::from_timestamp(1_600_000_000, 0),
        timestamps: true,
        limit_bytes: Some(4096),
    });
    let mut out = vec![];
    for line in String::from_utf8_lossy(data).lines() {
        printer.print(line, &mut out).expect("printing to a Vec");
    }
    assert!(out.len() <= 4096, "limit_bytes was passed");
}

/// An HTTP probe's response: head, body (chunked or not) and Location.
pub fn http_response(data: &[u8]) {
    http::fuzz_response(data);
}

/// HPACK header blocks (a gRPC probe's response headers), one after another
/// on one decoder as on one connection.
pub fn hpack(data: &[u8]) {
    let mut decoder = hpack::Decoder::default();
    for block in data.split(|b| *b == 0xff) {
        let _ = decoder.decode(block);
    }
}

/// The frames a gRPC health server answers with.
pub fn grpc_response(data: &[u8]) {
    grpc::fuzz_response(data);
}

/// The static-pod daemon's YAML config file.
pub fn static_config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(file) = serde_yaml_ng::from_str::<static_pods::config::ConfigFile>(text) {
        let _ = static_pods::config::Config::resolve(file, Default::default());
    }
}
