//! The kubelet's image garbage collection for this node's pods: every
//! [`PERIOD`] (the kubelet's ImageGCPeriod) and after a pod is removed, the
//! static daemon removes unused images, least recently used first, once disk
//! use reaches imageGCHighThresholdPercent, down to imageGCLowThresholdPercent
//! (`image::gc`). The image of every pod in the store is kept, whether its
//! container runs, waits or backs off, and so is the sandbox's.

use std::time::Duration;

use super::settings::{Settings, PAUSE_IMAGE};
use super::store::PodStore;
use crate::image::{Collected, ImageError, ImageStore};

/// The kubelet's ImageGCPeriod.
pub const PERIOD: Duration = Duration::from_secs(300);

/// What no collection may remove: the sandbox's image, and each pod's
/// images, by the reference it gives and by the id it runs (a tag moved
/// since still leaves the old image in use).
pub fn pinned(pods: &PodStore) -> Vec<String> {
    let mut pinned = vec![PAUSE_IMAGE.to_string()];
    for (folder, pod) in pods.list() {
        for c in pod.init_containers.iter().chain(&pod.containers) {
            pinned.push(c.image.clone());
        }
        if let Ok(images) = folder.images() {
            pinned.extend(images.into_values().map(|image| image.id));
        }
    }
    pinned.sort();
    pinned.dedup();
    pinned
}

/// One collection of the image store the settings name.
pub fn collect(pods: &PodStore, settings: &Settings) -> Result<Collected, ImageError> {
    let store = ImageStore::open(&settings.image_store)?;
    let pinned = pinned(pods);
    let pinned: Vec<&str> = pinned.iter().map(String::as_str).collect();
    store.collect_images(settings.image_gc(), &pinned)
}
