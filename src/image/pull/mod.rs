//! Pulling an image from a registry into the store.
//!
//! The reference is resolved to a manifest (an index gives this node's platform),
//! then its config and layers are fetched. Each layer streams from the registry
//! through its digest check and decompression straight into a scratch folder, and
//! is moved into `layers/` only once its digest, size and diff_id match; the
//! manifest, the config and the index entry are written last. So an interrupted
//! or refused pull leaves nothing that `image ls` or a later pull takes for
//! complete (see `scratch.rs` for what a killed pull leaves and who sweeps it).
//!
//! Two pulls of one image, in two processes, fetch each blob once: a lock per
//! manifest serializes them (the second finds the image done), and a lock per
//! layer does the same for layers two images share.

pub mod child;
mod platform;
pub mod policy;
mod progress;
mod scratch;

use std::fs;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use child::{PullChild, PullOutcome};
pub use policy::{Decision, Presence, PullBackOff, PullPolicy, WaitingReason};
pub use progress::{for_output, human_size, JsonLines, Lines, Progress, Silent, Terminal};

use super::digest::{self, Digest};
use super::error::{ImageError, Result};
use super::import::image_record;
use super::lastuse;
use super::layer;
use super::manifest::{self, host_architecture, Compression, Descriptor, Document, Kind};
use super::reference::{self, remote_name, RemoteName};
use super::registry::{Client, RegistrySettings, MAX_CONFIG};
use super::store::{write_atomic, ImageStore};
use super::Image;
use crate::error::Context;
use progress::{Counting, Shared};
use scratch::{KeyLock, Scratch};

/// Layers fetched at once, as containerd's default `max_concurrent_downloads`.
const PARALLEL_LAYERS: usize = 3;

/// Nested indexes deeper than this are refused.
const MAX_INDEX_DEPTH: usize = 4;

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// Compressed bytes of the layers this pull fetched (0 when all were present).
    pub fetched_bytes: u64,
    pub fetched_layers: usize,
    pub elapsed: Duration,
    /// The registry's manifest was already in the store: nothing was fetched.
    pub up_to_date: bool,
}

/// The platform manifest a reference resolves to.
struct Resolved {
    digest: Digest,
    bytes: Vec<u8>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

impl ImageStore {
    /// Pulls `reference` (normalized as containerd does: `busybox` is
    /// `docker.io/library/busybox:latest`) and stores it under its full name.
    pub fn pull(
        &self,
        reference: &str,
        settings: &RegistrySettings,
        progress: &mut (dyn Progress + Send),
    ) -> Result<Pulled> {
        let started = Instant::now();
        let name = remote_name(reference)?;
        let mut client = Client::new(settings, &name)?;
        scratch::sweep(self)?;
        let found = resolve(&mut client, &name)?;
        let store_name = name.store_name();
        progress.resolved(&store_name, &found.digest.to_string());

        let manifest_lock = KeyLock::acquire(self, found.digest.hex())?;
        if let Some(image) = self.complete_image(&found.digest)? {
            let image = self.commit(
                Image {
                    name: store_name,
                    ..image
                },
                &[],
            )?;
            manifest_lock.done();
            return Ok(Pulled {
                image,
                fetched_bytes: 0,
                fetched_layers: 0,
                elapsed: started.elapsed(),
                up_to_date: true,
            });
        }

        manifest::check_config_type(&found.config)?;
        let config_digest = found.config.digest()?;
        let config_bytes = fetch_config(&mut client, &config_digest, found.config.size)?;
        let (image, diff_ids) = image_record(
            store_name,
            &found.digest,
            &found.config,
            &config_bytes,
            &found.layers,
        )?;
        let mut scratch = Scratch::new(self)?;
        scratch.protect(&image.id, &image.name, &image.layers)?;

        let fetched = self.fetch_layers(&client, &scratch, &found.layers, &diff_ids, progress);
        let (fetched_bytes, fetched_layers) = match fetched {
            Ok(counts) => counts,
            Err(e) => {
                // Layers this pull committed and no image uses go too: a refused pull stores nothing.
                drop(scratch);
                let _ = self.collect_garbage_locked();
                return Err(e);
            }
        };

        let blobs = [(found.digest, found.bytes), (config_digest, config_bytes)];
        let image = self.commit(image, &blobs)?;
        drop(scratch);
        manifest_lock.done();
        Ok(Pulled {
            image,
            fetched_bytes,
            fetched_layers,
            elapsed: started.elapsed(),
            up_to_date: false,
        })
    }

    /// Fetches the layers not in the store yet, up to [`PARALLEL_LAYERS`] at a
    /// time (this runs in a pull process of its own, where threads are fine);
    /// returns the bytes and layers fetched. The first error stops the others
    /// taking new layers.
    fn fetch_layers(
        &self,
        client: &Client,
        scratch: &Scratch,
        layers: &[Descriptor],
        diff_ids: &[Digest],
        progress: &mut (dyn Progress + Send),
    ) -> Result<(u64, usize)> {
        let shared = Mutex::new(progress);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let worker = || -> Result<(u64, usize)> {
            let mut client = client.clone();
            let mut progress = Shared(&shared);
            let (mut bytes, mut count) = (0, 0);
            while !failed.load(Ordering::SeqCst) {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((desc, diff_id)) = layers.get(i).zip(diff_ids.get(i)) else {
                    break;
                };
                match self.fetch_if_missing(&mut client, scratch, desc, diff_id, &mut progress) {
                    Ok(true) => {
                        bytes += desc.size;
                        count += 1;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        failed.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
            Ok((bytes, count))
        };
        let results: Vec<Result<(u64, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..PARALLEL_LAYERS.min(layers.len()))
                .map(|_| scope.spawn(worker))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut total = (0, 0);
        for result in results {
            let (bytes, count) = result?;
            total = (total.0 + bytes, total.1 + count);
        }
        Ok(total)
    }

    /// One layer, unless the store has it; true when this pull fetched it.
    fn fetch_if_missing(
        &self,
        client: &mut Client,
        scratch: &Scratch,
        desc: &Descriptor,
        diff_id: &Digest,
        progress: &mut dyn Progress,
    ) -> Result<bool> {
        let compression = manifest::layer_compression(desc)?;
        if self.layer_dir(diff_id).is_dir() {
            progress.layer_present(&desc.digest);
            return Ok(false);
        }
        let lock = KeyLock::acquire(self, diff_id.hex())?;
        // Another pull may have brought it while we waited.
        if self.layer_dir(diff_id).is_dir() {
            lock.done();
            progress.layer_present(&desc.digest);
            return Ok(false);
        }
        self.fetch_layer(client, scratch, desc, compression, diff_id, progress)?;
        lock.done();
        Ok(true)
    }

    /// An image of the store with this manifest whose layers are all there.
    fn complete_image(&self, manifest: &Digest) -> Result<Option<Image>> {
        let wanted = manifest.to_string();
        for image in self.load()? {
            if image.manifest_digest == wanted && self.layer_dirs(&image).is_ok() {
                return Ok(Some(image));
            }
        }
        Ok(None)
    }

    /// Streams one layer into the scratch folder, checks it, and moves it into the store.
    fn fetch_layer(
        &self,
        client: &mut Client,
        scratch: &Scratch,
        desc: &Descriptor,
        compression: Compression,
        diff_id: &Digest,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let digest = desc.digest()?;
        let dir = scratch
            .dir()
            .join(format!("layer-{}", &diff_id.hex()[..12]));
        progress.layer_started(&desc.digest, desc.size);
        let started = Instant::now();
        let (body, length) = client.blob(&digest)?;
        if let Some(length) = length.filter(|l| *l != desc.size) {
            return Err(ImageError::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: length,
            });
        }
        let reader = Counting {
            inner: body,
            progress: &mut *progress,
            digest: &desc.digest,
            size: desc.size,
            done: 0,
        };
        layer::unpack_new(reader, &digest, desc.size, compression, &dir, diff_id)?;
        {
            // Garbage collection runs under the store lock: the layer appears between two runs,
            // already covered by this pull's use record.
            let _lock = self.lock()?;
            let target = self.layer_dir(diff_id);
            fs::rename(&dir, &target)
                .context(|| format!("moving a layer into {}", target.display()))?;
        }
        progress.layer_done(&desc.digest, desc.size, started.elapsed());
        Ok(())
    }

    /// Writes the blobs and names the image, all at once under the store lock.
    fn commit(&self, image: Image, blobs: &[(Digest, Vec<u8>)]) -> Result<Image> {
        {
            let _lock = self.lock()?;
            self.layer_dirs(&image)?;
            for (digest, bytes) in blobs {
                let path = self.blob_path(digest);
                if !path.exists() {
                    write_atomic(&path, bytes)?;
                }
            }
            let mut images = self.load()?;
            images.retain(|i| i.name != image.name);
            images.push(image.clone());
            self.save(&images)?;
            // A tag moved to new content may leave the old image's layers unused.
            self.collect_garbage(&images)?;
        }
        lastuse::touch(self.root(), &image.id)?;
        Ok(image)
    }
}

/// Removes what killed pulls left behind (their folders and use records).
pub(crate) fn sweep_dead_pulls(store: &ImageStore) -> Result<()> {
    scratch::sweep(store)
}

impl ImageStore {
    /// What the store holds for a pod's image reference, by the rules of
    /// [`policy`]: a short name found under `localhost/`, or a name given as
    /// `localhost/...`, is an imported image: no registry stands behind that
    /// domain, so no policy pulls it (as podman treats `localhost/`).
    pub fn presence(&self, image: &str) -> Result<(Presence, Option<Image>)> {
        match self.resolve(image) {
            Ok(found) => {
                let short = !reference::has_registry(image)?;
                let local = short || image.starts_with("localhost/");
                let presence = if local && found.name.starts_with("localhost/") {
                    Presence::LocalShortName
                } else {
                    Presence::Present
                };
                Ok((presence, Some(found)))
            }
            Err(ImageError::NotFound { .. }) => Ok((Presence::Absent, None)),
            Err(e) => Err(e),
        }
    }
}

/// The reference's manifest, following indexes to this node's platform.
fn resolve(client: &mut Client, name: &RemoteName) -> Result<Resolved> {
    let mut fetched = client.manifest(name.reference())?;
    for depth in 0..=MAX_INDEX_DEPTH {
        let shown = fetched.digest.to_string();
        let document = Document::parse(&fetched.bytes, "manifest", &shown)?;
        match document.kind("manifest", &shown)? {
            Kind::Manifest { config, layers } => {
                return Ok(Resolved {
                    digest: fetched.digest,
                    bytes: fetched.bytes,
                    config,
                    layers,
                })
            }
            Kind::Index(_) if depth == MAX_INDEX_DEPTH => break,
            Kind::Index(children) => {
                let child = platform::pick(&children).ok_or_else(|| ImageError::NoPlatform {
                    what: "index",
                    digest: shown.clone(),
                    wanted: format!("linux/{}", host_architecture()),
                    available: platform::offered(&children),
                })?;
                let child_digest = child.digest()?;
                let next = client.manifest(&child_digest.to_string())?;
                if next.bytes.len() as u64 != child.size {
                    return Err(ImageError::SizeMismatch {
                        digest: child.digest.clone(),
                        expected: child.size,
                        actual: next.bytes.len() as u64,
                    });
                }
                fetched = next;
            }
        }
    }
    Err(ImageError::InvalidDocument {
        what: "index",
        digest: name.store_name(),
        reason: "indexes are nested too deeply".to_string(),
    })
}

/// The config blob, read whole and checked.
fn fetch_config(client: &mut Client, digest: &Digest, size: u64) -> Result<Vec<u8>> {
    if size > MAX_CONFIG {
        return Err(ImageError::InvalidDocument {
            what: "config",
            digest: digest.to_string(),
            reason: format!("{size} bytes is too big for an image config"),
        });
    }
    let (body, _) = client.blob(digest)?;
    let mut reader = digest::Digester::new(body.take(size + 1));
    let mut bytes = Vec::with_capacity(size as usize);
    reader
        .read_to_end(&mut bytes)
        .context(|| format!("config {digest}: reading"))?;
    let (_, actual, count) = reader.finish();
    digest::verify(digest, size, &actual, count)?;
    Ok(bytes)
}
