//! What an ADD did, on disk: the network list as it was used (so that DEL and
//! CHECK run the same plugins with the same arguments even if the config file
//! changed, as CRI-O's ocicni does with libcni's cached config), the CNI_ARGS,
//! the capability arguments and the final result. A record is written before
//! the first plugin runs, so a crash in the middle of an ADD still leaves what
//! DEL needs; no record means there is nothing to delete.
//!
//! `<cache>/results/<container id>:<ifname>` (':' is in neither), written
//! atomically, 0600; `<cache>/lock` orders GC against ADD/DEL/CHECK across
//! processes (the spec: GC must not run alongside them).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CniError;

pub const KIND: &str = "peapod-cni-attachment/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub netns: String,
    pub network_name: String,
    pub config_file: PathBuf,
    pub cni_version: String,
    #[serde(default)]
    pub disable_check: bool,
    #[serde(default)]
    pub disable_gc: bool,
    /// The plugin configuration objects, in ADD order.
    pub plugins: Vec<Map<String, Value>>,
    /// CNI_ARGS as sent.
    pub cni_args: String,
    #[serde(default)]
    pub capability_args: Map<String, Value>,
    /// The ADD's result: its final one, or after a failed ADD whose undoing
    /// failed too, the last plugin's that succeeded (for the DEL to come).
    #[serde(default)]
    pub result: Option<Value>,
    /// The ADD finished: CHECK may run and the result is the pod's.
    #[serde(default)]
    pub finished: bool,
}

pub struct Cache {
    dir: PathBuf,
}

/// Held while an operation runs; shared for ADD/DEL/CHECK, exclusive for GC.
pub struct Lock(#[allow(dead_code)] Flock<File>);

impl Cache {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn results(&self) -> PathBuf {
        self.dir.join("results")
    }

    pub fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.results().join(format!("{container_id}:{ifname}"))
    }

    pub fn lock(&self, exclusive: bool) -> Result<Lock, CniError> {
        make_dir(&self.dir)?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| CniError::io("open", &path, source))?;
        let how = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        Flock::lock(file, how)
            .map(Lock)
            .map_err(|(_, errno)| CniError::io("lock", &path, errno.into()))
    }

    pub fn read(&self, container_id: &str, ifname: &str) -> Result<Option<Record>, CniError> {
        read_record(&self.path(container_id, ifname))
    }

    pub fn write(&self, record: &Record) -> Result<(), CniError> {
        let results = self.results();
        make_dir(&self.dir)?;
        make_dir(&results)?;
        let path = self.path(&record.container_id, &record.if_name);
        let tmp = results.join(format!(".{}:{}.tmp", record.container_id, record.if_name));
        let bytes = serde_json::to_vec(record).expect("a record serializes");
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            CniError::io("write", &path, source)
        })
    }

    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), CniError> {
        let path = self.path(container_id, ifname);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CniError::io("remove", &path, e))
            }
            _ => Ok(()),
        }
    }

    /// Every record, in name order; unreadable ones are errors (GC reports them).
    pub fn list(&self) -> Result<Vec<Result<Record, CniError>>, CniError> {
        let results = self.results();
        let entries = match fs::read_dir(&results) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(CniError::io("read", &results, source)),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        Ok(paths
            .iter()
            .filter_map(|p| read_record(p).transpose())
            .collect())
    }
}

fn read_record(path: &Path) -> Result<Option<Record>, CniError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CniError::io("read", path, source)),
    };
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| CniError::Cache {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    if record.kind != KIND {
        return Err(CniError::Cache {
            path: path.to_path_buf(),
            problem: format!("kind {:?} is not {KIND:?}", record.kind),
        });
    }
    Ok(Some(record))
}

fn make_dir(dir: &Path) -> Result<(), CniError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CniError::io("create", dir, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(id: &str) -> Record {
        Record {
            kind: KIND.into(),
            container_id: id.into(),
            if_name: "eth0".into(),
            netns: "/run/peapod/netns/x".into(),
            network_name: "n".into(),
            config_file: "/etc/cni/net.d/10.conflist".into(),
            cni_version: "1.0.0".into(),
            disable_check: false,
            disable_gc: false,
            plugins: vec![serde_json::from_str(r#"{"type": "bridge"}"#).unwrap()],
            cni_args: "IgnoreUnknown=1".into(),
            capability_args: Map::new(),
            result: Some(serde_json::json!({"ips": []})),
            finished: true,
        }
    }

    #[test]
    fn records_round_trip_privately_and_go_away_twice() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(&dir.path().join("cni"));
        assert_eq!(cache.read("a", "eth0").unwrap(), None);
        cache.write(&record("a")).unwrap();
        cache.write(&record("b")).unwrap();
        assert_eq!(cache.read("a", "eth0").unwrap(), Some(record("a")));
        let path = cache.path("a", "eth0");
        assert!(path.ends_with("results/a:eth0"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = fs::metadata(dir.path().join("cni"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let all: Vec<_> = cache
            .list()
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap().container_id)
            .collect();
        assert_eq!(all, ["a", "b"]);
        cache.remove("a", "eth0").unwrap();
        cache.remove("a", "eth0").unwrap();
        assert_eq!(cache.read("a", "eth0").unwrap(), None);
    }

    #[test]
    fn a_foreign_or_broken_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        cache.write(&record("a")).unwrap();
        let path = cache.path("a", "eth0");
        fs::write(&path, r#"{"kind": "cniCacheV1"}"#).unwrap();
        let err = cache.read("a", "eth0").unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        fs::write(&path, "{").unwrap();
        assert!(cache.read("a", "eth0").is_err());
        assert_eq!(cache.list().unwrap().len(), 1);
    }

    #[test]
    fn shared_locks_coexist() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let a = cache.lock(false).unwrap();
        let b = cache.lock(false).unwrap();
        drop((a, b));
        let _c = cache.lock(true).unwrap();
    }
}
