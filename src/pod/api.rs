//! The supervisor's local API: one request line on its Unix socket, one reply line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::store::PodDir;

/// Sends `request` ("ping", "stop") and returns the reply line.
pub fn request(dir: &PodDir, request: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(dir.api_socket())?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

/// Whether the pod's supervisor is alive and answering.
pub fn supervisor_alive(dir: &PodDir) -> bool {
    request(dir, "ping").is_ok_and(|r| r == "ok")
}
