//! Who a device is: only its key decides. Hardware identifiers the agent
//! sends are hints that propose a link; an admin confirms it with
//! `AdoptDevice`, or a reinstall token names the one device.

mod common;

use std::time::Duration;

use common::server::{Clients, InProcessServer};
use schoolfleet_proto::transport::{self, ChannelOptions, ClientIdentity, ServerTrust};
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Forged as easily as read: `/etc/machine-id` is world-readable.
const MACHINE_ID: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

async fn fleet(server: &InProcessServer) -> Clients {
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .tenants
        .create_county(CreateCountyRequest {
            id: "kus".into(),
            name: "Landkreis Kusel".into(),
        })
        .await
        .unwrap();
    admin
        .tenants
        .create_school(CreateSchoolRequest {
            id: "kus012".into(),
            county_id: "kus".into(),
            name: "IGS".into(),
        })
        .await
        .unwrap();
    admin
}

async fn token(admin: &mut Clients, uses: u32) -> String {
    admin
        .enrollment
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            school_id: "kus012".into(),
            device_class: "schueler-pc".into(),
            expires_in_seconds: 3600,
            max_uses: uses,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

/// Enrols with `machine_id` as the hardware hint, presenting `proof` (a
/// current device certificate) on the connection when given.
async fn enroll(
    server: &InProcessServer,
    token: &str,
    hostname: &str,
    proof: Option<&ClientIdentity>,
) -> Result<(EnrollResponse, ClientIdentity), tonic::Status> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr_pem = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let channel = transport::connect(
        &server.url,
        ServerTrust::Pinned(server.pin),
        proof.cloned(),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    let enrolled = AgentServiceClient::new(channel)
        .enroll(EnrollRequest {
            token: token.into(),
            csr_pem,
            hostname: hostname.into(),
            agent_version: "test".into(),
            machine_id: MACHINE_ID.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let identity = ClientIdentity {
        cert_chain_pem: enrolled.certificate_pem.clone(),
        key_pem: key.serialize_pem(),
    };
    Ok((enrolled, identity))
}

/// Opens the agent stream with `identity`; the sender keeps it open.
async fn open(
    server: &InProcessServer,
    identity: &ClientIdentity,
) -> Result<(mpsc::Sender<AgentMessage>, tonic::Streaming<ServerMessage>), tonic::Status> {
    let channel = transport::connect(
        &server.url,
        ServerTrust::Pinned(server.pin),
        Some(identity.clone()),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    let (tx, rx) = mpsc::channel(8);
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Hello(Hello::default())),
    })
    .await
    .unwrap();
    let mut inbound = AgentServiceClient::new(channel)
        .open_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let welcome = inbound.message().await?.unwrap();
    assert!(matches!(
        welcome.body,
        Some(server_message::Body::Welcome(_))
    ));
    Ok((tx, inbound))
}

async fn history(admin: &mut Clients, device: &str) -> Vec<InventoryChange> {
    admin
        .devices
        .list_inventory_changes(ListInventoryChangesRequest {
            device: device.into(),
            limit: 100,
        })
        .await
        .unwrap()
        .into_inner()
        .changes
}

async fn audit(admin: &mut Clients, action: &str) -> Vec<AuditEntry> {
    admin
        .audit
        .list_audit_events(ListAuditEventsRequest {
            action_prefix: action.into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// The attack from issue 9: a pupil with the school's token and the
/// victim's machine-id hash gets a new device of their own, never the
/// victim's id; the victim stays connected and keeps its certificate.
#[tokio::test]
async fn claimed_identifiers_do_not_take_over_a_device() {
    let server = InProcessServer::start().await;
    let mut admin = fleet(&server).await;
    let token = token(&mut admin, 5).await;
    let (victim, victim_identity) = enroll(&server, &token, "kus012-pc07", None).await.unwrap();
    let (_victim_tx, mut victim_stream) = open(&server, &victim_identity).await.unwrap();

    let (attacker, attacker_identity) = enroll(&server, &token, "kus012-pc07", None).await.unwrap();
    assert_ne!(attacker.device_id, victim.device_id);
    assert!(!attacker.reenrolled);
    assert_eq!(
        attacker.resembles_device, victim.device_id,
        "the match is proposed for an admin to confirm"
    );

    // The victim's stream lives on: nothing arrives, least of all an error.
    let nothing = tokio::time::timeout(Duration::from_secs(2), victim_stream.message()).await;
    assert!(
        nothing.is_err(),
        "the victim's stream was ended: {nothing:?}"
    );
    // Its certificate still works on a new connection.
    open(&server, &victim_identity)
        .await
        .expect("the victim's certificate was taken away");
    let stored = server
        .store()
        .get_device(&victim.device_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, "active");

    // Work for the victim's id goes to the victim: the attacker's
    // certificate maps to its own, new device.
    let attacker_fp = hex::encode(schoolfleet_server::pki::cert_fingerprint(&pem_der(
        &attacker_identity.cert_chain_pem,
    )));
    let mapped = server
        .store()
        .get_device_by_cert(&attacker_fp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mapped.id, attacker.device_id);

    // Two devices share the host name now: it is refused as ambiguous with
    // a hint, and the short id of the `devices` table names each one.
    let ambiguous = admin
        .devices
        .get_device(GetDeviceRequest {
            device: "kus012-pc07".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(ambiguous.code(), tonic::Code::FailedPrecondition);
    assert!(ambiguous.message().contains("ID column"), "{ambiguous:?}");
    let short = &victim.device_id[victim.device_id.len() - 8..];
    let found = admin
        .devices
        .get_device(GetDeviceRequest {
            device: short.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.device.unwrap().id, victim.device_id);

    // The proposal is in both histories and in the audit log.
    for id in [&victim.device_id, &attacker.device_id] {
        let changes = history(&mut admin, id).await;
        assert!(
            changes
                .iter()
                .any(|c| c.kind == "link_proposed" && c.new_value.contains("device adopt")),
            "{changes:?}"
        );
    }
    assert_eq!(audit(&mut admin, "device.link_proposed").await.len(), 1);
}

/// A device that still holds its key re-enrols as itself, whatever it
/// claims; its old certificate is replaced.
#[tokio::test]
async fn reenrolment_with_the_old_key_keeps_the_id() {
    let server = InProcessServer::start().await;
    let mut admin = fleet(&server).await;
    let token = token(&mut admin, 5).await;
    let (first, first_identity) = enroll(&server, &token, "kus012-pc07", None).await.unwrap();
    let (again, again_identity) = enroll(&server, &token, "kus012-pc07-neu", Some(&first_identity))
        .await
        .unwrap();
    assert_eq!(again.device_id, first.device_id);
    assert!(again.reenrolled);
    assert!(again.resembles_device.is_empty());
    open(&server, &again_identity).await.unwrap();
    let old = open(&server, &first_identity).await.unwrap_err();
    assert_eq!(old.code(), tonic::Code::Unauthenticated, "{old:?}");

    let changes = history(&mut admin, &first.device_id).await;
    assert!(
        changes
            .iter()
            .any(|c| c.kind == "reenrolled" && c.new_value.contains("proof: device key")),
        "{changes:?}"
    );
    let entries = audit(&mut admin, "device.reenroll").await;
    assert!(
        entries
            .iter()
            .any(|e| e.details.contains("proof=device key")),
        "{entries:?}"
    );
}

/// A token made for the reinstall of one device re-enrols exactly that
/// device (once), without any key.
#[tokio::test]
async fn reinstall_token_keeps_the_id() {
    let server = InProcessServer::start().await;
    let mut admin = fleet(&server).await;
    let token = token(&mut admin, 5).await;
    let (first, _) = enroll(&server, &token, "kus012-pc07", None).await.unwrap();
    let created = admin
        .enrollment
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            reinstall_device: "kus012-pc07".into(),
            expires_in_seconds: 3600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let listed = created.token.unwrap();
    assert_eq!(listed.reinstall_device_id, first.device_id);
    assert_eq!(listed.max_uses, 1);
    assert_eq!(listed.school_id, "kus012");

    let (again, identity) = enroll(&server, &created.secret, "kus012-pc07", None)
        .await
        .unwrap();
    assert_eq!(again.device_id, first.device_id);
    assert!(again.reenrolled);
    open(&server, &identity).await.unwrap();
    let changes = history(&mut admin, &first.device_id).await;
    assert!(
        changes
            .iter()
            .any(|c| c.kind == "reenrolled" && c.new_value.contains("proof: reinstall token")),
        "{changes:?}"
    );
    // One use only.
    let used = enroll(&server, &created.secret, "x", None)
        .await
        .unwrap_err();
    assert_eq!(used.code(), tonic::Code::PermissionDenied, "{used:?}");
}

/// An admin confirms the proposed link: the old device keeps its id and
/// history and takes over the new enrolment; the step is audited.
#[tokio::test]
async fn adopt_merges_into_the_old_device_and_is_audited() {
    let server = InProcessServer::start().await;
    let mut admin = fleet(&server).await;
    let token = token(&mut admin, 5).await;
    let (old, old_identity) = enroll(&server, &token, "kus012-pc07", None).await.unwrap();
    let (new, new_identity) = enroll(&server, &token, "kus012-pc07-neu", None)
        .await
        .unwrap();
    assert_eq!(new.resembles_device, old.device_id);

    let adopted = admin
        .devices
        .adopt_device(AdoptDeviceRequest {
            device: new.device_id.clone(),
            replaces: old.device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(adopted.id, old.device_id);
    assert_eq!(adopted.hostname, "kus012-pc07-neu");

    // The new installation now is the old device; the old certificate is gone.
    let new_fp = hex::encode(schoolfleet_server::pki::cert_fingerprint(&pem_der(
        &new_identity.cert_chain_pem,
    )));
    let mapped = server
        .store()
        .get_device_by_cert(&new_fp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mapped.id, old.device_id);
    assert!(open(&server, &old_identity).await.is_err());
    open(&server, &new_identity).await.unwrap();
    let retired = server
        .store()
        .get_device(&new.device_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retired.status, "retired");
    assert_eq!(retired.cert_fingerprint, None);

    // One active device, not a duplicate.
    let listed = admin
        .devices
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(listed.len(), 1, "{listed:?}");

    let changes = history(&mut admin, &old.device_id).await;
    assert!(
        changes
            .iter()
            .any(|c| c.kind == "adopted" && c.new_value.contains(&new.device_id)),
        "{changes:?}"
    );
    let entries = audit(&mut admin, "device.adopt").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].details.contains(&new.device_id));
    assert_eq!(entries[0].target, format!("device:{}", old.device_id));

    // Adopting twice, or a device adopting itself, is refused.
    let twice = admin
        .devices
        .adopt_device(AdoptDeviceRequest {
            device: new.device_id.clone(),
            replaces: old.device_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition, "{twice:?}");
}

/// The DER of the first certificate in `pem`.
fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}
