//! The `peapod` command line: parsing lives in `args`, each verb is one small function.

mod args;
mod describe;
mod image;
mod pod;
mod runtime;
mod static_pods;

pub use args::Cli;
use args::Command;

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    // `--version` prints what `peapod version` does (runc's lines).
    let version: &'static str = Box::leak(format!("version {}", version_lines()).into_boxed_str());
    let parsed = <Cli as clap::CommandFactory>::command()
        .version(version)
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            // One line, exit 1, as runc does for bad flags.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("peapod: {}", first.trim_start_matches("error: "));
            return 1;
        }
    };
    // A daemon's stderr is its log: it says what it decides.
    let daemon = matches!(cli.command, Command::Static(_));
    let to_file = match crate::logging::init_with(
        cli.global.log.as_deref(),
        cli.global.log_format,
        cli.global.debug,
        daemon,
    ) {
        Ok(to_file) => to_file,
        Err(e) => {
            eprintln!("peapod: {e:#}");
            return 1;
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = one_line(&e);
            // containerd's runc shim reads the error from the log file; people read stderr.
            if to_file {
                tracing::error!("{msg}");
            }
            eprintln!("peapod: {msg}");
            1
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    tracing::debug!(command = ?cli.command, root = %g.root.display(), "peapod {}", env!("CARGO_PKG_VERSION"));
    match cli.command {
        Command::Create(a) => runtime::create(g, a),
        Command::Start(a) => runtime::start(g, a),
        Command::State(a) => runtime::state(g, a),
        Command::Kill(a) => runtime::kill(g, a),
        Command::Delete(a) => runtime::delete(g, a),
        Command::Run(a) => runtime::run(g, a),
        Command::Exec(a) => runtime::exec(g, a),
        Command::Ps(a) => runtime::ps(g, a),
        Command::List(a) => runtime::list(g, a),
        Command::Spec(a) => runtime::spec(g, a),
        Command::Features => runtime::features(),
        Command::Version => {
            println!("peapod version {}", version_lines());
            Ok(0)
        }
        Command::Pause(a) => runtime::pause(g, a),
        Command::Resume(a) => runtime::resume(g, a),
        Command::Events(a) => runtime::events(g, a),
        Command::Update(a) => runtime::update(g, a),
        Command::Checkpoint(a) => runtime::checkpoint(g, a),
        Command::HookState(a) => runtime::hook_state(a),
        Command::Pod(c) => pod::dispatch(g, c),
        Command::Image(c) => image::dispatch(g, c),
        Command::Static(a) => static_pods::run(g, *a),
    }
}

/// peapod's version and what it was built with, as runc prints them.
fn version_lines() -> String {
    let seccomp = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{}\ncommit: {}\nspec: {}\nlibseccomp: {}",
        env!("CARGO_PKG_VERSION"),
        env!("PEAPOD_COMMIT"),
        oci_spec::runtime::VERSION,
        seccomp
    )
}

/// The error and its causes on one line (see [`crate::error::one_line`]).
pub fn one_line(err: &anyhow::Error) -> String {
    crate::error::one_line(err.as_ref())
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn causes_are_joined_once() {
        let inner = anyhow::anyhow!("failed to create container: exec process failed with error error in executing process : executable 'x' not found");
        let err = inner
            .context("executable 'x' not found")
            .context("create container c");
        assert_eq!(
            one_line(&err),
            "create container c: executable 'x' not found"
        );
    }
}
