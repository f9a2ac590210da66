//! User namespaces for pods with `hostUsers: false`, as the kubelet allocates
//! them: each pod gets 65536 host IDs of its own (container IDs 0..65535 map
//! to host `base..base+65535`), ranges at multiples of 65536 from 65536 up
//! (host IDs below stay the host's), never one range for two pods.
//!
//! The allocation is `userns.json` in the pod's folder, made under a lock on
//! the pods' root: it lasts as long as the folder (adoption and restarts
//! keep it; `pod rm`, forced or after a crash, frees it with the folder).
//! The namespace is made once with its mapping and pinned at `userns` in the
//! folder (a bind mount of its nsfs file); the sandbox and every container
//! join it by path, and ID-mapped mounts of the image layers use it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult};
use serde::{Deserialize, Serialize};

use crate::net::netns;
use crate::pod::folder::{read_json, write_json_atomic, PodFolder};

/// IDs per pod (the kubelet's userNsLength).
pub const RANGE: u32 = 65536;
/// The last range that ends below 2^32 - 1 (the kernel's invalid ID).
const MAX_RANGES: u32 = u32::MAX / RANGE - 1;
const RECORD: &str = "userns.json";
const PIN: &str = "userns";

/// A pod's host IDs: container ID `i` is host ID `base + i`, for `i < size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub base: u32,
    pub size: u32,
}

impl IdRange {
    /// The host ID of container ID `id` (IDs past the range stay unmapped).
    pub fn host(&self, id: u32) -> u32 {
        self.base.saturating_add(id)
    }

    /// `/proc/<pid>/{uid,gid}_map`'s line.
    fn map_line(&self) -> String {
        format!("0 {} {}\n", self.base, self.size)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("spec.hostUsers: no free range of {RANGE} host IDs is left on this node")]
    Exhausted,
    #[error("spec.hostUsers: {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spec.hostUsers: {0}")]
    Folder(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> UsernsError + 'a {
    move |source| UsernsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The lowest free base: ranges start at 65536 * n, n >= 1.
pub fn first_free(used: &BTreeSet<u32>) -> Option<u32> {
    (1..=MAX_RANGES)
        .map(|n| n * RANGE)
        .find(|b| !used.contains(b))
}

/// The pod's range, if it has one.
pub fn range(folder: &PodFolder) -> Result<Option<IdRange>, UsernsError> {
    let path = folder.dir().join(RECORD);
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path)
        .map(Some)
        .map_err(|e| UsernsError::Folder(e.to_string()))
}

/// The pod's range: the one it has, or the lowest one no other pod of the
/// same root holds, recorded under the root's lock.
pub fn allocate(folder: &PodFolder) -> Result<IdRange, UsernsError> {
    if let Some(range) = range(folder)? {
        return Ok(range);
    }
    let root = folder.dir().parent().unwrap_or(Path::new("/"));
    // The pods' folder itself is the lock: no file of its own to leave there.
    let lock = File::open(root).map_err(io("open", root))?;
    let _lock =
        Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| io("lock", root)(e.into()))?;
    let mut used = BTreeSet::new();
    for entry in fs::read_dir(root).map_err(io("read", root))?.flatten() {
        let record = entry.path().join(RECORD);
        if let Ok(range) = read_json::<IdRange>(&record) {
            used.insert(range.base);
        }
    }
    let base = first_free(&used).ok_or(UsernsError::Exhausted)?;
    let range = IdRange { base, size: RANGE };
    write_json_atomic(&folder.dir().join(RECORD), &range)
        .map_err(|e| UsernsError::Folder(e.to_string()))?;
    Ok(range)
}

/// The pod's root is no host root: like containerd for its bundles, the
/// pod's folder and the two above it (pods, state root) get search (never
/// read) permission for others, so that the container's processes, made
/// inside the namespace, reach their rootfs and /dev/shm by path.
pub fn open_path(folder: &PodFolder) -> Result<(), UsernsError> {
    use std::os::unix::fs::PermissionsExt;
    let mut dirs = folder.dir().ancestors().take(3);
    dirs.try_for_each(|dir| {
        let mode = fs::metadata(dir)
            .map_err(io("stat", dir))?
            .permissions()
            .mode();
        if mode & 0o001 != 0 {
            return Ok(());
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7777 | 0o001))
            .map_err(io("chmod o+x", dir))
    })
}

/// Where the pod's pinned namespace is.
pub fn pin_path(folder: &PodFolder) -> PathBuf {
    folder.dir().join(PIN)
}

/// Makes the pod's user namespace with `range` mapped and pins it, unless it
/// is pinned already (an adopted pod, a new sandbox).
pub fn pin(folder: &PodFolder, range: IdRange) -> Result<PathBuf, UsernsError> {
    let path = pin_path(folder);
    if netns::is_pinned(&path) {
        return Ok(path);
    }
    File::create(&path).map_err(io("create", &path))?;
    let pinned = pin_new(&path, range);
    if pinned.is_err() {
        let _ = fs::remove_file(&path);
    }
    pinned.map(|()| path)
}

/// Unpins the namespace (processes and ID-mapped mounts still using it keep
/// it until they end). The allocation stays with the folder.
pub fn unpin(folder: &PodFolder) -> Result<(), UsernsError> {
    let path = pin_path(folder);
    netns::remove(&path).map_err(|e| UsernsError::Folder(e.to_string()))
}

/// A child unshares a user namespace and waits; this process writes its maps
/// (root in the parent namespace may map any range) and bind-mounts its
/// nsfs file, then lets it go.
fn pin_new(target: &Path, range: IdRange) -> Result<(), UsernsError> {
    let pipe = |path| pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io("pipe", path)(e.into()));
    let (ready_read, ready_write) = pipe(target)?;
    let (go_read, go_write) = pipe(target)?;
    // SAFETY: the child only makes system calls and ends with _exit, so it is
    // safe even if this process has other threads.
    match unsafe { fork() } {
        Err(e) => Err(io("fork", target)(e.into())),
        Ok(ForkResult::Child) => unsafe {
            // SAFETY: plain system calls on descriptors we own.
            drop(ready_read);
            drop(go_write);
            let status: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                0
            } else {
                1
            };
            libc::write(ready_write.as_raw_fd(), [status].as_ptr().cast(), 1);
            let mut byte = [0u8; 1];
            libc::read(go_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1);
            libc::_exit(status as i32);
        },
        Ok(ForkResult::Parent { child }) => {
            drop(ready_write);
            drop(go_read);
            let mut status = [1u8; 1];
            let got = std::io::Read::read(&mut File::from(ready_read), &mut status);
            let result = match got {
                Ok(1) if status[0] == 0 => map_and_pin(child.as_raw(), target, range),
                _ => Err(io("unshare a user namespace", target)(
                    std::io::Error::other("the child could not"),
                )),
            };
            drop(go_write);
            while let Err(Errno::EINTR) = waitpid(child, None) {}
            result
        }
    }
}

fn map_and_pin(pid: i32, target: &Path, range: IdRange) -> Result<(), UsernsError> {
    for file in ["uid_map", "gid_map"] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        fs::write(&path, range.map_line()).map_err(io("write", &path))?;
    }
    netns::pin_of(pid, "user", target).map_err(io("bind-mount", target))
}

/// Gives `path` (not followed if a link) to the pod's range: `id` is the
/// owner the container should see. For what the pod alone uses (its
/// emptyDirs, /etc files, termination logs, overlay upper folder).
pub fn give(path: &Path, range: Option<IdRange>, uid: u32, gid: u32) -> Result<(), UsernsError> {
    let Some(range) = range else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(range.host(uid)), Some(range.host(gid)))
        .map_err(io("chown", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_start_above_the_hosts_ids_and_take_the_lowest_gap() {
        let used = |bases: &[u32]| bases.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(first_free(&used(&[])), Some(65536));
        assert_eq!(first_free(&used(&[65536])), Some(131072));
        assert_eq!(first_free(&used(&[65536, 196608])), Some(131072));
        let all: BTreeSet<u32> = (1..=MAX_RANGES).map(|n| n * RANGE).collect();
        assert_eq!(first_free(&all), None);
        // The last range ends below 2^32 - 1, the kernel's invalid ID.
        let last = MAX_RANGES * RANGE;
        assert!(u64::from(last) + u64::from(RANGE) - 1 < u64::from(u32::MAX));
    }

    #[test]
    fn allocations_are_kept_per_folder_and_never_shared() {
        let root = tempfile::tempdir().unwrap();
        let folder = |name: &str| {
            let dir = root.path().join(name);
            fs::create_dir_all(&dir).unwrap();
            PodFolder::new(dir)
        };
        let (a, b) = (folder("a"), folder("b"));
        let ra = allocate(&a).unwrap();
        let rb = allocate(&b).unwrap();
        assert_eq!((ra.base, rb.base), (65536, 131072));
        assert_eq!(allocate(&a).unwrap(), ra, "a pod keeps its range");
        assert_eq!(range(&a).unwrap(), Some(ra));
        // Removing a pod's folder frees its range for the next pod.
        fs::remove_dir_all(a.dir()).unwrap();
        let c = folder("c");
        assert_eq!(allocate(&c).unwrap().base, 65536);
        assert_eq!(
            IdRange {
                base: 65536,
                size: RANGE
            }
            .map_line(),
            "0 65536 65536\n"
        );
        assert_eq!(ra.host(1000), 66536);
    }
}
