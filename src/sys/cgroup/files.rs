//! Reading cgroup interface files: a missing file is `None` (a controller not
//! enabled, an older kernel, no swap accounting), anything unreadable or
//! unparsable is an error naming the file.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;

use super::{Error, Result};

/// The file's text, or None if it does not exist.
pub fn read(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn number(dir: &Path, name: &str, text: &str) -> Result<u64> {
    match text.trim() {
        "max" => Ok(u64::MAX),
        t => t.parse().map_err(|_| Error::Parse {
            path: dir.join(name),
            reason: format!("not a number: {t:?}"),
        }),
    }
}

/// A one-number file; `max` (no limit) is `u64::MAX`.
pub fn read_u64(dir: &Path, name: &str) -> Result<Option<u64>> {
    read(dir, name)?
        .map(|text| number(dir, name, &text))
        .transpose()
}

/// A file of numbers separated by blanks (`cpuacct.usage_percpu`).
pub fn read_list(dir: &Path, name: &str) -> Result<Option<Vec<u64>>> {
    read(dir, name)?
        .map(|text| {
            text.split_whitespace()
                .map(|n| number(dir, name, n))
                .collect()
        })
        .transpose()
}

/// A flat keyed file: `key value` lines (memory.stat, cpu.stat, memory.events).
pub fn read_flat(dir: &Path, name: &str) -> Result<Option<BTreeMap<String, u64>>> {
    read(dir, name)?
        .map(|text| parse_flat(dir, name, &text))
        .transpose()
}

fn parse_flat(dir: &Path, name: &str, text: &str) -> Result<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(key), Some(value), None) => {
                map.insert(key.to_string(), number(dir, name, value)?);
            }
            _ => {
                return Err(Error::Parse {
                    path: dir.join(name),
                    reason: format!("not a \"key value\" line: {line:?}"),
                })
            }
        }
    }
    Ok(map)
}

/// Writes a control file (freezer state, cgroup.freeze, cgroup.event_control).
pub fn write(dir: &Path, name: &str, value: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, value).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lists_and_flat_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("memory.max"), "max\n").unwrap();
        std::fs::write(d.join("pids.current"), "7\n").unwrap();
        std::fs::write(d.join("cpuacct.usage_percpu"), "10 20 \n").unwrap();
        std::fs::write(d.join("memory.events"), "low 0\nhigh 2\noom_kill 1\n").unwrap();
        std::fs::write(d.join("bad"), "seven\n").unwrap();
        std::fs::write(d.join("bad.stat"), "a 1\nb\n").unwrap();
        assert_eq!(read_u64(d, "memory.max").unwrap(), Some(u64::MAX));
        assert_eq!(read_u64(d, "pids.current").unwrap(), Some(7));
        assert_eq!(read_u64(d, "missing").unwrap(), None);
        assert_eq!(
            read_list(d, "cpuacct.usage_percpu").unwrap(),
            Some(vec![10, 20])
        );
        let events = read_flat(d, "memory.events").unwrap().unwrap();
        assert_eq!(events["high"], 2);
        assert_eq!(events["oom_kill"], 1);
        let err = read_u64(d, "bad").unwrap_err().to_string();
        assert!(err.ends_with("/bad: not a number: \"seven\""), "{err}");
        let err = read_flat(d, "bad.stat").unwrap_err().to_string();
        assert!(err.contains("bad.stat: not a \"key value\" line"), "{err}");
    }
}
