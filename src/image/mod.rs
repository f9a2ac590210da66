//! The image store: OCI image archives imported without a registry, layers unpacked
//! once into a content-addressed store, and an overlayfs root filesystem per container.
//!
//! # API
//!
//! ```text
//! pub const DEFAULT_STORE: &str = "/var/lib/peapod/images";
//!
//! ImageStore::open(root)                -> ImageStore      creates root (0700) and its folders
//! ImageStore::import(source, name)      -> Vec<Image>      OCI archive (.tar, .tar.gz) or OCI layout folder
//! ImageStore::list()                    -> Vec<Image>      sorted by name
//! ImageStore::resolve(reference)        -> Image           name (short or full) or id prefix
//! ImageStore::remove(reference)         -> Image           drops the name, then unused layers and blobs
//! ImageStore::layer_dirs(image)         -> Vec<PathBuf>    unpacked layer folders, bottom first
//! unpack_tar(tar, dest, layer)          -> ()              an uncompressed layer tar into a folder, whiteouts as overlayfs reads them
//! ImageStore::pull(ref, settings, prog) -> Pulled          from a registry (pull/, registry/); own process only
//! ImageStore::presence(ref)             -> Presence        for the kubelet's pull policy (pull/policy.rs)
//! ImageStore::prune(pinned)             -> Collected       every image no container uses
//! ImageStore::collect_images(policy, pinned) -> Collected  LRU images between the GC thresholds
//! pull::child::spawn(bin, refs, ...)    -> PullChild       `peapod image pull --json` as a watched child
//!
//! Rootfs::mount(store, image, dir)      -> Rootfs          overlay at <dir>/rootfs (upper <dir>/upper, work <dir>/work)
//! Rootfs::path()                        -> <dir>/rootfs
//! Rootfs::unmount(dir)                                     idempotent; drops upper, work and the use record
//!
//! Image::config                         -> ImageConfig     what a container takes from the image (config.rs)
//! ```
//!
//! # Store layout
//!
//! ```text
//! <root>/.lock                      flock(2): import, remove, garbage collection and use records
//! <root>/images.json                {"images": [Image, ...]}, replaced atomically (tmp + rename)
//! <root>/blobs/sha256/<hex>         manifests and configs, as imported (verified)
//! <root>/layers/<diff_id hex>/      one unpacked layer: overlay whiteouts and opaque xattrs,
//!                                   named by the digest of its uncompressed tar (diff_id)
//! <root>/uses/<sha256 of dir>.json  one record per mounted rootfs: the layers it stacks
//! <root>/tmp/                       unpacking and decompression scratch, emptied by each import
//! <root>/pulls/<id>/, <id>.lock     a pull's scratch, flocked while it runs (swept once its owner died)
//! <root>/pulls/locks/<hex>.lock     one pull at a time per manifest or layer
//! <root>/lastused/<config hex>      mtime: the image's last use (mount or pull)
//! ```
//!
//! A container folder holds `rootfs/` (the mount point), `upper/`, `work/` and
//! `rootfs.json`, which names the store so that [`Rootfs::unmount`] needs only the folder.
//!
//! Every blob is checked against its descriptor's digest and size while it is read; a
//! layer is unpacked into `tmp/` and renamed into `layers/` only once its digests match,
//! so a failed import leaves nothing behind.

pub(crate) mod archive;
mod config;
mod digest;
mod error;
mod gc;
mod import;
mod lastuse;
pub(crate) mod layer;
pub(crate) mod manifest;
pub mod pull;
pub(crate) mod reference;
pub mod registry;
mod rootfs;
mod store;
mod uses;

pub mod fixture;

use serde::{Deserialize, Serialize};

pub use config::ImageConfig;
pub use error::ImageError;
pub use gc::{
    choose as gc_choose, Candidate, Collected, DiskUsage, GcPolicy, DEFAULT_HIGH_PERCENT,
    DEFAULT_LOW_PERCENT,
};
pub use layer::unpack_tar;
pub use rootfs::{is_mounted, mount_points, IdMap, Rootfs};
pub use store::ImageStore;

/// Where peapod keeps its images unless told otherwise.
pub const DEFAULT_STORE: &str = "/var/lib/peapod/images";

/// An image known to the store under one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Canonical name, e.g. `localhost/busybox:latest`.
    pub name: String,
    /// The config's digest, `sha256:<hex>`.
    pub id: String,
    /// The manifest's digest, `sha256:<hex>`.
    pub manifest_digest: String,
    /// The layers' diff_ids (digests of the uncompressed tars), bottom first.
    pub layers: Vec<String>,
    /// What a container takes from the image.
    pub config: ImageConfig,
    /// Bytes of the image's blobs as imported: the config plus the (compressed) layers.
    pub size: u64,
    /// The config's `created` time (RFC 3339), when it has one.
    pub created: Option<String>,
}
