//! `peapod image …`: the local image store and registry pulls.

use std::path::PathBuf;

use anyhow::Result;

use super::args::{
    GlobalOpts, ImageCommand, ImageGcArgs, ImageImportArgs, ImagePruneArgs, ImagePullArgs,
    ImageRmArgs, RegistryArgs, StoreArg,
};
use crate::image::pull::{self, human_size, PullOutcome};
use crate::image::registry::{RegistryConfigFile, RegistryOverrides, RegistrySettings};
use crate::image::{GcPolicy, ImageStore, DEFAULT_HIGH_PERCENT, DEFAULT_LOW_PERCENT};

/// Kept by prune and GC: the sandbox's image (the kubelet pins it) and the
/// images of every pod under `--root`, whether its containers run or not.
fn pinned(g: &GlobalOpts) -> Vec<String> {
    crate::pod::image_gc::pinned(&crate::pod::store::PodStore::new(&g.root))
}

pub fn dispatch(g: &GlobalOpts, command: ImageCommand) -> Result<i32> {
    match command {
        ImageCommand::Import(a) => import(a),
        ImageCommand::Pull(a) => pull(a),
        ImageCommand::Ls(a) => ls(a),
        ImageCommand::Rm(a) => rm(a),
        ImageCommand::Prune(a) => prune(g, a),
        ImageCommand::Gc(a) => gc(g, a),
    }
}

fn import(a: ImageImportArgs) -> Result<i32> {
    let store = ImageStore::open(&a.store.image_store)?;
    for image in store.import(&a.source, a.name.as_deref())? {
        println!("{} {}", image.name, image.id);
    }
    Ok(0)
}

pub(super) fn config_file(path: Option<&PathBuf>) -> Result<RegistryConfigFile> {
    match path {
        Some(path) => RegistryConfigFile::load(path).map_err(anyhow::Error::msg),
        None => Ok(RegistryConfigFile::default()),
    }
}

/// The store: the flag (or PEAPOD_IMAGE_STORE) unless left at its default and the file names one.
fn store_path(store: &StoreArg, file: &RegistryConfigFile) -> PathBuf {
    match &file.image_store {
        Some(path) if store.image_store.as_os_str() == crate::image::DEFAULT_STORE => path.clone(),
        _ => store.image_store.clone(),
    }
}

pub(super) fn settings(a: &RegistryArgs, file: &RegistryConfigFile) -> Result<RegistrySettings> {
    let overrides = RegistryOverrides {
        insecure: a.insecure_registries.clone(),
        hosts_dir: a.registry_hosts_dir.clone(),
        ca_dir: a.registry_ca_dir.clone(),
        credentials: a.registry_credentials.clone(),
    };
    RegistrySettings::resolve(file, overrides).map_err(anyhow::Error::msg)
}

fn pull(a: ImagePullArgs) -> Result<i32> {
    let file = config_file(a.registry.registry_config.as_ref())?;
    let settings = settings(&a.registry, &file)?;
    let store = ImageStore::open(&store_path(&a.store, &file))?;
    let mut progress = pull::for_output(a.json);
    let mut failed = 0;
    for reference in &a.references {
        match store.pull(reference, &settings, progress.as_mut()) {
            Ok(pulled) => {
                let image = &pulled.image;
                if a.json {
                    let outcome = PullOutcome::Pulled {
                        reference: reference.clone(),
                        name: image.name.clone(),
                        id: image.id.clone(),
                        size: image.size,
                        seconds: pulled.elapsed.as_secs_f64(),
                        up_to_date: pulled.up_to_date,
                    };
                    println!("{}", serde_json::to_string(&outcome)?);
                } else if pulled.up_to_date {
                    println!("{} {} (up to date)", image.name, image.id);
                } else {
                    println!(
                        "{} {} ({} in {:.2}s, {} of {} layers fetched)",
                        image.name,
                        image.id,
                        human_size(pulled.fetched_bytes),
                        pulled.elapsed.as_secs_f64(),
                        pulled.fetched_layers,
                        image.layers.len()
                    );
                }
            }
            Err(e) => {
                failed += 1;
                if a.json {
                    let outcome = PullOutcome::Failed {
                        reference: reference.clone(),
                        error: e.to_string(),
                    };
                    println!("{}", serde_json::to_string(&outcome)?);
                } else if a.references.len() == 1 {
                    return Err(e.into());
                } else {
                    eprintln!("peapod: {reference}: {e}");
                }
            }
        }
    }
    Ok(i32::from(failed > 0))
}

fn ls(a: StoreArg) -> Result<i32> {
    let store = ImageStore::open(&a.image_store)?;
    println!(
        "{:<48} {:<14} {:<14} {:>10}  LAST USED",
        "NAME", "ID", "DIGEST", "SIZE"
    );
    let short = |d: &str| {
        let hex = d.trim_start_matches("sha256:");
        hex[..hex.len().min(12)].to_string()
    };
    for image in store.list()? {
        let last_used = chrono::DateTime::<chrono::Utc>::from(store.last_used(&image));
        println!(
            "{:<48} {:<14} {:<14} {:>10}  {}",
            image.name,
            short(&image.id),
            short(&image.manifest_digest),
            human_size(image.size),
            last_used.format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    Ok(0)
}

fn rm(a: ImageRmArgs) -> Result<i32> {
    let store = ImageStore::open(&a.store.image_store)?;
    let image = store.remove(&a.reference)?;
    println!("removed {}", image.name);
    Ok(0)
}

fn prune(g: &GlobalOpts, a: ImagePruneArgs) -> Result<i32> {
    let store = ImageStore::open(&a.store.image_store)?;
    let pinned = pinned(g);
    let pinned: Vec<&str> = pinned.iter().map(String::as_str).collect();
    let collected = store.prune(&pinned)?;
    for name in &collected.removed {
        println!("removed {name}");
    }
    println!("freed {}", human_size(collected.freed));
    Ok(0)
}

fn gc(g: &GlobalOpts, a: ImageGcArgs) -> Result<i32> {
    let file = config_file(a.registry_config.as_ref())?;
    let policy = GcPolicy::new(
        a.high_threshold
            .or(file.image_gc_high_threshold_percent)
            .unwrap_or(DEFAULT_HIGH_PERCENT),
        a.low_threshold
            .or(file.image_gc_low_threshold_percent)
            .unwrap_or(DEFAULT_LOW_PERCENT),
    )
    .map_err(anyhow::Error::msg)?;
    let policy = match a.minimum_age {
        Some(age) => policy.with_minimum_age(age),
        None => policy,
    };
    let store = ImageStore::open(&store_path(&a.store, &file))?;
    let pinned = pinned(g);
    let pinned: Vec<&str> = pinned.iter().map(String::as_str).collect();
    let collected = store.collect_images(policy, &pinned)?;
    for name in &collected.removed {
        println!("removed {name}");
    }
    println!("freed {}", human_size(collected.freed));
    Ok(0)
}
