//! The server CA, device certificates and TLS configuration.
//!
//! The server is its own certificate authority. Agents and the CLI trust it
//! by the SHA-256 fingerprint of the CA certificate (the "pin" in every
//! enrolment token), never through system roots, so the CA certificate must
//! stay the same for as long as devices are enrolled: losing or replacing
//! `ca.key` means re-enrolling every device. That is why nothing here ever
//! overwrites an existing CA file.
//!
//! Device certificates are minted from the agent's CSR, but only the public
//! key is taken from it: subject, names and usages are ours, so a device can
//! never obtain a certificate that says anything but "device <uuid>, client".

use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use uuid::Uuid;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// Common name of a CA the server generates itself.
pub const CA_COMMON_NAME: &str = "schoolfleet CA";
pub use schoolfleet_proto::transport::DEVICE_URI_PREFIX;

/// Long enough that nobody has to think about rotation during the life of a
/// school's installation; rotating means re-enrolling every device.
const CA_VALIDITY: chrono::Duration = chrono::Duration::days(3650);
/// Server certificates are cheap to reissue (the pin is on the CA), so they
/// are short-lived compared to the CA.
const SERVER_CERT_VALIDITY: chrono::Duration = chrono::Duration::days(365);
/// Certificates start a little in the past so that a device whose clock is
/// a few minutes behind accepts a certificate issued a moment ago.
const BACKDATE: chrono::Duration = chrono::Duration::minutes(5);
/// A TLS handshake that has not finished by then is dropped, so that
/// half-open connections cannot pile up on the one public port.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot access {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "CA directory {} holds {present} but not {missing}; restore the missing file \
         (replacing the CA means re-enrolling every device) or remove both to create a new CA",
        dir.display()
    )]
    IncompleteCa {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
    #[error("invalid CA: {0}")]
    InvalidCa(String),
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    #[error("the certificate signing request's signature does not verify")]
    CsrSignature,
    #[error(
        "unsupported key type {0} in certificate signing request; use ECDSA P-256, P-384 or Ed25519"
    )]
    UnsupportedKeyType(String),
    #[error("invalid server name {0:?}: expected a DNS name or an IP address")]
    InvalidServerName(String),
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("the certificate does not name exactly one device (URI SAN {DEVICE_URI_PREFIX}<uuid>)")]
    NoDeviceId,
    #[error("cannot make certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The schoolfleet CA: its certificate and the key that signs device and
/// server certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    fingerprint: [u8; 32],
    subject: String,
    not_after: DateTime<Utc>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.subject)
            .field(
                "fingerprint",
                &schoolfleet_proto::transport::format_pin(&self.fingerprint),
            )
            .field("not_after", &self.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A server certificate chain (leaf, then CA) and its key, PEM.
#[derive(Clone)]
pub struct ServerCert {
    /// Leaf first, then the CA: pinning clients look for the CA in the chain.
    pub cert_chain_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A device certificate as issued, with what the database keeps about it.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// SHA-256 of the certificate DER: what the agent service looks the
    /// device up by.
    pub fingerprint: [u8; 32],
    pub serial_hex: String,
    pub not_after: DateTime<Utc>,
}

impl CertificateAuthority {
    /// Loads the CA from `dir/ca.pem` and `dir/ca.key`, or creates a new one
    /// (ECDSA P-256, 10 years) there when neither file exists.
    ///
    /// When only one of the two exists this fails instead of creating a new
    /// CA: a new CA would silently lock out every enrolled device.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (exists(&cert_path)?, exists(&key_path)?) {
            (true, true) => {
                warn_if_key_readable_by_others(&key_path);
                Self::from_pem(&read(&cert_path)?, &read(&key_path)?)
            }
            (false, false) => Self::create_in(dir, &cert_path, &key_path),
            (true, false) => Err(PkiError::IncompleteCa {
                dir: dir.to_owned(),
                present: CA_CERT_FILE,
                missing: CA_KEY_FILE,
            }),
            (false, true) => Err(PkiError::IncompleteCa {
                dir: dir.to_owned(),
                present: CA_KEY_FILE,
                missing: CA_CERT_FILE,
            }),
        }
    }

    fn create_in(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, PkiError> {
        create_private_dir(dir)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let now = now_seconds();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(CA_COMMON_NAME);
        // Path length 0: this CA signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        params.not_before = to_asn1_time(now - BACKDATE)?;
        params.not_after = to_asn1_time(now + CA_VALIDITY)?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        // The key goes first: a crash in between leaves a key without a
        // certificate, which load_or_create reports instead of replacing.
        write_new_file(key_path, key_pem.as_bytes(), 0o600)?;
        write_new_file(cert_path, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(dir = %dir.display(), "created a new schoolfleet CA");
        Self::from_pem(&cert.pem(), &key_pem)
    }

    /// A CA supplied by the operator: certificate PEM and unencrypted PKCS#8
    /// key PEM. Checks that the certificate is a CA, is currently valid and
    /// belongs to the key, so that a mix-up fails at startup, not at the
    /// first enrolment.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::InvalidCa(format!("CA certificate: {e}")))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| PkiError::InvalidCa(format!("CA certificate: {e}")))?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| PkiError::InvalidCa(format!("CA certificate: {e}")))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(PkiError::InvalidCa(
                "the certificate is not a CA (basicConstraints CA:TRUE missing)".to_owned(),
            ));
        }
        let not_after = to_chrono(cert.validity().not_after.timestamp())?;
        if not_after <= Utc::now() {
            return Err(PkiError::InvalidCa(format!(
                "the CA certificate expired at {not_after}"
            )));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            PkiError::InvalidCa(format!(
                "CA key: {e} (expected an unencrypted PKCS#8 \"BEGIN PRIVATE KEY\" PEM; \
                 convert with `openssl pkcs8 -topk8 -nocrypt`)"
            ))
        })?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::InvalidCa(
                "the key does not belong to the CA certificate".to_owned(),
            ));
        }
        let subject = cert.subject().to_string();
        let issuer = Issuer::from_ca_cert_der(&der, key)?;
        Ok(Self {
            // Normalised to the one certificate we parsed: the pin is
            // computed from it, so it is also what clients must receive.
            cert_pem: pem_encode("CERTIFICATE", &der),
            fingerprint: cert_fingerprint(&der),
            subject,
            not_after,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate DER: the pin in enrolment tokens.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// When the CA certificate expires.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// Issues a TLS server certificate (fresh P-256 key, 1 year) for these
    /// DNS names and IP addresses.
    pub fn issue_server_cert(&self, subject_alt_names: &[String]) -> Result<ServerCert, PkiError> {
        let first = subject_alt_names.first().ok_or(PkiError::NoServerNames)?;
        let names = subject_alt_names
            .iter()
            .map(|name| server_san(name))
            .collect::<Result<Vec<_>, _>>()?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let now = now_seconds();
        let mut params = leaf_params(now - BACKDATE, now + SERVER_CERT_VALIDITY)?;
        params.distinguished_name = common_name(first);
        params.subject_alt_names = names;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCert {
            cert_chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a device certificate for the public key in `csr_pem`.
    ///
    /// Only the key is taken from the request, after its self-signature is
    /// verified (proof that the agent holds the private key). Whatever the
    /// agent asked for (subject, SANs, usages, CA) is ignored; the
    /// certificate says: CN and URI SAN = the device id, client auth only,
    /// not a CA, valid from five minutes ago for `validity`.
    pub fn sign_device_csr(
        &self,
        csr_pem: &str,
        device_id: Uuid,
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
        let (rest, csr) = X509CertificationRequest::from_der(&der)
            .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(PkiError::InvalidCsr(
                "trailing data after the request".to_owned(),
            ));
        }
        let spki = &csr.certification_request_info.subject_pki;
        check_device_key_type(spki)?;
        csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki.raw)
            .map_err(|e| PkiError::InvalidCsr(format!("public key: {e}")))?;

        let validity = chrono::Duration::from_std(validity)
            .map_err(|_| PkiError::InvalidValidity(format!("{validity:?} is too long")))?;
        let now = now_seconds();
        let not_after = now
            .checked_add_signed(validity)
            .ok_or_else(|| PkiError::InvalidValidity(format!("{validity} is too long")))?;
        let mut params = leaf_params(now - BACKDATE, not_after)?;
        params.distinguished_name = common_name(&device_id.to_string());
        params.subject_alt_names = vec![SanType::URI(device_uri(device_id).try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let serial = params
            .serial_number
            .as_ref()
            .map(SerialNumber::to_bytes)
            .unwrap_or_default();
        let cert = params.signed_by(&public_key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            fingerprint: cert_fingerprint(cert.der()),
            serial_hex: hex::encode(serial),
            not_after,
        })
    }
}

/// SHA-256 of a certificate's DER, the key devices are looked up by.
pub fn cert_fingerprint(der: &[u8]) -> [u8; 32] {
    schoolfleet_proto::transport::der_fingerprint(der)
}

/// TLS for the one public port: our server chain, and client certificates
/// verified against our CA but optional, because enrolment and admin calls
/// (bearer tokens) come without one. Services that need a device must check
/// `request.peer_certs()` themselves and fail closed.
pub fn server_tls_config(ca: &CertificateAuthority, server: &ServerCert) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(Identity::from_pem(&server.cert_chain_pem, &server.key_pem))
        .client_ca_root(Certificate::from_pem(ca.cert_pem()))
        .client_auth_optional(true)
        .timeout(TLS_HANDSHAKE_TIMEOUT)
}

/// The same TLS setup as `server_tls_config`, as a rustls configuration
/// for the server's own accept loop (which does the handshake itself, so
/// that it can bound it and the time to the first request): client
/// certificates verified against our CA but optional, ALPN `h2`.
pub fn server_rustls_config(
    ca: &CertificateAuthority,
    server: &ServerCert,
) -> Result<rustls::ServerConfig, PkiError> {
    let invalid = |e: &dyn std::fmt::Display| PkiError::InvalidCertificate(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots
            .add(cert.map_err(|e| invalid(&e))?)
            .map_err(|e| invalid(&e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(roots.into())
        .allow_unauthenticated()
        .build()
        .map_err(|e| invalid(&e))?;
    let chain = CertificateDer::pem_slice_iter(server.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes())
        .map_err(|e| invalid(&e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The device id in a device certificate's URI SAN.
///
/// This does not verify the certificate: call it only on one the TLS layer
/// has already verified against our CA. Exactly one device URI must be
/// present, so that a certificate can never stand for two devices.
pub fn device_id_from_cert(der: &[u8]) -> Result<Uuid, PkiError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?
        .ok_or(PkiError::NoDeviceId)?;
    let mut ids = sans
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(DEVICE_URI_PREFIX),
            _ => None,
        });
    let (Some(id), None) = (ids.next(), ids.next()) else {
        return Err(PkiError::NoDeviceId);
    };
    Uuid::parse_str(id).map_err(|_| PkiError::NoDeviceId)
}

/// `urn:schoolfleet:device:<uuid>`.
pub fn device_uri(device_id: Uuid) -> String {
    format!("{DEVICE_URI_PREFIX}{}", device_id.hyphenated())
}

/// Only keys that rustls/webpki verify and that are strong and small.
/// RSA is refused on purpose: agents generate P-256, and accepting RSA
/// would only widen what the handshake code on both sides has to handle.
fn check_device_key_type(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), PkiError> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_SIG_ED25519 {
        return Ok(());
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(curve) if curve == OID_EC_P256 || curve == OID_NIST_EC_P384 => Ok(()),
            Some(curve) => Err(PkiError::UnsupportedKeyType(format!(
                "ECDSA on curve {curve}"
            ))),
            None => Err(PkiError::UnsupportedKeyType(
                "ECDSA without a named curve".to_owned(),
            )),
        };
    }
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        return Err(PkiError::UnsupportedKeyType("RSA".to_owned()));
    }
    Err(PkiError::UnsupportedKeyType(algorithm.to_id_string()))
}

/// What every leaf we issue has in common.
fn leaf_params(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(random_serial());
    params.not_before = to_asn1_time(not_before)?;
    params.not_after = to_asn1_time(not_after)?;
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn server_san(name: &str) -> Result<SanType, PkiError> {
    let invalid = || PkiError::InvalidServerName(name.to_owned());
    if let Ok(ip) = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SanType::IpAddress(ip));
    }
    // Validate like the client will, so that a typo fails here and not in
    // every agent's handshake.
    rustls_pki_types::DnsName::try_from(name).map_err(|_| invalid())?;
    Ok(SanType::DnsName(name.try_into().map_err(|_| invalid())?))
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// 128 random bits, positive and without a leading zero byte, so that the
/// DER integer is exactly these 16 bytes (and `serial_hex` matches what
/// `openssl x509 -serial` prints).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}

/// Now, truncated to whole seconds (X.509 times have no fractions, and the
/// database should store exactly what the certificate says).
fn now_seconds() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

fn to_asn1_time(t: DateTime<Utc>) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| PkiError::InvalidValidity(format!("{t}: {e}")))
}

fn to_chrono(unix_seconds: i64) -> Result<DateTime<Utc>, PkiError> {
    DateTime::from_timestamp(unix_seconds, 0)
        .ok_or_else(|| PkiError::InvalidCertificate(format!("time {unix_seconds} out of range")))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })
}

#[cfg(unix)]
fn warn_if_key_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the CA key is readable by other users; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_key_readable_by_others(_path: &Path) {}

/// Writes `contents` to a new file with `mode`; never over an existing one
/// (another process may have created a CA key a moment ago).
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    use schoolfleet_proto::files::{Existing, write_durably};
    write_durably(path, contents, mode, Existing::Keep).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::ParsedExtension;

    const DAY: Duration = Duration::from_secs(86_400);

    /// An RSA-2048 CSR made with `openssl req -newkey rsa:2048`.
    const RSA_CSR: &str = "\
-----BEGIN CERTIFICATE REQUEST-----
MIICWjCCAUICAQAwFTETMBEGA1UEAwwKcnNhLWRldmljZTCCASIwDQYJKoZIhvcN
AQEBBQADggEPADCCAQoCggEBAL1ubqFHIt3GD3lcukk/1BonHrCLDsWSwi6ZdyZO
HRVDrbn+fKbqn9bxbjzMbsWea5GYguMUhNyOT8HVFIHuqLix67d5dR/d5ejL8Pob
PaSBAUfdkmTzrUg/aowXoOrBrGS7x/+3hadyhC93Lb1XxwMHtdIY3hhKHST0nL0U
OZXYZakddvpNWyft70HbWpm0J2ft+aMy6qko0CYfuJQQ7GG4Pu0djnj6caKeSeeQ
OcBxVp+uazlI9IblmszlBmRkXm6UydECrAZ1SMkqW/ptZO+kqZWjcUJsxpGQTJs6
VzhGtTJXTX474QckVA/EkTKK/kOohsrcRA20+VM8EzcglCsCAwEAAaAAMA0GCSqG
SIb3DQEBCwUAA4IBAQBZ8J+BHaMl/0RoWs605ewqWrGeDLEANuGfrUq6MIhL4Z7v
tB2ni6TlER7pMXpGXOKM4oR5AdTcgq+TFodut0YX2tVTQUjSVgLJs5QJYbJp/ylO
PKssFKOV0Sorn7B2jvC0C6ffS9zSWdNu7y4+FkmhycIHWj/poDvZjG/puReTvaaN
QpSHEx3E2rAKvcDORVaz02EheGN2h3tx4eBwRRKyqJL2COHjDP3J/losTENJn28X
h+9xE6WvoVZZEam3ab0r28GmLTeilYibf5i1jmdG7JAieUJZAwUPrEy7KX/5qDP2
bfAZPNMJ7zJf31cMBN0J50NM1Qq3XuxbpqLPOeRJ
-----END CERTIFICATE REQUEST-----
";
    /// A P-521 CSR made with `openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-521`.
    const P521_CSR: &str = "\
-----BEGIN CERTIFICATE REQUEST-----
MIIBUTCBtAIBADAPMQ0wCwYDVQQDDARwNTIxMIGbMBAGByqGSM49AgEGBSuBBAAj
A4GGAAQAVwa9MLgp3kCpBarg81qY+0LkEnelSZDDUBd0hEK3ZpLY7MsTLwZYelRG
e+yP0DpTPW1LsKCW5TV9DaHpkoeGeyIAGGlddact2idJoygo9+UOooSRbtoApjRO
2pZWbjan3yoMxiA4LBO5GnNTmWJkfhrgHvq62pVl7upM5XoAzoLzkN2gADAKBggq
hkjOPQQDAgOBiwAwgYcCQgGWV02dn8OJ8mmqUtHV46ZAD44qj3jNKFqZR1k9yKrf
2qKy6qrXTF88Ndclr49J0/wfc/50QWWKmekirNV1ie8ULgJBDJoH1bSrb6CmkKdi
HVzGH+hbd+eeobom8ilk223+13cJJa8ZVLPMgcFHw+8L+uaT/uWT+UUKw8edumy2
+TOSA4U=
-----END CERTIFICATE REQUEST-----
";

    fn test_ca() -> (tempfile::TempDir, CertificateAuthority) {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(&dir.path().join("ca")).unwrap();
        (dir, ca)
    }

    /// A CSR that asks for everything a device must not get.
    fn forged_csr(alg: &'static rcgen::SignatureAlgorithm) -> (KeyPair, String) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
        params.distinguished_name = common_name("admin");
        params
            .subject_alt_names
            .push(SanType::URI(device_uri(Uuid::nil()).try_into().unwrap()));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        (key, csr)
    }

    fn parse(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn ca_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("data").join("ca");
        let ca = CertificateAuthority::load_or_create(&ca_dir).unwrap();
        let again = CertificateAuthority::load_or_create(&ca_dir).unwrap();
        assert_eq!(ca.fingerprint(), again.fingerprint());
        assert_eq!(ca.cert_pem(), again.cert_pem());
        assert_eq!(
            ca.fingerprint(),
            schoolfleet_proto::transport::ca_fingerprint(ca.cert_pem()).unwrap()
        );

        let der = parse(ca.cert_pem());
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().to_string(), format!("CN={CA_COMMON_NAME}"));
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        let lifetime = cert.validity().not_after.timestamp() - Utc::now().timestamp();
        assert!(
            (3649 * 86_400..=3650 * 86_400).contains(&lifetime),
            "{lifetime}"
        );
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[cfg(unix)]
    #[test]
    fn ca_key_is_private_and_not_left_in_temp_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [CA_KEY_FILE, CA_CERT_FILE]);
    }

    #[test]
    fn half_a_ca_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::load_or_create(dir.path()).unwrap();
        let cert_before = fs::read(dir.path().join(CA_CERT_FILE)).unwrap();
        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                PkiError::IncompleteCa {
                    missing: CA_KEY_FILE,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            fs::read(dir.path().join(CA_CERT_FILE)).unwrap(),
            cert_before
        );
    }

    #[test]
    fn operator_ca_must_match_its_key_and_be_a_ca() {
        let (_d1, ca) = test_ca();
        let other_key = KeyPair::generate().unwrap();
        let err =
            CertificateAuthority::from_pem(ca.cert_pem(), &other_key.serialize_pem()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");

        let leaf = ca.issue_server_cert(&["sf.example".to_owned()]).unwrap();
        let err = CertificateAuthority::from_pem(&leaf.cert_chain_pem, &leaf.key_pem).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn device_cert_ignores_everything_the_csr_asked_for() {
        let (_dir, ca) = test_ca();
        let device = Uuid::now_v7();
        let (key, csr) = forged_csr(&rcgen::PKCS_ECDSA_P256_SHA256);
        let issued = ca.sign_device_csr(&csr, device, 30 * DAY).unwrap();

        let der = parse(&issued.cert_pem);
        assert_eq!(issued.fingerprint, cert_fingerprint(&der));
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().to_string(), format!("CN={device}"));
        assert_eq!(cert.issuer().to_string(), format!("CN={CA_COMMON_NAME}"));
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        assert_eq!(cert.raw_serial(), hex::decode(&issued.serial_hex).unwrap());
        assert_eq!(
            cert.validity().not_after.timestamp(),
            issued.not_after.timestamp()
        );
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, 30 * 86_400 + 300);

        let mut saw_san = false;
        let mut saw_eku = false;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    assert_eq!(san.general_names, [GeneralName::URI(&device_uri(device))]);
                    saw_san = true;
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    assert!(eku.client_auth);
                    assert!(!eku.server_auth && !eku.any && eku.other.is_empty());
                    saw_eku = true;
                }
                ParsedExtension::BasicConstraints(bc) => assert!(!bc.ca),
                _ => {}
            }
        }
        assert!(saw_san && saw_eku);
        assert_eq!(device_id_from_cert(&der).unwrap(), device);
    }

    #[test]
    fn serials_differ() {
        let (_dir, ca) = test_ca();
        let (_key, csr) = forged_csr(&rcgen::PKCS_ECDSA_P256_SHA256);
        let a = ca.sign_device_csr(&csr, Uuid::now_v7(), DAY).unwrap();
        let b = ca.sign_device_csr(&csr, Uuid::now_v7(), DAY).unwrap();
        assert_ne!(a.serial_hex, b.serial_hex);
        assert_eq!(a.serial_hex.len(), 32);
    }

    #[test]
    fn p384_and_ed25519_keys_are_accepted() {
        let (_dir, ca) = test_ca();
        for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
            let (_key, csr) = forged_csr(alg);
            let device = Uuid::now_v7();
            let issued = ca.sign_device_csr(&csr, device, DAY).unwrap();
            assert_eq!(
                device_id_from_cert(&parse(&issued.cert_pem)).unwrap(),
                device
            );
        }
    }

    #[test]
    fn rsa_and_other_curves_are_refused() {
        let (_dir, ca) = test_ca();
        let err = ca
            .sign_device_csr(RSA_CSR, Uuid::now_v7(), DAY)
            .unwrap_err();
        assert!(
            matches!(&err, PkiError::UnsupportedKeyType(t) if t == "RSA"),
            "{err}"
        );
        let err = ca
            .sign_device_csr(P521_CSR, Uuid::now_v7(), DAY)
            .unwrap_err();
        assert!(matches!(err, PkiError::UnsupportedKeyType(_)), "{err}");
    }

    #[test]
    fn csr_with_bad_signature_is_refused() {
        use base64::Engine as _;
        let (_dir, ca) = test_ca();
        let key = KeyPair::generate().unwrap();
        let csr = common_name_params("honest-pc")
            .serialize_request(&key)
            .unwrap();
        let mut der = csr.der().to_vec();
        // Change the requested name after signing: "honest-pc" -> "hOnest-pc".
        let at = der.windows(9).position(|w| w == b"honest-pc").unwrap();
        der[at + 1] = b'O';
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n"
        );
        let err = ca
            .sign_device_csr(&tampered, Uuid::now_v7(), DAY)
            .unwrap_err();
        assert!(matches!(err, PkiError::CsrSignature), "{err}");

        let err = ca
            .sign_device_csr("not a csr", Uuid::now_v7(), DAY)
            .unwrap_err();
        assert!(matches!(err, PkiError::InvalidCsr(_)), "{err}");
        // A certificate is not a request.
        let err = ca
            .sign_device_csr(ca.cert_pem(), Uuid::now_v7(), DAY)
            .unwrap_err();
        assert!(matches!(err, PkiError::InvalidCsr(_)), "{err}");
    }

    fn common_name_params(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(cn);
        params
    }

    #[test]
    fn absurd_validity_is_refused() {
        let (_dir, ca) = test_ca();
        let (_key, csr) = forged_csr(&rcgen::PKCS_ECDSA_P256_SHA256);
        let err = ca
            .sign_device_csr(&csr, Uuid::now_v7(), Duration::MAX)
            .unwrap_err();
        assert!(matches!(err, PkiError::InvalidValidity(_)), "{err}");
    }

    #[test]
    fn server_cert_names_and_chain() {
        let (_dir, ca) = test_ca();
        let names = [
            "sf.school.example".to_owned(),
            "10.0.0.5".to_owned(),
            "::1".to_owned(),
        ];
        let server = ca.issue_server_cert(&names).unwrap();
        let chain = CertificateDer::pem_slice_iter(server.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(cert_fingerprint(&chain[1]), ca.fingerprint());
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 3);
        assert!(matches!(
            san.value.general_names[0],
            GeneralName::DNSName("sf.school.example")
        ));
        assert!(matches!(
            san.value.general_names[1],
            GeneralName::IPAddress([10, 0, 0, 5])
        ));
        let eku = leaf.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth && !eku.value.client_auth);
        assert!(matches!(
            device_id_from_cert(&chain[0]),
            Err(PkiError::NoDeviceId)
        ));
        assert!(!format!("{server:?}").contains("PRIVATE KEY"));

        assert!(matches!(
            ca.issue_server_cert(&[]),
            Err(PkiError::NoServerNames)
        ));
        assert!(matches!(
            ca.issue_server_cert(&["https://sf.example".to_owned()]),
            Err(PkiError::InvalidServerName(_))
        ));
    }

    #[test]
    fn device_id_needs_exactly_one_device_uri() {
        let key = KeyPair::generate().unwrap();
        let mut params = common_name_params("x");
        params.subject_alt_names = vec![
            SanType::URI(device_uri(Uuid::now_v7()).try_into().unwrap()),
            SanType::URI(device_uri(Uuid::now_v7()).try_into().unwrap()),
        ];
        let two = params.self_signed(&key).unwrap();
        assert!(matches!(
            device_id_from_cert(two.der()),
            Err(PkiError::NoDeviceId)
        ));
        params.subject_alt_names = vec![SanType::URI(
            format!("{DEVICE_URI_PREFIX}not-a-uuid").try_into().unwrap(),
        )];
        let bad = params.self_signed(&key).unwrap();
        assert!(matches!(
            device_id_from_cert(bad.der()),
            Err(PkiError::NoDeviceId)
        ));
        assert!(matches!(
            device_id_from_cert(b"junk"),
            Err(PkiError::InvalidCertificate(_))
        ));
    }

    #[test]
    fn ca_is_shareable_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CertificateAuthority>();
    }
}
