//! The runc-compatible verbs.

use std::io::Write;

use anyhow::{bail, Result};

use super::args::*;
use crate::oci::{self, CreateOptions, ExecOptions, ExecOutcome, Runtime};

fn runtime(g: &GlobalOpts) -> Result<Runtime> {
    Ok(Runtime::new(&g.root, g.systemd_cgroup)?)
}

fn create_options(a: &CreateArgs) -> CreateOptions<'_> {
    CreateOptions {
        id: &a.id,
        bundle: &a.bundle,
        pid_file: a.pid_file.as_deref(),
        console_socket: a.console_socket.as_deref(),
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
    }
}

pub fn create(g: &GlobalOpts, a: CreateArgs) -> Result<i32> {
    runtime(g)?.create(&create_options(&a))?;
    Ok(0)
}

pub fn start(g: &GlobalOpts, a: IdArg) -> Result<i32> {
    runtime(g)?.start(&a.id)?;
    Ok(0)
}

pub fn state(g: &GlobalOpts, a: IdArg) -> Result<i32> {
    let state = runtime(g)?.state(&a.id)?;
    println!("{}", serde_json::to_string_pretty(&state)?);
    Ok(0)
}

pub fn kill(g: &GlobalOpts, a: KillArgs) -> Result<i32> {
    match oci::signal::parse_kill(&a.signal)? {
        Some(signal) => runtime(g)?.kill(&a.id, signal, a.all)?,
        None => runtime(g)?.probe(&a.id, a.all)?,
    }
    Ok(0)
}

pub fn delete(g: &GlobalOpts, a: DeleteArgs) -> Result<i32> {
    runtime(g)?.delete(&a.id, a.force)?;
    Ok(0)
}

pub fn run(g: &GlobalOpts, a: RunArgs) -> Result<i32> {
    let exit = runtime(g)?.run(&create_options(&a.create), a.detach, a.keep)?;
    Ok(exit.0)
}

pub fn exec(g: &GlobalOpts, a: ExecArgs) -> Result<i32> {
    let opts = ExecOptions {
        id: &a.id,
        process: a.process.as_deref(),
        args: a.command,
        tty: a.tty,
        detach: a.detach,
        pid_file: a.pid_file.as_deref(),
        console_socket: a.console_socket.as_deref(),
        env: a.env,
        cwd: a.cwd,
        user: a.user,
        additional_gids: a.additional_gids,
        caps: a.cap,
        no_new_privs: a.no_new_privs,
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        sub_cgroup: a.cgroup,
        stdin: None,
    };
    match runtime(g)?.exec(&opts)? {
        ExecOutcome::Detached(_) => Ok(0),
        ExecOutcome::Exited(status) => Ok(status.0),
    }
}

pub fn ps(g: &GlobalOpts, a: PsArgs) -> Result<i32> {
    let rt = runtime(g)?;
    match a.format {
        Format::Json => {
            if !a.ps_args.is_empty() {
                bail!("ps: arguments for ps cannot be used with --format json");
            }
            println!("{}", serde_json::to_string(&rt.pids(&a.id)?)?);
        }
        Format::Table => print!("{}", rt.ps_table(&a.id, &a.ps_args)?),
    }
    Ok(0)
}

pub fn list(g: &GlobalOpts, a: ListArgs) -> Result<i32> {
    let states = runtime(g)?.list()?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for s in &states {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(0);
    }
    match a.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(&states)?)?,
        Format::Table => {
            let rows: Vec<[String; 6]> = states
                .iter()
                .map(|s| {
                    [
                        s.id.clone(),
                        s.pid.to_string(),
                        s.status.to_string(),
                        s.bundle.display().to_string(),
                        s.created.clone(),
                        s.owner.clone(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            write!(out, "{}", table(&header, &rows))?;
        }
    }
    Ok(0)
}

/// Left-aligned columns separated by at least three spaces, like runc's tabwriter.
fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i + 1 == N {
                    cell.clone()
                } else {
                    format!("{cell:<w$}   ")
                }
            })
            .collect();
        text.push_str(cells.concat().trim_end());
        text.push('\n');
    }
    text
}

pub fn spec(g: &GlobalOpts, a: SpecArgs) -> Result<i32> {
    let rootless = g.rootless.as_deref() == Some("true");
    oci::spec::write_default_spec(&a.bundle, rootless)?;
    Ok(0)
}

pub fn features() -> Result<i32> {
    println!("{}", serde_json::to_string_pretty(&oci::features())?);
    Ok(0)
}

pub fn pause(g: &GlobalOpts, a: IdArg) -> Result<i32> {
    runtime(g)?.pause(&a.id)?;
    Ok(0)
}

pub fn resume(g: &GlobalOpts, a: IdArg) -> Result<i32> {
    runtime(g)?.resume(&a.id)?;
    Ok(0)
}

pub fn events(g: &GlobalOpts, a: EventsArgs) -> Result<i32> {
    let interval = oci::events::parse_interval(&a.interval).map_err(anyhow::Error::msg)?;
    runtime(g)?.events(&a.id, interval, a.stats, &mut std::io::stdout())?;
    Ok(0)
}

pub fn update(g: &GlobalOpts, a: UpdateArgs) -> Result<i32> {
    let flags = oci::ResourceFlags {
        memory: a.memory,
        memory_reservation: a.memory_reservation,
        memory_swap: a.memory_swap,
        cpu_shares: a.cpu_shares,
        cpu_quota: a.cpu_quota,
        cpu_period: a.cpu_period,
        cpu_rt_period: a.cpu_rt_period,
        cpu_rt_runtime: a.cpu_rt_runtime,
        cpuset_cpus: a.cpuset_cpus,
        cpuset_mems: a.cpuset_mems,
        pids_limit: a.pids_limit,
        blkio_weight: a.blkio_weight,
    };
    let resources = oci::update::resources_from(a.resources.as_deref(), &flags)?;
    runtime(g)?.update(&a.id, &resources)?;
    Ok(0)
}

pub fn checkpoint(g: &GlobalOpts, a: CheckpointArgs) -> Result<i32> {
    let flags = oci::checkpoint::CheckpointFlags {
        image_path: &a.image_path,
        work_path: a.work_path.as_deref(),
        parent_path: a.parent_path.as_deref(),
        leave_running: a.leave_running,
        tcp_established: a.tcp_established,
        ext_unix_sk: a.ext_unix_sk,
        shell_job: a.shell_job,
        file_locks: a.file_locks,
        pre_dump: a.pre_dump,
        manage_cgroups_mode: a.manage_cgroups_mode.as_deref(),
    };
    runtime(g)?.checkpoint(&a.id, &flags)?;
    Ok(0)
}

pub fn hook_state(a: HookStateArgs) -> Result<i32> {
    match oci::exec_hook(&a.bundle, &a.hook)? {}
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn table_aligns_columns() {
        let h = ["ID", "STATUS"].map(String::from);
        let rows = [["long-id".to_string(), "running".to_string()]];
        assert_eq!(table(&h, &rows), "ID        STATUS\nlong-id   running\n");
    }
}
