//! What the daemon does, decided from what the files declare and which static
//! pods exist: pure code, so the rules are tested without root.
//!
//! The rules, the kubelet's where it has one:
//! - a valid file declares one pod; its uid says which content it came from;
//! - a pod that no file declares goes (stopped with its grace period, removed);
//!   a changed file so replaces its pod: the old one goes, then the new starts
//!   (same name, so one after the other);
//! - a file that cannot be read as a pod (invalid, or still being written)
//!   keeps the pod its last good content made;
//! - of two files declaring the same pod name, the first by path wins;
//! - a pod whose supervisor died is revived; a finished pod is left as it is
//!   (`peapod pod rm` on it makes the daemon start it again).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::pod::model::Pod;
use crate::pod::status::Phase;

/// What a manifest file says now.
#[derive(Debug, Clone)]
pub enum Declared {
    Pod(Box<Pod>),
    Invalid(String),
    /// Being written, and never read complete yet.
    Unread,
}

#[derive(Debug, Clone)]
pub struct FileView {
    pub path: PathBuf,
    pub declared: Declared,
}

/// A static pod in the pod store.
#[derive(Debug, Clone)]
pub struct PodView {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub source: Option<PathBuf>,
    pub state: PodState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Its supervisor was started and has not answered yet.
    Starting,
    /// Supervised, not finished.
    Running(Phase),
    Finished(Phase),
    /// Not finished, and its supervisor is gone.
    Unsupervised,
    /// Being stopped and removed.
    Removing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Start { path: PathBuf, pod: Box<Pod> },
    Remove { uid: String },
    Revive { uid: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    Starting,
    Running,
    Finished,
    /// Its pod waits for an older pod of the same name to go.
    Waiting,
    Reviving,
    /// Starting failed; tried again at the next rescan.
    Failed,
    Invalid,
    Conflict,
    Writing,
}

/// One file in the daemon's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    pub state: FileState,
    /// `namespace/name` of the pod the file declares (or the pod kept for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub files: BTreeMap<PathBuf, FileReport>,
}

/// `held`: pods whose last start or removal failed, with the error; they are
/// not tried again until the daemon lets go of them.
pub fn plan(files: &[FileView], pods: &[PodView], held: &BTreeMap<String, String>) -> Plan {
    let mut out = Plan::default();
    let mut keep = BTreeSet::new();
    let mut claimed: BTreeMap<(String, String), &Path> = BTreeMap::new();
    let mut wanted: Vec<(&Path, &Pod)> = Vec::new();
    for file in files {
        let from_file = || {
            pods.iter()
                .find(|p| p.source.as_deref() == Some(&file.path))
        };
        let kept = |state: FileState, error: Option<String>| {
            let pod = from_file();
            FileReport {
                state,
                pod: pod.map(|p| format!("{}/{}", p.namespace, p.name)),
                uid: pod.map(|p| p.uid.clone()),
                phase: None,
                error,
            }
        };
        let report = match &file.declared {
            Declared::Pod(pod) => {
                let key = (pod.namespace.clone(), pod.name.clone());
                if let Some(first) = claimed.get(&key) {
                    let error = format!(
                        "pod {}/{} is also declared by {}",
                        pod.namespace,
                        pod.name,
                        first.display()
                    );
                    Some(kept(FileState::Conflict, Some(error)))
                } else {
                    claimed.insert(key, &file.path);
                    keep.insert(pod.uid.clone());
                    wanted.push((&file.path, pod));
                    None
                }
            }
            Declared::Invalid(error) => Some(kept(FileState::Invalid, Some(error.clone()))),
            Declared::Unread => Some(kept(FileState::Writing, None)),
        };
        if let Some(report) = report {
            // The last good content's pod stays.
            keep.extend(
                pods.iter()
                    .filter(|p| p.source.as_deref() == Some(&file.path))
                    .map(|p| p.uid.clone()),
            );
            out.files.insert(file.path.clone(), report);
        }
    }
    for pod in pods {
        let busy = matches!(pod.state, PodState::Starting | PodState::Removing);
        if !keep.contains(&pod.uid) && !busy && !held.contains_key(&pod.uid) {
            out.actions.push(Action::Remove {
                uid: pod.uid.clone(),
            });
        }
    }
    for (path, pod) in wanted {
        let mut report = FileReport {
            state: FileState::Starting,
            pod: Some(format!("{}/{}", pod.namespace, pod.name)),
            uid: Some(pod.uid.clone()),
            phase: None,
            error: None,
        };
        let same_name = pods
            .iter()
            .find(|p| p.name == pod.name && p.namespace == pod.namespace && p.uid != pod.uid);
        match pods.iter().find(|p| p.uid == pod.uid) {
            Some(existing) => match existing.state {
                PodState::Starting => {}
                PodState::Running(phase) => {
                    report.state = FileState::Running;
                    report.phase = Some(phase);
                }
                PodState::Finished(phase) => {
                    report.state = FileState::Finished;
                    report.phase = Some(phase);
                }
                PodState::Removing => report.state = FileState::Waiting,
                PodState::Unsupervised => match held.get(&pod.uid) {
                    Some(error) => {
                        report.state = FileState::Failed;
                        report.error = Some(error.clone());
                    }
                    None => {
                        report.state = FileState::Reviving;
                        out.actions.push(Action::Revive {
                            uid: pod.uid.clone(),
                        });
                    }
                },
            },
            None => match (same_name, held.get(&pod.uid)) {
                (Some(old), _) => {
                    report.state = FileState::Waiting;
                    report.error = Some(format!("waiting for pod uid {} to go", old.uid));
                }
                (None, Some(error)) => {
                    report.state = FileState::Failed;
                    report.error = Some(error.clone());
                }
                (None, None) => out.actions.push(Action::Start {
                    path: path.to_path_buf(),
                    pod: Box::new(pod.clone()),
                }),
            },
        }
        out.files.insert(path.to_path_buf(), report);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, uid: &str) -> Box<Pod> {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, uid: {uid}}}\nspec: {{containers: [{{name: c, image: busybox}}]}}\n"
        );
        Box::new(crate::pod::admission::parse(&text, "t.yaml").unwrap().pod)
    }

    fn file(path: &str, declared: Declared) -> FileView {
        FileView {
            path: path.into(),
            declared,
        }
    }

    fn running(name: &str, uid: &str, path: &str, state: PodState) -> PodView {
        PodView {
            uid: uid.into(),
            namespace: "default".into(),
            name: name.into(),
            source: Some(path.into()),
            state,
        }
    }

    fn start_of(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { pod, .. } => Some(pod.uid.as_str()),
                _ => None,
            })
            .collect()
    }

    const RUNNING: PodState = PodState::Running(Phase::Running);

    #[test]
    fn new_files_start_and_running_pods_are_left_alone() {
        let files = [
            file("/m/a.yaml", Declared::Pod(pod("a", "ua"))),
            file("/m/b.yaml", Declared::Pod(pod("b", "ub"))),
        ];
        let pods = [running("a", "ua", "/m/a.yaml", RUNNING)];
        let plan = plan(&files, &pods, &BTreeMap::new());
        assert_eq!(start_of(&plan.actions), ["ub"]);
        assert_eq!(plan.actions.len(), 1);
        assert_eq!(plan.files[Path::new("/m/a.yaml")].state, FileState::Running);
        assert_eq!(
            plan.files[Path::new("/m/b.yaml")].state,
            FileState::Starting
        );
    }

    #[test]
    fn a_changed_file_replaces_its_pod_one_after_the_other() {
        let files = [file("/m/a.yaml", Declared::Pod(pod("a", "new")))];
        let old = running("a", "old", "/m/a.yaml", RUNNING);
        let plan1 = plan(&files, std::slice::from_ref(&old), &BTreeMap::new());
        assert_eq!(plan1.actions, [Action::Remove { uid: "old".into() }]);
        assert_eq!(
            plan1.files[Path::new("/m/a.yaml")].state,
            FileState::Waiting
        );
        // While the old one is being removed, nothing more happens.
        let removing = PodView {
            state: PodState::Removing,
            ..old
        };
        let plan2 = plan(&files, &[removing], &BTreeMap::new());
        assert!(plan2.actions.is_empty(), "{:?}", plan2.actions);
        // Once it is gone, the new one starts.
        let plan3 = plan(&files, &[], &BTreeMap::new());
        assert_eq!(start_of(&plan3.actions), ["new"]);
    }

    #[test]
    fn a_removed_file_removes_its_pod_but_not_while_it_starts() {
        let pods = [
            running("a", "ua", "/m/a.yaml", RUNNING),
            running("b", "ub", "/m/b.yaml", PodState::Starting),
            running("c", "uc", "/m/c.yaml", PodState::Finished(Phase::Succeeded)),
        ];
        let plan = plan(&[], &pods, &BTreeMap::new());
        assert_eq!(
            plan.actions,
            [
                Action::Remove { uid: "ua".into() },
                Action::Remove { uid: "uc".into() }
            ]
        );
    }

    #[test]
    fn an_invalid_or_unfinished_file_keeps_the_pod_of_its_last_good_content() {
        let files = [
            file("/m/a.yaml", Declared::Invalid("/m/a.yaml: bad".into())),
            file("/m/b.yaml", Declared::Unread),
            file("/m/c.yaml", Declared::Invalid("/m/c.yaml: bad".into())),
        ];
        let pods = [
            running("a", "ua", "/m/a.yaml", RUNNING),
            running("b", "ub", "/m/b.yaml", RUNNING),
        ];
        let plan = plan(&files, &pods, &BTreeMap::new());
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        let a = &plan.files[Path::new("/m/a.yaml")];
        assert_eq!(a.state, FileState::Invalid);
        assert_eq!(a.uid.as_deref(), Some("ua"));
        assert_eq!(a.error.as_deref(), Some("/m/a.yaml: bad"));
        assert_eq!(plan.files[Path::new("/m/b.yaml")].state, FileState::Writing);
        assert_eq!(plan.files[Path::new("/m/c.yaml")].uid, None);
    }

    #[test]
    fn the_first_file_wins_a_name() {
        let files = [
            file("/m/a.yaml", Declared::Pod(pod("same", "u1"))),
            file("/m/b.yaml", Declared::Pod(pod("same", "u2"))),
        ];
        let plan = plan(&files, &[], &BTreeMap::new());
        assert_eq!(start_of(&plan.actions), ["u1"]);
        let b = &plan.files[Path::new("/m/b.yaml")];
        assert_eq!(b.state, FileState::Conflict);
        assert!(b.error.as_ref().unwrap().contains("/m/a.yaml"), "{b:?}");
    }

    #[test]
    fn dead_supervisors_are_revived_and_failures_wait() {
        let files = [
            file("/m/a.yaml", Declared::Pod(pod("a", "ua"))),
            file("/m/b.yaml", Declared::Pod(pod("b", "ub"))),
        ];
        let pods = [running("a", "ua", "/m/a.yaml", PodState::Unsupervised)];
        let plan1 = plan(&files, &pods, &BTreeMap::new());
        assert!(plan1.actions.contains(&Action::Revive { uid: "ua".into() }));
        let held = BTreeMap::from([("ub".to_string(), "no image".to_string())]);
        let plan2 = plan(&files, &pods, &held);
        assert!(start_of(&plan2.actions).is_empty());
        let b = &plan2.files[Path::new("/m/b.yaml")];
        assert_eq!(
            (b.state, b.error.as_deref()),
            (FileState::Failed, Some("no image"))
        );
    }
}
