use libcontainer::container::ContainerStatus;

use super::cgroup::cgroup_of;
use super::error::{Error, Result};
use super::Runtime;
use crate::error::Context;

impl Runtime {
    /// The PIDs (in the host's pid namespace) of every process in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let container = self.load(id)?;
        if container.status() == ContainerStatus::Stopped {
            return Ok(vec![]);
        }
        cgroup_of(&container)?
            .pids()
            .map_err(|e| Error::Cgroup(format!("list processes of {id}: {e}")))
    }

    /// `ps --format table`: the host's `ps` output limited to the container's processes.
    pub fn ps_table(&self, id: &str, ps_args: &[String]) -> Result<String> {
        let pids = self.pids(id)?;
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .context(|| "run ps".into())?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        filter_ps_output(&String::from_utf8_lossy(&out.stdout), &pids)
    }
}

/// Keeps the header and the lines whose PID column is one of `pids`.
fn filter_ps_output(output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Invalid("ps output has no PID column".into()))?;
    let mut table = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            table.push_str(line);
            table.push('\n');
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_header_and_matching_pids() {
        let out = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sh\nroot 420 42 sleep\n";
        assert_eq!(
            filter_ps_output(out, &[42]).unwrap(),
            "UID PID PPID CMD\nroot 42 1 sh\n"
        );
    }

    #[test]
    fn pid_column_found_anywhere() {
        let out = "USER   PID %CPU\nroot  7  0.0\n";
        assert_eq!(filter_ps_output(out, &[7]).unwrap(), out);
        assert!(filter_ps_output("USER CMD\n", &[7]).is_err());
    }
}
