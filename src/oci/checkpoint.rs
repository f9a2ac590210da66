//! `checkpoint`: a running container's processes dumped by CRIU, through
//! libcontainer's checkpoint (CRIU's RPC, via rust-criu), with runc's flags.
//! libcontainer 0.7 has no pre-dump (and so no `--parent-path`) and no
//! restore: those are refused, naming the flag.

use std::path::Path;

use libcontainer::container::CheckpointOptions;

use super::error::{Error, Result};
use super::{status_name, Runtime};
use crate::error::Context;

/// runc's `checkpoint` flags.
#[derive(Debug)]
pub struct CheckpointFlags<'a> {
    pub image_path: &'a Path,
    pub work_path: Option<&'a Path>,
    pub parent_path: Option<&'a Path>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub pre_dump: bool,
    pub manage_cgroups_mode: Option<&'a str>,
}

/// runc's `--manage-cgroups-mode` names as CRIU's modes.
fn cgroup_mode(name: Option<&str>) -> Result<rust_criu::CgMode> {
    Ok(match name {
        None => rust_criu::CgMode::SOFT,
        Some("soft") => rust_criu::CgMode::SOFT,
        Some("full") => rust_criu::CgMode::FULL,
        Some("strict") => rust_criu::CgMode::STRICT,
        Some("ignore") => rust_criu::CgMode::IGNORE,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "--manage-cgroups-mode {other}: one of soft, full, strict, ignore"
            )))
        }
    })
}

impl Runtime {
    pub fn checkpoint(&self, id: &str, flags: &CheckpointFlags) -> Result<()> {
        if flags.pre_dump {
            return Err(Error::Invalid(
                "--pre-dump: not supported (libcontainer 0.7's checkpoint has no pre-dump)".into(),
            ));
        }
        if let Some(parent) = flags.parent_path {
            return Err(Error::Invalid(format!(
                "--parent-path {}: not supported (it follows a --pre-dump)",
                parent.display()
            )));
        }
        let mode = cgroup_mode(flags.manage_cgroups_mode)?;
        let mut container = self.load(id)?;
        if !container.can_pause() {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(container.status()).into(),
                action: "checkpoint it",
            });
        }
        let opts = CheckpointOptions {
            ext_unix_sk: flags.ext_unix_sk,
            file_locks: flags.file_locks,
            image_path: flags.image_path.to_path_buf(),
            leave_running: flags.leave_running,
            shell_job: flags.shell_job,
            tcp_established: flags.tcp_established,
            work_path: flags.work_path.map(Path::to_path_buf),
            manage_cgroups_mode: mode,
            link_remap: false,
        };
        container.checkpoint(&opts).context(|| {
            let log = flags.work_path.unwrap_or(flags.image_path).join("dump.log");
            format!("checkpoint container {id} (CRIU's log: {})", log.display())
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_modes_by_runcs_names() {
        assert!(matches!(cgroup_mode(None), Ok(rust_criu::CgMode::SOFT)));
        assert!(matches!(
            cgroup_mode(Some("strict")),
            Ok(rust_criu::CgMode::STRICT)
        ));
        let Err(err) = cgroup_mode(Some("props")) else {
            panic!("props accepted");
        };
        let err = err.to_string();
        assert!(err.contains("--manage-cgroups-mode props"), "{err}");
    }
}
