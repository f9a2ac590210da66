//! Credentials (a docker-style `config.json`) and the registry's challenges:
//! `WWW-Authenticate: Basic …` or `Bearer realm=…,service=…,scope=…`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::RegistryError;

/// What config.json holds for one registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    Basic {
        user: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint.
    IdentityToken {
        user: String,
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({:?})", self.user())
    }
}

impl Credential {
    pub(crate) fn user(&self) -> &str {
        match self {
            Credential::Basic { user, .. } | Credential::IdentityToken { user, .. } => user,
        }
    }
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Every credential of one config.json, keyed by normalized host.
#[derive(Debug, Default, Clone)]
pub(crate) struct Credentials {
    entries: Vec<(String, Credential)>,
}

impl Credentials {
    /// The first of `files` that exists; a file named explicitly must exist.
    pub(crate) fn load(files: &[PathBuf], explicit: bool) -> Result<Self, RegistryError> {
        for path in files {
            match std::fs::read(path) {
                Ok(bytes) => return Self::parse(&bytes, path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => continue,
                Err(e) => {
                    return Err(RegistryError::Settings {
                        what: path.display().to_string(),
                        reason: format!("cannot read: {e}"),
                    })
                }
            }
        }
        Ok(Credentials::default())
    }

    pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Self, RegistryError> {
        let invalid = |reason: String| RegistryError::Settings {
            what: path.display().to_string(),
            reason,
        };
        let config: ConfigJson =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
        let mut entries = Vec::new();
        for (key, entry) in config.auths {
            let (mut user, mut password) = (entry.username, entry.password);
            if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .ok_or_else(|| {
                        invalid(format!("auths.{key:?}.auth: not base64 of user:password"))
                    })?;
                let (u, p) = decoded.split_once(':').ok_or_else(|| {
                    invalid(format!("auths.{key:?}.auth: not base64 of user:password"))
                })?;
                user = Some(u.to_string());
                password = Some(p.to_string());
            }
            let credential = match (
                entry.identitytoken.filter(|t| !t.is_empty()),
                user,
                password,
            ) {
                (Some(token), user, _) => Credential::IdentityToken {
                    user: user.unwrap_or_default(),
                    token,
                },
                (None, Some(user), Some(password)) => Credential::Basic { user, password },
                _ => continue,
            };
            entries.push((normalize_host(&key), credential));
        }
        Ok(Credentials { entries })
    }

    /// The credential for `host`: an exact entry first, then a `*.domain` wildcard.
    pub(crate) fn for_host(&self, host: &str) -> Option<&Credential> {
        let host = normalize_host(host);
        let exact = self.entries.iter().find(|(key, _)| *key == host);
        exact
            .or_else(|| {
                self.entries.iter().find(|(key, _)| {
                    key.strip_prefix("*.").is_some_and(|domain| {
                        host.split_once('.').is_some_and(|(_, rest)| rest == domain)
                    })
                })
            })
            .map(|(_, c)| c)
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://r:5000/x` → `r:5000`.
pub(crate) fn normalize_host(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(params);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        None
    }
}

/// `a="x,y", b=z` → [(a, x,y), (b, z)]: commas inside quotes stay.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

/// `Authorization: Basic …` for a user and password.
pub(crate) fn basic_header(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The token endpoint's answer (Docker's `token`, OAuth2's `access_token`).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl TokenResponse {
    pub(crate) fn into_token(self) -> Option<String> {
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
    }
}

/// `repository:<name>:pull`, the only scope a pull needs.
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:9/t, service="a\"b""#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:9/t".into(),
                service: Some("a\"b".into()),
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None, "no realm");
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn config_json_entries() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "127.0.0.1:5000": {{"username": "bob", "password": "pw"}},
                "http://quay.example/v2/": {{"identitytoken": "refresh", "username": "<token>"}},
                "*.corp.example": {{"username": "c", "password": "d"}},
                "empty.example": {{}}
            }}, "credHelpers": {{}}}}"#
        );
        let c = Credentials::parse(json.as_bytes(), Path::new("/x/config.json")).unwrap();
        assert_eq!(
            c.for_host("registry-1.docker.io"),
            Some(&Credential::Basic {
                user: "alice".into(),
                password: "s3:cret".into()
            })
        );
        assert_eq!(c.for_host("docker.io").unwrap().user(), "alice");
        assert_eq!(c.for_host("127.0.0.1:5000").unwrap().user(), "bob");
        assert!(c.for_host("127.0.0.1:5001").is_none());
        assert!(matches!(
            c.for_host("quay.example"),
            Some(Credential::IdentityToken { token, .. }) if token == "refresh"
        ));
        assert_eq!(c.for_host("r.corp.example").unwrap().user(), "c");
        assert!(c.for_host("a.r.corp.example").is_none());
        assert!(c.for_host("empty.example").is_none());
        assert!(
            !format!("{:?}", c).contains("s3:cret"),
            "secrets stay hidden"
        );

        let err = Credentials::parse(
            br#"{"auths": {"x": {"auth": "%%%"}}}"#,
            Path::new("/c.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("/c.json: auths.\"x\".auth"), "{err}");
        let missing = vec![PathBuf::from("/nonexistent/config.json")];
        assert!(Credentials::load(&missing, false)
            .unwrap()
            .entries
            .is_empty());
        assert!(Credentials::load(&missing, true).is_err());
    }

    #[test]
    fn basic_header_is_base64() {
        assert_eq!(basic_header("a", "b"), "Basic YTpi");
        assert_eq!(pull_scope("library/x"), "repository:library/x:pull");
    }
}
