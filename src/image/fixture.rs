//! Test fixtures: layer tars and OCI image layouts built in memory, digests computed.
//! Public for the integration tests (root-only: unpacking owners and device nodes,
//! overlay mounts), which reach the crate from outside.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use serde_json::{json, Value};
use tar::{EntryType, Header};

use super::digest::Digest;
use super::manifest::host_architecture;

pub const MTIME: u64 = 1_700_000_000;
pub const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A layer tar, entry by entry.
pub struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
    /// Who owns the entries that name no owner: the user running the test (0:0 for
    /// root), so that unpacking them needs no privilege.
    uid: u64,
    gid: u64,
}

impl LayerTar {
    pub fn new() -> Self {
        LayerTar {
            builder: tar::Builder::new(Vec::new()),
            uid: nix::unistd::geteuid().as_raw().into(),
            gid: nix::unistd::getegid().as_raw().into(),
        }
    }

    fn header(&self, kind: EntryType, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(MTIME);
        h.set_size(0);
        h
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = self.header(EntryType::Directory, mode);
        self.builder.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    pub fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        let (uid, gid) = (self.uid, self.gid);
        self.file_as(path, data, mode, uid, gid)
    }

    pub fn file_as(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = self.header(EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(data.len() as u64);
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = self.header(EntryType::Symlink, 0o777);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = self.header(EntryType::Link, 0o644);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn char_dev(mut self, path: &str, major: u32, minor: u32) -> Self {
        let mut h = self.header(EntryType::Char, 0o666);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.builder.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    pub fn fifo(mut self, path: &str) -> Self {
        let mut h = self.header(EntryType::Fifo, 0o640);
        self.builder.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    /// PAX records for the next entry (e.g. `SCHILY.xattr.user.x`).
    pub fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let mut h = self.header(EntryType::XHeader, 0o644);
        h.set_path("PaxHeaders/entry").unwrap();
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.builder.append(&h, &data[..]).unwrap();
        self
    }

    /// An entry whose name and link are written as given, past the tar crate's checks.
    pub fn raw(mut self, name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Self {
        let mut h = self.header(kind, 0o644);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn build(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// An OCI image layout in memory: file name -> content.
pub struct OciLayout {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl OciLayout {
    pub fn new() -> Self {
        let mut files = BTreeMap::new();
        files.insert(
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        );
        OciLayout { files }
    }

    /// Stores a blob and returns its descriptor.
    pub fn blob(&mut self, bytes: Vec<u8>, media_type: &str) -> Value {
        let digest = Digest::of(&bytes);
        let desc =
            json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()});
        self.files
            .insert(format!("blobs/sha256/{}", digest.hex()), bytes);
        desc
    }

    /// An image of these layer tars (bottom first) and this `config` section;
    /// returns the manifest's descriptor.
    pub fn image(&mut self, layers: &[Vec<u8>], gzipped: bool, config: Value) -> Value {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for tar in layers {
            diff_ids.push(Digest::of(tar).to_string());
            descs.push(if gzipped {
                self.blob(gzip(tar), MT_LAYER_GZIP)
            } else {
                self.blob(tar.clone(), MT_LAYER_TAR)
            });
        }
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": host_architecture(),
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = self.blob(serde_json::to_vec(&config).unwrap(), MT_CONFIG);
        let manifest = json!({"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": config, "layers": descs});
        self.blob(serde_json::to_vec(&manifest).unwrap(), MT_MANIFEST)
    }

    /// A nested index blob over `manifests`; returns its descriptor.
    pub fn nested_index(&mut self, manifests: Vec<Value>) -> Value {
        let index = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests});
        self.blob(serde_json::to_vec(&index).unwrap(), MT_INDEX)
    }

    pub fn index(&mut self, manifests: Vec<Value>) {
        let index = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests});
        self.files.insert(
            "index.json".to_string(),
            serde_json::to_vec(&index).unwrap(),
        );
    }

    pub fn tar_bytes(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in &self.files {
            let mut h = Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(bytes.len() as u64);
            h.set_mtime(MTIME);
            builder.append_data(&mut h, name, &bytes[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    pub fn write_tar(&self, path: &Path) -> PathBuf {
        fs::write(path, self.tar_bytes()).unwrap();
        path.to_path_buf()
    }

    pub fn write_dir(&self, dir: &Path) -> PathBuf {
        for (name, bytes) in &self.files {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        }
        dir.to_path_buf()
    }
}

impl Default for OciLayout {
    fn default() -> Self {
        Self::new()
    }
}

pub fn annotated(mut desc: Value, key: &str, value: &str) -> Value {
    desc["annotations"][key] = json!(value);
    desc
}

pub fn named(desc: Value, name: &str) -> Value {
    annotated(desc, "io.containerd.image.name", name)
}

pub fn with_platform(mut desc: Value, os: &str, arch: &str) -> Value {
    desc["platform"] = json!({"os": os, "architecture": arch});
    desc
}

/// A one-image archive `<dir>/<file>` named `name`.
pub fn archive(dir: &Path, file: &str, name: &str, layers: &[Vec<u8>]) -> PathBuf {
    let mut layout = OciLayout::new();
    let manifest = layout.image(layers, true, json!({"Cmd": ["sh"]}));
    layout.index(vec![named(manifest, name)]);
    layout.write_tar(&dir.join(file))
}
