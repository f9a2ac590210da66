//! `peapod static`: the static-pod daemon.

use anyhow::Result;

use super::args::{GlobalOpts, StaticArgs};
use crate::pod::static_pods::config::{Config, ConfigFile, Overrides};
use crate::pod::static_pods::daemon;
use crate::pod::Engine;

pub fn run(g: &GlobalOpts, a: StaticArgs) -> Result<i32> {
    let mut file = match &a.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let network = std::mem::take(&mut file.network);
    let security = std::mem::take(&mut file.security);
    let registry = std::mem::take(&mut file.registry);
    let flags = Overrides {
        manifest_dir: a.manifest_dir,
        node_name: a.node_name,
        rescan_seconds: a.rescan_seconds,
    };
    let config = Config::resolve(file, flags)?;
    // The file's log rotation, unless the flags (or environment) say otherwise.
    let mut pods = a.pods.clone();
    pods.container_log_max_size = pods
        .container_log_max_size
        .or(config.container_log_max_size);
    pods.container_log_max_files = pods
        .container_log_max_files
        .or(config.container_log_max_files);
    let mut settings = super::pod::settings(g, &pods, network, security, registry)?;
    // Image GC: flags, then the file's top-level keys, then its registry section.
    if let Some(high) = a
        .image_gc_high_threshold
        .or(config.image_gc_high_threshold_percent)
    {
        settings.image_gc_high_threshold_percent = high;
    }
    if let Some(low) = a
        .image_gc_low_threshold
        .or(config.image_gc_low_threshold_percent)
    {
        settings.image_gc_low_threshold_percent = low;
    }
    crate::image::GcPolicy::new(
        settings.image_gc_high_threshold_percent,
        settings.image_gc_low_threshold_percent,
    )
    .map_err(anyhow::Error::msg)?;
    // The daemon's node name is the node name of its pods (spec.nodeName).
    settings.node_name = config.node_name.clone();
    let engine = Engine::new(&g.root, settings);
    daemon::run(config, &g.root, engine)?;
    Ok(0)
}
