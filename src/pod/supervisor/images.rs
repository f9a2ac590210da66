//! Each container's image before it starts, as the kubelet's
//! `EnsureImageExists`: its imagePullPolicy, the pull back-off, the waiting
//! reasons (`ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`,
//! `InvalidImageName`) and the events (Pulling, Pulled, Failed, BackOff).
//!
//! A pull runs as a child, `peapod image pull --json` (`image::pull::child`):
//! no HTTP or TLS thread ever lives in this process, which calls libcontainer,
//! and the loop never waits on a registry. Its stdout is one more descriptor
//! of the poll; the child is reaped with the pod's processes (`processes.rs`).
//! Containers that want the same image while it is pulled share its pull.

use std::time::{Duration, Instant};

use super::Supervisor;
use crate::error::one_line;
use crate::image::pull::child::{self, PullChild, PullOutcome};
use crate::image::pull::policy::{self, PullEvent};
use crate::image::pull::{Decision, PullBackOff, PullPolicy, WaitingReason};
use crate::pod::events::EventType;
use crate::pod::folder::{write_json_atomic, ResolvedImage};
use crate::pod::lifecycle::{Input, PULLING_REASON};

/// How long a container shows `ErrImagePull` before its next look finds the
/// image in back-off (`ImagePullBackOff`), as the kubelet's next pod sync does.
const ERR_IMAGE_PULL_HOLD: Duration = Duration::from_secs(1);

/// A container that waits for an image that will not come by itself (Never,
/// an invalid name) is looked at again this often, as the kubelet's resync.
const RESYNC: Duration = Duration::from_secs(10);

/// The pulls of the pod.
pub(super) struct ImagePulls {
    backoff: PullBackOff,
    under_way: Vec<Pull>,
    /// Containers whose image a pull just brought for their next start: that
    /// start takes it (as the kubelet's one EnsureImageExists per start), or
    /// imagePullPolicy Always would pull again, forever, and never start.
    pulled_for: std::collections::HashSet<String>,
}

/// One image being pulled, and who waits for it.
struct Pull {
    image: String,
    child: PullChild,
    containers: Vec<String>,
    /// Its stdout is closed: no more to read, no need to poll it.
    eof: bool,
}

impl ImagePulls {
    pub(super) fn new(backoff: PullBackOff) -> Self {
        Self {
            backoff,
            under_way: Vec::new(),
            pulled_for: std::collections::HashSet::new(),
        }
    }

    /// The pulls' pipes to poll, with their index.
    pub(super) fn fds(&self) -> Vec<(usize, std::os::fd::BorrowedFd<'_>)> {
        (self.under_way.iter().enumerate())
            .filter(|(_, p)| !p.eof)
            .map(|(i, p)| (i, p.child.fd()))
            .collect()
    }

    pub(super) fn is_pull(&self, pid: i32) -> bool {
        self.under_way.iter().any(|p| p.child.pid() as i32 == pid)
    }

    /// Stops every pull (the pod ends) and removes what they left in the
    /// store: their scratch folders and use records, and the layers they
    /// committed that no image uses. Left for the next pull, they outlived the
    /// pod (found by scripts/soak: a pod removed while its registry hung).
    pub(super) fn kill_all(&mut self, store: &crate::image::ImageStore) {
        if self.under_way.is_empty() {
            return;
        }
        for mut pull in self.under_way.drain(..) {
            // Waits for it: its flock is free once it is gone.
            let _ = pull.child.kill();
        }
        let swept = crate::image::pull::sweep_dead_pulls(store)
            .and_then(|()| store.collect_garbage_locked());
        if let Err(e) = swept {
            tracing::warn!("remove what the stopped pulls left: {}", one_line(&e));
        }
    }
}

impl Supervisor {
    /// Whether `name`'s image is in the store as its policy wants (then its
    /// image is resolved for the start); if not, the container now waits,
    /// for a pull or with the reason the kubelet gives, and the lifecycle knows.
    pub(super) fn ensure_image(&mut self, name: &str) -> bool {
        let Some(c) = self.container(name) else {
            return true;
        };
        let image = c.image.clone();
        if self.pulls.pulled_for.remove(name) && self.images.contains_key(name) {
            // Resolved when the pull ended (set_image); its Pulled event is recorded.
            return true;
        }
        let policy = match PullPolicy::of(c.image_pull_policy.as_deref(), &image) {
            Ok(policy) => policy,
            Err(message) => {
                self.image_wait(name, "InvalidImageName", Some(message), Some(RESYNC));
                return false;
            }
        };
        let (presence, found) = match self.store.presence(&image) {
            Ok(p) => p,
            Err(e) => (crate::image::pull::Presence::Absent, {
                tracing::warn!("image {image}: {}", one_line(&e));
                None
            }),
        };
        let key = PullBackOff::key(&self.pod.uid, &image);
        let in_back_off = self.pulls.backoff.in_back_off(&key, Instant::now());
        match policy::decide(&image, policy, presence, in_back_off) {
            Decision::UseLocal => {
                let Some(found) = found else {
                    return true;
                };
                self.set_image(name, &image, &found);
                self.record_pull_event(name, policy::already_present(&image));
                true
            }
            Decision::Pull => {
                self.start_pull(name, &image);
                false
            }
            Decision::Wait { reason, message } => {
                let retry = match reason {
                    WaitingReason::ImagePullBackOff => {
                        self.record_pull_event(name, policy::back_off(&image));
                        self.pulls.backoff.remaining(&key, Instant::now())
                    }
                    WaitingReason::ErrImageNeverPull => {
                        self.record_pull_event(name, policy::never_pull(&image));
                        Some(RESYNC)
                    }
                    WaitingReason::InvalidImageName => {
                        let event = PullEvent {
                            kind: "Warning",
                            reason: "InspectFailed",
                            message: message.clone(),
                        };
                        self.record_pull_event(name, event);
                        Some(RESYNC)
                    }
                    WaitingReason::ErrImagePull => Some(ERR_IMAGE_PULL_HOLD),
                };
                self.image_wait(name, reason.as_str(), Some(message), retry);
                false
            }
        }
    }

    fn image_wait(
        &mut self,
        name: &str,
        reason: &str,
        message: Option<String>,
        retry: Option<Duration>,
    ) {
        self.apply(Input::ImageWait {
            container: name.to_string(),
            reason: reason.to_string(),
            message,
            retry,
        });
    }

    /// The container waits (ContainerCreating) on a pull of `image`: a new
    /// one, or the one under way.
    fn start_pull(&mut self, name: &str, image: &str) {
        if let Some(pull) = self.pulls.under_way.iter_mut().find(|p| p.image == image) {
            if !pull.containers.iter().any(|c| c == name) {
                pull.containers.push(name.to_string());
            }
            self.image_wait(name, PULLING_REASON, None, None);
            return;
        }
        self.record_pull_event(name, policy::pulling(image));
        let spawned = std::env::current_exe().and_then(|peapod| {
            child::spawn(
                &peapod,
                &[image.to_string()],
                &self.settings.image_store,
                &self.settings.registry,
            )
        });
        match spawned {
            Ok(child) => {
                self.pulls.under_way.push(Pull {
                    image: image.to_string(),
                    child,
                    containers: vec![name.to_string()],
                    eof: false,
                });
                self.image_wait(name, PULLING_REASON, None, None);
            }
            Err(e) => {
                let error = format!("start peapod image pull: {e}");
                self.pull_failed(&[name.to_string()], image, &error);
            }
        }
    }

    /// A pull's pipe is readable: take what it wrote (the pull ends when reaped).
    pub(super) fn pull_output(&mut self, index: usize) {
        if let Some(pull) = self.pulls.under_way.get_mut(index) {
            match pull.child.read_available() {
                Ok(eof) => pull.eof = eof,
                Err(e) => {
                    tracing::warn!("pull of {}: read: {e}", pull.image);
                    pull.eof = true;
                }
            }
        }
    }

    /// A pull's process ended with `status`: its containers start, or wait.
    pub(super) fn pull_ended(&mut self, pid: i32, status: &str) {
        let Some(at) = (self.pulls.under_way.iter()).position(|p| p.child.pid() as i32 == pid)
        else {
            return;
        };
        let mut pull = self.pulls.under_way.remove(at);
        let outcome = pull.child.ended(status).into_iter().next();
        match outcome {
            Some(PullOutcome::Pulled {
                name: stored,
                size,
                seconds,
                ..
            }) => {
                let key = PullBackOff::key(&self.pod.uid, &pull.image);
                self.pulls.backoff.succeeded(&key);
                let took = Duration::from_secs_f64(seconds.max(0.0));
                let event = policy::pulled(&pull.image, took, pull.child.started.elapsed(), size);
                match self.store.resolve(&stored) {
                    Ok(found) => {
                        for name in &pull.containers {
                            self.set_image(name, &pull.image, &found);
                            self.pulls.pulled_for.insert(name.clone());
                            self.record_pull_event(name, event.clone());
                            self.apply(Input::ImageReady {
                                container: name.clone(),
                            });
                        }
                    }
                    Err(e) => {
                        let error = format!("pulled, then not found in the store: {e}");
                        self.pull_failed(&pull.containers, &pull.image, &error);
                    }
                }
            }
            Some(PullOutcome::Failed { error, .. }) => {
                self.pull_failed(&pull.containers, &pull.image, &error)
            }
            None => {
                let error = format!("peapod image pull ended ({status}) without a result");
                self.pull_failed(&pull.containers, &pull.image, &error)
            }
        }
        self.publish();
    }

    /// The kubelet's ErrImagePull: Failed events, back-off for the image, and
    /// the containers wait until their next look finds it in back-off.
    fn pull_failed(&mut self, containers: &[String], image: &str, error: &str) {
        let key = PullBackOff::key(&self.pod.uid, image);
        self.pulls.backoff.failed(&key, Instant::now());
        tracing::warn!("pull {image}: {error}");
        for name in containers {
            self.record_pull_event(name, policy::failed(image, error));
            let reason = WaitingReason::ErrImagePull.as_str();
            self.record(
                EventType::Warning,
                "Failed",
                Some(name),
                &format!("Error: {reason}"),
            );
            self.image_wait(
                name,
                reason,
                Some(error.to_string()),
                Some(ERR_IMAGE_PULL_HOLD),
            );
        }
    }

    fn record_pull_event(&mut self, container: &str, event: PullEvent) {
        let kind = match event.kind {
            "Warning" => EventType::Warning,
            _ => EventType::Normal,
        };
        self.record(kind, event.reason, Some(container), &event.message);
    }

    /// The image the container's next run uses, kept in images.json too (a
    /// supervisor that adopts the pod signals with its stop signal).
    fn set_image(&mut self, name: &str, reference: &str, image: &crate::image::Image) {
        let resolved = ResolvedImage::new(reference, image);
        if self.images.get(name) == Some(&resolved) {
            return;
        }
        self.images.insert(name.to_string(), resolved);
        if let Err(e) = write_json_atomic(&self.folder.images_file(), &self.images) {
            tracing::warn!("write images.json: {}", one_line(&e));
        }
    }
}
