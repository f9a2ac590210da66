//! The gRPC probe: `grpc.health.v1.Health/Check` over cleartext HTTP/2 with
//! prior knowledge (as the kubelet's, which uses no TLS), by a minimal
//! HTTP/2 client: the connection preface and SETTINGS, one HEADERS frame and
//! one DATA frame carrying the request, then frames are read until the
//! stream ends. Success iff the call's status is OK and the response says
//! SERVING. Messages are the kubelet's (`pkg/probe/grpc`).

use std::time::Duration;

use super::check::{go_duration, Outcome, Verdict};
use super::conn::{Conn, ConnError};
use super::hpack::{encode_literal, Decoder};
use super::net::Target;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The most of a response message we keep.
const MESSAGE_LIMIT: usize = 16 * 1024;

pub struct GrpcCheck {
    pub conn: Conn,
    authority: String,
    response: Response,
}

/// The server's side of the call as it comes in: no I/O of its own.
struct Response {
    timeout: Duration,
    decoder: Decoder,
    /// A header block waiting for its CONTINUATION frames, and whether it ends the stream.
    block: Option<(Vec<u8>, bool)>,
    status: Option<String>,
    grpc_status: Option<String>,
    grpc_message: String,
    message: Vec<u8>,
}

impl GrpcCheck {
    pub fn start(
        target: &Target,
        port: u16,
        service: &str,
        timeout: Duration,
        user_agent: &str,
    ) -> Result<Self, Outcome> {
        let addr = std::net::SocketAddr::new(target.default_host, port);
        let authority = addr.to_string();
        let mut conn =
            Conn::open(target, addr, false).map_err(|e| connect_failed(&authority, &e))?;
        conn.send(&request(&authority, service, user_agent));
        Ok(Self {
            conn,
            authority,
            response: Response::new(timeout),
        })
    }

    /// Takes in what came; Some once the call is over.
    pub fn ready(&mut self) -> Option<Outcome> {
        let connecting = self.conn.is_connecting();
        if let Err(e) = self.conn.pump() {
            return Some(match connecting {
                true => connect_failed(&self.authority, &e),
                false => rpc_failed("Unavailable", &format!("connection error: {e}")),
            });
        }
        let mut replies = Vec::new();
        let outcome = self.response.take(&mut self.conn.input, &mut replies);
        if !replies.is_empty() {
            self.conn.send(&replies);
        }
        if outcome.is_some() {
            return outcome;
        }
        if self.conn.eof {
            return Some(rpc_failed("Unavailable", "error reading from server: EOF"));
        }
        // Answers to SETTINGS and PING go out now.
        let _ = self.conn.pump();
        None
    }

    /// The outcome when the timeout passed first.
    pub fn timed_out(&self) -> Outcome {
        let text = match self.conn.is_connecting() {
            true => format!(
                "timeout: failed to connect service {:?} within {}: context deadline exceeded",
                self.authority,
                go_duration(self.response.timeout)
            ),
            false => format!(
                "timeout: health rpc did not complete within {}",
                go_duration(self.response.timeout)
            ),
        };
        failure(text)
    }
}

/// The frames of `data` as a server's answer, then its end: for the fuzz
/// target (src/fuzzing.rs).
#[doc(hidden)]
pub fn fuzz_response(data: &[u8]) {
    let mut response = Response::new(Duration::from_secs(1));
    let mut input = data.to_vec();
    let mut replies = Vec::new();
    if response.take(&mut input, &mut replies).is_none() {
        assert!(input.len() < 9 + (1 << 24), "a whole frame was left");
    }
}

impl Response {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            decoder: Decoder::default(),
            block: None,
            status: None,
            grpc_status: None,
            grpc_message: String::new(),
            message: Vec::new(),
        }
    }

    /// Takes the whole frames at the start of `input`; `replies` gets what
    /// must be sent back (SETTINGS and PING acknowledgements). Some once the
    /// call is over.
    fn take(&mut self, input: &mut Vec<u8>, replies: &mut Vec<u8>) -> Option<Outcome> {
        loop {
            if input.len() < 9 {
                return None;
            }
            let len = u32::from_be_bytes([0, input[0], input[1], input[2]]) as usize;
            if input.len() < 9 + len {
                return None;
            }
            let (kind, flags) = (input[3], input[4]);
            let stream = u32::from_be_bytes([input[5], input[6], input[7], input[8]]) & 0x7fff_ffff;
            let payload = input[9..9 + len].to_vec();
            input.drain(..9 + len);
            if let Some(outcome) = self.frame(kind, flags, stream, payload, replies) {
                return Some(outcome);
            }
        }
    }

    fn frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
        replies: &mut Vec<u8>,
    ) -> Option<Outcome> {
        match kind {
            SETTINGS if flags & ACK == 0 => replies.extend(frame(SETTINGS, ACK, 0, &[])),
            PING if flags & ACK == 0 => replies.extend(frame(PING, ACK, 0, &payload)),
            GOAWAY => return Some(rpc_failed("Unavailable", "the server sent GOAWAY")),
            RST_STREAM if stream == 1 => {
                let code = payload
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                return Some(rpc_failed(
                    "Internal",
                    &format!("stream terminated by RST_STREAM with error code: {code}"),
                ));
            }
            HEADERS if stream == 1 => {
                let Some(fragment) = unpad(flags, &payload, true) else {
                    return Some(rpc_failed("Internal", "malformed HEADERS frame"));
                };
                self.block = Some((fragment.to_vec(), flags & END_STREAM != 0));
                if flags & END_HEADERS != 0 {
                    return self.headers_done();
                }
            }
            CONTINUATION if stream == 1 => {
                let Some((block, _)) = self.block.as_mut() else {
                    return Some(rpc_failed("Internal", "unexpected CONTINUATION frame"));
                };
                block.extend_from_slice(&payload);
                if flags & END_HEADERS != 0 {
                    return self.headers_done();
                }
            }
            DATA if stream == 1 => {
                let Some(data) = unpad(flags, &payload, false) else {
                    return Some(rpc_failed("Internal", "malformed DATA frame"));
                };
                if self.message.len() + data.len() <= MESSAGE_LIMIT {
                    self.message.extend_from_slice(data);
                }
                if flags & END_STREAM != 0 {
                    return Some(self.verdict());
                }
            }
            _ => {}
        }
        None
    }

    fn headers_done(&mut self) -> Option<Outcome> {
        let (block, ends) = self.block.take()?;
        let fields = match self.decoder.decode(&block) {
            Ok(fields) => fields,
            Err(e) => return Some(rpc_failed("Internal", &format!("header decoding: {e}"))),
        };
        for (name, value) in fields {
            match name.as_str() {
                ":status" => self.status = Some(value),
                "grpc-status" => self.grpc_status = Some(value),
                "grpc-message" => self.grpc_message = percent_decode(&value),
                _ => {}
            }
        }
        ends.then(|| self.verdict())
    }

    /// The call is over: what it says.
    fn verdict(&self) -> Outcome {
        if self.status.as_deref() != Some("200") {
            return rpc_failed(
                "Unknown",
                &format!(
                    "unexpected HTTP status code received from server: {}",
                    self.status.as_deref().unwrap_or("none")
                ),
            );
        }
        let code: u32 = match self.grpc_status.as_deref().map(str::parse) {
            Some(Ok(code)) => code,
            Some(Err(_)) => return rpc_failed("Internal", "malformed grpc-status"),
            None => {
                return rpc_failed(
                    "Internal",
                    "server closed the stream without sending trailers",
                )
            }
        };
        match code {
            0 => {}
            // codes.Unimplemented and codes.DeadlineExceeded have their own words.
            12 => {
                return failure(format!(
                    "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    self.grpc_message
                ))
            }
            4 => return failure(format!("timeout: health rpc did not complete within {}", go_duration(self.timeout))),
            code => return rpc_failed(code_name(code), &self.grpc_message),
        }
        let status = match response_status(&self.message) {
            Ok(status) => status,
            Err(e) => return rpc_failed("Internal", &e),
        };
        match status {
            1 => Outcome {
                verdict: Verdict::Success,
                output: "service healthy".into(),
                exit_code: None,
            },
            other => failure(format!(
                "service unhealthy (responded with {:?})",
                status_name(other)
            )),
        }
    }
}

fn failure(output: String) -> Outcome {
    Outcome {
        verdict: Verdict::Failure,
        output,
        exit_code: None,
    }
}

fn connect_failed(authority: &str, e: &ConnError) -> Outcome {
    failure(format!(
        "error: failed to connect service at {authority:?}: {e}"
    ))
}

fn rpc_failed(code: &str, desc: &str) -> Outcome {
    failure(format!(
        "error: health rpc probe failed: rpc error: code = {code} desc = {desc}"
    ))
}

/// Everything the client sends first: preface, SETTINGS, the call.
fn request(authority: &str, service: &str, user_agent: &str) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    // SETTINGS_ENABLE_PUSH = 0.
    out.extend(frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]));
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("user-agent", user_agent),
        ("te", "trailers"),
    ] {
        encode_literal(&mut block, name, value);
    }
    out.extend(frame(HEADERS, END_HEADERS, 1, &block));
    // HealthCheckRequest { string service = 1; }, length-prefixed, uncompressed.
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut data = vec![0];
    data.extend((message.len() as u32).to_be_bytes());
    data.extend(message);
    out.extend(frame(DATA, END_STREAM, 1, &data));
    out
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A frame's payload without its padding (and, for HEADERS, priority fields).
fn unpad(flags: u8, payload: &[u8], headers: bool) -> Option<&[u8]> {
    let mut body = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = *body.first()? as usize;
        body = &body[1..];
    }
    if headers && flags & PRIORITY != 0 {
        body = body.get(5..)?;
    }
    body.get(..body.len().checked_sub(pad)?)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The `status` of a length-prefixed HealthCheckResponse (0 if absent, as proto3).
fn response_status(message: &[u8]) -> Result<u64, String> {
    let (prefix, body) = (message.get(..5), message.get(5..));
    let (Some(prefix), Some(body)) = (prefix, body) else {
        return Err("the response has no message".into());
    };
    if prefix[0] != 0 {
        return Err("the response message is compressed".into());
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let mut fields = body.get(..len).ok_or("the response message is truncated")?;
    let mut status = 0;
    while !fields.is_empty() {
        let malformed = || "malformed HealthCheckResponse".to_string();
        let key = get_varint(&mut fields).ok_or_else(malformed)?;
        match key & 7 {
            0 => {
                let value = get_varint(&mut fields).ok_or_else(malformed)?;
                if key >> 3 == 1 {
                    status = value;
                }
            }
            1 => fields = fields.get(8..).ok_or_else(malformed)?,
            2 => {
                let n = get_varint(&mut fields).ok_or_else(malformed)? as usize;
                fields = fields.get(n..).ok_or_else(malformed)?;
            }
            5 => fields = fields.get(4..).ok_or_else(malformed)?,
            _ => return Err(malformed()),
        }
    }
    Ok(status)
}

fn status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// grpc-go's names of status codes.
fn code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

/// grpc-message is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_a_preface_settings_headers_and_one_data_frame() {
        let bytes = request("127.0.0.1:9000", "api", "kube-probe/1.34");
        assert!(bytes.starts_with(PREFACE));
        let mut rest = &bytes[PREFACE.len()..];
        let mut frames = vec![];
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            frames.push((rest[3], rest[4], rest[8], rest[9..9 + len].to_vec()));
            rest = &rest[9 + len..];
        }
        assert_eq!(frames.len(), 3);
        assert_eq!((frames[0].0, frames[0].1), (SETTINGS, 0));
        let (kind, flags, stream, block) = &frames[1];
        assert_eq!((*kind, *flags, *stream), (HEADERS, END_HEADERS, 1));
        let fields = Decoder::default().decode(block).unwrap();
        assert_eq!(
            fields[2],
            (":path".into(), "/grpc.health.v1.Health/Check".into())
        );
        assert_eq!(fields[3], (":authority".into(), "127.0.0.1:9000".into()));
        let (kind, flags, stream, data) = &frames[2];
        assert_eq!((*kind, *flags, *stream), (DATA, END_STREAM, 1));
        assert_eq!(data, &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'p', b'i']);
    }

    #[test]
    fn health_responses_decode() {
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        // Unknown fields are skipped; an absent status is UNKNOWN (0).
        assert_eq!(
            response_status(&[0, 0, 0, 0, 4, 0x12, 1, b'x', 0x08]).map_err(drop),
            Err(())
        );
        assert_eq!(
            response_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 2]),
            Ok(2)
        );
        assert_eq!(response_status(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(response_status(&[1, 0, 0, 0, 0]).is_err());
        assert!(response_status(&[0, 0, 0]).is_err());
        assert_eq!(status_name(2), "NOT_SERVING");
        assert_eq!(code_name(5), "NotFound");
        assert_eq!(percent_decode("unknown%20service%zz"), "unknown service%zz");
    }

    #[test]
    fn padding_and_priority_are_stripped() {
        assert_eq!(
            unpad(PADDED, &[2, b'a', b'b', 0, 0], false),
            Some(&b"ab"[..])
        );
        assert_eq!(
            unpad(PRIORITY, &[0, 0, 0, 0, 9, b'h'], true),
            Some(&b"h"[..])
        );
        assert_eq!(unpad(PADDED, &[9, b'a'], false), None);
    }
}
