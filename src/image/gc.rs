//! Removing images nobody uses: `image prune` (all of them) and the kubelet's
//! image garbage collection between a high and a low disk-use threshold
//! (`imageGCHighThresholdPercent`, `imageGCLowThresholdPercent`), least recently
//! used first. An image a live use record names (a mounted rootfs, a pull in
//! progress) or a pinned one (the pause image) is never removed.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::digest::Digest;
use super::error::Result;
use super::store::ImageStore;
use super::{lastuse, pull, uses, Image};
use crate::error::Context;

/// The kubelet's defaults.
pub const DEFAULT_HIGH_PERCENT: u8 = 85;
pub const DEFAULT_LOW_PERCENT: u8 = 80;
/// The kubelet's imageMinimumGCAge: an image used (or stored) more recently is
/// never collected, so a pod about to start keeps the image it was given.
pub const DEFAULT_MINIMUM_AGE: Duration = Duration::from_secs(120);

/// When to collect and down to where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    pub high_percent: u8,
    pub low_percent: u8,
    pub minimum_age: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            high_percent: DEFAULT_HIGH_PERCENT,
            low_percent: DEFAULT_LOW_PERCENT,
            minimum_age: DEFAULT_MINIMUM_AGE,
        }
    }
}

impl GcPolicy {
    /// The kubelet's validation: both within 0-100, low below high (high 100 turns GC off).
    pub fn new(high_percent: u8, low_percent: u8) -> std::result::Result<Self, String> {
        if high_percent > 100 {
            return Err(format!(
                "imageGCHighThresholdPercent: {high_percent}: must be 0-100"
            ));
        }
        if low_percent > 100 {
            return Err(format!(
                "imageGCLowThresholdPercent: {low_percent}: must be 0-100"
            ));
        }
        if low_percent >= high_percent && high_percent != 100 {
            return Err(format!(
                "imageGCLowThresholdPercent ({low_percent}) must be less than imageGCHighThresholdPercent ({high_percent})"
            ));
        }
        Ok(GcPolicy {
            high_percent,
            low_percent,
            minimum_age: DEFAULT_MINIMUM_AGE,
        })
    }

    /// The same thresholds with another minimum age.
    pub fn with_minimum_age(self, minimum_age: Duration) -> Self {
        GcPolicy {
            minimum_age,
            ..self
        }
    }

    /// Bytes to free, when usage has reached the high threshold:
    /// `capacity * (100 - low) / 100 - available`, as the kubelet computes it.
    pub fn bytes_to_free(&self, usage: DiskUsage) -> Option<u64> {
        if usage.capacity == 0 || self.high_percent >= 100 {
            return None;
        }
        let used_percent = 100 - (usage.available as u128 * 100 / usage.capacity as u128) as u64;
        if used_percent < self.high_percent as u64 {
            return None;
        }
        let target = usage.capacity as u128 * (100 - self.low_percent as u128) / 100;
        Some(target.saturating_sub(usage.available as u128) as u64)
    }
}

/// The filesystem holding the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub capacity: u64,
    pub available: u64,
}

impl DiskUsage {
    pub fn of(path: &Path) -> Result<DiskUsage> {
        let st =
            nix::sys::statvfs::statvfs(path).context(|| format!("statfs {}", path.display()))?;
        let unit = st.fragment_size() as u64;
        Ok(DiskUsage {
            capacity: st.blocks() as u64 * unit,
            available: st.blocks_available() as u64 * unit,
        })
    }
}

/// One image (all names of one id) as garbage collection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub names: Vec<String>,
    pub size: u64,
    pub last_used: SystemTime,
    pub in_use: bool,
    pub pinned: bool,
}

/// The images to remove to free `bytes` (None: every removable one), least
/// recently used first, by their recorded sizes.
pub fn choose(candidates: &[Candidate], bytes: Option<u64>) -> Vec<&Candidate> {
    let mut removable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !c.in_use && !c.pinned)
        .collect();
    removable.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.id.cmp(&b.id)));
    let Some(bytes) = bytes else {
        return removable;
    };
    let mut freed = 0;
    removable
        .into_iter()
        .take_while(|c| {
            let more = freed < bytes;
            freed += c.size;
            more
        })
        .collect()
}

/// Whether `c` was last used at least `minimum_age` before `now` (a use
/// record from the future is taken as now).
fn old_enough(c: &Candidate, now: SystemTime, minimum_age: Duration) -> bool {
    minimum_age.is_zero()
        || now
            .duration_since(c.last_used)
            .is_ok_and(|age| age >= minimum_age)
}

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    pub removed: Vec<String>,
    /// Bytes the filesystem gained, measured.
    pub freed: u64,
}

impl ImageStore {
    /// The store's images grouped by id, with their use and last use.
    pub fn gc_candidates(&self, pinned: &[&str]) -> Result<Vec<Candidate>> {
        pull::sweep_dead_pulls(self)?;
        let in_use = uses::images_in_use(self.root())?;
        let pinned_ids: HashSet<String> = pinned
            .iter()
            .filter_map(|p| self.resolve(p).ok())
            .map(|image| image.id)
            .collect();
        let mut by_id: BTreeMap<String, Vec<Image>> = BTreeMap::new();
        for image in self.load()? {
            by_id.entry(image.id.clone()).or_default().push(image);
        }
        Ok(by_id
            .into_iter()
            .map(|(id, images)| Candidate {
                last_used: self.last_used(&images[0]),
                size: images[0].size,
                names: images.iter().map(|i| i.name.clone()).collect(),
                in_use: in_use.contains(&id),
                pinned: pinned_ids.contains(&id),
                id,
            })
            .collect())
    }

    /// When an image was last used: its record, else when its manifest was stored.
    pub fn last_used(&self, image: &Image) -> SystemTime {
        lastuse::get(self.root(), &image.id)
            .or_else(|| {
                let digest = Digest::parse(&image.manifest_digest).ok()?;
                std::fs::metadata(self.blob_path(&digest))
                    .ok()?
                    .modified()
                    .ok()
            })
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// `image prune`: removes every image no container uses, except `pinned`.
    pub fn prune(&self, pinned: &[&str]) -> Result<Collected> {
        let candidates = self.gc_candidates(pinned)?;
        let before = DiskUsage::of(self.root())?;
        let mut removed = Vec::new();
        for candidate in choose(&candidates, None) {
            removed.extend(self.remove_id(&candidate.id)?);
        }
        let after = DiskUsage::of(self.root())?;
        Ok(Collected {
            removed,
            freed: after.available.saturating_sub(before.available),
        })
    }

    /// The kubelet's image GC: nothing below the high threshold; above it,
    /// least recently used images go until the low threshold is reached (measured
    /// after each removal) or nothing removable is left.
    pub fn collect_images(&self, policy: GcPolicy, pinned: &[&str]) -> Result<Collected> {
        let before = DiskUsage::of(self.root())?;
        let Some(wanted) = policy.bytes_to_free(before) else {
            return Ok(Collected::default());
        };
        let mut candidates = self.gc_candidates(pinned)?;
        let now = SystemTime::now();
        candidates.retain(|c| old_enough(c, now, policy.minimum_age));
        let mut removed = Vec::new();
        for candidate in choose(&candidates, None) {
            let now = DiskUsage::of(self.root())?;
            if now.available.saturating_sub(before.available) >= wanted {
                break;
            }
            removed.extend(self.remove_id(&candidate.id)?);
        }
        let after = DiskUsage::of(self.root())?;
        Ok(Collected {
            removed,
            freed: after.available.saturating_sub(before.available),
        })
    }

    /// Removes every name of image `id`, unless a use record appeared meanwhile.
    fn remove_id(&self, id: &str) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        if uses::images_in_use(self.root())?.contains(id) {
            return Ok(Vec::new());
        }
        let mut images = self.load()?;
        let names: Vec<String> = images
            .iter()
            .filter(|i| i.id == id)
            .map(|i| i.name.clone())
            .collect();
        images.retain(|i| i.id != id);
        self.save(&images)?;
        self.collect_garbage(&images)?;
        let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
        lastuse::forget_others(self.root(), &ids)?;
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, size: u64, age_secs: u64, in_use: bool, pinned: bool) -> Candidate {
        Candidate {
            id: id.into(),
            names: vec![format!("localhost/{id}:latest")],
            size,
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - age_secs),
            in_use,
            pinned,
        }
    }

    #[test]
    fn images_younger_than_the_minimum_age_stay() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let two_min = Duration::from_secs(120);
        let old = candidate("a", 1, 121, false, false);
        let young = candidate("b", 1, 60, false, false);
        let mut future = candidate("c", 1, 0, false, false);
        future.last_used = now + Duration::from_secs(60);
        assert!(old_enough(&old, now, two_min));
        assert!(!old_enough(&young, now, two_min));
        assert!(!old_enough(&future, now, two_min));
        assert!(old_enough(&future, now, Duration::ZERO));
        assert_eq!(GcPolicy::default().minimum_age, two_min);
    }

    #[test]
    fn thresholds_as_the_kubelet() {
        let p = GcPolicy::default();
        let gib = 1u64 << 30;
        let usage = |used_percent: u64| DiskUsage {
            capacity: 100 * gib,
            available: (100 - used_percent) * gib,
        };
        assert_eq!(p.bytes_to_free(usage(84)), None);
        // At 85 %: free down to 80 %, i.e. 5 GiB.
        assert_eq!(p.bytes_to_free(usage(85)), Some(5 * gib));
        assert_eq!(p.bytes_to_free(usage(95)), Some(15 * gib));
        assert_eq!(
            GcPolicy::new(100, 90).unwrap().bytes_to_free(usage(99)),
            None
        );
        assert!(GcPolicy::new(80, 85)
            .unwrap_err()
            .contains("must be less than"));
        assert!(GcPolicy::new(101, 5)
            .unwrap_err()
            .contains("imageGCHighThresholdPercent"));
        assert!(GcPolicy::new(90, 90).is_err());
    }

    #[test]
    fn least_recently_used_first_never_in_use_or_pinned() {
        let all = vec![
            candidate("new", 10, 10, false, false),
            candidate("old", 10, 1000, false, false),
            candidate("used", 10, 5000, true, false),
            candidate("pause", 10, 9000, false, true),
            candidate("mid", 10, 100, false, false),
        ];
        let ids = |v: Vec<&Candidate>| v.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(choose(&all, None)), ["old", "mid", "new"]);
        assert_eq!(ids(choose(&all, Some(15))), ["old", "mid"]);
        assert_eq!(ids(choose(&all, Some(10))), ["old"]);
        assert_eq!(ids(choose(&all, Some(0))), Vec::<String>::new());
        assert_eq!(ids(choose(&all, Some(1000))), ["old", "mid", "new"]);
    }
}
