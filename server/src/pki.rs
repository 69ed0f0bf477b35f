//! The server CA, device certificates and TLS configuration.
//! (Interface placeholder; implemented on the pki branch.)

use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("pki: {0}")]
pub struct PkiError(String);

pub struct CertificateAuthority;
pub struct ServerCert;
pub struct IssuedCert {
    pub cert_pem: String,
    pub fingerprint: [u8; 32],
    pub serial_hex: String,
    pub not_after: chrono::DateTime<chrono::Utc>,
}

impl CertificateAuthority {
    pub fn load_or_create(_dir: &Path) -> Result<Self, PkiError> { todo!() }
    pub fn from_pem(_c: &str, _k: &str) -> Result<Self, PkiError> { todo!() }
    pub fn cert_pem(&self) -> &str { todo!() }
    pub fn fingerprint(&self) -> [u8; 32] { todo!() }
    pub fn issue_server_cert(&self, _s: &[String]) -> Result<ServerCert, PkiError> { todo!() }
    pub fn sign_device_csr(&self, _c: &str, _d: uuid::Uuid, _v: std::time::Duration) -> Result<IssuedCert, PkiError> { todo!() }
}
pub fn cert_fingerprint(_der: &[u8]) -> [u8; 32] { todo!() }
pub fn server_tls_config(_ca: &CertificateAuthority, _s: &ServerCert) -> tonic::transport::ServerTlsConfig { todo!() }
