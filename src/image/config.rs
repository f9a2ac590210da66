//! What a container takes from its image: the process it runs, where the pod
//! manifest does not say, and the signal that asks it to stop.

use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a container takes from its image. Built once from the image's config
/// document at import (the stop signal parsed there), kept in the image store's
/// images.json, copied into a pod's images.json at admission, and read from there
/// by the pod's specs and its supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// The signal that asks the process to stop: the image's StopSignal (sent
    /// instead of SIGTERM, as containerd's CRI does), else SIGTERM. Stored by name.
    #[serde(with = "stop_signal")]
    pub stop_signal: Signal,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            user: None,
            stop_signal: Signal::SIGTERM,
        }
    }
}

/// The image's StopSignal (`SIGQUIT`, `QUIT`, `3`) as a signal; none is SIGTERM.
/// One that is not a signal (nor one nix knows, such as `SIGRTMIN+3`) also falls
/// back to SIGTERM, with a warning naming `whose`: the container must stay
/// stoppable (containerd would fail every stop of it), and peapod always did so.
pub(crate) fn parse_stop_signal(text: Option<&str>, whose: &str) -> Signal {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Signal::SIGTERM;
    };
    crate::oci::signal::parse(text).unwrap_or_else(|e| {
        tracing::warn!("{whose}: StopSignal: {e}; SIGTERM will stop its containers");
        Signal::SIGTERM
    })
}

/// The stop signal on disk: its name, `"SIGQUIT"`. Files written before it was
/// parsed at import hold the image's text as it was (`"QUIT"`, `"3"`) or null.
mod stop_signal {
    use super::*;

    pub fn serialize<S: Serializer>(signal: &Signal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(signal.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        Ok(parse_stop_signal(text.as_deref(), "images.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_by_name_or_number_and_sigterm_otherwise() {
        let parse = |t| parse_stop_signal(t, "image localhost/app:latest");
        assert_eq!(parse(Some("SIGQUIT")), Signal::SIGQUIT);
        assert_eq!(parse(Some("quit")), Signal::SIGQUIT);
        assert_eq!(parse(Some("3")), Signal::SIGQUIT);
        assert_eq!(
            parse(Some("SIGRTMIN+3")),
            Signal::SIGTERM,
            "not a signal here"
        );
        assert_eq!(parse(Some("NOPE")), Signal::SIGTERM);
        assert_eq!(parse(Some("")), Signal::SIGTERM);
        assert_eq!(parse(None), Signal::SIGTERM);
    }

    #[test]
    fn the_stop_signal_is_stored_by_name() {
        let config = ImageConfig {
            stop_signal: Signal::SIGQUIT,
            ..ImageConfig::default()
        };
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["stop_signal"], "SIGQUIT");
        let back: ImageConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn reads_records_written_before_the_signal_was_parsed() {
        let record = |stop: serde_json::Value| {
            serde_json::from_value::<ImageConfig>(serde_json::json!({
                "entrypoint": ["/app"], "cmd": [], "env": ["A=1"],
                "working_dir": null, "user": "1000", "stop_signal": stop,
            }))
            .unwrap()
        };
        assert_eq!(record("QUIT".into()).stop_signal, Signal::SIGQUIT);
        assert_eq!(record("9".into()).stop_signal, Signal::SIGKILL);
        assert_eq!(record(serde_json::Value::Null).stop_signal, Signal::SIGTERM);
        assert_eq!(record("bogus".into()).stop_signal, Signal::SIGTERM);
        assert_eq!(record("bogus".into()).user.as_deref(), Some("1000"));
    }
}
