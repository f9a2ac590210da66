//! Which manifest of an image index this node runs: linux, this architecture,
//! and the best variant, as containerd's platform matcher orders them.

use crate::image::manifest::{self, host_architecture, Descriptor, Platform};

/// Variants this node runs, best first ("" stands for none given).
fn host_variants(arch: &str) -> &'static [&'static str] {
    match arch {
        "arm64" => &["v8", ""],
        // An arm node is taken to be v7, the usual 32-bit board; it also runs v6 and v5.
        "arm" => &["v7", "", "v6", "v5"],
        "amd64" => &["", "v1", "v2", "v3"],
        _ => &[""],
    }
}

/// The rank of a platform for `arch` (lower is better), None if it cannot run here.
pub(crate) fn rank(platform: &Platform, arch: &str) -> Option<usize> {
    if platform.os != "linux" || platform.architecture != arch {
        return None;
    }
    let variant = platform.variant.as_deref().unwrap_or("");
    let variants = host_variants(arch);
    match variants.iter().position(|v| *v == variant) {
        Some(rank) => Some(rank),
        // A variant we do not know of is tried last rather than refused.
        None if !matches!(arch, "arm") => Some(variants.len()),
        None => None,
    }
}

/// The child of an index for this node; an index without any platform gives
/// its first manifest.
pub(crate) fn pick(children: &[Descriptor]) -> Option<&Descriptor> {
    pick_for(children, host_architecture())
}

pub(crate) fn pick_for<'a>(children: &'a [Descriptor], arch: &str) -> Option<&'a Descriptor> {
    let usable = children
        .iter()
        .filter(|d| manifest::is_index_or_manifest(&d.media_type));
    if children.iter().all(|d| d.platform.is_none()) {
        return usable.into_iter().next();
    }
    usable
        .filter_map(|d| Some((rank(d.platform.as_ref()?, arch)?, d)))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, d)| d)
}

/// What an index offers, for an error message.
pub(crate) fn offered(children: &[Descriptor]) -> String {
    children
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.describe()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(n: u8, os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", char::from(b'0' + n).to_string().repeat(64)),
            size: 1,
            annotations: None,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    #[test]
    fn the_host_platform_and_best_variant_win() {
        let index = vec![
            desc(1, "linux", "arm", Some("v6")),
            desc(2, "linux", "arm", Some("v7")),
            desc(3, "linux", "arm64", Some("v8")),
            desc(4, "linux", "amd64", None),
            desc(5, "windows", "amd64", None),
            desc(6, "unknown", "unknown", None),
            desc(7, "linux", "s390x", None),
        ];
        let pick = |arch| pick_for(&index, arch).map(|d| d.digest.as_bytes()[7]);
        assert_eq!(pick("amd64"), Some(b'4'));
        assert_eq!(pick("arm64"), Some(b'3'));
        assert_eq!(pick("arm"), Some(b'2'), "v7 before v6");
        assert_eq!(pick("s390x"), Some(b'7'));
        assert_eq!(pick("riscv64"), None);
        assert!(offered(&index).contains("linux/arm/v7"));

        // amd64: no variant first, then v1..v3; arm64 takes one without a variant.
        let index = vec![
            desc(1, "linux", "amd64", Some("v3")),
            desc(2, "linux", "amd64", Some("v2")),
        ];
        assert_eq!(
            pick_for(&index, "amd64").unwrap().digest.as_bytes()[7],
            b'2'
        );
        let index = vec![desc(1, "linux", "arm64", None)];
        assert!(pick_for(&index, "arm64").is_some());
        let index = vec![desc(1, "linux", "arm", Some("v8"))];
        assert!(
            pick_for(&index, "arm").is_none(),
            "arm v8 is not a 32-bit variant we run"
        );

        // No platforms at all: the first manifest.
        let mut plain = desc(9, "linux", "amd64", None);
        plain.platform = None;
        assert_eq!(
            pick_for(&[plain], "arm64").unwrap().digest.as_bytes()[7],
            b'9'
        );
    }
}
