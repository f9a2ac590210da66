//! The httpGet probe and hook: one HTTP/1.1 GET per connection (`Connection:
//! close`, as the kubelet's transport without keep-alives), HTTP or HTTPS.
//!
//! As the kubelet's (`pkg/probe/http`): User-Agent `kube-probe/<major.minor>`
//! and `Accept: */*` unless the probe's headers set them (an empty Accept
//! removes it); a `Host` header sets the request's host; status 200–399 is a
//! success; redirects are followed only to the same host name (any port or
//! scheme), at most 10 requests, and one to another host ends the probe with a
//! warning; at most 10 KiB of the body is read. The timeout covers the whole
//! exchange, redirects included. A hook succeeds on any response, follows no
//! redirect, and retries in plain HTTP when an HTTPS server answers in HTTP.

use super::check::{Outcome, Verdict};
use super::conn::{Conn, ConnError};
use super::net::Target;
use super::spec::{HttpGet, Scheme};
use std::net::{IpAddr, SocketAddr};

/// The kubelet's maxRespBodyLength.
pub const BODY_LIMIT: usize = 10 * 1024;
/// Go's http.Client stops after 10 requests.
const MAX_REQUESTS: usize = 10;
/// The most of a response head we read.
const HEAD_LIMIT: usize = 32 * 1024;

/// Whom the request is for: a probe (status counts, redirects followed) or a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Probe,
    Hook,
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// An IP address, or a name (only ever seen in a redirect's Location).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with '/'.
    pub path: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

impl Url {
    fn authority(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    /// Where a Location header leads from here (absolute, scheme-relative,
    /// absolute-path or relative reference).
    pub fn join(&self, location: &str) -> Option<Url> {
        let (scheme, rest) = if let Some(rest) = location.strip_prefix("http://") {
            (Scheme::Http, Some(rest))
        } else if let Some(rest) = location.strip_prefix("https://") {
            (Scheme::Https, Some(rest))
        } else if let Some(rest) = location.strip_prefix("//") {
            (self.scheme, Some(rest))
        } else {
            (self.scheme, None)
        };
        let Some(rest) = rest else {
            let path = match location.starts_with('/') {
                true => location.to_string(),
                false => {
                    let base = self.path.split('?').next().unwrap_or("/");
                    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
                    format!("{}{location}", if dir.is_empty() { "/" } else { dir })
                }
            };
            return Some(Url {
                path,
                ..self.clone()
            });
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']')?;
                let port = match after.strip_prefix(':') {
                    Some(p) => p.parse().ok()?,
                    None => default_port,
                };
                (host.to_string(), port)
            }
            None => match authority.rsplit_once(':') {
                Some((host, p)) => (host.to_string(), p.parse().ok()?),
                None => (authority.to_string(), default_port),
            },
        };
        let path = match path.starts_with('/') {
            true => path.to_string(),
            false => format!("/{path}"),
        };
        Some(Url {
            scheme,
            host,
            port,
            path,
        })
    }
}

/// The request bytes: GET, Host, the probe's headers, User-Agent and Accept
/// unless given (an empty Accept is left out), Connection: close.
pub fn request(url: &Url, headers: &[(String, String)], user_agent: &str) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map_or_else(|| url.authority(), |(_, v)| v.clone());
    let mut text = format!("GET {} HTTP/1.1\r\nHost: {host}\r\n", url.path);
    if !has("user-agent") {
        text += &format!("User-Agent: {user_agent}\r\n");
    }
    if !has("accept") {
        text += "Accept: */*\r\n";
    }
    for (name, value) in headers {
        let skip = name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("connection")
            || (name.eq_ignore_ascii_case("accept") && value.is_empty());
        if !skip {
            text += &format!("{name}: {value}\r\n");
        }
    }
    text += "Connection: close\r\n\r\n";
    text.into_bytes()
}

/// A response's status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, blank line included.
    pub len: usize,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The head at the start of `buf`, once it is all there.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > HEAD_LIMIT {
            return Err("response head too large".into());
        }
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let malformed = || format!("malformed HTTP response {status_line:?}");
    let mut words = status_line.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed());
    }
    let status = words
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(malformed)?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some(Head {
        status,
        headers,
        len: end + 4,
    }))
}

/// How much of the body is there, and whether it is complete (or as much as
/// we read: the limit, or the end of the connection).
fn body(head: &Head, raw: &[u8], eof: bool) -> (Vec<u8>, bool) {
    if head.status == 204 || head.status == 304 || head.status < 200 {
        return (Vec::new(), true);
    }
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let (body, done) = dechunk(raw);
        let full = done || eof || body.len() >= BODY_LIMIT;
        return (body, full);
    }
    if let Some(len) = head
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let take = raw.len().min(len);
        return (
            raw[..take].to_vec(),
            take == len || eof || take >= BODY_LIMIT,
        );
    }
    (raw.to_vec(), eof || raw.len() >= BODY_LIMIT)
}

/// The data of a chunked body so far, and whether its last chunk came.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (out, true);
        };
        if size == 0 {
            return (out, true);
        }
        let data = &raw[eol + 2..];
        if data.len() < size {
            out.extend_from_slice(data);
            return (out, false);
        }
        out.extend_from_slice(&data[..size]);
        raw = data.get(size + 2..).unwrap_or(&[]);
    }
}

/// What `HttpCheck::ready` does with the bytes a server sent, without the
/// connection: for the fuzz target (src/fuzzing.rs).
#[doc(hidden)]
pub fn fuzz_response(mut input: &[u8]) {
    let base = Url {
        scheme: Scheme::Http,
        host: "10.0.0.1".into(),
        port: 8080,
        path: "/a/b?c".into(),
    };
    loop {
        let Ok(Some(head)) = parse_head(input) else {
            return;
        };
        assert!(head.len <= input.len(), "a head longer than the input");
        input = &input[head.len..];
        if head.status < 200 && head.status != 101 {
            continue;
        }
        for eof in [false, true] {
            let (body, complete) = body(&head, input, eof);
            assert!(complete || !eof, "a body still incomplete at the end");
            let _ = String::from_utf8_lossy(&body[..body.len().min(BODY_LIMIT)]);
        }
        if let Some(location) = head.header("location") {
            if let Some(next) = base.join(location) {
                let _ = request(&next, &[], "kube-probe/1.34");
            }
        }
        return;
    }
}

fn failure(output: String) -> Outcome {
    Outcome {
        verdict: Verdict::Failure,
        output,
        exit_code: None,
    }
}

pub struct HttpCheck {
    pub conn: Conn,
    target: Target,
    purpose: Purpose,
    url: Url,
    /// The host of the first request: redirects elsewhere are not followed.
    first_host: String,
    headers: Vec<(String, String)>,
    user_agent: String,
    requests: usize,
    /// The head of the response being read.
    head: Option<Head>,
    /// A hook that already fell back from HTTPS.
    fell_back: bool,
}

impl HttpCheck {
    pub fn start(
        target: &Target,
        get: &HttpGet,
        purpose: Purpose,
        user_agent: &str,
    ) -> Result<Self, Outcome> {
        let host = get.host.unwrap_or(target.default_host).to_string();
        let path = match get.path.starts_with('/') {
            true => get.path.clone(),
            false => format!("/{}", get.path),
        };
        let url = Url {
            scheme: get.scheme,
            host,
            port: get.port,
            path,
        };
        let conn = open(target, &url)?;
        let mut check = Self {
            conn,
            target: target.clone(),
            purpose,
            first_host: url.host.clone(),
            url,
            headers: get.headers.clone(),
            user_agent: user_agent.to_string(),
            requests: 1,
            head: None,
            fell_back: false,
        };
        check
            .conn
            .send(&request(&check.url, &check.headers, &check.user_agent));
        Ok(check)
    }

    /// Takes in what came; Some once the exchange is over.
    pub fn ready(&mut self) -> Option<Outcome> {
        if let Err(e) = self.conn.pump() {
            if e == ConnError::HttpToTls && self.purpose == Purpose::Hook && !self.fell_back {
                // handlers.go: an HTTPS hook answered in HTTP is retried in HTTP.
                self.fell_back = true;
                let url = Url {
                    scheme: Scheme::Http,
                    ..self.url.clone()
                };
                return self.follow(url, false).err();
            }
            return Some(failure(format!("Get {:?}: {e}", self.url.to_string())));
        }
        if self.head.is_none() {
            match parse_head(&self.conn.input) {
                Err(e) => return Some(failure(format!("Get {:?}: {e}", self.url.to_string()))),
                Ok(None) if self.conn.eof => {
                    return Some(failure(format!("Get {:?}: EOF", self.url.to_string())))
                }
                Ok(None) => return None,
                Ok(Some(head)) if head.status < 200 && head.status != 101 => {
                    // An interim response (100 Continue): the real one follows.
                    self.conn.input.drain(..head.len);
                    return self.ready();
                }
                Ok(Some(head)) => {
                    self.conn.input.drain(..head.len);
                    self.head = Some(head);
                }
            }
        }
        let head = self.head.clone()?;
        let (body, complete) = body(&head, &self.conn.input, self.conn.eof);
        if !complete {
            return None;
        }
        let body = String::from_utf8_lossy(&body[..body.len().min(BODY_LIMIT)]).into_owned();
        if self.purpose == Purpose::Hook {
            return Some(Outcome {
                verdict: Verdict::Success,
                output: body,
                exit_code: None,
            });
        }
        let redirect = matches!(head.status, 301 | 302 | 303 | 307 | 308);
        if let (true, Some(location)) = (redirect, head.header("location")) {
            let Some(next) = self.url.join(location) else {
                return Some(failure(format!(
                    "Get {:?}: failed to parse Location header {location:?}",
                    self.url.to_string()
                )));
            };
            if next.host == self.first_host {
                if self.requests >= MAX_REQUESTS {
                    return Some(failure(format!(
                        "Get {:?}: stopped after 10 redirects",
                        next.to_string()
                    )));
                }
                let relative =
                    !(location.starts_with("http://") || location.starts_with("https://"));
                return self.follow(next, relative).err();
            }
        }
        Some(match head.status {
            200..=299 => Outcome {
                verdict: Verdict::Success,
                output: body,
                exit_code: None,
            },
            300..=399 => Outcome {
                verdict: Verdict::Warning,
                output: format!("Probe terminated redirects, Response body: {body}"),
                exit_code: None,
            },
            status => failure(format!("HTTP probe failed with statuscode: {status}")),
        })
    }

    /// A new request to `url` on a new connection; Err is the outcome if it cannot start.
    fn follow(&mut self, url: Url, keep_host: bool) -> Result<(), Outcome> {
        if !keep_host {
            self.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
        }
        self.conn = open(&self.target, &url)?;
        self.conn
            .send(&request(&url, &self.headers, &self.user_agent));
        self.url = url;
        self.requests += 1;
        self.head = None;
        Ok(())
    }

    /// The outcome when the timeout passed first.
    pub fn timed_out(&self) -> Outcome {
        let during = match self.head {
            None => "Client.Timeout exceeded while awaiting headers",
            Some(_) => "Client.Timeout or context cancellation while reading body",
        };
        failure(format!(
            "Get {:?}: context deadline exceeded ({during})",
            self.url.to_string()
        ))
    }
}

fn open(target: &Target, url: &Url) -> Result<Conn, Outcome> {
    let ip: IpAddr = url.host.parse().map_err(|_| {
        failure(format!(
            "Get {:?}: host is not an IP address",
            url.to_string()
        ))
    })?;
    Conn::open(
        target,
        SocketAddr::new(ip, url.port),
        url.scheme == Scheme::Https,
    )
    .map_err(|e| failure(format!("Get {:?}: {e}", url.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        let base = Url {
            scheme: Scheme::Http,
            host: "10.0.0.1".into(),
            port: 8080,
            path: "/".into(),
        };
        base.join(text).unwrap()
    }

    #[test]
    fn requests_carry_the_kubelets_headers_unless_the_probe_sets_them() {
        let u = url("/healthz?full=1");
        let plain = String::from_utf8(request(&u, &[], "kube-probe/1.34")).unwrap();
        assert_eq!(
            plain,
            "GET /healthz?full=1 HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let headers = vec![
            ("Host".to_string(), "example.com".to_string()),
            ("user-agent".to_string(), "mine".to_string()),
            ("Accept".to_string(), String::new()),
            ("X-Probe".to_string(), "1".to_string()),
        ];
        let custom = String::from_utf8(request(&u, &headers, "kube-probe/1.34")).unwrap();
        assert_eq!(
            custom,
            "GET /healthz?full=1 HTTP/1.1\r\nHost: example.com\r\nuser-agent: mine\r\nX-Probe: 1\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = url("/a/b?q=1");
        let cases = [
            ("/c", "http://10.0.0.1:8080/c"),
            ("c", "http://10.0.0.1:8080/a/c"),
            ("https://10.0.0.1/x", "https://10.0.0.1:443/x"),
            ("http://10.0.0.2:81", "http://10.0.0.2:81/"),
            ("//[::1]:90/v6", "http://[::1]:90/v6"),
            ("http://example.com/p?x", "http://example.com:80/p?x"),
        ];
        for (location, expected) in cases {
            assert_eq!(
                base.join(location).unwrap().to_string(),
                expected,
                "{location}"
            );
        }
        assert!(base.join("http://h:port/").is_none());
    }

    #[test]
    fn heads_and_bodies_parse() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
        let head = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            (head.status, head.header("x"), head.len),
            (200, Some("y"), raw.len() - 5)
        );
        assert_eq!(body(&head, b"hel", false), (b"hel".to_vec(), false));
        assert_eq!(body(&head, b"hello", false), (b"hello".to_vec(), true));
        assert_eq!(parse_head(b"HTTP/1.0 200 OK\r\n"), Ok(None));
        assert_eq!(
            parse_head(b"SSH-2.0-x\r\n\r\n"),
            Err("malformed HTTP response \"SSH-2.0-x\"".into())
        );
        let chunked = Head {
            status: 302,
            headers: vec![("Transfer-Encoding".into(), "chunked".into())],
            len: 0,
        };
        assert_eq!(
            body(&chunked, b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", false),
            (b"abcde".to_vec(), true)
        );
        assert_eq!(body(&chunked, b"3\r\nab", false), (b"ab".to_vec(), false));
        let until_close = Head {
            status: 500,
            headers: vec![],
            len: 0,
        };
        assert!(!body(&until_close, b"x", false).1);
        assert!(body(&until_close, b"x", true).1);
        let big = vec![b'a'; BODY_LIMIT + 5];
        assert!(
            body(&until_close, &big, false).1,
            "the body limit ends the read"
        );
    }
}
