//! Client side of the transport: gRPC channels over TLS with the server's CA
//! pinned by fingerprint, and mutual TLS for agents.
//!
//! Agents and the CLI never use the system trust store: they trust exactly
//! the schoolfleet CA whose SHA-256 fingerprint they were given (in the
//! enrolment token, or at `schoolfleet login`), like kubeadm's discovery hash.
//!
//! We do the TLS handshake ourselves (tokio-rustls in a tower connector)
//! instead of using tonic's `ClientTlsConfig`, because the trust decision
//! ("the CA in the server's own chain whose hash is the pin") is not something
//! a fixed root store can express, and because the handshake error has to
//! reach the person at the keyboard in words they can act on.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{OtherError, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

/// Prefix of the URI SAN by which a device certificate names its device
/// (`urn:schoolfleet:device:<uuid>`). Server and agent both read it, so it
/// lives with the rest of the wire format.
pub const DEVICE_URI_PREFIX: &str = "urn:schoolfleet:device:";

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
        f.debug_struct("ClientIdentity")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
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
    /// The display text already contains the causes (deduplicated), because
    /// tonic's own text is only "transport error" and most log lines print
    /// just the top-level error. `source` stays available for code that wants
    /// to walk the chain.
    #[error("cannot connect to {url}: {}", transport_cause(.source))]
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

/// HTTP/2 stream window. hyper's default (64 KiB) caps one stream at about
/// window/RTT; remote-support port forwarding needs bulk throughput on a
/// single stream over school WAN links.
pub const INITIAL_STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// HTTP/2 connection window: room for two full stream windows, so one bulk
/// stream cannot starve the agent's control stream.
pub const INITIAL_CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// The ALPN protocol gRPC runs on.
const ALPN_H2: &[u8] = b"h2";

/// Connects to `url` (`https://host:port`) and returns a ready channel.
///
/// The first connection is made eagerly, so a wrong pin, an unreachable
/// server or a refused certificate fails here rather than at the first call.
/// Later reconnects (after the server restarts, say) use the same trust.
pub async fn connect(
    url: &str,
    trust: ServerTrust,
    identity: Option<ClientIdentity>,
    options: ChannelOptions,
) -> Result<Channel, TransportError> {
    let target = Target::parse(url)?;
    let config = client_config(trust, identity.as_ref())?;
    let dialer = TlsDialer {
        config: Arc::new(config),
        target: Arc::new(target.clone()),
    };

    let invalid =
        |e: tonic::transport::Error| TransportError::InvalidUrl(url.to_owned(), cause_chain(&e));
    // tonic refuses an `https://` endpoint that has no tonic-managed TLS
    // ("Connecting to HTTPS without TLS enabled"), even with a custom
    // connector. So the endpoint gets a plain `http://` URI that only our
    // dialer ever sees (and ignores: it always does TLS), and the requests
    // carry the real `https` scheme and authority through `origin`.
    let endpoint = Endpoint::from_shared(target.dial_uri.clone())
        .map_err(invalid)?
        .origin(target.origin.clone())
        .user_agent(concat!("schoolfleet/", env!("CARGO_PKG_VERSION")))
        .map_err(invalid)?
        .connect_timeout(options.connect_timeout)
        // Our dialer sets TCP_NODELAY itself; this only keeps the endpoint's
        // view consistent.
        .tcp_nodelay(true)
        .http2_keep_alive_interval(options.keepalive_interval)
        // Agents hold an idle stream most of the time; without pings while
        // idle a NAT or firewall drops it silently and nobody notices.
        .keep_alive_while_idle(true)
        .initial_stream_window_size(INITIAL_STREAM_WINDOW)
        .initial_connection_window_size(INITIAL_CONNECTION_WINDOW);
    let endpoint = match options.request_timeout {
        Some(timeout) => endpoint.timeout(timeout),
        None => endpoint,
    };

    endpoint
        .connect_with_connector(dialer)
        .await
        .map_err(|source| TransportError::Connect {
            url: url.to_owned(),
            source,
        })
}

/// Builds the rustls client configuration: ring, ALPN `h2`, the trust
/// decision of `trust`, and optionally a client certificate.
///
/// Public so that other TLS users (a raw port-forwarding tunnel, say) trust
/// the server exactly like the gRPC channel does.
pub fn client_config(
    trust: ServerTrust,
    identity: Option<&ClientIdentity>,
) -> Result<ClientConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        ServerTrust::Pinned(pin) => Arc::new(PinnedCaVerifier {
            pin,
            provider: Arc::clone(&provider),
        }),
        ServerTrust::CaPem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in pem_certs_to_der(&pem)? {
                roots
                    .add(cert)
                    .map_err(|e| TransportError::InvalidPem(format!("CA certificate: {e}")))?;
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| TransportError::InvalidPem(format!("CA certificate: {e}")))?
        }
    };

    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::InvalidPem(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain = pem_certs_to_der(&identity.cert_chain_pem)?;
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
                .map_err(|e| TransportError::InvalidPem(format!("client key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TransportError::InvalidPem(format!("client certificate: {e}")))?
        }
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// All `CERTIFICATE` blocks of `pem`, in order, as DER.
///
/// Fails when a block is malformed or when there is none: an empty chain
/// would otherwise show up much later as a puzzling handshake error.
pub fn pem_certs_to_der(pem: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::InvalidPem(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TransportError::InvalidPem(
            "no CERTIFICATE block found".to_owned(),
        ));
    }
    Ok(certs)
}

/// SHA-256 of the DER of the first certificate in `pem`.
pub fn ca_fingerprint(ca_pem: &str) -> Result<Fingerprint, TransportError> {
    let first = pem_certs_to_der(ca_pem)?
        .into_iter()
        .next()
        .ok_or_else(|| TransportError::InvalidPem("no CERTIFICATE block found".to_owned()))?;
    Ok(der_fingerprint(&first))
}

/// SHA-256 of a DER certificate.
pub fn der_fingerprint(der: &[u8]) -> Fingerprint {
    Sha256::digest(der).into()
}

/// `sha256:<hex>`.
pub fn format_pin(fingerprint: &Fingerprint) -> String {
    format!("sha256:{}", hex::encode(fingerprint))
}

/// Parses `sha256:<hex>` (the prefix is optional).
///
/// Also accepts colon-separated hex and either case, so that the output of
/// `openssl x509 -noout -fingerprint -sha256` can be pasted as it is.
pub fn parse_pin(text: &str) -> Result<Fingerprint, TransportError> {
    let invalid = || TransportError::InvalidPin(text.to_owned());
    let trimmed = text.trim();
    let digits = match trimmed.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &trimmed[7..],
        _ => trimmed,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 {
        return Err(invalid());
    }
    let mut fingerprint = [0u8; 32];
    hex::decode_to_slice(&digits, &mut fingerprint).map_err(|_| invalid())?;
    Ok(fingerprint)
}

/// tonic's own text is only "transport error"; what went wrong is in its
/// causes, so start there when there are any.
fn transport_cause(err: &tonic::transport::Error) -> String {
    match err.source() {
        Some(cause) => cause_chain(cause),
        None => err.to_string(),
    }
}

/// The text of `err` and of its causes, joined by ": ", leaving out a cause
/// whose text is already part of what came before (tonic and rustls both
/// repeat their inner error in their own text).
fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// Where to dial, parsed once from the server URL.
#[derive(Debug, Clone)]
struct Target {
    /// Host without IPv6 brackets, for DNS resolution.
    host: String,
    port: u16,
    /// `host:port` as written, for messages.
    authority: String,
    /// DNS name or IP address the server certificate must be valid for.
    server_name: ServerName<'static>,
    /// `http://authority/`, see `connect` for why.
    dial_uri: String,
    /// `https://authority`, the scheme and authority requests carry.
    origin: http::Uri,
}

impl Target {
    fn parse(url: &str) -> Result<Self, TransportError> {
        let invalid = |why: &str| TransportError::InvalidUrl(url.to_owned(), why.to_owned());
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid("only https:// URLs are accepted"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user names and passwords do not belong in the URL"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            // gRPC calls go to /package.Service/Method at the root; a path
            // prefix would be silently dropped.
            return Err(invalid("the URL must not have a path or query"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = authority.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| invalid("the host is neither a DNS name nor an IP address"))?;
        let origin = format!("https://{authority}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.as_str().to_owned(),
            server_name,
            dial_uri: format!("http://{authority}/"),
            origin,
        })
    }
}

/// The tower connector tonic calls for every (re)connect: TCP, then TLS,
/// then hands the stream to hyper.
#[derive(Clone)]
struct TlsDialer {
    config: Arc<ClientConfig>,
    target: Arc<Target>,
}

/// Why one connection attempt failed. The texts are what an admin reads, so
/// they name the address and the reason without Debug noise.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot reach {addr}")]
    Tcp {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error(
        "{addr} did not agree to HTTP/2 (ALPN offered h2, got {got:?}); is this a schoolfleet server?"
    )]
    NotHttp2 { addr: String, got: String },
}

impl tower::Service<http::Uri> for TlsDialer {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// The URI tonic passes is the internal `http://` one; the target was
    /// parsed from the real URL when the dialer was made.
    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let config = Arc::clone(&self.config);
        let target = Arc::clone(&self.target);
        Box::pin(async move { dial(config, &target).await })
    }
}

async fn dial(
    config: Arc<ClientConfig>,
    target: &Target,
) -> Result<TokioIo<TlsStream<TcpStream>>, DialError> {
    let addr = || target.authority.clone();
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| DialError::Tcp {
            addr: addr(),
            source,
        })?;
    // gRPC frames are small and latency-bound (heartbeats, keystrokes of a
    // remote session); Nagle would hold them back.
    tcp.set_nodelay(true).map_err(|source| DialError::Tcp {
        addr: addr(),
        source,
    })?;
    let tls = TlsConnector::from(config)
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| DialError::Handshake {
            addr: addr(),
            reason: handshake_reason(&e),
        })?;
    match tls.get_ref().1.alpn_protocol() {
        // No ALPN answer: talk HTTP/2 with prior knowledge, as gRPC does.
        None => {}
        Some(ALPN_H2) => {}
        Some(other) => {
            return Err(DialError::NotHttp2 {
                addr: addr(),
                got: String::from_utf8_lossy(other).into_owned(),
            });
        }
    }
    Ok(TokioIo::new(tls))
}

/// Text for a failed handshake. rustls prints errors from custom verifiers
/// through `Debug` (`Other(OtherError(..))`), so ours are unwrapped here.
fn handshake_reason(err: &io::Error) -> String {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return err.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            format!("invalid server certificate: {inner}")
        }
        other => other.to_string(),
    }
}

/// Trusts the CA in the server's own chain whose SHA-256 is the pin.
///
/// Finding the CA by hash only selects the trust anchor; the leaf is still
/// verified against it by webpki (signature, validity, name, EKU), so a
/// server that appends our CA to a chain from another CA gets nowhere.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

/// The server's chain does not contain the pinned CA.
#[derive(Debug, thiserror::Error)]
#[error(
    "server CA fingerprint does not match the pinned {pinned} (the server presented {presented}); \
     check the pin, or whether something between you and the server intercepts TLS"
)]
struct PinMismatch {
    pinned: String,
    presented: String,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = || std::iter::once(end_entity).chain(intermediates);
        let Some(ca) = chain().find(|cert| der_fingerprint(cert) == self.pin) else {
            let presented = chain()
                .map(|cert| format_pin(&der_fingerprint(cert)))
                .collect::<Vec<_>>()
                .join(", ");
            let mismatch = PinMismatch {
                pinned: format_pin(&self.pin),
                presented,
            };
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(mismatch)),
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| rustls::Error::General(format!("pinned CA is not usable: {e}")))?;
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn pin_roundtrip_and_accepted_spellings() {
        let pin = parse_pin(&format!("sha256:{PIN_HEX}")).unwrap();
        assert_eq!(format_pin(&pin), format!("sha256:{PIN_HEX}"));
        assert_eq!(parse_pin(PIN_HEX).unwrap(), pin);
        assert_eq!(
            parse_pin(&format!("  SHA256:{}\n", PIN_HEX.to_uppercase())).unwrap(),
            pin
        );
        let openssl = PIN_HEX
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_pin(&openssl).unwrap(), pin);
    }

    #[test]
    fn bad_pins_are_refused() {
        for bad in [
            "",
            "sha256:",
            "sha256:abcd",
            &PIN_HEX[1..],
            &format!("{PIN_HEX}00"),
            &format!("sha1:{PIN_HEX}"),
            &PIN_HEX.replace('a', "g"),
            "sha256:ä",
        ] {
            assert!(
                matches!(parse_pin(bad), Err(TransportError::InvalidPin(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn only_plain_https_urls_are_accepted() {
        for bad in [
            "http://example.org:8443",
            "example.org:8443",
            "https://",
            "https://user:pw@example.org",
            "https://example.org/prefix",
            "https://example.org/?x=1",
            "unix:/run/sf.sock",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(TransportError::InvalidUrl(..))),
                "{bad:?} was accepted"
            );
        }
        let t = Target::parse("https://sf.school.example").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("sf.school.example", 443));
        assert!(matches!(t.server_name, ServerName::DnsName(_)));
        let t = Target::parse("https://[::1]:8443/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        assert!(matches!(t.server_name, ServerName::IpAddress(_)));
        assert_eq!(t.origin, "https://[::1]:8443");
        let t = Target::parse("https://10.1.2.3:8443").unwrap();
        assert!(matches!(t.server_name, ServerName::IpAddress(_)));
    }

    #[test]
    fn pem_without_certificates_is_refused() {
        assert!(matches!(
            pem_certs_to_der(""),
            Err(TransportError::InvalidPem(_))
        ));
        assert!(matches!(
            ca_fingerprint("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            Err(TransportError::InvalidPem(_))
        ));
    }

    #[test]
    fn fingerprint_is_sha256_of_first_der() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["x.example".to_owned()]).unwrap();
        let bundle = format!("{}{}", ca.cert.pem(), other.cert.pem());
        let expected: Fingerprint = Sha256::digest(ca.cert.der()).into();
        assert_eq!(ca_fingerprint(&bundle).unwrap(), expected);
        assert_eq!(pem_certs_to_der(&bundle).unwrap().len(), 2);
    }

    #[test]
    fn client_identity_with_garbage_key_is_refused() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".to_owned()]).unwrap();
        let identity = ClientIdentity {
            cert_chain_pem: ca.cert.pem(),
            key_pem: "nope".to_owned(),
        };
        let err = client_config(ServerTrust::Pinned([0; 32]), Some(&identity)).unwrap_err();
        assert!(matches!(err, TransportError::InvalidPem(_)), "{err}");
        let identity = ClientIdentity {
            cert_chain_pem: ca.cert.pem(),
            key_pem: ca.signing_key.serialize_pem(),
        };
        let config = client_config(ServerTrust::CaPem(ca.cert.pem()), Some(&identity)).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
