//! `peapod static`: the static-pod daemon.

use anyhow::{anyhow, Result};

use super::args::{GlobalOpts, StaticArgs};
use crate::pod::static_pods::config::{Config, ConfigFile, Overrides};
use crate::pod::static_pods::daemon;

pub fn run(g: &GlobalOpts, a: StaticArgs) -> Result<i32> {
    let file = match &a.config {
        Some(path) => ConfigFile::load(path).map_err(|e| anyhow!(e))?,
        None => ConfigFile::default(),
    };
    let flags = Overrides {
        manifest_dir: a.manifest_dir,
        node_name: a.node_name,
        rescan_seconds: a.rescan_seconds,
    };
    let config = Config::resolve(file, flags).map_err(|e| anyhow!(e))?;
    let opts = super::pod::run_options(g, &a.pods);
    daemon::run(config, opts).map_err(|e| anyhow!(e))?;
    Ok(0)
}
