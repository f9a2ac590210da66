//! runc-compatible logging: `--log FILE --log-format text|json`.
//!
//! containerd's runc shim reads the runtime's JSON log to report errors, and it
//! expects logrus' field names (`level`, `msg`, `time`), so the format is ours
//! rather than tracing-subscriber's.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

enum Sink {
    Stderr,
    File(Mutex<File>),
}

struct RuntimeLog {
    sink: Sink,
    format: LogFormat,
}

#[derive(Default)]
struct Fields {
    message: String,
    extra: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.extra
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.extra
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl RuntimeLog {
    fn render(&self, level: &Level, fields: Fields) -> String {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        match self.format {
            LogFormat::Json => {
                let mut map = serde_json::Map::new();
                map.insert("level".into(), level_name(level).into());
                map.insert("msg".into(), fields.message.into());
                map.insert("time".into(), time.into());
                for (k, v) in fields.extra {
                    map.insert(k, v.into());
                }
                let mut line = serde_json::Value::Object(map).to_string();
                line.push('\n');
                line
            }
            LogFormat::Text => {
                let mut line = format!(
                    "time=\"{time}\" level={} msg={:?}",
                    level_name(level),
                    fields.message
                );
                for (k, v) in fields.extra {
                    let _ = write!(line, " {k}={v:?}");
                }
                line.push('\n');
                line
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for RuntimeLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = self.render(event.metadata().level(), fields);
        // A failing log write must never fail the runtime operation itself.
        match &self.sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::File(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
        }
    }
}

/// Installs the global logger. Returns whether log lines go to a file (then errors
/// are also printed to stderr, as runc does).
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> anyhow::Result<bool> {
    init_with(log, format, debug, false)
}

/// As `init`; with `info_on_stderr`, info lines go to stderr too (a daemon's log).
pub fn init_with(
    log: Option<&Path>,
    format: LogFormat,
    debug: bool,
    info_on_stderr: bool,
) -> anyhow::Result<bool> {
    let sink = match log {
        Some(path) if path != Path::new("/dev/stderr") => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
            Sink::File(Mutex::new(file))
        }
        _ => Sink::Stderr,
    };
    let to_file = matches!(sink, Sink::File(_));
    // On a terminal, libcontainer's own error lines would repeat the one-line error
    // we print; in a log file they are useful detail.
    let default = if debug {
        "debug"
    } else if to_file || info_on_stderr {
        "info,libcontainer=error,libcgroups=error"
    } else {
        "warn,libcontainer=off,libcgroups=off"
    };
    let filter = EnvFilter::try_from_env("PEAPOD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::registry()
        .with(RuntimeLog { sink, format }.with_filter(filter))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install logger: {e}"))?;
    Ok(to_file)
}
