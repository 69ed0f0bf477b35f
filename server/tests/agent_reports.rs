//! Problem reports from agents, in-process with real mTLS: hostile strings
//! are cleaned, a device cannot flood the desk, and only active devices
//! may report.

mod common;

use std::time::Duration;

use common::server::InProcessServer;
use schoolfleet_proto::transport::{self, ChannelOptions, ClientIdentity, ServerTrust};
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::*;
use schoolfleet_server::storage::{self, DeviceStatus, Enrolment, now_millis};
use tonic::Code;
use uuid::Uuid;

async fn enrolled_device(server: &InProcessServer) -> (Uuid, ClientIdentity) {
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .tenants
        .create_county(CreateCountyRequest {
            id: "kl".into(),
            name: "Landkreis Kaiserslautern".into(),
        })
        .await
        .unwrap();
    admin
        .tenants
        .create_school(CreateSchoolRequest {
            id: "kl001".into(),
            county_id: "kl".into(),
            name: "Realschule plus".into(),
        })
        .await
        .unwrap();
    let token = admin
        .enrollment
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            school_id: "kl001".into(),
            device_class: "schueler-pc".into(),
            expires_in_seconds: 3600,
            max_uses: 1,
            description: String::new(),
            reinstall_device: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    let device = Uuid::now_v7();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let issued = server
        .state
        .ca
        .sign_device_csr(&csr, device, Duration::from_secs(86_400))
        .unwrap();
    server
        .store()
        .enroll_device(&Enrolment {
            token_id: token.id,
            now: now_millis(),
            existing: false,
            device: storage::DeviceRecord {
                system_uuid: "u".into(),
                serial_number: "s".into(),
                cert_fingerprint: Some(hex::encode(issued.fingerprint)),
                cert_serial: Some(issued.serial_hex.clone()),
                cert_not_after: Some(issued.not_after.timestamp_millis()),
                ..common::device_record(&device.to_string(), "kl", "kl001", "kl001-sp0101")
            },
        })
        .await
        .unwrap();
    (
        device,
        ClientIdentity {
            cert_chain_pem: issued.cert_pem,
            key_pem: key.serialize_pem(),
        },
    )
}

async fn agent(
    server: &InProcessServer,
    identity: ClientIdentity,
) -> AgentServiceClient<tonic::transport::Channel> {
    let channel = transport::connect(
        &server.url,
        ServerTrust::Pinned(server.pin),
        Some(identity),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    AgentServiceClient::new(channel)
}

#[tokio::test]
async fn hostile_reports_are_cleaned_limited_and_refused_when_inactive() {
    let server = InProcessServer::start().await;
    let (device, identity) = enrolled_device(&server).await;
    let mut client = agent(&server, identity).await;
    let key = client
        .report_problem(ReportProblemRequest {
            title: "Beamer\u{1b}[2J zeigt \u{202e}kein Bild".into(),
            description: "Zeile 1\nZeile\u{7} 2".into(),
            hostname: "kl001-sp0101\u{1b}]0;pwned\u{7}".into(),
            os: "Debian GNU/Linux 12".into(),
            uptime_seconds: 3600,
            disk_free_bytes: 10_000_000_000,
            inventory_hash: "ab".repeat(32),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket;
    assert_eq!(key, "SUP-1001");
    let mut admin = server.client(&server.bootstrap_token).await;
    let detail = admin
        .tickets
        .get_ticket(TicketRef { ticket: key })
        .await
        .unwrap()
        .into_inner();
    let ticket = detail.ticket.unwrap();
    for text in [&ticket.title, &ticket.description, &detail.timeline[0].body] {
        assert!(
            !text
                .chars()
                .any(|c| c == '\u{1b}' || c == '\u{7}' || c == '\u{202e}'),
            "{text:?}"
        );
    }
    assert_eq!(ticket.description, "Zeile 1\nZeile\u{fffd} 2");
    assert_eq!(ticket.reporter, format!("device:{device}"));
    assert_eq!(ticket.school_id, "kl001");
    assert_eq!(ticket.device_ids, [device.to_string()]);
    assert!(
        detail.timeline[0]
            .body
            .contains("disk_free_bytes: 10000000000")
    );

    // At most five open reports per device.
    for _ in 0..4 {
        client
            .report_problem(ReportProblemRequest {
                title: "noch eins".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let err = client
        .report_problem(ReportProblemRequest {
            title: "zu viele".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // A retired device may not report.
    server
        .store()
        .set_device_status(&device.to_string(), DeviceStatus::Retired)
        .await
        .unwrap();
    let err = client
        .report_problem(ReportProblemRequest {
            title: "nach dem Ausmustern".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}

#[tokio::test]
async fn reports_need_a_device_certificate() {
    let server = InProcessServer::start().await;
    let channel = transport::connect(
        &server.url,
        ServerTrust::Pinned(server.pin),
        None,
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    let err = AgentServiceClient::new(channel)
        .report_problem(ReportProblemRequest {
            title: "anonym".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}
