//! The ingest path in the server: reports wait for a turn at the ingest
//! gate before they are decoded, so a morning of boot reports cannot fill
//! the server's memory with decoded inventories.

mod common;

use std::time::Duration;

use common::server::InProcessServer;
use prost::Message;
use schoolfleet_proto::v1::*;
use schoolfleet_server::ingest::{self, IngestGate, Turn};
use schoolfleet_server::storage::{DeviceRecord, Enrolment, now_millis};

async fn enrolled_device(server: &InProcessServer) -> DeviceRecord {
    let mut admin = server.client(&server.bootstrap_token).await;
    server.create_school("kus", "kus012").await;
    let token = admin
        .enrollment
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            school_id: "kus012".into(),
            device_class: "schueler-pc".into(),
            expires_in_seconds: 600,
            max_uses: 1,
            description: String::new(),
            reinstall_device: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let device = common::device_record(&id, "kus", "kus012", "kus012-sp0101");
    server
        .store()
        .enroll_device(&Enrolment {
            token_id: token.id,
            now: now_millis(),
            device: device.clone(),
            existing: false,
        })
        .await
        .unwrap();
    device
}

fn report() -> InventoryReport {
    let inventory = Inventory {
        system: Some(SystemInfo {
            hostname: "kus012-sp0101".into(),
            ..Default::default()
        }),
        software: vec![SoftwarePackage {
            name: "firefox-esr".into(),
            version: "140.1".into(),
            source: "dpkg".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    InventoryReport {
        report_id: uuid::Uuid::new_v4().to_string(),
        collected_at: Some(prost_types::Timestamp {
            seconds: now_millis() / 1000,
            nanos: 0,
        }),
        content_hash: "a".repeat(64),
        reason: "boot".into(),
        inventory: inventory.encode_to_vec(),
        inventory_size: 0,
    }
}

#[test]
fn gate_size_defaults_to_twice_the_cores() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(IngestGate::size(0), 2 * cores);
    assert_eq!(IngestGate::size(3), 3);
}

#[tokio::test]
async fn a_report_waits_for_a_turn_at_the_ingest_gate() {
    let server = InProcessServer::start_with(|c| c.limits.ingest_concurrency = 1).await;
    let device = enrolled_device(&server).await;
    let state = &server.state;

    // Someone else holds the only turn: the report is not even decoded.
    let Turn::Go(held) = state.ingest.enter(1, 1 << 20, Some(100)).await else {
        panic!("the first turn was refused");
    };
    assert_eq!(state.ingest.available(), Some(0));
    let mut pending = Box::pin(ingest::ingest_report(state, &device, report()));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut pending)
            .await
            .is_err(),
        "a report was ingested without a turn"
    );
    assert!(
        server
            .store()
            .get_inventory(&device.id)
            .await
            .unwrap()
            .is_none()
    );

    drop(held);
    let ack = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the report never got its turn");
    assert!(ack.error.is_empty(), "{ack:?}");
    assert!(
        server
            .store()
            .get_inventory(&device.id)
            .await
            .unwrap()
            .is_some()
    );
    // The turn is given back.
    assert_eq!(state.ingest.available(), Some(1));
}

/// Beyond `limits.ingest_queue_bytes` of waiting reports, a report is not
/// kept: it is answered "send again in N s" at once, and nothing of it is
/// stored; the report already waiting keeps its place.
#[tokio::test]
async fn a_full_backlog_answers_send_again_later() {
    let first = report();
    let queue = first.encoded_len() + 16;
    let server = InProcessServer::start_with(move |c| {
        c.limits.ingest_concurrency = 1;
        c.limits.ingest_queue_bytes = queue;
    })
    .await;
    let device = enrolled_device(&server).await;
    let state = &server.state;

    let Turn::Go(held) = state.ingest.enter(1, queue, Some(100)).await else {
        panic!("the first turn was refused");
    };
    let mut waiting = Box::pin(ingest::ingest_report(state, &device, first.clone()));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err()
    );
    assert_eq!(state.ingest.waiting_bytes(), first.encoded_len());

    // The next one does not fit: deferred at once, with a time.
    let second = report();
    let ack = tokio::time::timeout(
        Duration::from_secs(5),
        ingest::ingest_report(state, &device, second.clone()),
    )
    .await
    .expect("a report over the backlog waited instead of being deferred");
    assert_eq!(ack.report_id, second.report_id);
    assert!(ack.retry, "{ack:?}");
    assert!((5..=15 * 60).contains(&ack.retry_after_seconds), "{ack:?}");
    assert!(ack.error.contains("send again in"), "{ack:?}");
    assert_eq!(state.ingest.waiting_bytes(), first.encoded_len());

    // An offer (no inventory, only its size) of new content is deferred
    // too, at once: it takes no turn (only the hash is compared), and it
    // holds no room.
    let offer = InventoryReport {
        inventory: Vec::new(),
        inventory_size: 50_000,
        content_hash: "9".repeat(64),
        ..report()
    };
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        ingest::receive(state, &device, offer.clone()),
    )
    .await
    .expect("an offer over the backlog waited for a turn");
    assert!(answer.retry && !answer.send_inventory, "{answer:?}");
    assert!(
        (5..=15 * 60).contains(&answer.retry_after_seconds),
        "{answer:?}"
    );
    assert_eq!(state.ingest.waiting_bytes(), first.encoded_len());

    // The waiting one is stored once the turn is free; the gate is empty.
    drop(held);
    let ack = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiting report never got its turn");
    assert!(ack.error.is_empty() && !ack.retry, "{ack:?}");
    assert_eq!(state.ingest.waiting_bytes(), 0);
    let reports = server
        .store()
        .list_inventory_reports(&device.id, 10)
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].report_id, first.report_id);

    // Offered again: new content and room now, so it is asked for its
    // inventory, which is promised room until it comes.
    let answer = ingest::receive(state, &device, offer).await;
    assert!(answer.send_inventory, "{answer:?}");
    assert_eq!(state.ingest.waiting_bytes(), 50_000);

    // Sent again later, the deferred report is stored.
    let ack = ingest::ingest_report(state, &device, second.clone()).await;
    assert!(ack.error.is_empty() && !ack.retry, "{ack:?}");
}

/// A report that stops waiting (its stream ended) gives its place back.
#[tokio::test]
async fn a_report_that_stops_waiting_leaves_the_backlog() {
    let server = InProcessServer::start_with(|c| c.limits.ingest_concurrency = 1).await;
    let device = enrolled_device(&server).await;
    let state = &server.state;
    let Turn::Go(_held) = state.ingest.enter(1, 1 << 20, Some(100)).await else {
        panic!("the first turn was refused");
    };
    let one = report();
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        ingest::ingest_report(state, &device, one.clone()),
    )
    .await;
    assert!(waiting.is_err(), "the report did not wait");
    assert_eq!(state.ingest.waiting_bytes(), 0);
}
