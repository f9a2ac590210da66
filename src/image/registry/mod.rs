//! The OCI distribution protocol, pull side: manifests and blobs of one
//! repository, fetched from the registry or its mirrors, with anonymous, basic
//! or bearer-token authentication.
//!
//! Blocking HTTP (ureq over rustls): this runs only in `peapod image pull`, a
//! process of its own, never in a process that later calls libcontainer.

mod auth;
mod error;
mod hosts;
mod settings;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;

pub use error::RegistryError;
pub use settings::{
    RegistryConfigFile, RegistryOverrides, RegistrySettings, DEFAULT_CA_DIR, DEFAULT_HOSTS_DIR,
};

use super::digest::Digest;
use super::reference::RemoteName;
pub(crate) use auth::Credentials;
use auth::{basic_header, Challenge, Credential};
pub(crate) use hosts::Endpoint;
// The parsers of outside input, for the fuzz targets (src/fuzzing.rs).
pub(crate) use auth::{normalize_host, parse_challenge, TokenResponse};
pub(crate) use hosts::parse as parse_hosts;

/// Manifests and indexes are small: anything bigger is not one.
const MAX_MANIFEST: u64 = 4 << 20;
/// Image configs too.
pub(crate) const MAX_CONFIG: u64 = 16 << 20;
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A transfer that stalls this long is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A manifest or index as the registry served it, its digest checked.
#[derive(Debug, Clone)]
pub(crate) struct FetchedManifest {
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// A client for one repository of one registry. A clone shares the
/// connection pools and starts with the tokens obtained so far.
#[derive(Clone)]
pub(crate) struct Client {
    name: RemoteName,
    endpoints: Vec<Endpoint>,
    credentials: Credentials,
    system_cas: Option<Arc<Vec<Certificate<'static>>>>,
    settings: RegistrySettings,
    agents: HashMap<(Vec<std::path::PathBuf>, bool), Agent>,
    /// The Authorization header that worked for each endpoint host.
    authorization: HashMap<String, String>,
}

impl Client {
    pub(crate) fn new(
        settings: &RegistrySettings,
        name: &RemoteName,
    ) -> Result<Client, RegistryError> {
        let endpoints = hosts::endpoints(settings, &name.registry)?;
        let credentials =
            Credentials::load(&settings.credential_files(), settings.credentials.is_some())?;
        Ok(Client {
            name: name.clone(),
            endpoints,
            credentials,
            system_cas: None,
            settings: settings.clone(),
            agents: HashMap::new(),
            authorization: HashMap::new(),
        })
    }

    /// The manifest or index named by a tag or digest; its digest is checked
    /// against the one asked for (or the registry's Docker-Content-Digest).
    pub(crate) fn manifest(&mut self, reference: &str) -> Result<FetchedManifest, RegistryError> {
        let by_digest = Digest::parse(reference).ok();
        let path = format!("{}/manifests/{reference}", self.name.repository);
        let usable = |e: &Endpoint| {
            if by_digest.is_some() {
                e.pull || e.resolve
            } else {
                e.resolve
            }
        };
        let sep = if by_digest.is_some() { '@' } else { ':' };
        let shown = format!(
            "{}/{}{sep}{reference}",
            self.name.registry, self.name.repository
        );
        self.try_endpoints(&shown, usable, |client, endpoint| {
            let url = format!("{}/{path}", endpoint.api);
            let response = client.get(endpoint, &url, Some(MANIFEST_ACCEPT))?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let announced = header("docker-content-digest");
            let bytes = response
                .into_body()
                .with_config()
                .limit(MAX_MANIFEST)
                .read_to_vec()
                .map_err(|e| RegistryError::Unreachable {
                    url: url.clone(),
                    reason: format!("reading the manifest: {e}"),
                })?;
            let digest = Digest::of(&bytes);
            let expected = match &by_digest {
                Some(d) => Some(d.to_string()),
                None => announced.filter(|d| d.starts_with("sha256:")),
            };
            if let Some(expected) = expected.filter(|e| *e != digest.to_string()) {
                return Err(RegistryError::BadResponse {
                    url,
                    reason: format!(
                        "the manifest should be {expected}, its content hashes to {digest}"
                    ),
                });
            }
            Ok(FetchedManifest { digest, bytes })
        })
    }

    /// A blob's content as a stream; the caller checks its digest and size while reading.
    pub(crate) fn blob(
        &mut self,
        digest: &Digest,
    ) -> Result<(Box<dyn Read + Send>, Option<u64>), RegistryError> {
        let path = format!("{}/blobs/{digest}", self.name.repository);
        let shown = format!(
            "blob {digest} of {}/{}",
            self.name.registry, self.name.repository
        );
        self.try_endpoints(
            &shown,
            |e| e.pull,
            |client, endpoint| {
                let url = format!("{}/{path}", endpoint.api);
                let response = client.get(endpoint, &url, None)?;
                let length = response
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let reader: Box<dyn Read + Send> = Box::new(response.into_body().into_reader());
                Ok((reader, length))
            },
        )
    }

    /// `what` on each usable endpoint in turn until one answers; `shown` names
    /// the thing asked for in errors.
    fn try_endpoints<T>(
        &mut self,
        shown: &str,
        usable: impl Fn(&Endpoint) -> bool,
        mut what: impl FnMut(&mut Client, &Endpoint) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let endpoints: Vec<Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| usable(e))
            .cloned()
            .collect();
        let mut errors = Vec::new();
        for endpoint in &endpoints {
            match what(self, endpoint) {
                Ok(found) => return Ok(found),
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint.api, "{e}");
                    errors.push(e);
                }
            }
        }
        let not_found = |e: &RegistryError| matches!(e, RegistryError::Status { status: 404, .. });
        if !errors.is_empty() && errors.iter().all(not_found) {
            return Err(RegistryError::NotFound {
                reference: shown.to_string(),
                tried: endpoints
                    .iter()
                    .map(|e| e.api.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if errors.len() == 1 {
            return Err(errors.remove(0));
        }
        Err(RegistryError::AllFailed {
            reference: shown.to_string(),
            errors: if errors.is_empty() {
                vec!["no endpoint has the capability (see hosts.toml)".to_string()]
            } else {
                errors.iter().map(|e| e.to_string()).collect()
            },
        })
    }

    /// GET with authentication: a 401 answers with a challenge, met once.
    fn get(
        &mut self,
        endpoint: &Endpoint,
        url: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let agent = self.agent(endpoint)?;
        let known = self.authorization.get(&endpoint.host).cloned();
        let response = send(&agent, url, accept, known.as_deref())?;
        if response.status() != 401 {
            return status_checked(url, response);
        }
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge);
        let credential = self.credentials.for_host(&endpoint.host).cloned();
        let header =
            match challenge {
                Some(Challenge::Basic) => match &credential {
                    Some(Credential::Basic { user, password }) => basic_header(user, password),
                    Some(Credential::IdentityToken { .. }) => return Err(RegistryError::Auth {
                        host: endpoint.host.clone(),
                        reason:
                            "the registry asks for a password, config.json has an identity token"
                                .into(),
                    }),
                    None => return Err(self.no_credentials(endpoint)),
                },
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => {
                    let scope = scope.unwrap_or_else(|| auth::pull_scope(&self.name.repository));
                    let token = self.token(
                        &agent,
                        endpoint,
                        &realm,
                        service.as_deref(),
                        &scope,
                        credential.as_ref(),
                    )?;
                    format!("Bearer {token}")
                }
                None => {
                    return Err(RegistryError::Auth {
                        host: endpoint.host.clone(),
                        reason: "HTTP 401 without a usable WWW-Authenticate challenge".into(),
                    })
                }
            };
        let response = send(&agent, url, accept, Some(&header))?;
        if response.status() == 401 {
            return Err(match &credential {
                Some(c) => self.bad_credentials(endpoint, c),
                None => self.no_credentials(endpoint),
            });
        }
        self.authorization.insert(endpoint.host.clone(), header);
        status_checked(url, response)
    }

    /// A bearer token from the challenge's realm, for `scope`.
    fn token(
        &self,
        agent: &Agent,
        endpoint: &Endpoint,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credential: Option<&Credential>,
    ) -> Result<String, RegistryError> {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let mut query = vec![format!("scope={}", enc(scope))];
        if let Some(service) = service {
            query.push(format!("service={}", enc(service)));
        }
        let failed = |reason: String| RegistryError::Auth {
            host: endpoint.host.clone(),
            reason: format!("token endpoint {realm}: {reason}"),
        };
        let response = match credential {
            Some(Credential::IdentityToken { token, .. }) => {
                query.push("grant_type=refresh_token".into());
                query.push("client_id=peapod".into());
                query.push(format!("refresh_token={}", enc(token)));
                agent
                    .post(realm)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .send(query.join("&"))
            }
            other => {
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{sep}{}", query.join("&"));
                let mut request = agent.get(&url);
                if let Some(Credential::Basic { user, password }) = other {
                    request = request.header("authorization", basic_header(user, password));
                }
                request.call()
            }
        }
        .map_err(|e| failed(describe(&e)))?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => {
                return Err(match credential {
                    Some(c) => self.bad_credentials(endpoint, c),
                    None => self.no_credentials(endpoint),
                })
            }
            status => return Err(failed(format!("HTTP {status}"))),
        }
        let body = response
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| failed(e.to_string()))?;
        serde_json::from_slice::<auth::TokenResponse>(&body)
            .ok()
            .and_then(|t| t.into_token())
            .ok_or_else(|| failed("no token in the answer".into()))
    }

    fn no_credentials(&self, endpoint: &Endpoint) -> RegistryError {
        RegistryError::NoCredentials {
            registry: self.name.registry.clone(),
            repository: self.name.repository.clone(),
            host: endpoint.host.clone(),
        }
    }

    fn bad_credentials(&self, endpoint: &Endpoint, credential: &Credential) -> RegistryError {
        RegistryError::BadCredentials {
            registry: self.name.registry.clone(),
            repository: self.name.repository.clone(),
            host: endpoint.host.clone(),
            user: credential.user().to_string(),
        }
    }

    /// One agent per set of trusted CAs; the system's CAs are read once.
    fn agent(&mut self, endpoint: &Endpoint) -> Result<Agent, RegistryError> {
        let key = (endpoint.cas.clone(), endpoint.skip_verify);
        if let Some(agent) = self.agents.get(&key) {
            return Ok(agent.clone());
        }
        let system = match &self.system_cas {
            Some(certs) => certs.clone(),
            None => {
                let certs = Arc::new(read_pem(&self.settings.system_cas, false)?);
                self.system_cas = Some(certs.clone());
                certs
            }
        };
        let mut roots = system.as_ref().clone();
        for ca in &endpoint.cas {
            roots.extend(read_pem(ca, true)?);
        }
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .disable_verification(endpoint.skip_verify)
            .build();
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .user_agent(concat!("peapod/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        self.agents.insert(key, agent.clone());
        Ok(agent)
    }
}

fn send(
    agent: &Agent,
    url: &str,
    accept: Option<&str>,
    authorization: Option<&str>,
) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
    let mut request = agent.get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.call().map_err(|e| RegistryError::Unreachable {
        url: url.to_string(),
        reason: describe(&e),
    })
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("cannot connect: {io}"),
        ureq::Error::HostNotFound => "cannot connect: host not found".to_string(),
        other => other.to_string(),
    }
}

/// A non-2xx answer as an error, with the registry's own error message when it has one.
fn status_checked(
    url: &str,
    response: ureq::http::Response<ureq::Body>,
) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let body = response
        .into_body()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    Err(RegistryError::Status {
        url: url.to_string(),
        status,
        body: registry_message(&body),
    })
}

/// `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}` → `MANIFEST_UNKNOWN: manifest unknown`.
fn registry_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Errors>(body) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => body
            .chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string(),
    }
}

/// Every certificate of a PEM file. The system bundle may be missing (then only
/// per-registry CAs are trusted); a CA file named by the settings must exist.
fn read_pem(
    path: &std::path::Path,
    required: bool,
) -> Result<Vec<Certificate<'static>>, RegistryError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Vec::new()),
        Err(e) => {
            return Err(RegistryError::Settings {
                what: path.display().to_string(),
                reason: format!("cannot read: {e}"),
            })
        }
    };
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(RegistryError::Settings {
                    what: path.display().to_string(),
                    reason: format!("invalid PEM: {e}"),
                })
            }
        }
    }
    if certs.is_empty() && required {
        return Err(RegistryError::Settings {
            what: path.display().to_string(),
            reason: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_read_well() {
        assert_eq!(
            registry_message(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#
            ),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(registry_message("plain text\n"), "plain text");
    }

    /// A registry double on loopback that wants a bearer token from its own
    /// token endpoint, as Docker Hub and registry.k8s.io do.
    struct TokenRegistry {
        port: u16,
        /// Every request line with its Authorization header.
        seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    const MANIFEST: &[u8] =
        br#"{"schemaVersion":2,"config":{"digest":"sha256:0","size":0},"layers":[]}"#;

    impl TokenRegistry {
        /// `password`: the one the token endpoint accepts for user "u" (None: anonymous tokens).
        fn start(password: Option<&'static str>) -> TokenRegistry {
            use std::io::{BufRead, BufReader, Write};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let log = seen.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { return };
                    let log = log.clone();
                    // A thread per connection: the client keeps the first one open while it fetches the token.
                    std::thread::spawn(move || {
                        let mut reader = BufReader::new(stream.try_clone().unwrap());
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                break;
                            }
                            let mut auth = String::new();
                            loop {
                                let mut header = String::new();
                                reader.read_line(&mut header).unwrap();
                                if header.trim().is_empty() {
                                    break;
                                }
                                if let Some(v) = header.strip_prefix("authorization: ") {
                                    auth = v.trim().to_string();
                                }
                            }
                            let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                            log.lock().unwrap().push(format!("{path} {auth}"));
                            let basic = password.map(|p| basic_header("u", p));
                            let (status, headers, body): (&str, String, Vec<u8>) = if path
                                .starts_with("/token?")
                            {
                                let scope_ok = path
                                    .contains("scope=repository%3Ateam%2Fapp%3Apull")
                                    && path.contains("service=test");
                                if !scope_ok || basic.as_ref().is_some_and(|b| *b != auth) {
                                    ("401 Unauthorized", String::new(), b"{}".to_vec())
                                } else {
                                    ("200 OK", String::new(), br#"{"token":"T0K"}"#.to_vec())
                                }
                            } else if auth == "Bearer T0K" {
                                ("200 OK", String::new(), MANIFEST.to_vec())
                            } else {
                                let challenge = format!(
                                    "www-authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test\",scope=\"repository:team/app:pull\"\r\n"
                                );
                                ("401 Unauthorized", challenge, b"{}".to_vec())
                            };
                            let head = format!(
                                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{headers}\r\n",
                                body.len()
                            );
                            if stream.write_all(head.as_bytes()).is_err()
                                || stream.write_all(&body).is_err()
                            {
                                break;
                            }
                        }
                    });
                }
            });
            TokenRegistry { port, seen }
        }
    }

    fn client(registry: &TokenRegistry, credentials: &str) -> (Client, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let creds = tmp.path().join("config.json");
        std::fs::write(&creds, credentials).unwrap();
        let host = format!("127.0.0.1:{}", registry.port);
        let settings = RegistrySettings {
            insecure: vec![host.clone()],
            hosts_dir: tmp.path().join("hosts"),
            ca_dir: tmp.path().join("certs"),
            credentials: Some(creds),
            system_cas: tmp.path().join("no-bundle.pem"),
        };
        let name = crate::image::reference::remote_name(&format!("{host}/team/app:1")).unwrap();
        (Client::new(&settings, &name).unwrap(), tmp)
    }

    #[test]
    fn bearer_tokens_anonymous_and_with_a_password() {
        let anonymous = TokenRegistry::start(None);
        let (mut c, _tmp) = client(&anonymous, "{}");
        let m = c.manifest("1").unwrap();
        assert_eq!(m.digest, Digest::of(MANIFEST));
        // The token is kept: a second request goes straight through.
        c.manifest("1").unwrap();
        let seen = anonymous.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(
            seen[1].starts_with("/token?") && seen[1].ends_with(' '),
            "no credentials sent"
        );
        assert_eq!(seen[3], "/v2/team/app/manifests/1 Bearer T0K");

        let private = TokenRegistry::start(Some("right"));
        let host = format!("127.0.0.1:{}", private.port);
        let config =
            |pw: &str| format!(r#"{{"auths":{{"{host}":{{"username":"u","password":"{pw}"}}}}}}"#);
        let (mut c, _tmp) = client(&private, &config("right"));
        c.manifest("1").unwrap();
        let seen = private.seen.lock().unwrap().clone();
        assert!(seen[1].ends_with(&basic_header("u", "right")), "{seen:?}");

        let (mut c, _tmp) = client(&private, &config("wrong"));
        let err = c.manifest("1").unwrap_err().to_string();
        assert!(
            err.contains("refused the credentials of \"u\" for team/app"),
            "{err}"
        );
        let (mut c, _tmp) = client(&private, "{}");
        let err = c.manifest("1").unwrap_err().to_string();
        assert!(
            err.contains("authentication required for team/app"),
            "{err}"
        );
    }
}
