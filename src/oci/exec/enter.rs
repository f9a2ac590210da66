//! The child `exec` forks: it enters the container and becomes the process,
//! confined as the container's own process is. The order is runc's (setns
//! init): labels, namespaces, terminal, rlimits, no_new_privs, seccomp (before
//! capabilities are dropped when no_new_privs is off, last otherwise),
//! capabilities and user, working directory, cgroup, execve.
//!
//! It runs in a forked copy of a single-threaded process, so it may allocate.
//! Any failure is sent to the parent as one line and the child exits.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, CapsHashSet};
use libcontainer::capabilities::CapabilityExt;
use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{
    Capabilities, LinuxPersonality, LinuxPersonalityDomain, PosixRlimitType, Process,
};

use super::channel::{Channel, Message};
use crate::oci::seccomp;

/// Everything the child needs, prepared (and opened) by the parent while it
/// still sees the host.
pub struct Entry {
    pub process: Process,
    pub seccomp: Option<seccomp::Filter>,
    pub personality: Option<LinuxPersonality>,
    /// The namespaces to join, in order (user first, mount last).
    pub namespaces: Vec<Namespace>,
    /// `cgroup.procs` of each cgroup to join, opened for writing.
    pub cgroups: Vec<CgroupJoin>,
    pub preserve_fds: i32,
    /// What becomes the process's stdin instead of ours (a hook's state).
    pub stdin: Option<OwnedFd>,
}

pub struct Namespace {
    pub name: &'static str,
    pub flag: CloneFlags,
    pub fd: OwnedFd,
}

pub struct CgroupJoin {
    pub dir: PathBuf,
    pub procs: File,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// DEVPTS_SUPER_MAGIC of <linux/magic.h>.
const DEVPTS_MAGIC: i64 = 0x1cd1;

/// Enters the container and execs the process; never returns.
pub fn run(entry: Entry, channel: Channel) -> ! {
    let message = match become_process(entry, &channel) {
        Ok(never) => match never {},
        Err(message) => message,
    };
    let _ = channel.send(&Message::Failed(message));
    // SAFETY: leaving the forked child without running the parent's exit
    // handlers or flushing its buffers a second time.
    unsafe { libc::_exit(127) }
}

type Step<T> = std::result::Result<T, String>;

fn become_process(entry: Entry, channel: &Channel) -> Step<Infallible> {
    let process = &entry.process;
    // The parent may block signals while it waits, and Rust ignores SIGPIPE;
    // both would be inherited through execve.
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: only the disposition changes; no handler of ours runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    if let Some(stdin) = &entry.stdin {
        nix::unistd::dup2(stdin.as_raw_fd(), 0).map_err(|e| format!("stdin: {e}"))?;
    }
    mark_cloexec_from(3 + entry.preserve_fds.max(0));

    // Through the host's /proc, before the container's mount namespace can
    // put anything else there.
    if let Some(score) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", score.to_string())
            .map_err(|e| format!("process.oomScoreAdj {score}: {e}"))?;
    }
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        libcontainer::apparmor::apply_profile(profile)
            .map_err(|e| format!("process.apparmorProfile {profile}: {e}"))?;
    }
    if let Some(label) = process.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        // As runc: a label is ignored where SELinux is off.
        if Path::new("/sys/fs/selinux/enforce").exists() {
            std::fs::write("/proc/self/attr/exec", label)
                .map_err(|e| format!("process.selinuxLabel {label}: {e}"))?;
        }
    }
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;

    for ns in &entry.namespaces {
        setns(ns.fd.as_fd(), ns.flag)
            .map_err(|e| format!("join the container's {} namespace: {e}", ns.name))?;
    }
    drop(entry.namespaces);

    let uid = process.user().uid();
    let gid = process.user().gid();
    if process.terminal() == Some(true) {
        let master = open_terminal(process, uid)?;
        channel
            .send(&Message::Terminal(master))
            .map_err(|e| e.to_string())?;
    }
    for rlimit in process.rlimits().iter().flatten() {
        let resource = rlimit_resource(rlimit.typ());
        let value = libc::rlimit {
            rlim_cur: rlimit.soft(),
            rlim_max: rlimit.hard(),
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(resource, &value) } != 0 {
            return Err(format!(
                "process.rlimits {}: {}",
                rlimit.typ(),
                std::io::Error::last_os_error()
            ));
        }
    }
    if let Some(personality) = &entry.personality {
        set_personality(personality)?;
    }
    let no_new_privs = process.no_new_privileges() == Some(true);
    if no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    }
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before the drop.
    if !no_new_privs {
        load_seccomp(entry.seccomp.as_ref(), channel)?;
    }
    if uid != 0 {
        give_stdio_to(uid, gid);
    }
    set_user_and_capabilities(process)?;

    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(|e| match e {
        nix::Error::ENOENT | nix::Error::ENOTDIR => {
            format!("cwd {}: no such directory in the container", cwd.display())
        }
        e => format!("cwd {}: {e}", cwd.display()),
    })?;
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    let arg0 = args.first().ok_or("process.args: required")?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    let program = find_executable(arg0, &env)?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(uid)));
    }
    let c = |s: &[u8]| CString::new(s).map_err(|_| format!("{arg0}: argument with a NUL byte"));
    let path = c(program.as_os_str().as_bytes())?;
    let argv = args
        .iter()
        .map(|a| c(a.as_bytes()))
        .collect::<Step<Vec<_>>>()?;
    let envp = env
        .iter()
        .map(|e| c(e.as_bytes()))
        .collect::<Step<Vec<_>>>()?;

    if no_new_privs {
        load_seccomp(entry.seccomp.as_ref(), channel)?;
    }
    channel.send(&Message::Ready).map_err(|e| e.to_string())?;
    for cgroup in entry.cgroups {
        (&cgroup.procs)
            .write_all(b"0")
            .map_err(|e| format!("join cgroup {}: {e}", cgroup.dir.display()))?;
    }
    let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err(format!("exec {arg0}: {err}"))
}

/// Every descriptor from `first` up is closed at execve (ours are already).
fn mark_cloexec_from(first: i32) {
    let first = first as libc::c_uint;
    // SAFETY: close_range (glibc's wrapper; nix and rustix have none) only
    // changes descriptor flags of this process.
    let done =
        unsafe { libc::close_range(first, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) }
            == 0;
    if done {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first as i32)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC on a descriptor number; a stale one fails harmlessly.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// A new pty from the container's devpts: the slave becomes our controlling
/// terminal and stdio, owned by the process's user (as runc does); the master
/// goes to the parent.
fn open_terminal(process: &Process, uid: u32) -> Step<OwnedFd> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("terminal: open /dev/ptmx in the container: {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("terminal: grantpt: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("terminal: unlockpt: {e}"))?;
    // SAFETY: TIOCGPTPEER opens the master's own peer, without a path lookup
    // the container could redirect; the result is a new descriptor we own.
    let raw = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(format!(
            "terminal: open the pty slave: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a descriptor just returned by the kernel, owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(raw) };
    // The container controls its /dev: make sure /dev/ptmx really was a devpts
    // multiplexer and not something planted there.
    let fs = nix::sys::statfs::fstatfs(&master).map_err(|e| format!("terminal: statfs: {e}"))?;
    if fs.filesystem_type().0 as i64 != DEVPTS_MAGIC {
        return Err("terminal: /dev/ptmx in the container is not on a devpts filesystem".into());
    }
    let st = fstat(slave.as_raw_fd()).map_err(|e| format!("terminal: stat: {e}"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR
        || !(136..=143).contains(&libc::major(st.st_rdev))
    {
        return Err("terminal: the pty slave is not a pty".into());
    }
    nix::unistd::fchown(slave.as_raw_fd(), Some(Uid::from_raw(uid)), None)
        .map_err(|e| format!("terminal: chown to {uid}: {e}"))?;
    if let Some(size) = process.console_size() {
        crate::oci::console::set_window_size(slave.as_fd(), size.height(), size.width());
    }
    for fd in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), fd).map_err(|e| format!("terminal: dup2: {e}"))?;
    }
    // SAFETY: TIOCSCTTY on our own stdin, a terminal; we lead a new session.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(format!(
            "terminal: make it the controlling terminal: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the master's descriptor moves into an OwnedFd that now owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) })
}

/// As runc: a non-root process can reopen its own stdio (/dev/stdout) when it
/// is a pipe or socket. Device nodes and files are never touched.
fn give_stdio_to(uid: u32, gid: u32) {
    for fd in 0..3 {
        let Ok(st) = fstat(fd) else { continue };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if (kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK) && st.st_uid != uid {
            let _ = nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        }
    }
}

fn load_seccomp(filter: Option<&seccomp::Filter>, channel: &Channel) -> Step<()> {
    let Some(filter) = filter else {
        return Ok(());
    };
    if let Some(fd) = seccomp::load(filter)? {
        channel
            .send(&Message::SeccompNotify(fd))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn caps_of(set: &Option<Capabilities>) -> CapsHashSet {
    set.iter().flatten().map(|c| c.to_cap()).collect()
}

/// Bounding set first (it needs CAP_SETPCAP), then groups and ids with the
/// permitted set kept across setuid, then the process's own sets.
fn set_user_and_capabilities(process: &Process) -> Step<()> {
    let user = process.user();
    let caps = process.capabilities().as_ref();
    if let Some(caps) = caps {
        let keep = caps_of(caps.bounding());
        let have = caps::read(None, CapSet::Bounding).map_err(|e| format!("capabilities: {e}"))?;
        for cap in have.difference(&keep) {
            caps::drop(None, CapSet::Bounding, *cap)
                .map_err(|e| format!("capabilities: drop {cap} from the bounding set: {e}"))?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("keepcaps: {e}"))?;
    let mut groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    groups.dedup();
    nix::unistd::setgroups(&groups)
        .map_err(|e| format!("process.user.additionalGids {groups:?}: {e}"))?;
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("process.user.gid {gid}: {e}"))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("process.user.uid {uid}: {e}"))?;
    let umask = user.umask().unwrap_or(0o022);
    nix::sys::stat::umask(Mode::from_bits_truncate(umask as libc::mode_t));
    if let Some(caps) = caps {
        let permitted = caps_of(caps.permitted());
        let effective = caps_of(caps.effective());
        for (set, value, name) in [
            (
                CapSet::Inheritable,
                caps_of(caps.inheritable()),
                "inheritable",
            ),
            (CapSet::Effective, &effective & &permitted, "effective"),
            (CapSet::Permitted, permitted, "permitted"),
        ] {
            caps::set(None, set, &value)
                .map_err(|e| format!("process.capabilities.{name}: {e}"))?;
        }
        caps::clear(None, CapSet::Ambient).map_err(|e| format!("capabilities: {e}"))?;
        for cap in caps_of(caps.ambient()) {
            caps::raise(None, CapSet::Ambient, cap)
                .map_err(|e| format!("process.capabilities.ambient {cap}: {e}"))?;
        }
    }
    nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("keepcaps: {e}"))?;
    Ok(())
}

fn set_personality(personality: &LinuxPersonality) -> Step<()> {
    if personality.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err("linux.personality.flags: not supported".into());
    }
    let persona = match personality.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) takes a plain integer.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(format!(
            "linux.personality: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `args[0]` as execve needs it: a path as given, else the first executable
/// of that name on the process's PATH.
fn find_executable(arg0: &str, env: &[String]) -> Step<PathBuf> {
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(arg0))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| format!("{arg0}: executable file not found in $PATH"))
}

/// The home folder of `uid` in the container's /etc/passwd, else `/`.
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

fn rlimit_resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_found_on_the_process_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::write(bin.join("plain"), "").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = vec![format!("PATH=/nonexistent:{}", bin.display())];
        assert_eq!(find_executable("tool", &env).unwrap(), tool);
        let err = find_executable("plain", &env).unwrap_err();
        assert!(err.contains("plain: executable file not found"), "{err}");
        assert_eq!(
            find_executable("./x/y", &env).unwrap(),
            PathBuf::from("./x/y")
        );
    }
}
