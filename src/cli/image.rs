//! `peapod image …`: the local image store.

use anyhow::Result;

use super::args::{ImageCommand, ImageImportArgs, ImageRmArgs, StoreArg};
use crate::image::ImageStore;

pub fn dispatch(command: ImageCommand) -> Result<i32> {
    match command {
        ImageCommand::Import(a) => import(a),
        ImageCommand::Ls(a) => ls(a),
        ImageCommand::Rm(a) => rm(a),
    }
}

fn import(a: ImageImportArgs) -> Result<i32> {
    let store = ImageStore::open(&a.store.image_store)?;
    for image in store.import(&a.source, a.name.as_deref())? {
        println!("{} {}", image.name, image.id);
    }
    Ok(0)
}

fn ls(a: StoreArg) -> Result<i32> {
    let store = ImageStore::open(&a.image_store)?;
    println!("{:<40} {:<20} {:>10}", "NAME", "ID", "SIZE");
    for image in store.list()? {
        let short = image.id.trim_start_matches("sha256:");
        println!(
            "{:<40} {:<20} {:>10}",
            image.name,
            &short[..short.len().min(12)],
            human_size(image.size)
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

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::human_size(512), "512 B");
        assert_eq!(super::human_size(1536), "1.5 KiB");
        assert_eq!(super::human_size(3 << 20), "3.0 MiB");
    }
}
