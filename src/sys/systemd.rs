//! systemd's manager over D-Bus, for the pod engine's systemd cgroup driver:
//! a pod's slice (and its QoS parents) is a transient slice unit carrying the
//! pod's limits as unit properties, as the kubelet's systemd driver makes
//! them; containers are transient scopes made by libcontainer. Blocking and
//! thread-free (libdbus), so the single-threaded supervisor can use it.
//!
//! Every job is waited for (its `JobRemoved` signal, with a deadline): a unit
//! started here is there when the call returns, and one stopped here is gone
//! (unloaded), so its name can be used again at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbus::arg::{RefArg, Variant};
use dbus::blocking::{Connection, Proxy};
use dbus::channel::MatchingReceiver;
use dbus::message::MatchRule;

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// systemd's own bus socket, for root where no bus daemon runs.
const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// A job or a call that takes longer than this is reported, not waited for.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("systemd is not running on this host (no /run/systemd/system)")]
    NotRunning,
    #[error("systemd D-Bus: {what}: {source}")]
    Bus {
        what: String,
        #[source]
        source: dbus::Error,
    },
    #[error("systemd: {unit}: job {job} ended {result}")]
    Job {
        unit: String,
        job: String,
        result: String,
    },
    #[error("systemd: {unit}: no answer to {what} in {} s", TIMEOUT.as_secs())]
    Timeout { unit: String, what: &'static str },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Whether systemd runs this host (`sd_booted`).
pub fn booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// A unit property as `StartTransientUnit` takes it (name, D-Bus value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Property {
    Bool(&'static str, bool),
    U64(&'static str, u64),
    Str(&'static str, String),
    Strs(&'static str, Vec<String>),
}

impl Property {
    pub fn name(&self) -> &'static str {
        match self {
            Property::Bool(n, _) | Property::U64(n, _) | Property::Str(n, _) => n,
            Property::Strs(n, _) => n,
        }
    }

    fn value(&self) -> Variant<Box<dyn RefArg>> {
        Variant(match self {
            Property::Bool(_, v) => Box::new(*v),
            Property::U64(_, v) => Box::new(*v),
            Property::Str(_, v) => Box::new(v.clone()),
            Property::Strs(_, v) => Box::new(v.clone()),
        })
    }
}

/// `a(sv)`: unit properties on the wire.
type Props<'a> = Vec<(&'a str, Variant<Box<dyn RefArg>>)>;

/// Jobs that ended, by object path, with their result (`done`, `failed`, …).
type Ended = Arc<Mutex<Vec<(String, String)>>>;

/// One connection to the system bus.
pub struct Systemd {
    conn: Connection,
    ended: Ended,
}

impl Systemd {
    pub fn connect() -> Result<Self> {
        if !booted() {
            return Err(Error::NotRunning);
        }
        let (conn, bus) = match Connection::new_system() {
            Ok(conn) => (conn, true),
            // No bus daemon (a node without dbus-daemon): systemd's own
            // socket, as systemctl does as root. It has no bus driver to
            // say Hello or AddMatch to, and sends every signal.
            Err(e) if !std::path::Path::new(PRIVATE_SOCKET).exists() => {
                return Err(Error::Bus {
                    what: "connect to the system bus".into(),
                    source: e,
                })
            }
            Err(_) => {
                let channel =
                    dbus::channel::Channel::open_private(&format!("unix:path={PRIVATE_SOCKET}"))
                        .map_err(|source| Error::Bus {
                            what: format!("connect to {PRIVATE_SOCKET}"),
                            source,
                        })?;
                (Connection::from(channel), false)
            }
        };
        let ended: Ended = Arc::default();
        let sink = ended.clone();
        // Before any job is queued, so no JobRemoved can be missed.
        let rule = MatchRule::new_signal(MANAGER, "JobRemoved");
        if bus {
            conn.add_match_no_cb(&rule.match_str())
                .map_err(|source| Error::Bus {
                    what: "subscribe to JobRemoved".into(),
                    source,
                })?;
        }
        conn.start_receive(
            rule,
            Box::new(move |message, _| {
                let args: std::result::Result<(u32, dbus::Path<'static>, String, String), _> =
                    message.read4();
                if let (Ok((_, job, _, result)), Ok(mut ended)) = (args, sink.lock()) {
                    ended.push((job.to_string(), result));
                }
                true
            }),
        );
        Ok(Self { conn, ended })
    }

    fn manager(&self) -> Proxy<'_, &Connection> {
        self.conn.with_proxy(DEST, PATH, TIMEOUT)
    }

    /// Starts the transient unit `name` with `properties` and waits for its
    /// job. A unit of that name that already exists is left as it is.
    pub fn start_transient(&self, name: &str, properties: &[Property]) -> Result<()> {
        let props: Props = properties.iter().map(|p| (p.name(), p.value())).collect();
        // No auxiliary units.
        let aux: Vec<(&str, Props)> = Vec::new();
        let reply: std::result::Result<(dbus::Path<'static>,), dbus::Error> = self
            .manager()
            .method_call(MANAGER, "StartTransientUnit", (name, "replace", props, aux));
        tracing::debug!("systemd: start {name}: {reply:?}");
        match reply {
            Ok((job,)) => self.wait_job(name, &job),
            Err(e) if e.name() == Some("org.freedesktop.systemd1.UnitExists") => Ok(()),
            Err(source) => Err(Error::Bus {
                what: format!("start {name}"),
                source,
            }),
        }
    }

    /// Stops `name` and waits until systemd has unloaded it. A unit that is
    /// not loaded is fine (stopping twice does no harm).
    pub fn stop(&self, name: &str) -> Result<()> {
        let reply: std::result::Result<(dbus::Path<'static>,), dbus::Error> = self
            .manager()
            .method_call(MANAGER, "StopUnit", (name, "replace"));
        tracing::debug!("systemd: stop {name}: {reply:?}");
        match reply {
            Ok((job,)) => self.wait_job(name, &job)?,
            Err(e) if e.name() == Some("org.freedesktop.systemd1.NoSuchUnit") => return Ok(()),
            Err(source) => {
                return Err(Error::Bus {
                    what: format!("stop {name}"),
                    source,
                })
            }
        }
        // A failed unit stays loaded until told (a scope whose process the OOM
        // killer ended has failed, as runc also finds: it resets them too).
        let reset: std::result::Result<(), dbus::Error> =
            self.manager()
                .method_call(MANAGER, "ResetFailedUnit", (name,));
        tracing::debug!("systemd: reset-failed {name}: {reset:?}");
        if let Err(e) = reset {
            if e.name() != Some("org.freedesktop.systemd1.NoSuchUnit") {
                return Err(Error::Bus {
                    what: format!("reset-failed {name}"),
                    source: e,
                });
            }
        }
        // An inactive unit is unloaded on systemd's next turn; until then a
        // new transient unit of the same name is refused.
        let deadline = Instant::now() + TIMEOUT;
        while self.loaded(name)? {
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    unit: name.into(),
                    what: "unload",
                });
            }
            // systemd signals nothing when it unloads a unit to a client
            // that has not subscribed to everything; the bus call paces this.
            self.process(Duration::from_millis(10))?;
        }
        Ok(())
    }

    /// Whether systemd has `name` loaded (`GetUnit` finds only loaded units).
    pub fn loaded(&self, name: &str) -> Result<bool> {
        let reply: std::result::Result<(dbus::Path<'static>,), dbus::Error> =
            self.manager().method_call(MANAGER, "GetUnit", (name,));
        match reply {
            Ok(_) => Ok(true),
            Err(e) if e.name() == Some("org.freedesktop.systemd1.NoSuchUnit") => Ok(false),
            Err(source) => Err(Error::Bus {
                what: format!("look up {name}"),
                source,
            }),
        }
    }

    fn process(&self, timeout: Duration) -> Result<()> {
        self.conn
            .process(timeout)
            .map(|_| ())
            .map_err(|source| Error::Bus {
                what: "read the bus".into(),
                source,
            })
    }

    fn wait_job(&self, unit: &str, job: &dbus::Path<'_>) -> Result<()> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let ended = {
                let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
                let at = ended.iter().position(|(path, _)| path.as_str() == &**job);
                at.map(|i| ended.swap_remove(i).1)
            };
            if let Some(result) = &ended {
                tracing::debug!("systemd: {unit}: job {job} {result}");
            }
            match ended.as_deref() {
                Some("done") => return Ok(()),
                Some(result) => {
                    return Err(Error::Job {
                        unit: unit.into(),
                        job: job.to_string(),
                        result: result.into(),
                    })
                }
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    unit: unit.into(),
                    what: "its job",
                });
            }
            self.process(left.min(Duration::from_millis(500)))?;
        }
    }
}

/// A name made safe as part of a unit name: characters systemd does not
/// allow there become `_` (unit names allow `[A-Za-z0-9:_.\-]`).
pub fn unit_name_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_name_parts_keep_only_what_systemd_allows() {
        assert_eq!(unit_name_part("web-0_x.y:z"), "web-0_x.y:z");
        assert_eq!(unit_name_part("a/b c@d"), "a_b_c_d");
    }

    #[test]
    fn properties_carry_their_dbus_types() {
        let sig = |p: Property| p.value().0.signature().to_string();
        assert_eq!(sig(Property::Bool("Delegate", true)), "b");
        assert_eq!(sig(Property::U64("MemoryMax", 1)), "t");
        assert_eq!(sig(Property::Str("Description", "x".into())), "s");
        assert_eq!(sig(Property::Strs("Wants", vec!["a.slice".into()])), "as");
    }
}
