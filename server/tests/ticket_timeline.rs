//! Through the API: a ticket opened for a device shows that device's
//! inventory changes in its timeline, in time order with the comments.
//! (Remote sessions opened with `--ticket` will join the same timeline.)

mod common;

use common::server::InProcessServer;
use schoolfleet_proto::v1::*;
use schoolfleet_server::storage::{
    self, DeviceSummary, Enrolment, IngestReport, InventoryChangeRecord, now_millis,
};

const DEVICE: &str = "0190aaaa-0000-7000-8000-0000000000d1";

fn report(id: &str, at: i64, package: &str) -> IngestReport {
    IngestReport {
        device_id: DEVICE.into(),
        report_id: id.into(),
        collected_at: at,
        received_at: at,
        content_hash: format!("{at:064}"),
        reason: "test".into(),
        inventory: Vec::new(),
        summary: DeviceSummary {
            hostname: "kus012-sp0101".into(),
            ..Default::default()
        },
        software: Default::default(),
        changes: vec![InventoryChangeRecord {
            report_id: id.into(),
            at,
            kind: "software_installed".into(),
            subject: package.into(),
            old_value: String::new(),
            new_value: "1.0".into(),
        }],
    }
}

#[tokio::test]
async fn ticket_timeline_shows_device_inventory_changes_between_comments() {
    let server = InProcessServer::start().await;
    let mut admin = server.client(&server.bootstrap_token).await;
    server.create_school("kus", "kus012").await;
    let token = admin
        .enrollment
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            school_id: "kus012".into(),
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
    let store = server.store();
    store
        .enroll_device(&Enrolment {
            token_id: token.id,
            now: now_millis(),
            existing: false,
            device: storage::DeviceRecord {
                system_uuid: "u".into(),
                serial_number: "s".into(),
                cert_fingerprint: Some("f".into()),
                ..common::device_record(DEVICE, "kus", "kus012", "kus012-sp0101")
            },
        })
        .await
        .unwrap();
    // Before the ticket: not part of it.
    store
        .ingest_report(&report("r0", now_millis() - 60_000, "vorher"))
        .await
        .unwrap();
    let ticket = admin
        .tickets
        .create_ticket(CreateTicketRequest {
            title: "Schülerrechner startet nicht".into(),
            devices: vec!["kus012-sp0101".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ticket.school_id, "kus012");
    let comment = |body: &str| CommentTicketRequest {
        ticket: ticket.key.clone(),
        body: body.into(),
    };
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    admin
        .tickets
        .comment_ticket(comment("Treiber neu installieren"))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .ingest_report(&report("r1", now_millis(), "nvidia-driver"))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    admin
        .tickets
        .comment_ticket(comment("läuft wieder"))
        .await
        .unwrap();

    let detail = admin
        .tickets
        .get_ticket(TicketRef {
            ticket: ticket.key.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<String> = detail
        .timeline
        .iter()
        .map(|e| match e.kind.as_str() {
            "comment" => format!("comment:{}", e.body),
            "inventory" => format!("inventory:{}:{}", e.device_id, e.subject),
            other => other.to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "created".to_string(),
            "comment:Treiber neu installieren".into(),
            format!("inventory:{DEVICE}:nvidia-driver"),
            "comment:läuft wieder".into(),
        ]
    );
    // The device lists the ticket as open.
    let open = admin
        .tickets
        .list_device_tickets(DeviceTicketsRequest {
            device: DEVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.tickets.len(), 1);
}
