//! The daemon's side of the manifest folder: inotify on it, which files are
//! complete, and what each file declares (read once per content).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{EventMask, WatchMask};

use super::{Daemon, SETTLE, SETTLE_ATOMIC, WRITING_LIMIT};
use crate::pod::static_pods::plan::{Declared, FileView};
use crate::pod::static_pods::source;

impl Daemon {
    pub(super) fn watch_folder(&mut self) {
        if self.watch.is_some() {
            return;
        }
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MODIFY
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR;
        match self.inotify.watches().add(&self.config.manifest_dir, mask) {
            Ok(wd) => self.watch = Some(wd),
            Err(e) => {
                let error = format!("{}: {e}", self.config.manifest_dir.display());
                if self.folder_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!("cannot watch {error}; reading it every rescan");
                }
                self.folder_error = Some(error);
            }
        }
    }

    pub(super) fn read_events(&mut self) {
        let mut buffer = [0u8; 8192];
        loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("inotify: {e}");
                    return;
                }
            };
            let mut count = 0;
            let mut changed: Option<Duration> = None;
            let mut lost_watch = false;
            for event in events {
                count += 1;
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    // Events were lost: read everything again.
                    self.writing.clear();
                    self.closed.clear();
                    changed = Some(Duration::ZERO);
                    continue;
                }
                if event
                    .mask
                    .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                {
                    lost_watch = true;
                    continue;
                }
                let Some(name) = event.name else { continue };
                if !name.to_str().is_some_and(source::is_manifest_name) {
                    continue;
                }
                if event.mask.contains(EventMask::MODIFY) {
                    self.writing.insert(name.to_os_string(), Instant::now());
                    self.closed.remove(name);
                    continue;
                }
                if event.mask.contains(EventMask::CREATE) {
                    self.closed.remove(name);
                } else {
                    self.writing.remove(name);
                    if event
                        .mask
                        .intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO)
                    {
                        self.closed.insert(name.to_os_string());
                    } else {
                        self.closed.remove(name);
                    }
                }
                let atomic = EventMask::MOVED_TO | EventMask::MOVED_FROM | EventMask::DELETE;
                let settle = if event.mask.intersects(atomic) {
                    SETTLE_ATOMIC
                } else {
                    SETTLE
                };
                changed = Some(changed.map_or(settle, |d| d.min(settle)));
            }
            if lost_watch {
                self.watch = None;
                self.soon(Duration::ZERO);
            }
            if let Some(settle) = changed {
                self.soon(settle);
            }
            if count == 0 {
                return;
            }
        }
    }

    /// What each manifest declares now. `None` when the folder cannot be read:
    /// then nothing is changed (a folder gone missing is no order to stop pods).
    pub(super) fn read_files(&mut self) -> Option<Vec<FileView>> {
        let paths = match source::manifest_files(&self.config.manifest_dir) {
            Ok(paths) => paths,
            Err(e) => {
                let error = format!("{}: {e}", self.config.manifest_dir.display());
                if self.folder_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!("cannot read {error}; the pods are left as they are");
                }
                self.folder_error = Some(error);
                return None;
            }
        };
        if self.watch.is_some() {
            self.folder_error = None;
        }
        let now = Instant::now();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let name = path.file_name().unwrap_or_default();
            let being_written = self
                .writing
                .get(name)
                .is_some_and(|since| now.duration_since(*since) < WRITING_LIMIT);
            // Modified a moment ago and not closed since (as at start, before
            // any event, or between a writer's open and its first write): it
            // may be being written; read it once it is quiet.
            let just_modified = !self.closed.contains(name)
                && std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age < SETTLE);
            if just_modified && !being_written {
                self.soon(SETTLE);
            }
            let declared = if being_written || just_modified {
                self.seen
                    .get(&path)
                    .map_or(Declared::Unread, |(_, declared)| declared.clone())
            } else {
                self.writing.remove(name);
                self.declared(&path)
            };
            files.push(FileView { path, declared });
        }
        let present: Vec<&PathBuf> = files.iter().map(|f| &f.path).collect();
        self.seen.retain(|path, _| present.contains(&path));
        Some(files)
    }

    /// Reads and admits one file, once per distinct content.
    fn declared(&mut self, path: &Path) -> Declared {
        let text = match source::read_manifest(path) {
            Ok(text) => text,
            Err(e) => return Declared::Invalid(e.to_string()),
        };
        if let Some((seen, declared)) = self.seen.get(path) {
            if *seen == text {
                return declared.clone();
            }
        }
        let declared = match source::admit(&text, path, &self.config.node_name) {
            Ok(admitted) => {
                for warning in &admitted.warnings {
                    tracing::warn!("{warning}");
                }
                Declared::Pod(Box::new(admitted.pod))
            }
            Err(e) => {
                let e = e.to_string();
                tracing::error!("invalid manifest (its last good pod, if any, keeps running): {e}");
                Declared::Invalid(e)
            }
        };
        self.seen
            .insert(path.to_path_buf(), (text, declared.clone()));
        declared
    }
}
