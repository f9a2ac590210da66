/// Errors of talking to registries. Each names the registry, repository or file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what}: {reason}")]
    Settings { what: String, reason: String },
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{registry}: authentication required for {repository}: no credentials for {host} (add them to a config.json: --registry-credentials, /var/lib/kubelet/config.json or ~/.docker/config.json)")]
    NoCredentials {
        registry: String,
        repository: String,
        host: String,
    },
    #[error(
        "{registry}: unauthorized: {host} refused the credentials of {user:?} for {repository}"
    )]
    BadCredentials {
        registry: String,
        repository: String,
        host: String,
        user: String,
    },
    #[error("{host}: cannot authenticate: {reason}")]
    Auth { host: String, reason: String },
    #[error("{reference}: not found (tried {tried})")]
    NotFound { reference: String, tried: String },
    #[error("{reference}: no endpoint could serve it: {}", errors.join("; "))]
    AllFailed {
        reference: String,
        errors: Vec<String>,
    },
    #[error("{url}: {reason}")]
    BadResponse { url: String, reason: String },
}
