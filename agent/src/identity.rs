//! Device key, CSR and certificate files.
//!
//! The device key is made here and never leaves the device: enrolment sends
//! only a CSR, and the server answers with a certificate for that key. The
//! identity directory then holds:
//!
//! - `device.key`: the private key, PKCS#8 PEM, mode 0600;
//! - `device.crt`: the device certificate, PEM;
//! - `ca.pem`: the schoolfleet CA the agent trusts (checked against the pin
//!   of the enrolment token before it was stored);
//! - `device.json`: device id and server URL. Written last, so its presence
//!   means "enrolled"; a save interrupted half-way is caught by `load`.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use schoolfleet_proto::transport::{self, ClientIdentity, DEVICE_URI_PREFIX, ServerTrust};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub const DEVICE_KEY_FILE: &str = "device.key";
pub const DEVICE_CERT_FILE: &str = "device.crt";
pub const CA_FILE: &str = "ca.pem";
pub const DEVICE_INFO_FILE: &str = "device.json";
/// A renewed key and certificate wait under these names until both are
/// safely on disk; `load` finishes an interrupted swap.
const RENEWED_KEY_FILE: &str = "renewed.key";
const RENEWED_CERT_FILE: &str = "renewed.crt";

/// Longest common name X.509 allows (RFC 5280 ub-common-name).
const MAX_COMMON_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot make the device key or CSR: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot access {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("this device is not enrolled: there is no {} in {}", DEVICE_INFO_FILE, dir.display())]
    NotEnrolled { dir: PathBuf },
    #[error("{}: {reason}; enrol the device again", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// Makes a fresh ECDSA P-256 key and a CSR for it.
///
/// Returns `(key PEM (PKCS#8), CSR PEM)`. The hostname goes into the CSR's
/// common name only as a hint for whoever reads server logs: the server
/// ignores the subject and puts the device id in the certificate.
pub fn generate_key_and_csr(hostname: &str) -> Result<(String, String), IdentityError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut common_name: String = hostname.trim().chars().take(MAX_COMMON_NAME).collect();
    if common_name.is_empty() {
        common_name = "schoolfleet-agent".to_owned();
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}

/// Writes `contents` to `path` atomically with mode 0600: a temporary file in
/// the same directory is created 0600 (so the key is never readable by
/// others, not even briefly), written, fsynced and renamed over `path`. A
/// crash leaves either the old file or the new one, never half a key.
pub fn write_private_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), IdentityError> {
    write_atomic(path, contents.as_ref(), 0o600)
}

/// The device's identity as enrolled.
#[derive(Clone)]
pub struct AgentIdentity {
    pub device_id: Uuid,
    /// The server the device enrolled with (`https://host:port`).
    pub server_url: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ca = transport::ca_fingerprint(&self.ca_pem)
            .map(|fp| transport::format_pin(&fp))
            .unwrap_or_else(|_| "<invalid>".to_owned());
        f.debug_struct("AgentIdentity")
            .field("device_id", &self.device_id)
            .field("server_url", &self.server_url)
            .field("ca", &ca)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Contents of `device.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DeviceInfo {
    device_id: Uuid,
    server_url: String,
}

impl AgentIdentity {
    /// Reads the identity from `dir` and checks that its parts belong
    /// together (the certificate names this device and is for this key), so
    /// that a broken identity is reported here rather than as a TLS failure.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        finish_renewal(dir)?;
        let info_path = dir.join(DEVICE_INFO_FILE);
        let info = match fs::read_to_string(&info_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(IdentityError::NotEnrolled {
                    dir: dir.to_owned(),
                });
            }
            Err(source) => {
                return Err(IdentityError::Io {
                    path: info_path,
                    source,
                });
            }
        };
        let info: DeviceInfo = serde_json::from_str(&info).map_err(|e| IdentityError::Invalid {
            path: info_path.clone(),
            reason: e.to_string(),
        })?;
        let identity = Self {
            device_id: info.device_id,
            server_url: info.server_url,
            cert_pem: read(&dir.join(DEVICE_CERT_FILE))?,
            key_pem: read(&dir.join(DEVICE_KEY_FILE))?,
            ca_pem: read(&dir.join(CA_FILE))?,
        };
        identity.check(dir)?;
        Ok(identity)
    }

    /// Writes the identity to `dir` (created 0700 if missing). `device.json`
    /// goes last, so an interrupted save never looks enrolled.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        create_private_dir(dir)?;
        write_private_file(&dir.join(DEVICE_KEY_FILE), &self.key_pem)?;
        write_atomic(&dir.join(DEVICE_CERT_FILE), self.cert_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join(CA_FILE), self.ca_pem.as_bytes(), 0o644)?;
        let info = DeviceInfo {
            device_id: self.device_id,
            server_url: self.server_url.clone(),
        };
        let mut json = serde_json::to_string_pretty(&info).map_err(|e| IdentityError::Invalid {
            path: dir.join(DEVICE_INFO_FILE),
            reason: e.to_string(),
        })?;
        json.push('\n');
        write_atomic(&dir.join(DEVICE_INFO_FILE), json.as_bytes(), 0o644)
    }

    /// Replaces key and certificate after a renewal. The pair is staged
    /// first, so a crash in between leaves either the old or the new pair,
    /// never a key that does not belong to the certificate.
    pub fn replace_certificate(
        &mut self,
        dir: &Path,
        cert_pem: String,
        key_pem: String,
    ) -> Result<(), IdentityError> {
        let renewed = AgentIdentity {
            cert_pem,
            key_pem,
            ..self.clone()
        };
        renewed.check(dir)?;
        write_private_file(&dir.join(RENEWED_KEY_FILE), &renewed.key_pem)?;
        write_atomic(
            &dir.join(RENEWED_CERT_FILE),
            renewed.cert_pem.as_bytes(),
            0o644,
        )?;
        finish_renewal(dir)?;
        *self = renewed;
        Ok(())
    }

    /// When the device certificate expires.
    pub fn cert_not_after(&self) -> Result<chrono::DateTime<chrono::Utc>, IdentityError> {
        let invalid = |reason: String| IdentityError::Invalid {
            path: DEVICE_CERT_FILE.into(),
            reason,
        };
        let der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| invalid(e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| invalid(e.to_string()))?;
        chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
            .ok_or_else(|| invalid("expiry out of range".into()))
    }

    /// The client certificate for mutual TLS.
    pub fn client_identity(&self) -> ClientIdentity {
        ClientIdentity {
            cert_chain_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// Trust exactly the CA stored at enrolment.
    pub fn server_trust(&self) -> ServerTrust {
        ServerTrust::CaPem(self.ca_pem.clone())
    }

    fn check(&self, dir: &Path) -> Result<(), IdentityError> {
        let invalid = |file: &str, reason: String| IdentityError::Invalid {
            path: dir.join(file),
            reason,
        };
        transport::ca_fingerprint(&self.ca_pem).map_err(|e| invalid(CA_FILE, e.to_string()))?;
        let der = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| invalid(DEVICE_CERT_FILE, e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| invalid(DEVICE_CERT_FILE, e.to_string()))?;
        let named = cert_device_id(&cert);
        if named != Some(self.device_id) {
            return Err(invalid(
                DEVICE_CERT_FILE,
                format!(
                    "the certificate is not for device {} (device.json)",
                    self.device_id
                ),
            ));
        }
        let key = KeyPair::from_pem(&self.key_pem)
            .map_err(|e| invalid(DEVICE_KEY_FILE, e.to_string()))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                DEVICE_KEY_FILE,
                format!("the key does not belong to {DEVICE_CERT_FILE}"),
            ));
        }
        Ok(())
    }
}

/// The device id in the certificate's URI SAN, if it names exactly one.
fn cert_device_id(cert: &X509Certificate<'_>) -> Option<Uuid> {
    let sans = cert.subject_alternative_name().ok()??;
    let mut ids = sans
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(DEVICE_URI_PREFIX),
            _ => None,
        });
    match (ids.next(), ids.next()) {
        (Some(id), None) => Uuid::parse_str(id).ok(),
        _ => None,
    }
}

fn read(path: &Path) -> Result<String, IdentityError> {
    fs::read_to_string(path).map_err(|source| IdentityError::Io {
        path: path.to_owned(),
        source,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    crate::os::files::create_private_dir(dir).map_err(|source| IdentityError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes durably with `mode`, replacing any existing file.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    use schoolfleet_proto::files::{Existing, write_durably};
    write_durably(path, contents, mode, Existing::Replace).map_err(|source| IdentityError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Moves a staged renewal into place. Only a complete pair (certificate
/// written last) is used; a lone staged key is an interrupted renewal and
/// is dropped, leaving the old pair, which the server still accepts.
fn finish_renewal(dir: &Path) -> Result<(), IdentityError> {
    let (key, cert) = (dir.join(RENEWED_KEY_FILE), dir.join(RENEWED_CERT_FILE));
    let remove = |path: &Path| match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(IdentityError::Io {
            path: path.to_owned(),
            source,
        }),
    };
    if cert.exists() && key.exists() {
        // Another process may finish the same swap at this moment; a staged
        // file that vanished means it is done.
        let (Ok(key_pem), Ok(cert_pem)) = (fs::read_to_string(&key), fs::read_to_string(&cert))
        else {
            return Ok(());
        };
        write_private_file(&dir.join(DEVICE_KEY_FILE), key_pem)?;
        write_atomic(&dir.join(DEVICE_CERT_FILE), cert_pem.as_bytes(), 0o644)?;
    }
    remove(&cert)?;
    remove(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateSigningRequestParams, IsCa, Issuer, SanType};

    /// A CA and a device certificate for `key_pem`, as the server would make
    /// them (the agent crate does not depend on the server).
    fn certify(key_pem: &str, device: Uuid) -> (String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::from_pem(key_pem).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            format!("{DEVICE_URI_PREFIX}{device}").try_into().unwrap(),
        )];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), ca_cert.pem())
    }

    fn identity() -> AgentIdentity {
        let (key_pem, _csr) = generate_key_and_csr("pc-42").unwrap();
        let device_id = Uuid::now_v7();
        let (cert_pem, ca_pem) = certify(&key_pem, device_id);
        AgentIdentity {
            device_id,
            server_url: "https://sf.school.example:8443".to_owned(),
            cert_pem,
            key_pem,
            ca_pem,
        }
    }

    #[test]
    fn key_and_csr_belong_together() {
        let (key_pem, csr_pem) = generate_key_and_csr("pc-42.school.example").unwrap();
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key = KeyPair::from_pem(&key_pem).unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        // from_pem verifies the CSR's self-signature.
        let csr = CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        use rcgen::PublicKeyData as _;
        assert_eq!(csr.public_key.der_bytes(), key.public_key_raw());

        let (other_key, _) = generate_key_and_csr("").unwrap();
        assert_ne!(other_key, key_pem);
        let long = "x".repeat(300);
        generate_key_and_csr(&long).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn private_file_is_0600_even_over_a_readable_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, "secret").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "secret");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["device.key"]);
    }

    #[test]
    fn save_then_load_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        assert!(matches!(
            AgentIdentity::load(&path),
            Err(IdentityError::NotEnrolled { .. })
        ));
        let original = identity();
        original.save(&path).unwrap();
        let loaded = AgentIdentity::load(&path).unwrap();
        assert_eq!(loaded.device_id, original.device_id);
        assert_eq!(loaded.server_url, original.server_url);
        assert_eq!(loaded.cert_pem, original.cert_pem);
        assert_eq!(loaded.key_pem, original.key_pem);
        assert_eq!(loaded.ca_pem, original.ca_pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(path.join(DEVICE_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let debug = format!("{loaded:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(debug.contains(&loaded.device_id.to_string()));
    }

    #[test]
    fn renewal_replaces_the_pair_and_survives_interruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let mut id = identity();
        id.save(&path).unwrap();
        let renewed_pair = || {
            let (key, _csr) = generate_key_and_csr("pc-42").unwrap();
            let (cert, _ca) = certify(&key, id.device_id);
            (key, cert)
        };

        let (key2, cert2) = renewed_pair();
        let mut working = id.clone();
        working
            .replace_certificate(&path, cert2.clone(), key2.clone())
            .unwrap();
        let loaded = AgentIdentity::load(&path).unwrap();
        assert_eq!(
            (loaded.cert_pem.as_str(), loaded.key_pem.as_str()),
            (cert2.as_str(), key2.as_str())
        );
        assert!(!path.join(RENEWED_KEY_FILE).exists() && !path.join(RENEWED_CERT_FILE).exists());

        // A key that does not belong to the certificate is refused and
        // changes nothing.
        let (stray_key, _) = generate_key_and_csr("pc-42").unwrap();
        assert!(
            working
                .replace_certificate(&path, cert2.clone(), stray_key)
                .is_err()
        );
        assert_eq!(AgentIdentity::load(&path).unwrap().key_pem, key2);

        // Crash after staging both files: the next load finishes the swap.
        let (key3, cert3) = renewed_pair();
        write_private_file(&path.join(RENEWED_KEY_FILE), &key3).unwrap();
        fs::write(path.join(RENEWED_CERT_FILE), &cert3).unwrap();
        let loaded = AgentIdentity::load(&path).unwrap();
        assert_eq!(
            (loaded.cert_pem.as_str(), loaded.key_pem.as_str()),
            (cert3.as_str(), key3.as_str())
        );

        // Crash while staging (key only): dropped, the current pair stays.
        let (key4, _) = renewed_pair();
        write_private_file(&path.join(RENEWED_KEY_FILE), &key4).unwrap();
        let loaded = AgentIdentity::load(&path).unwrap();
        assert_eq!(loaded.key_pem, key3);
        assert!(!path.join(RENEWED_KEY_FILE).exists());
        id = loaded;
        assert!(id.cert_not_after().unwrap() > chrono::Utc::now());
    }

    #[test]
    fn mismatched_parts_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let original = identity();
        original.save(dir.path()).unwrap();

        // A key from an interrupted re-enrolment.
        let (stray_key, _) = generate_key_and_csr("pc-42").unwrap();
        write_private_file(&dir.path().join(DEVICE_KEY_FILE), &stray_key).unwrap();
        let err = AgentIdentity::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");

        // device.json naming another device than the certificate.
        let other = AgentIdentity {
            device_id: Uuid::now_v7(),
            ..original.clone()
        };
        other.save(dir.path()).unwrap();
        let err = AgentIdentity::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not for device"), "{err}");

        fs::write(dir.path().join(DEVICE_INFO_FILE), "{").unwrap();
        assert!(matches!(
            AgentIdentity::load(dir.path()),
            Err(IdentityError::Invalid { .. })
        ));
    }
}
