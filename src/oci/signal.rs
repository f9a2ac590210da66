//! Signal names and numbers as runc accepts them: `KILL`, `SIGKILL`, `9`.

use nix::sys::signal::Signal;

use super::error::{Error, Result};

pub fn parse(text: &str) -> Result<Signal> {
    let invalid = || Error::InvalidSignal(text.to_string());
    if let Ok(num) = text.parse::<i32>() {
        return Signal::try_from(num).map_err(|_| invalid());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| invalid())
}

/// A `kill` argument: a signal, or 0 (runc's "is it alive?", which sends nothing).
pub fn parse_kill(text: &str) -> Result<Option<Signal>> {
    if text == "0" {
        return Ok(None);
    }
    parse(text).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("15").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("WINCH").unwrap(), Signal::SIGWINCH);
    }

    #[test]
    fn rejects_unknown() {
        for bad in ["", "NOPE", "SIG", "0", "65", "-1", "9x"] {
            let err = parse(bad).unwrap_err().to_string();
            assert_eq!(err, format!("invalid signal: {bad}"));
        }
    }

    #[test]
    fn kill_takes_zero_as_a_probe() {
        assert_eq!(parse_kill("0").unwrap(), None);
        assert_eq!(parse_kill("KILL").unwrap(), Some(Signal::SIGKILL));
        assert!(parse_kill("00x").is_err());
    }
}
