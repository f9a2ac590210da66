//! The kubelet's image rules, pure: imagePullPolicy and its default, whether to
//! pull, the image pull back-off, the waiting reasons and the event texts
//! (kubelet `pkg/kubelet/images/image_manager.go`, API defaults in
//! `pkg/apis/core/v1/defaults.go`).
//!
//! A short name (no registry) that the store holds under `localhost/` (an
//! imported image) means that image whatever the policy, as podman treats local
//! images: an edge node keeps running `image: busybox` without a registry.
//! Every other name follows the policy, `busybox` standing for
//! `docker.io/library/busybox:latest`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::image::reference;

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The policy a container states, or its default for `image`.
    pub fn of(stated: Option<&str>, image: &str) -> Result<PullPolicy, String> {
        match stated {
            None | Some("") => Ok(PullPolicy::default_for(image)),
            Some("Always") => Ok(PullPolicy::Always),
            Some("IfNotPresent") => Ok(PullPolicy::IfNotPresent),
            Some("Never") => Ok(PullPolicy::Never),
            Some(other) => Err(format!(
                "imagePullPolicy: unsupported value {other:?}: Always, IfNotPresent or Never"
            )),
        }
    }

    /// The API's default: `:latest`, or neither tag nor digest, is Always; else IfNotPresent.
    pub fn default_for(image: &str) -> PullPolicy {
        match reference::tag_and_digest(image) {
            Ok((Some(tag), _)) if tag == "latest" => PullPolicy::Always,
            Ok((None, None)) => PullPolicy::Always,
            // A name that does not parse gets IfNotPresent, as the API's parser error is ignored there.
            _ => PullPolicy::IfNotPresent,
        }
    }
}

/// What the store holds for an image reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Absent,
    Present,
    /// A short name found under `localhost/`: an imported image, never pulled.
    LocalShortName,
}

/// What to do about one container's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    UseLocal,
    Pull,
    /// Waiting reason and message, as the kubelet sets them.
    Wait {
        reason: WaitingReason,
        message: String,
    },
}

/// The container's waiting reason while its image is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingReason {
    ErrImagePull,
    ImagePullBackOff,
    ErrImageNeverPull,
    InvalidImageName,
}

impl WaitingReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingReason::ErrImagePull => "ErrImagePull",
            WaitingReason::ImagePullBackOff => "ImagePullBackOff",
            WaitingReason::ErrImageNeverPull => "ErrImageNeverPull",
            WaitingReason::InvalidImageName => "InvalidImageName",
        }
    }
}

/// The kubelet's EnsureImageExists, minus the pull itself: `in_back_off` is
/// [`PullBackOff::in_back_off`] for this pod and image.
pub fn decide(image: &str, policy: PullPolicy, presence: Presence, in_back_off: bool) -> Decision {
    if let Err(e) = reference::tag_and_digest(image) {
        return Decision::Wait {
            reason: WaitingReason::InvalidImageName,
            message: format!("Failed to apply default image tag {image:?}: {e}"),
        };
    }
    let present = presence != Presence::Absent;
    let pull = match policy {
        _ if presence == Presence::LocalShortName => false,
        PullPolicy::Always => true,
        PullPolicy::IfNotPresent => !present,
        PullPolicy::Never => false,
    };
    if !pull {
        return if present {
            Decision::UseLocal
        } else {
            Decision::Wait {
                reason: WaitingReason::ErrImageNeverPull,
                message: never_pull(image).message,
            }
        };
    }
    if in_back_off {
        return Decision::Wait {
            reason: WaitingReason::ImagePullBackOff,
            message: back_off(image).message,
        };
    }
    Decision::Pull
}

/// The kubelet's image back-off (`flowcontrol.NewBackOff(10s, 300s)`), keyed by
/// `<pod uid>_<image>`: 10 s after the first failure, doubling to 5 min; an entry
/// idle for twice the maximum starts over.
#[derive(Debug)]
pub struct PullBackOff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, (Duration, Instant)>,
}

impl Default for PullBackOff {
    fn default() -> Self {
        PullBackOff::new(Duration::from_secs(10), Duration::from_secs(300))
    }
}

impl PullBackOff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        PullBackOff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    pub fn key(pod_uid: &str, image: &str) -> String {
        format!("{pod_uid}_{image}")
    }

    /// A pull failed at `now`: the next attempt waits longer.
    pub fn failed(&mut self, key: &str, now: Instant) {
        let next = match self.entries.get(key) {
            Some((delay, at)) if now.saturating_duration_since(*at) <= 2 * self.max => {
                (*delay * 2).min(self.max)
            }
            _ => self.initial,
        };
        self.entries.insert(key.to_string(), (next, now));
    }

    /// Whether a pull must still wait (IsInBackOffSinceUpdate).
    pub fn in_back_off(&self, key: &str, now: Instant) -> bool {
        self.remaining(key, now).is_some()
    }

    /// How long until the next attempt, if one must wait.
    pub fn remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        let (delay, at) = self.entries.get(key)?;
        let waited = now.saturating_duration_since(*at);
        (waited < *delay).then(|| *delay - waited)
    }

    /// The image is there: forget its failures.
    pub fn succeeded(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// An event as the kubelet records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEvent {
    /// `Normal` or `Warning`.
    pub kind: &'static str,
    pub reason: &'static str,
    pub message: String,
}

fn event(kind: &'static str, reason: &'static str, message: String) -> PullEvent {
    PullEvent {
        kind,
        reason,
        message,
    }
}

pub fn pulling(image: &str) -> PullEvent {
    event("Normal", "Pulling", format!("Pulling image {image:?}"))
}

/// `took` is the pull itself, `with_waiting` from the request (queueing included).
pub fn pulled(image: &str, took: Duration, with_waiting: Duration, size: u64) -> PullEvent {
    event(
        "Normal",
        "Pulled",
        format!(
            "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {size} bytes.",
            go_duration(took),
            go_duration(with_waiting)
        ),
    )
}

pub fn already_present(image: &str) -> PullEvent {
    event(
        "Normal",
        "Pulled",
        format!("Container image {image:?} already present on machine"),
    )
}

pub fn never_pull(image: &str) -> PullEvent {
    event(
        "Warning",
        "ErrImageNeverPull",
        format!("Container image {image:?} is not present with pull policy of Never"),
    )
}

pub fn failed(image: &str, error: &str) -> PullEvent {
    event(
        "Warning",
        "Failed",
        format!("Failed to pull image {image:?}: {error}"),
    )
}

pub fn back_off(image: &str) -> PullEvent {
    event(
        "Normal",
        "BackOff",
        format!("Back-off pulling image {image:?}"),
    )
}

/// A duration as Go's `time.Duration.String()` prints it, truncated to
/// milliseconds as the kubelet does: `512ms`, `1.5s`, `2m3.25s`, `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let mut secs = s.to_string();
    if frac > 0 {
        secs.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_api() {
        use PullPolicy::*;
        let d = format!("@sha256:{}", "a".repeat(64));
        for (image, want) in [
            ("busybox", Always),
            ("busybox:latest", Always),
            ("busybox:1.36", IfNotPresent),
            ("registry.k8s.io/pause:3.9", IfNotPresent),
            ("localhost:5000/app", Always),
            ("localhost/busybox", Always),
            ("localhost/pause:3.9", IfNotPresent),
            (&format!("busybox{d}"), IfNotPresent),
            (&format!("busybox:latest{d}"), Always),
        ] {
            assert_eq!(PullPolicy::default_for(image), want, "{image}");
        }
        assert_eq!(PullPolicy::of(Some("Never"), "x").unwrap(), Never);
        assert_eq!(PullPolicy::of(None, "x:1").unwrap(), IfNotPresent);
        assert!(PullPolicy::of(Some("Sometimes"), "x")
            .unwrap_err()
            .contains("imagePullPolicy"));
    }

    #[test]
    fn what_to_do() {
        use Presence::*;
        use PullPolicy::*;
        let pull = |p, pr| decide("busybox:1", p, pr, false);
        assert_eq!(pull(Always, Present), Decision::Pull);
        assert_eq!(pull(Always, Absent), Decision::Pull);
        assert_eq!(pull(IfNotPresent, Present), Decision::UseLocal);
        assert_eq!(pull(IfNotPresent, Absent), Decision::Pull);
        assert_eq!(pull(Never, Present), Decision::UseLocal);
        assert_eq!(
            pull(Never, Absent),
            Decision::Wait {
                reason: WaitingReason::ErrImageNeverPull,
                message: "Container image \"busybox:1\" is not present with pull policy of Never"
                    .into()
            }
        );
        // An imported image named by a short name is used whatever the policy.
        assert_eq!(pull(Always, LocalShortName), Decision::UseLocal);
        // Back-off holds a pull, not the use of a present image.
        match decide("busybox:1", Always, Present, true) {
            Decision::Wait { reason, message } => {
                assert_eq!(reason, WaitingReason::ImagePullBackOff);
                assert_eq!(message, "Back-off pulling image \"busybox:1\"");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide("busybox:1", IfNotPresent, Present, true),
            Decision::UseLocal
        );
        match decide("Bad Name", Always, Absent, false) {
            Decision::Wait { reason, message } => {
                assert_eq!(reason.as_str(), "InvalidImageName");
                assert!(
                    message.starts_with("Failed to apply default image tag \"Bad Name\": "),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn back_off_doubles_to_five_minutes() {
        let mut b = PullBackOff::default();
        let key = PullBackOff::key("uid", "busybox");
        assert_eq!(key, "uid_busybox");
        let t0 = Instant::now();
        assert!(!b.in_back_off(&key, t0));
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            b.failed(&key, now);
            let delay = b.remaining(&key, now).unwrap();
            delays.push(delay.as_secs());
            assert!(b.in_back_off(&key, now + delay - Duration::from_millis(1)));
            now += delay;
            assert!(!b.in_back_off(&key, now));
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        // Idle for more than twice the maximum: back to the start.
        b.failed(&key, now + Duration::from_secs(601));
        assert_eq!(
            b.remaining(&key, now + Duration::from_secs(601))
                .unwrap()
                .as_secs(),
            10
        );
        b.succeeded(&key);
        assert!(!b.in_back_off(&key, now + Duration::from_secs(601)));
    }

    #[test]
    fn events_read_as_the_kubelets() {
        assert_eq!(pulling("busybox").message, "Pulling image \"busybox\"");
        let e = pulled(
            "busybox",
            Duration::from_millis(1234),
            Duration::from_millis(1500),
            4_194_304,
        );
        assert_eq!((e.kind, e.reason), ("Normal", "Pulled"));
        assert_eq!(
            e.message,
            "Successfully pulled image \"busybox\" in 1.234s (1.5s including waiting). Image size: 4194304 bytes."
        );
        assert_eq!(
            already_present("x").message,
            "Container image \"x\" already present on machine"
        );
        let f = failed("x", "boom");
        assert_eq!(
            (f.kind, f.reason, f.message.as_str()),
            ("Warning", "Failed", "Failed to pull image \"x\": boom")
        );
        assert_eq!(back_off("x").reason, "BackOff");
        assert_eq!(never_pull("x").reason, "ErrImageNeverPull");
    }

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(0)), "0s");
        assert_eq!(go_duration(ms(512)), "512ms");
        assert_eq!(go_duration(ms(1000)), "1s");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(123_250)), "2m3.25s");
        assert_eq!(go_duration(ms(3_600_000)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_micros(1999)), "1ms");
    }
}
