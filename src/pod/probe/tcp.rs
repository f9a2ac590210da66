//! The tcpSocket probe: success once a TCP connection is made, which is then
//! closed at once (`pkg/probe/tcp`).

use std::net::{IpAddr, SocketAddr};

use super::check::{Outcome, Verdict};
use super::conn::Conn;
use super::net::{DialError, Target};

pub struct TcpCheck {
    pub conn: Conn,
}

impl TcpCheck {
    pub fn start(target: &Target, host: Option<IpAddr>, port: u16) -> Result<Self, Outcome> {
        let addr = SocketAddr::new(host.unwrap_or(target.default_host), port);
        let conn = Conn::open(target, addr, false).map_err(|e| failure(e.to_string()))?;
        Ok(Self { conn })
    }

    /// Some once the connection is made or refused.
    pub fn ready(&mut self) -> Option<Outcome> {
        if let Err(e) = self.conn.pump() {
            return Some(failure(e.to_string()));
        }
        (!self.conn.is_connecting()).then(|| Outcome {
            verdict: Verdict::Success,
            output: String::new(),
            exit_code: None,
        })
    }

    pub fn timed_out(&self) -> Outcome {
        failure(DialError::timeout(&self.conn.addr()).to_string())
    }
}

fn failure(output: String) -> Outcome {
    Outcome {
        verdict: Verdict::Failure,
        output,
        exit_code: None,
    }
}
