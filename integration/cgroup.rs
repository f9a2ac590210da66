//! `sys::cgroup` on this host's real hierarchies (hybrid here; pure v2 in a
//! v2 guest): processes, stats, the freezer, an OOM kill seen through the
//! notification descriptor, and removal of a tree with sub-cgroups.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use peapod::sys::cgroup::{FreezerState, Layout, Mode, OomEvent, Version};

use crate::common::require_root;

/// A test-named cgroup parent in every hierarchy, its processes killed and
/// its tree removed at the end, whatever happened.
struct Scratch {
    layout: Layout,
    rel: PathBuf,
    children: Vec<Child>,
}

impl Scratch {
    fn new() -> Self {
        let layout = Layout::host();
        let rel = PathBuf::from(format!("peapod-it-cgroup-{}", std::process::id()));
        mkdirs(&layout, &rel);
        if layout.mode() == Mode::Unified {
            // Children of the parent get these controllers (best effort: the
            // root must offer them, as it does on a systemd host).
            let root = layout.mount_points().next().unwrap();
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +pids");
            let _ = std::fs::write(
                root.join(&rel).join("cgroup.subtree_control"),
                "+memory +pids",
            );
        }
        Scratch {
            layout,
            rel,
            children: vec![],
        }
    }

    /// Folders of `sub` (below the parent) in every hierarchy.
    fn make(&self, sub: &str) -> PathBuf {
        let rel = self.rel.join(sub);
        mkdirs(&self.layout, &rel);
        rel
    }

    /// Runs `script` with sh after moving the shell into `rel` in every hierarchy.
    fn spawn_in(&mut self, rel: &Path, script: &str) -> i32 {
        let joins: String = self
            .layout
            .mount_points()
            .map(|m| format!("echo $$ > {}/cgroup.procs && ", m.join(rel).display()))
            .collect();
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("{joins}exec {script}"))
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        self.children.push(child);
        pid
    }
}

/// `rel` in every hierarchy, each level of a v1 cpuset given its parent's
/// CPUs and memory nodes (a new cpuset has none, and takes no process).
fn mkdirs(layout: &Layout, rel: &Path) {
    for h in layout.hierarchies() {
        let mut dir = h.mount_point.clone();
        for part in rel.components() {
            let parent = dir.clone();
            dir.push(part);
            if std::fs::create_dir(&dir).is_ok() && h.has("cpuset") {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(parent.join(file)).unwrap();
                    std::fs::write(dir.join(file), value.trim()).unwrap();
                }
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.layout.cgroup(&self.rel).thaw();
        let removed = self.layout.cgroup(&self.rel).remove();
        if !std::thread::panicking() {
            removed.unwrap();
        }
    }
}

#[test]
fn cgroup_module_on_the_real_hierarchies() {
    require_root();
    let mut s = Scratch::new();
    let layout = s.layout.clone();
    assert_ne!(layout.mode(), Mode::None, "no cgroup hierarchy mounted");

    // A process in a sub-cgroup of a sub-cgroup: the parent lists it.
    let nested = s.make("a/b");
    let pid = s.spawn_in(&nested, "sleep 1000");
    let parent = layout.cgroup(&s.rel);
    crate::common::wait_until("the sleeper in its cgroup", Duration::from_secs(5), || {
        parent.pids().unwrap() == vec![pid]
    });
    let own = layout.cgroup_of_pid(pid).unwrap();
    assert!(
        own.dirs().iter().all(|d| d.path.ends_with(&nested)),
        "{own:?}"
    );

    let stats = parent.stats().unwrap();
    assert!(stats.cpu.is_some(), "{stats:?}");
    assert!(
        stats.pids.as_ref().is_some_and(|p| p.current >= 1),
        "{stats:?}"
    );
    assert!(stats.memory.is_some(), "{stats:?}");

    let leaf = layout.cgroup(&nested);
    leaf.freeze().unwrap();
    assert_eq!(leaf.freezer_state().unwrap(), FreezerState::Frozen);
    leaf.thaw().unwrap();
    assert_eq!(leaf.freezer_state().unwrap(), FreezerState::Thawed);

    // An OOM kill, seen by the watch and counted.
    let hungry = layout.cgroup(s.make("hungry"));
    let memory = hungry.controller("memory").unwrap().clone();
    match memory.version {
        Version::V1 => {
            std::fs::write(memory.path.join("memory.limit_in_bytes"), "16M").unwrap();
            let _ = std::fs::write(memory.path.join("memory.memsw.limit_in_bytes"), "16M");
        }
        Version::V2 => {
            std::fs::write(memory.path.join("memory.max"), "16M").unwrap();
            let _ = std::fs::write(memory.path.join("memory.swap.max"), "0");
        }
    }
    let mut watch = hungry.watch_oom().unwrap().expect("a memory controller");
    assert_eq!(hungry.oom_kills(), 0);
    let rel = s.rel.join("hungry");
    s.spawn_in(&rel, "dd if=/dev/zero of=/dev/null bs=64M count=4");
    let mut seen = None;
    while seen.is_none() {
        let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(10_000u16)).unwrap();
        assert_eq!(ready, 1, "no OOM notification in 10 s");
        match watch.read() {
            Ok(OomEvent::Oom) => seen = Some(()),
            Ok(OomEvent::Other) => {}
            Ok(OomEvent::Gone) => panic!("the cgroup went away"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    crate::common::wait_until("the OOM kill counted", Duration::from_secs(5), || {
        hungry.oom_kills() >= 1
    });

    // The whole tree goes, leaves first, once its processes are gone.
    for child in &mut s.children {
        let _ = child.kill();
        let _ = child.wait();
    }
    s.children.clear();
    crate::common::wait_until("the tree removed", Duration::from_secs(5), || {
        parent.remove().is_ok()
    });
    for m in layout.mount_points() {
        assert!(
            !m.join(&s.rel).exists(),
            "{} left",
            m.join(&s.rel).display()
        );
    }
}
