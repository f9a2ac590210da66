//! Importing an OCI image layout: every image its index.json lists is read and
//! verified first, then its new layers are unpacked into `tmp/` and only moved into
//! `layers/` once all of them are verified, then the blobs and the index are written.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::archive::Layout;
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::layer;
use super::manifest::{
    self, host_architecture, Compression, ConfigFile, Descriptor, Document, Kind,
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
use super::reference::{canonical_name, LOCAL_DOMAIN};
use super::store::{write_atomic, ImageStore};
use super::Image;
use crate::error::Context;

/// Nested indexes deeper than this are refused (a loop would never end otherwise).
const MAX_INDEX_DEPTH: usize = 4;

/// One image of the archive, read and verified, not yet in the store.
struct Plan {
    image: Image,
    manifest: (Digest, Vec<u8>),
    config: (Digest, Vec<u8>),
    layers: Vec<PlannedLayer>,
}

struct PlannedLayer {
    blob: Digest,
    size: u64,
    compression: Compression,
    diff_id: Digest,
}

/// A manifest reached from index.json, maybe through nested indexes.
struct Found {
    digest: Digest,
    bytes: Vec<u8>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

impl ImageStore {
    /// Imports an OCI image archive (a tar, maybe gzipped) or an OCI layout folder.
    ///
    /// Every manifest index.json lists is imported; a platform index gives the
    /// manifest for linux and this host's architecture. The name is `name` when
    /// given (then the archive must hold one image), else the manifest's
    /// `io.containerd.image.name` annotation, else `localhost/<archive stem>:<ref>`
    /// from `org.opencontainers.image.ref.name`. An existing image of that name is
    /// replaced.
    pub fn import(&self, source: &Path, name: Option<&str>) -> Result<Vec<Image>> {
        let _lock = self.lock()?;
        self.clear_tmp()?;
        let imported = self.import_locked(source, name);
        if imported.is_err() {
            // Staged layers and the decompressed archive: a failed import leaves nothing.
            let _ = self.clear_tmp();
        }
        imported
    }

    fn import_locked(&self, source: &Path, name: Option<&str>) -> Result<Vec<Image>> {
        let layout = Layout::open(source, &self.tmp_path("archive"))?;
        let plans = plan(&layout, name)?;

        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut seen = HashSet::new();
        for plan in &plans {
            for planned in &plan.layers {
                let target = self.layer_dir(&planned.diff_id);
                if target.is_dir() || !seen.insert(planned.diff_id.clone()) {
                    continue;
                }
                let dir = self.tmp_path(&format!("layer-{}", &planned.diff_id.hex()[..12]));
                let blob = layout.blob(&planned.blob, planned.size)?;
                layer::unpack_new(
                    blob,
                    &planned.blob,
                    planned.size,
                    planned.compression,
                    &dir,
                    &planned.diff_id,
                )?;
                staged.push((dir, target));
            }
        }
        for (dir, target) in staged {
            fs::rename(&dir, &target)
                .context(|| format!("moving a layer into {}", target.display()))?;
        }

        let mut images = self.load()?;
        for plan in &plans {
            for (digest, bytes) in [&plan.manifest, &plan.config] {
                let path = self.blob_path(digest);
                if !path.exists() {
                    write_atomic(&path, bytes)?;
                }
            }
            images.retain(|i| i.name != plan.image.name);
            images.push(plan.image.clone());
        }
        self.save(&images)?;
        // A name moved to a new image may leave the old one's layers unused.
        self.collect_garbage(&images)?;
        Ok(plans.into_iter().map(|p| p.image).collect())
    }
}

/// Reads and verifies everything but the layers, and names each image.
fn plan(layout: &Layout, name: Option<&str>) -> Result<Vec<Plan>> {
    let origin = layout.origin().display().to_string();
    let index_bytes = layout.index()?;
    let index = Document::parse(&index_bytes, "index", &format!("{origin}/index.json"))?;
    let Kind::Index(descriptors) = index.kind("index", "index.json")? else {
        return Err(ImageError::InvalidLayout {
            path: layout.origin().to_path_buf(),
            reason: "index.json is a manifest, not an index".to_string(),
        });
    };
    let given = name.map(canonical_name).transpose()?;

    let mut plans: Vec<Plan> = Vec::new();
    let mut other_platforms = Vec::new();
    for desc in &descriptors {
        if !manifest::is_index_or_manifest(&desc.media_type) {
            return Err(ImageError::UnsupportedMediaType {
                what: "manifest",
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
            });
        }
        if let Some(platform) = desc.platform.as_ref().filter(|p| !p.is_host()) {
            other_platforms.push(platform.describe());
            continue;
        }
        let found = find_manifest(layout, desc, 0)?;
        let name = match &given {
            Some(name) => name.clone(),
            None => image_name(layout, desc, &found.digest)?,
        };
        let plan = plan_image(layout, name, found)?;
        match plans.iter().find(|p| p.image.name == plan.image.name) {
            // The same manifest listed twice under one name is one image.
            Some(same) if same.image.manifest_digest == plan.image.manifest_digest => {}
            Some(_) => {
                let reason = if given.is_some() {
                    "a name was given, but the archive holds several images".to_string()
                } else {
                    format!("two different images are named {}", plan.image.name)
                };
                return Err(ImageError::Naming {
                    archive: layout.origin().to_path_buf(),
                    reason,
                });
            }
            None => plans.push(plan),
        }
    }
    if plans.is_empty() {
        if !other_platforms.is_empty() {
            return Err(ImageError::NoPlatform {
                what: "archive",
                digest: origin,
                wanted: format!("linux/{}", host_architecture()),
                available: other_platforms.join(", "),
            });
        }
        return Err(ImageError::InvalidLayout {
            path: layout.origin().to_path_buf(),
            reason: "index.json lists no image".to_string(),
        });
    }
    Ok(plans)
}

/// The manifest `desc` names, following nested indexes to this host's platform.
fn find_manifest(layout: &Layout, desc: &Descriptor, depth: usize) -> Result<Found> {
    let digest = desc.digest()?;
    let bytes = layout.read_document(&digest, desc.size)?;
    let doc = Document::parse(&bytes, "manifest", &desc.digest)?;
    match doc.kind("manifest", &desc.digest)? {
        Kind::Manifest { config, layers } => Ok(Found {
            digest,
            bytes,
            config,
            layers,
        }),
        Kind::Index(children) => {
            if depth >= MAX_INDEX_DEPTH {
                return Err(ImageError::InvalidDocument {
                    what: "index",
                    digest: desc.digest.clone(),
                    reason: "indexes are nested too deeply".to_string(),
                });
            }
            let child = pick_platform(&desc.digest, &children)?;
            find_manifest(layout, child, depth + 1)
        }
    }
}

/// linux/<host architecture> from a platform index; an index without platforms
/// gives its first manifest.
fn pick_platform<'a>(digest: &str, children: &'a [Descriptor]) -> Result<&'a Descriptor> {
    let usable = || {
        children
            .iter()
            .filter(|d| manifest::is_index_or_manifest(&d.media_type))
    };
    let picked = if children.iter().all(|d| d.platform.is_none()) {
        usable().next()
    } else {
        usable().find(|d| d.platform.as_ref().is_some_and(|p| p.is_host()))
    };
    picked.ok_or_else(|| ImageError::NoPlatform {
        what: "index",
        digest: digest.to_string(),
        wanted: format!("linux/{}", host_architecture()),
        available: children
            .iter()
            .filter_map(|d| d.platform.as_ref().map(|p| p.describe()))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn image_name(layout: &Layout, desc: &Descriptor, manifest: &Digest) -> Result<String> {
    if let Some(name) = desc.annotation(ANNOTATION_IMAGE_NAME) {
        return canonical_name(name);
    }
    if let Some(reference) = desc.annotation(ANNOTATION_REF_NAME) {
        // The annotation is either a whole name or, as usual, just the tag.
        if reference.contains(['/', ':', '@']) {
            return canonical_name(reference);
        }
        return canonical_name(&format!("{LOCAL_DOMAIN}/{}:{reference}", layout.stem()));
    }
    Err(ImageError::NoName {
        archive: layout.origin().to_path_buf(),
        digest: manifest.to_string(),
    })
}

fn plan_image(layout: &Layout, name: String, found: Found) -> Result<Plan> {
    manifest::check_config_type(&found.config)?;
    let config_digest = found.config.digest()?;
    let config_bytes = layout.read_document(&config_digest, found.config.size)?;
    let (image, diff_ids) = image_record(
        name,
        &found.digest,
        &found.config,
        &config_bytes,
        &found.layers,
    )?;
    let mut layers = Vec::with_capacity(found.layers.len());
    for (desc, diff_id) in found.layers.iter().zip(diff_ids) {
        layers.push(PlannedLayer {
            blob: desc.digest()?,
            size: desc.size,
            compression: manifest::layer_compression(desc)?,
            diff_id,
        });
    }
    Ok(Plan {
        image,
        manifest: (found.digest, found.bytes),
        config: (config_digest, config_bytes),
        layers,
    })
}

/// The store's record of the image a manifest describes, from its verified
/// config, and the layers' diff_ids (one per layer, checked). Import and pull
/// both name their images with it.
pub(crate) fn image_record(
    name: String,
    manifest: &Digest,
    config: &Descriptor,
    config_bytes: &[u8],
    layers: &[Descriptor],
) -> Result<(Image, Vec<Digest>)> {
    let parsed = ConfigFile::parse(config_bytes, &config.digest)?;
    let diff_ids = parsed.diff_ids(&config.digest)?;
    if diff_ids.len() != layers.len() {
        return Err(ImageError::InvalidDocument {
            what: "manifest",
            digest: manifest.to_string(),
            reason: format!(
                "lists {} layers but its config {} has {} diff_ids",
                layers.len(),
                config.digest,
                diff_ids.len()
            ),
        });
    }
    let image = Image {
        config: parsed.image_config(&name),
        name,
        id: config.digest()?.to_string(),
        manifest_digest: manifest.to_string(),
        layers: diff_ids.iter().map(|d| d.to_string()).collect(),
        size: config.size + layers.iter().map(|l| l.size).sum::<u64>(),
        created: parsed.created.clone(),
    };
    Ok((image, diff_ids))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::image::fixture::{self, annotated, named, with_platform, LayerTar, OciLayout};

    fn layer(name: &str) -> Vec<u8> {
        LayerTar::new()
            .dir("etc", 0o755)
            .file(&format!("etc/{name}"), name.as_bytes(), 0o644)
            .build()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn imports_a_tar_a_gzipped_tar_and_a_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let base = layer("base");
        let mut layout = OciLayout::new();
        let manifest = layout.image(
            &[base.clone(), layer("top")],
            true,
            json!({"Entrypoint": ["/bin/app"], "Cmd": ["--flag"], "Env": ["A=1"], "WorkingDir": "/srv", "User": "1000:1000", "StopSignal": "SIGQUIT"}),
        );
        layout.index(vec![named(manifest.clone(), "example.com/team/app:v1")]);

        let tar = layout.write_tar(&tmp.path().join("app.tar"));
        let images = store.import(&tar, None).unwrap();
        assert_eq!(images.len(), 1);
        let image = &images[0];
        assert_eq!(image.name, "example.com/team/app:v1");
        assert_eq!(image.manifest_digest, manifest["digest"].as_str().unwrap());
        assert_eq!(image.layers.len(), 2);
        assert_eq!(
            image.layers[0],
            Digest::of(&base).to_string(),
            "diff_ids, bottom first"
        );
        assert_eq!(image.config.entrypoint, vec!["/bin/app"]);
        assert_eq!(image.config.cmd, vec!["--flag"]);
        assert_eq!(image.config.env, vec!["A=1"]);
        assert_eq!(image.config.working_dir.as_deref(), Some("/srv"));
        assert_eq!(image.config.user.as_deref(), Some("1000:1000"));
        assert_eq!(image.config.stop_signal, nix::sys::signal::Signal::SIGQUIT);
        assert_eq!(image.created.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert!(image.size > 0);
        assert_eq!(store.list().unwrap(), images);
        let dirs = store.layer_dirs(image).unwrap();
        assert_eq!(fs::read(dirs[0].join("etc/base")).unwrap(), b"base");
        assert_eq!(fs::read(dirs[1].join("etc/top")).unwrap(), b"top");
        assert!(store
            .blob_path(&Digest::parse(&image.id).unwrap())
            .is_file());

        let gz = tmp.path().join("app.tar.gz");
        fs::write(&gz, fixture::gzip(&layout.tar_bytes())).unwrap();
        let again = store.import(&gz, Some("app:gz")).unwrap();
        assert_eq!(again[0].name, "localhost/app:gz");
        assert_eq!(again[0].id, image.id);

        let dir = layout.write_dir(&tmp.path().join("layout"));
        let from_dir = store.import(&dir, Some("localhost/app-dir")).unwrap();
        assert_eq!(from_dir[0].name, "localhost/app-dir:latest");
        assert_eq!(store.list().unwrap().len(), 3);
        assert_eq!(
            entries(&store.root().join("layers")).len(),
            2,
            "layers are shared"
        );
        assert!(entries(&store.tmp_dir()).is_empty(), "no scratch left");
    }

    #[test]
    fn digest_mismatch_is_refused_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let mut layout = OciLayout::new();
        // Uncompressed, so the tampered tar still parses: only the digest can tell.
        let manifest = layout.image(&[layer("good"), layer("bad")], false, json!({}));
        layout.index(vec![named(manifest, "tampered")]);
        let bad = Digest::of(&layer("bad"));
        let blob = layout
            .files
            .get_mut(&format!("blobs/sha256/{}", bad.hex()))
            .unwrap();
        let at = blob.windows(3).position(|w| w == b"bad").unwrap();
        blob[at..at + 3].copy_from_slice(b"BAD");
        let tar = layout.write_tar(&tmp.path().join("tampered.tar"));

        let err = store.import(&tar, None).unwrap_err();
        match &err {
            ImageError::DigestMismatch { digest, .. } => assert_eq!(digest, &bad.to_string()),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(&bad.to_string()), "{err}");
        assert!(store.list().unwrap().is_empty());
        for dir in ["layers", "blobs/sha256", "tmp", "uses"] {
            assert!(
                entries(&store.root().join(dir)).is_empty(),
                "{dir} is not empty"
            );
        }

        // A config whose bytes do not match its digest is refused the same way.
        let mut layout = OciLayout::new();
        let manifest = layout.image(&[layer("x")], true, json!({}));
        layout.index(vec![named(manifest, "badconfig")]);
        let config = layout
            .files
            .iter_mut()
            .find(|(_, v)| v.starts_with(b"{\"architecture\""))
            .unwrap()
            .1;
        config[2] = b'A';
        let err = store
            .import(&layout.write_dir(&tmp.path().join("badconfig")), None)
            .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
        assert!(entries(&store.root().join("layers")).is_empty());
    }

    #[test]
    fn names_come_from_the_argument_or_the_annotations() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let mut layout = OciLayout::new();
        let one = layout.image(&[layer("one")], true, json!({"Cmd": ["one"]}));
        let two = layout.image(&[layer("two")], true, json!({"Cmd": ["two"]}));
        layout.index(vec![
            annotated(one.clone(), "org.opencontainers.image.ref.name", "1.0"),
            annotated(
                two.clone(),
                "org.opencontainers.image.ref.name",
                "quay.io/x/two:2",
            ),
        ]);
        let tar = layout.write_tar(&tmp.path().join("Tools.tar"));
        let names: Vec<String> = store
            .import(&tar, None)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["localhost/tools:1.0", "quay.io/x/two:2"]);

        match store.import(&tar, Some("both")) {
            Err(ImageError::Naming { reason, .. }) => {
                assert!(reason.contains("several images"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        layout.index(vec![one]);
        let unnamed = layout.write_tar(&tmp.path().join("unnamed.tar"));
        let err = store.import(&unnamed, None).unwrap_err();
        assert!(matches!(err, ImageError::NoName { .. }), "{err:?}");
        assert!(err.to_string().contains("unnamed.tar"), "{err}");
        assert_eq!(
            store.import(&unnamed, Some("given")).unwrap()[0].name,
            "localhost/given:latest"
        );
    }

    #[test]
    fn a_platform_index_gives_the_host_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let other_arch = if host_architecture() == "s390x" {
            "arm64"
        } else {
            "s390x"
        };
        let mut layout = OciLayout::new();
        let foreign = layout.image(&[layer("foreign")], true, json!({"Cmd": ["foreign"]}));
        let native = layout.image(&[layer("native")], true, json!({"Cmd": ["native"]}));
        let attestation = with_platform(layout.image(&[], true, json!({})), "unknown", "unknown");
        let nested = layout.nested_index(vec![
            with_platform(foreign.clone(), "linux", other_arch),
            with_platform(native, "linux", host_architecture()),
            attestation,
        ]);
        layout.index(vec![named(nested, "multi:1")]);
        let images = store
            .import(&layout.write_dir(&tmp.path().join("multi")), None)
            .unwrap();
        assert_eq!(images[0].name, "localhost/multi:1");
        assert_eq!(images[0].config.cmd, vec!["native"]);

        let mut layout = OciLayout::new();
        let foreign = layout.image(&[layer("foreign")], true, json!({}));
        let nested = layout.nested_index(vec![with_platform(foreign, "linux", other_arch)]);
        layout.index(vec![named(nested.clone(), "foreign")]);
        let err = store
            .import(&layout.write_dir(&tmp.path().join("foreign")), None)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(nested["digest"].as_str().unwrap()) && msg.contains(other_arch),
            "{msg}"
        );
    }

    #[test]
    fn a_shared_layer_is_unpacked_once() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let shared = layer("shared");
        let mut layout = OciLayout::new();
        let a = layout.image(&[shared.clone(), layer("a")], true, json!({}));
        // The same layer uncompressed: same diff_id, so the same unpacked folder.
        let b = layout.image(&[shared.clone(), layer("b")], false, json!({}));
        layout.index(vec![named(a, "a"), named(b, "b")]);
        let images = store
            .import(&layout.write_tar(&tmp.path().join("ab.tar")), None)
            .unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(entries(&store.root().join("layers")).len(), 3);
        let shared_dir = store.layer_dir(&Digest::of(&shared));
        assert_eq!(store.layer_dirs(&images[1]).unwrap()[0], shared_dir);

        // Not unpacked again: a mark left in the folder survives the next import.
        fs::write(shared_dir.join("mark"), b"").unwrap();
        let c = fixture::archive(tmp.path(), "c.tar", "c", &[shared.clone(), layer("c")]);
        store.import(&c, None).unwrap();
        assert!(shared_dir.join("mark").exists());
        assert_eq!(entries(&store.root().join("layers")).len(), 4);
    }
}
