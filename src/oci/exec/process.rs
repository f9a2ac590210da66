//! The process an `exec` runs: a process.json given by the caller, or the
//! container's own process with the command line's overrides, as runc builds it.

use std::path::Path;

use oci_spec::runtime::{Capabilities, Capability, Process, Spec};

use super::ExecOptions;
use crate::oci::error::{Error, Result};
use crate::oci::spec::empty_capabilities;

/// Reads `--process FILE`: a whole process object, as containerd's shim sends it.
pub fn from_file(path: &Path) -> Result<Process> {
    let config_err = |reason: String| Error::Config {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| config_err(e.to_string()))?;
    let process: Process =
        serde_json::from_slice(&text).map_err(|e| config_err(format!("invalid process: {e}")))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(config_err("args: required".into()));
    }
    Ok(process)
}

/// The container's process (from its config) with `opts` applied on top.
pub fn from_container(spec: &Spec, opts: &ExecOptions) -> Result<Process> {
    if opts.args.is_empty() {
        return Err(Error::Invalid(
            "exec: a command (or --process) is required".into(),
        ));
    }
    let mut process = spec.process().clone().unwrap_or_default();
    apply_overrides(&mut process, opts)?;
    Ok(process)
}

fn apply_overrides(process: &mut Process, opts: &ExecOptions) -> Result<()> {
    process.set_args(Some(opts.args.clone()));
    process.set_terminal(Some(opts.tty));
    let mut env = process.env().clone().unwrap_or_default();
    for entry in &opts.env {
        let key = entry.split('=').next().unwrap_or_default();
        if key.is_empty() || !entry.contains('=') {
            return Err(Error::Invalid(format!(
                "--env {entry:?}: expected KEY=VALUE"
            )));
        }
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(entry.clone());
    }
    process.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        if !cwd.is_absolute() {
            return Err(Error::Invalid(format!(
                "--cwd {}: must be an absolute path",
                cwd.display()
            )));
        }
        process.set_cwd(cwd.clone());
    }
    if process.cwd().as_os_str().is_empty() {
        process.set_cwd("/".into());
    }
    if let Some((uid, gid)) = opts.user {
        process.user_mut().set_uid(uid);
        process.user_mut().set_gid(gid.unwrap_or(0));
    }
    if !opts.additional_gids.is_empty() {
        process
            .user_mut()
            .set_additional_gids(Some(opts.additional_gids.clone()));
    }
    if !opts.caps.is_empty() {
        let mut caps = process
            .capabilities()
            .clone()
            .unwrap_or_else(empty_capabilities);
        for name in &opts.caps {
            let cap = parse_cap(name)?;
            let with = |set: &Option<Capabilities>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            caps.set_bounding(with(caps.bounding()));
            caps.set_effective(with(caps.effective()));
            caps.set_permitted(with(caps.permitted()));
        }
        process.set_capabilities(Some(caps));
    }
    if opts.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    Ok(())
}

/// `net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` all name the same capability.
fn parse_cap(name: &str) -> Result<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| Error::Invalid(format!("--cap {name}: unknown capability")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::ProcessBuilder;
    use std::collections::HashSet;

    fn opts(args: &[&str]) -> ExecOptions<'static> {
        ExecOptions {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn set(caps: &[Capability]) -> HashSet<Capability> {
        caps.iter().copied().collect()
    }

    #[test]
    fn overrides_apply_over_the_container_process() {
        let mut caps = empty_capabilities();
        caps.set_bounding(Some(set(&[Capability::Kill])));
        caps.set_effective(Some(set(&[Capability::Kill])));
        caps.set_permitted(Some(set(&[Capability::Kill])));
        let mut p = ProcessBuilder::default()
            .args(vec!["sh".to_string()])
            .terminal(true)
            .cwd("/")
            .env(vec!["PATH=/bin".to_string(), "A=1".to_string()])
            .capabilities(caps)
            .build()
            .unwrap();
        p.user_mut().set_uid(5);
        let mut o = opts(&["ls", "-l"]);
        o.env = vec!["A=2".into(), "B=3".into()];
        o.cwd = Some("/tmp".into());
        o.user = Some((1000, Some(1001)));
        o.caps = vec!["net_admin".into(), "CAP_KILL".into()];
        o.no_new_privs = true;
        apply_overrides(&mut p, &o).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["ls".into(), "-l".into()][..]));
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(
            p.env().as_deref(),
            Some(&["PATH=/bin".into(), "A=2".into(), "B=3".into()][..])
        );
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        let caps = p.capabilities().as_ref().unwrap();
        let want = set(&[Capability::Kill, Capability::NetAdmin]);
        assert_eq!(caps.bounding().as_ref(), Some(&want));
        assert_eq!(caps.effective().as_ref(), Some(&want));
        assert_eq!(caps.permitted().as_ref(), Some(&want));
        assert_eq!(caps.ambient(), &None);
        assert_eq!(p.no_new_privileges(), Some(true));
    }

    #[test]
    fn the_container_process_is_kept_where_nothing_overrides_it() {
        let spec = Spec::default();
        let p = from_container(&spec, &opts(&["true"])).unwrap();
        let own = spec.process().as_ref().unwrap();
        assert_eq!(p.capabilities(), own.capabilities());
        assert_eq!(p.rlimits(), own.rlimits());
        assert_eq!(p.no_new_privileges(), own.no_new_privileges());
        assert_eq!(p.user(), own.user());
    }

    #[test]
    fn bad_overrides_are_named() {
        let mut p = Process::default();
        let mut o = opts(&["true"]);
        o.env = vec!["NOEQUALS".into()];
        let err = apply_overrides(&mut p, &o).unwrap_err().to_string();
        assert!(err.contains("--env \"NOEQUALS\""), "{err}");
        let mut o = opts(&["true"]);
        o.cwd = Some("relative".into());
        let err = apply_overrides(&mut p, &o).unwrap_err().to_string();
        assert!(err.contains("--cwd relative"), "{err}");
        let mut o = opts(&["true"]);
        o.caps = vec!["CAP_FLY".into()];
        let err = apply_overrides(&mut p, &o).unwrap_err().to_string();
        assert!(err.contains("--cap CAP_FLY"), "{err}");
        let err = from_container(&Spec::default(), &opts(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a command"), "{err}");
    }
}
