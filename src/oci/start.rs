use libcontainer::container::{Container, ContainerStatus};

use super::error::{Error, Result};
use super::spec::empty_process;
use super::state::OciState;
use super::{adjust, bundle, hooks, status_name, ExecOptions, ExecOutcome, Runtime};
use crate::error::Context;

impl Runtime {
    /// `start`: runs the user's process in a created container.
    pub fn start(&self, id: &str) -> Result<()> {
        let mut container = self.load(id)?;
        if container.status() != ContainerStatus::Created {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(container.status()).into(),
                action: "start it",
            });
        }
        self.run_start_hooks(&container)?;
        container
            .start()
            .context(|| format!("start container {id}"))?;
        Ok(())
    }

    /// startContainer hooks, each as an exec in the container with the state
    /// `created` on its stdin (see hooks.rs); one that fails stops the
    /// container, as the runtime spec asks.
    fn run_start_hooks(&self, container: &Container) -> Result<()> {
        let id = container.id();
        let dir = adjust::adjusted_dir(&self.root, id);
        let start_hooks = hooks::start_hooks(&dir)?;
        if start_hooks.is_empty() {
            return Ok(());
        }
        let mut state = OciState::of(container);
        state.status = "created";
        let state = serde_json::to_value(&state)
            .map_err(|e| Error::Invalid(format!("encode state: {e}")))?;
        let spec = container.bundle().join("config.json");
        let spec = oci_spec::runtime::Spec::load(&spec).map_err(|e| Error::Config {
            path: spec.clone(),
            reason: format!("invalid config: {e}"),
        })?;
        let spec = adjust::user_spec(&self.root, id, spec)?;
        let base = spec.process().clone().unwrap_or_else(empty_process);
        let result = hooks::run_each(&start_hooks, &state, |hook, stdin| {
            let mut process = base.clone();
            let mut args = vec![hook.path().to_string_lossy().into_owned()];
            args.extend(hook.args().iter().flatten().skip(1).cloned());
            process.set_args(Some(args));
            if let Some(env) = hook.env() {
                process.set_env(Some(env.clone()));
            }
            process.set_terminal(Some(false));
            process.set_console_size(None);
            let path = dir.join("start-hook-process.json");
            bundle::write_json(&path, &process)?;
            let outcome = self.exec(&ExecOptions {
                id,
                process: Some(&path),
                detach: true,
                stdin: Some(stdin),
                ..Default::default()
            });
            let _ = std::fs::remove_file(&path);
            match outcome? {
                ExecOutcome::Detached(pid) => Ok(pid),
                ExecOutcome::Exited(_) => unreachable!("a detached exec is not waited for"),
            }
        });
        if let Err(e) = result {
            if let Some(pid) = container.pid() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            return Err(Error::Invalid(format!(
                "start container {id}: startContainer {e}"
            )));
        }
        Ok(())
    }
}
