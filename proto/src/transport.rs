//! Client side of the transport: gRPC channels over TLS with the server's CA
//! pinned by fingerprint, and mutual TLS for agents.
//!
//! Agents and the CLI never use the system trust store: they trust exactly
//! the schoolfleet CA whose SHA-256 fingerprint they were given (in the
//! enrolment token, or at `schoolfleet login`), like kubeadm's discovery hash.

use tonic::transport::Channel;

/// SHA-256 fingerprint of a CA certificate (DER).
pub type Fingerprint = [u8; 32];

/// How the client decides to trust the server.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Trust the CA certificate in the server's chain whose SHA-256
    /// fingerprint (of the DER) is this one; verify the leaf against it.
    Pinned(Fingerprint),
    /// Trust this CA certificate (PEM).
    CaPem(String),
}

/// A client certificate and its private key (PEM), for mutual TLS.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").field("key_pem", &"<redacted>").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid server URL {0:?}: {1}")]
    InvalidUrl(String, String),
    #[error("invalid CA pin {0:?}: expected sha256:<64 hex digits>")]
    InvalidPin(String),
    #[error("invalid certificate or key: {0}")]
    InvalidPem(String),
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Settings of the channel that are not about trust.
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    pub connect_timeout: std::time::Duration,
    /// Per-request timeout; `None` for long-lived streams.
    pub request_timeout: Option<std::time::Duration>,
    /// HTTP/2 keepalive ping interval.
    pub keepalive_interval: std::time::Duration,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            connect_timeout: std::time::Duration::from_secs(10),
            request_timeout: None,
            keepalive_interval: std::time::Duration::from_secs(30),
        }
    }
}

/// Connects to `url` (`https://host:port`) and returns a ready channel.
pub async fn connect(
    _url: &str,
    _trust: ServerTrust,
    _identity: Option<ClientIdentity>,
    _options: ChannelOptions,
) -> Result<Channel, TransportError> {
    todo!("implemented by the pki/transport work")
}

/// SHA-256 of the DER of the first certificate in `pem`.
pub fn ca_fingerprint(_ca_pem: &str) -> Result<Fingerprint, TransportError> {
    todo!()
}

/// `sha256:<hex>`.
pub fn format_pin(fingerprint: &Fingerprint) -> String {
    format!("sha256:{}", hex::encode(fingerprint))
}

/// Parses `sha256:<hex>` (the prefix is optional).
pub fn parse_pin(_text: &str) -> Result<Fingerprint, TransportError> {
    todo!()
}
