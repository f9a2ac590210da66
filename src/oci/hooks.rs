//! OCI hooks with the state the runtime spec gives them. libcontainer hands
//! each hook the state of the folder it read the config from (peapod's
//! adjusted copy, see adjust.rs, not the user's bundle) and tells
//! startContainer hooks `creating`. So the hooks that run in the runtime's
//! namespaces (prestart, createRuntime, createContainer before pivot_root,
//! poststart, poststop) run through `peapod hook-state`, which puts the user's
//! bundle into the state on its stdin and execs the hook; startContainer hooks
//! are taken out of libcontainer's config and run by `start` as an exec in
//! the container (the container's namespaces, cgroup, user and capabilities,
//! as runc's init runs them) with the state `created`. A peapod binary is
//! never run inside the container for this (a container process could reach
//! it through /proc/PID/exe).

use std::convert::Infallible;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Spec};
use serde_json::Value;

use super::error::{Error, Result};
use crate::error::Context;

/// The hidden verb the wrapped hooks run.
pub const VERB: &str = "hook-state";

/// The file in the adjusted folder that keeps startContainer hooks for `start`.
const START_HOOKS: &str = "start-container-hooks.json";

/// Whether `spec` has hooks whose state libcontainer would get wrong even
/// without an adjusted copy (startContainer's status).
pub fn needs_adjusting(spec: &Spec) -> bool {
    spec.hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .is_some_and(|h| !h.is_empty())
}

/// Rewrites the hooks of the adjusted copy: the runtime-side ones through
/// `exe hook-state --bundle <user's bundle>`; startContainer ones out, and
/// returned for `save_start_hooks`.
pub fn wrap(spec: &mut Spec, exe: &Path, bundle: &Path) -> Vec<Hook> {
    let Some(hooks) = spec.hooks_mut() else {
        return vec![];
    };
    let wrap_all = |list: &Option<Vec<Hook>>| -> Option<Vec<Hook>> {
        list.as_ref()
            .map(|l| l.iter().map(|h| wrapped(h, exe, bundle)).collect())
    };
    #[allow(deprecated)]
    let prestart = wrap_all(hooks.prestart());
    #[allow(deprecated)]
    hooks.set_prestart(prestart);
    let list = wrap_all(hooks.create_runtime());
    hooks.set_create_runtime(list);
    let list = wrap_all(hooks.create_container());
    hooks.set_create_container(list);
    let list = wrap_all(hooks.poststart());
    hooks.set_poststart(list);
    let list = wrap_all(hooks.poststop());
    hooks.set_poststop(list);
    let start = hooks.start_container().clone().unwrap_or_default();
    hooks.set_start_container(None);
    start
}

fn wrapped(hook: &Hook, exe: &Path, bundle: &Path) -> Hook {
    let mut args = vec![
        "peapod".to_string(),
        VERB.to_string(),
        "--bundle".to_string(),
        bundle.to_string_lossy().into_owned(),
        "--".to_string(),
        hook.path().to_string_lossy().into_owned(),
    ];
    match hook.args() {
        Some(a) if !a.is_empty() => args.extend(a.iter().cloned()),
        _ => args.push(hook.path().to_string_lossy().into_owned()),
    }
    let mut out = hook.clone();
    out.set_path(exe.to_path_buf());
    out.set_args(Some(args));
    out
}

/// Keeps startContainer hooks in the adjusted folder `dir`.
pub fn save_start_hooks(dir: &Path, hooks: &[Hook]) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let path = dir.join(START_HOOKS);
    let text = serde_json::to_vec(hooks)
        .map_err(|e| Error::Invalid(format!("encode {}: {e}", path.display())))?;
    std::fs::write(&path, text).context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// The startContainer hooks kept for the container whose adjusted folder is `dir`.
pub fn start_hooks(dir: &Path) -> Result<Vec<Hook>> {
    let path = dir.join(START_HOOKS);
    match std::fs::read(&path) {
        Ok(text) => serde_json::from_slice(&text).map_err(|e| Error::Config {
            path,
            reason: format!("invalid hooks: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e).context(|| format!("read {}", path.display()))?,
    }
}

/// `peapod hook-state --bundle B -- PATH ARGV0 ARGS...`: the state on stdin
/// with `bundle` set to B becomes the stdin of PATH, which replaces this
/// process (its pid, environment and the runtime's timeout stay the hook's).
pub fn exec_hook(bundle: &Path, argv: &[String]) -> Result<Infallible> {
    let (path, args) = match argv {
        [path, args @ ..] if !args.is_empty() => (path, args),
        _ => return Err(Error::Invalid(format!("{VERB}: no hook to run"))),
    };
    let mut text = Vec::new();
    std::io::stdin()
        .read_to_end(&mut text)
        .context(|| format!("{VERB}: read the state"))?;
    let state = with_bundle(&text, bundle);
    stdin_from(&state)?;
    let c = |s: &str| CString::new(s).map_err(|_| Error::Invalid(format!("{VERB}: NUL in {s:?}")));
    let path = c(path)?;
    let args = args.iter().map(|a| c(a)).collect::<Result<Vec<_>>>()?;
    let err = nix::unistd::execv(&path, &args).unwrap_err();
    Err(Error::Invalid(format!(
        "hook {}: {err}",
        path.to_string_lossy()
    )))
}

/// The state with its bundle replaced; text that is not a JSON object as it came.
fn with_bundle(text: &[u8], bundle: &Path) -> Vec<u8> {
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(mut map)) => {
            map.insert("bundle".into(), bundle.to_string_lossy().into());
            serde_json::to_vec(&Value::Object(map)).unwrap_or_else(|_| text.to_vec())
        }
        _ => text.to_vec(),
    }
}

/// Makes fd 0 a memory file holding `data` (a pipe could not take a large
/// state without a writer alongside).
fn stdin_from(data: &[u8]) -> Result<()> {
    let file = memory_file(data)?;
    nix::unistd::dup2(file.as_raw_fd(), 0).context(|| "dup2 the state onto stdin".into())?;
    Ok(())
}

fn memory_file(data: &[u8]) -> Result<std::fs::File> {
    // SAFETY: the name is a NUL-terminated literal; the returned fd is checked.
    let fd = unsafe { libc::memfd_create(c"state".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context(|| "memfd_create".into())?;
    }
    // SAFETY: memfd_create returned this descriptor; nothing else owns it.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(data)
        .and_then(|()| std::io::Seek::rewind(&mut file))
        .context(|| "write the state".into())?;
    Ok(file)
}

/// Runs `hooks` one after the other, each by `spawn` (which starts it with
/// its stdin as given and returns its pid as our child), with the hook's
/// timeout; a hook that fails or times out (killed) fails the rest.
pub fn run_each(
    hooks: &[Hook],
    state: &Value,
    mut spawn: impl FnMut(&Hook, OwnedFd) -> Result<nix::unistd::Pid>,
) -> Result<()> {
    let text =
        serde_json::to_vec(state).map_err(|e| Error::Invalid(format!("encode state: {e}")))?;
    for hook in hooks {
        let stdin = OwnedFd::from(memory_file(&text)?);
        let pid = spawn(hook, stdin)?;
        let timeout = hook
            .timeout()
            .filter(|t| *t > 0)
            .map(|t| Duration::from_secs(t as u64));
        wait_hook(hook.path(), pid, timeout)?;
    }
    Ok(())
}

fn wait_hook(path: &Path, pid: nix::unistd::Pid, timeout: Option<Duration>) -> Result<()> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = timeout.map(|t| Instant::now() + t);
    let name = || PathBuf::from(path).display().to_string();
    loop {
        let flags = deadline.map(|_| WaitPidFlag::WNOHANG);
        match waitpid(pid, flags).context(|| format!("wait for hook {}", name()))? {
            WaitStatus::Exited(_, 0) => return Ok(()),
            WaitStatus::Exited(_, code) => {
                return Err(Error::Invalid(format!(
                    "hook {}: exited with code {code}",
                    name()
                )))
            }
            WaitStatus::Signaled(_, signal, _) => {
                return Err(Error::Invalid(format!(
                    "hook {}: killed by {signal}",
                    name()
                )))
            }
            _ => {}
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(Error::Invalid(format!("hook {}: timed out", name())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hooks: &str) -> Spec {
        serde_json::from_str(&format!(r#"{{"ociVersion": "1.0.2", "hooks": {hooks}}}"#)).unwrap()
    }

    #[test]
    fn runtime_hooks_are_wrapped_and_start_container_ones_kept_apart() {
        let mut s = spec(
            r#"{"prestart": [{"path": "/bin/a", "args": ["a", "x"], "env": ["K=V"], "timeout": 3}],
                "poststop": [{"path": "/bin/b"}],
                "startContainer": [{"path": "/in/container"}]}"#,
        );
        assert!(needs_adjusting(&s));
        let start = wrap(&mut s, Path::new("/usr/bin/peapod"), Path::new("/b"));
        assert_eq!(start.len(), 1);
        assert_eq!(start[0].path(), Path::new("/in/container"));
        let hooks = s.hooks().as_ref().unwrap();
        assert!(hooks.start_container().is_none());
        #[allow(deprecated)]
        let pre = &hooks.prestart().as_ref().unwrap()[0];
        assert_eq!(pre.path(), Path::new("/usr/bin/peapod"));
        assert_eq!(
            pre.args().as_deref().unwrap(),
            ["peapod", VERB, "--bundle", "/b", "--", "/bin/a", "a", "x"]
        );
        assert_eq!(pre.env().as_deref().unwrap(), ["K=V"]);
        assert_eq!(pre.timeout(), Some(3));
        let post = &hooks.poststop().as_ref().unwrap()[0];
        assert_eq!(
            post.args().as_deref().unwrap(),
            ["peapod", VERB, "--bundle", "/b", "--", "/bin/b", "/bin/b"]
        );
        assert!(!needs_adjusting(&spec(r#"{"poststop": [{"path": "/x"}]}"#)));
    }

    #[test]
    fn the_state_gets_the_bundle() {
        let out = with_bundle(
            br#"{"id": "c", "bundle": "/adjusted", "status": "creating"}"#,
            Path::new("/user"),
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["bundle"], "/user");
        assert_eq!(v["status"], "creating");
        assert_eq!(with_bundle(b"not json", Path::new("/u")), b"not json");
    }

    #[test]
    fn kept_hooks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(start_hooks(dir.path()).unwrap().is_empty());
        let hooks: Vec<Hook> =
            serde_json::from_str(r#"[{"path": "/h", "args": ["h", "1"]}]"#).unwrap();
        save_start_hooks(dir.path(), &hooks).unwrap();
        assert_eq!(start_hooks(dir.path()).unwrap(), hooks);
    }
}
