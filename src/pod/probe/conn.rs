//! One nonblocking client connection, plain or TLS, driven by the caller's
//! poll(): bytes queued with [`Conn::send`] go out and bytes that came in
//! collect in [`Conn::input`] each time [`Conn::pump`] runs.
//!
//! TLS is rustls' `ClientConnection` over our own socket, with no certificate
//! verification (as the kubelet's `InsecureSkipVerify`; the handshake's
//! signature is still checked against the certificate presented).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, OnceLock};

use nix::poll::PollFlags;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::net::{connected, go_errno_text, DialError, Target};

/// The most a connection keeps of what it received.
const INPUT_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnError {
    Dial(DialError),
    /// Reading or writing failed, in Go's words ("read: connection reset by peer").
    Io(String),
    /// The TLS handshake or a record failed.
    Tls(String),
    /// The server answered a TLS client in plain HTTP.
    HttpToTls,
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Dial(e) => e.fmt(f),
            ConnError::Io(e) => f.write_str(e),
            ConnError::Tls(e) => write!(f, "tls: {e}"),
            ConnError::HttpToTls => f.write_str("http: server gave HTTP response to HTTPS client"),
        }
    }
}

pub struct Conn {
    addr: SocketAddr,
    tcp: TcpStream,
    connecting: bool,
    tls: Option<Box<ClientConnection>>,
    /// Queued bytes not yet written (plain) or handed to TLS.
    out: Vec<u8>,
    /// The first bytes the server sent, before TLS took them.
    first: Vec<u8>,
    pub input: Vec<u8>,
    /// The server closed its side.
    pub eof: bool,
}

impl Conn {
    /// Starts connecting to `addr` from `target`; with `tls`, a TLS session
    /// for `server` (an IP address: no SNI, as Go for IP hosts).
    pub fn open(target: &Target, addr: SocketAddr, tls: bool) -> Result<Self, ConnError> {
        let (tcp, done) = target.connect(&addr).map_err(ConnError::Dial)?;
        let tls = match tls {
            false => None,
            true => {
                let name = ServerName::from(addr.ip());
                let session = ClientConnection::new(tls_config(), name)
                    .map_err(|e| ConnError::Tls(e.to_string()))?;
                Some(Box::new(session))
            }
        };
        Ok(Self {
            addr,
            tcp,
            connecting: !done,
            tls,
            out: Vec::new(),
            first: Vec::new(),
            input: Vec::new(),
            eof: false,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.tcp.as_fd()
    }

    pub fn is_connecting(&self) -> bool {
        self.connecting
    }

    /// Queues bytes to send.
    pub fn send(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// What to wait for.
    pub fn events(&self) -> PollFlags {
        let writing = self.connecting
            || match &self.tls {
                None => !self.out.is_empty(),
                Some(tls) => tls.wants_write() || !self.out.is_empty(),
            };
        match writing {
            true => PollFlags::POLLOUT | PollFlags::POLLIN,
            false => PollFlags::POLLIN,
        }
    }

    /// Sends and receives what the socket allows now.
    pub fn pump(&mut self) -> Result<(), ConnError> {
        if self.connecting {
            connected(&self.tcp, &self.addr).map_err(ConnError::Dial)?;
            if self.tcp.peer_addr().is_err() {
                // Woken before the connect finished.
                return Ok(());
            }
            self.connecting = false;
        }
        match self.tls.take() {
            None => self.pump_plain(),
            Some(mut tls) => {
                let pumped = self.pump_tls(&mut tls);
                self.tls = Some(tls);
                pumped
            }
        }
    }

    fn pump_plain(&mut self) -> Result<(), ConnError> {
        while !self.out.is_empty() {
            match self.tcp.write(&self.out) {
                Ok(n) => drop(self.out.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error("write", &e)),
            }
        }
        let mut buf = [0u8; 8192];
        while !self.eof && self.input.len() < INPUT_LIMIT {
            match self.tcp.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error("read", &e)),
            }
        }
        Ok(())
    }

    fn pump_tls(&mut self, tls: &mut ClientConnection) -> Result<(), ConnError> {
        if !self.out.is_empty() {
            // Kept by rustls until the handshake is done.
            tls.writer()
                .write_all(&self.out)
                .map_err(|e| ConnError::Tls(e.to_string()))?;
            self.out.clear();
        }
        let mut raw = [0u8; 16384];
        loop {
            let mut progress = false;
            while tls.wants_write() {
                match tls.write_tls(&mut self.tcp) {
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_error("write", &e)),
                }
            }
            let mut closed = false;
            match self.tcp.read(&mut raw) {
                Ok(0) => closed = true,
                Ok(n) => {
                    progress = true;
                    if self.first.len() < 5 {
                        let take = n.min(5 - self.first.len());
                        self.first.extend_from_slice(&raw[..take]);
                    }
                    let mut rest = &raw[..n];
                    while !rest.is_empty() {
                        tls.read_tls(&mut rest)
                            .map_err(|e| ConnError::Tls(e.to_string()))?;
                        self.process(tls)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                Err(e) => return Err(io_error("read", &e)),
            }
            if closed {
                // Lets rustls see the end (a close without close_notify is still an end for us).
                let _ = tls.read_tls(&mut &[][..]);
                self.process(tls)?;
                self.eof = true;
                if tls.is_handshaking() {
                    return Err(ConnError::Io("EOF".into()));
                }
                return Ok(());
            }
            if !progress || self.eof || self.input.len() >= INPUT_LIMIT {
                return Ok(());
            }
        }
    }

    /// Lets rustls take in what it read, and collects the plaintext.
    fn process(&mut self, tls: &mut ClientConnection) -> Result<(), ConnError> {
        if let Err(e) = tls.process_new_packets() {
            if self.first.starts_with(b"HTTP/") {
                return Err(ConnError::HttpToTls);
            }
            // Sends the alert, best effort.
            let _ = tls.write_tls(&mut self.tcp);
            return Err(ConnError::Tls(e.to_string()));
        }
        let mut buf = [0u8; 8192];
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    return Ok(());
                }
                Err(e) => return Err(ConnError::Tls(e.to_string())),
            }
        }
    }
}

fn io_error(op: &str, e: &io::Error) -> ConnError {
    ConnError::Io(format!("{op}: {}", go_errno_text(e)))
}

/// One TLS client configuration for the process, made on first use.
fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports TLS 1.2 and 1.3")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Accepts any certificate (the kubelet's probes verify none), but still
/// checks that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
