//! `schoolfleet-agent enroll`: one-time token in, device certificate out.
//!
//! The key pair is generated here and the private key never leaves the
//! device. The server is trusted only if its CA matches the pin carried in
//! the token, and the CA certificate it returns must match that pin too.

use std::path::Path;

use schoolfleet_proto::tokens::parse_enrollment_token;
use schoolfleet_proto::transport::{self, ChannelOptions, ServerTrust};
use schoolfleet_proto::v1::EnrollRequest;
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;

use crate::identity::{self, AgentIdentity};
use crate::inventory;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("invalid enrolment token: {0}")]
    Token(#[from] schoolfleet_proto::tokens::TokenFormatError),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error("the server refused the enrolment: {0}")]
    Refused(String),
    #[error("the connection to the server failed: {0}")]
    Connection(String),
    #[error("the server's CA certificate does not match the pin in the token")]
    CaMismatch,
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
}

/// What a successful enrolment reports back to the operator.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub device_id: String,
    pub school: String,
    pub device_class: String,
    pub reenrolled: bool,
    /// An existing device with the same hardware hints, for an admin to
    /// merge with `schoolfleet device adopt` (empty when none).
    pub resembles_device: String,
}

/// How the device identifies its hardware to the server, which uses it to
/// find the device again after a reinstall (like osquery's
/// `--host_identifier`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostIdentifier {
    /// Firmware UUID and serial number, else the hashed OS machine id.
    #[default]
    Hardware,
    /// A random id made once per agent state directory. For cloned disk
    /// images without firmware UUIDs, whose machine ids are all the same:
    /// each installation becomes its own device.
    Instance,
}

pub async fn enroll(
    server_url: &str,
    token: &str,
    state_dir: &Path,
    host_identifier: HostIdentifier,
) -> Result<Enrolled, EnrollError> {
    let parts = parse_enrollment_token(token)?;
    // A device that is still enrolled proves who it is with its current
    // key: the certificate is presented on this connection and the server
    // keeps the device's id. Hardware identifiers are only hints.
    let proof = current_identity(state_dir, &parts.ca_pin);
    // Only hardware identity, no personal data: it links a reinstalled
    // agent to its existing device instead of creating a duplicate.
    let inventory = tokio::task::spawn_blocking(|| inventory::current_platform().collect())
        .await
        .unwrap_or_default();
    let system = inventory.system.unwrap_or_default();
    let hardware = inventory.hardware.unwrap_or_default();
    let (key_pem, csr_pem) = identity::generate_key_and_csr(&system.hostname)?;
    let (system_uuid, serial_number, machine_id) = match host_identifier {
        HostIdentifier::Hardware => (
            hardware.system_uuid,
            hardware.serial_number,
            hashed_machine_id().unwrap_or_default(),
        ),
        HostIdentifier::Instance => (String::new(), String::new(), instance_id(state_dir)?),
    };
    let request = EnrollRequest {
        token: token.trim().to_owned(),
        csr_pem,
        system_uuid,
        serial_number,
        hostname: system.hostname,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        machine_id,
    };
    let mut response = send(server_url, parts.ca_pin, proof.clone(), request.clone()).await;
    if proof.is_some()
        && matches!(
            &response,
            Err(EnrollError::Transport(_) | EnrollError::Connection(_))
        )
    {
        // The server would not take the old certificate at all (another
        // CA, say): enrol without the proof rather than not at all.
        tracing::warn!("enrolment with the current certificate failed; trying without it");
        response = send(server_url, parts.ca_pin, None, request).await;
    }
    let response = response?;

    if transport::ca_fingerprint(&response.ca_certificate_pem)? != parts.ca_pin {
        return Err(EnrollError::CaMismatch);
    }
    let device_id = uuid::Uuid::parse_str(&response.device_id).map_err(|_| {
        EnrollError::Refused(format!(
            "server sent an invalid device id {:?}",
            response.device_id
        ))
    })?;
    AgentIdentity {
        device_id,
        server_url: server_url.to_owned(),
        cert_pem: response.certificate_pem,
        key_pem,
        ca_pem: response.ca_certificate_pem,
    }
    .save(state_dir)?;
    Ok(Enrolled {
        device_id: response.device_id,
        school: response.school,
        device_class: response.device_class,
        reenrolled: response.reenrolled,
        resembles_device: response.resembles_device,
    })
}

async fn send(
    server_url: &str,
    ca_pin: [u8; 32],
    proof: Option<transport::ClientIdentity>,
    request: EnrollRequest,
) -> Result<schoolfleet_proto::v1::EnrollResponse, EnrollError> {
    let channel = transport::connect(
        server_url,
        ServerTrust::Pinned(ca_pin),
        proof,
        ChannelOptions {
            request_timeout: Some(std::time::Duration::from_secs(30)),
            ..Default::default()
        },
    )
    .await?;
    AgentServiceClient::new(channel)
        .enroll(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| match status.code() {
            // A handshake the server refused shows up here, not as an answer.
            tonic::Code::Unavailable | tonic::Code::Unknown => {
                EnrollError::Connection(status.message().to_owned())
            }
            _ => EnrollError::Refused(status.message().to_owned()),
        })
}

/// The certificate and key this state directory already holds, when they
/// were issued under the same CA as the token and are still valid.
fn current_identity(state_dir: &Path, ca_pin: &[u8; 32]) -> Option<transport::ClientIdentity> {
    let identity = AgentIdentity::load(state_dir).ok()?;
    let same_ca = transport::ca_fingerprint(&identity.ca_pem).ok()? == *ca_pin;
    let valid = identity.cert_not_after().ok()? > chrono::Utc::now();
    (same_ca && valid).then(|| identity.client_identity())
}

/// The per-installation id for `HostIdentifier::Instance`, made on first
/// use and kept in the state directory, hashed like the machine id.
fn instance_id(state_dir: &Path) -> Result<String, EnrollError> {
    use sha2::{Digest, Sha256};
    let path = state_dir.join("instance-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if id.trim().len() >= 16 => id.trim().to_owned(),
        _ => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let io_error = |source| identity::IdentityError::Io {
                path: path.clone(),
                source,
            };
            std::fs::create_dir_all(state_dir).map_err(io_error)?;
            schoolfleet_proto::files::write_durably(
                &path,
                id.as_bytes(),
                0o600,
                schoolfleet_proto::files::Existing::Replace,
            )
            .map_err(io_error)?;
            id
        }
    };
    Ok(hex::encode(Sha256::digest(format!(
        "schoolfleet-device:{id}"
    ))))
}

/// The OS machine id, hashed with an app-specific prefix (as systemd advises
/// for ids that leave the machine), so the raw id is never sent.
fn hashed_machine_id() -> Option<String> {
    use sha2::{Digest, Sha256};
    let raw = std::fs::read_to_string("/etc/machine-id")
        .or_else(|_| std::fs::read_to_string("/var/lib/dbus/machine-id"))
        .ok()?;
    let raw = raw.trim();
    (raw.len() >= 16).then(|| hex::encode(Sha256::digest(format!("schoolfleet-device:{raw}"))))
}
