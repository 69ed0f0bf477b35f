//! Limits on what one device certificate can make the server do: inventory
//! reports, heartbeats, certificate renewals and problem reports are rate
//! limited per device, and the changes stored per report are capped.
//!
//! `report_flood_figures` is the rerunnable reproduction of issue 9 (40
//! alternating 5,000-package reports from one device certificate); run it
//! with `cargo test -p schoolfleet-server --test device_limits -- --ignored
//! --nocapture` and it prints rows and database size.

mod common;

use std::time::Instant;

use common::server::InProcessServer;
use prost::Message;
use schoolfleet_proto::transport::{self, ChannelOptions, ClientIdentity, ServerTrust};
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// Enrols a device; returns its id and mTLS identity.
async fn enrolled_device(server: &InProcessServer) -> (String, ClientIdentity) {
    server.create_school("kus", "kus012").await;
    let token = server.enrollment_token("kus012", 1).await;
    server.enroll_device(token, "kus012-sp0101").await
}

fn csr(key: &rcgen::KeyPair) -> String {
    rcgen::CertificateParams::default()
        .serialize_request(key)
        .unwrap()
        .pem()
        .unwrap()
}

async fn agent_client(
    server: &InProcessServer,
    identity: Option<&ClientIdentity>,
) -> AgentServiceClient<tonic::transport::Channel> {
    let channel = transport::connect(
        &server.url,
        ServerTrust::Pinned(server.pin),
        identity.cloned(),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    AgentServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Opens the agent stream and waits for the Welcome.
async fn open(
    server: &InProcessServer,
    identity: &ClientIdentity,
) -> (mpsc::Sender<AgentMessage>, tonic::Streaming<ServerMessage>) {
    let (tx, rx) = mpsc::channel(64);
    let mut inbound = agent_client(server, Some(identity))
        .await
        .open_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let welcome = inbound.message().await.unwrap().unwrap();
    assert!(matches!(
        welcome.body,
        Some(server_message::Body::Welcome(_))
    ));
    (tx, inbound)
}

/// Report `n` of a flood: 5,000 packages whose versions alternate, so each
/// report after the first changes every package.
fn flood_report(n: usize, packages: usize) -> AgentMessage {
    let inventory = Inventory {
        system: Some(SystemInfo {
            hostname: "kus012-sp0101".into(),
            ..Default::default()
        }),
        software: (0..packages)
            .map(|p| SoftwarePackage {
                name: format!("paket-{p:05}"),
                version: format!("1.{}", n % 2),
                source: "dpkg".into(),
                architecture: "amd64".into(),
                publisher: String::new(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    AgentMessage {
        body: Some(agent_message::Body::InventoryReport(InventoryReport {
            report_id: uuid::Uuid::new_v4().to_string(),
            // Each a millisecond later, so every one is the newest.
            collected_at: Some(schoolfleet_proto::time::to_timestamp(
                chrono::Utc::now() - chrono::TimeDelta::seconds(60)
                    + chrono::TimeDelta::milliseconds(n as i64),
            )),
            content_hash: format!("{:064x}", n % 2),
            inventory: inventory.encode_to_vec(),
            reason: "changed".into(),
            inventory_size: 0,
        })),
    }
}

/// Sends `count` flood reports and collects their acknowledgements.
async fn flood(
    tx: &mpsc::Sender<AgentMessage>,
    inbound: &mut tonic::Streaming<ServerMessage>,
    count: usize,
) -> Vec<ReportAck> {
    let messages: Vec<_> = (0..count).map(|n| flood_report(n, 5_000)).collect();
    let sender = tx.clone();
    tokio::spawn(async move {
        for m in messages {
            if sender.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    while acks.len() < count {
        match inbound.message().await.unwrap() {
            Some(ServerMessage {
                body: Some(server_message::Body::ReportAck(ack)),
            }) => acks.push(ack),
            Some(_) => {}
            None => panic!("stream ended after {} acks", acks.len()),
        }
    }
    acks
}

/// Rows in inventory_changes, and the database size (file + WAL) in bytes.
async fn figures(server: &InProcessServer) -> (i64, u64) {
    let url = &server.state.config.server.database_url;
    let path = url.strip_prefix("sqlite://").expect("SQLite test server");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}?mode=ro"))
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inventory_changes")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let size = |p: String| std::fs::metadata(p).map_or(0, |m| m.len());
    (rows, size(path.to_owned()) + size(format!("{path}-wal")))
}

#[tokio::test]
#[ignore = "reproduction with figures; run with --ignored --nocapture"]
async fn report_flood_figures() {
    let server = InProcessServer::start().await;
    let (_, identity) = enrolled_device(&server).await;
    let (tx, mut inbound) = open(&server, &identity).await;
    let started = Instant::now();
    let acks = flood(&tx, &mut inbound, 40).await;
    let elapsed = started.elapsed();
    let stored = acks.iter().filter(|a| a.error.is_empty()).count();
    let (rows, bytes) = figures(&server).await;
    println!(
        "40 reports of 5,000 alternating packages in {elapsed:.1?}: {stored} stored, \
         {rows} inventory_changes rows, database {:.1} MB",
        bytes as f64 / 1e6
    );
    if let Some(refused) = acks.iter().find(|a| !a.error.is_empty()) {
        println!("first refusal: {:?}", refused.error);
    }
}

#[tokio::test]
async fn a_report_flood_is_rate_limited_and_changes_are_capped() {
    let server = InProcessServer::start().await;
    let limits = server.state.config.limits.clone();
    let (device_id, identity) = enrolled_device(&server).await;
    let (tx, mut inbound) = open(&server, &identity).await;
    let acks = flood(&tx, &mut inbound, 40).await;
    let stored = acks.iter().filter(|a| a.error.is_empty()).count();
    assert_eq!(stored, limits.device_reports_per_hour as usize, "{acks:?}");
    let refused = acks.iter().find(|a| !a.error.is_empty()).unwrap();
    // A clear error, and the agent keeps the report for later.
    assert!(refused.retry, "{refused:?}");
    assert!(
        refused
            .error
            .starts_with("RESOURCE_EXHAUSTED: at most 12 inventory reports per hour")
            && refused.error.contains("try again in"),
        "{}",
        refused.error
    );
    // Every stored report after the first changed 5,000 packages, but
    // stored at most the cap, with one row saying how many were left out.
    let changes = server
        .store()
        .list_inventory_changes(&device_id, 100_000)
        .await
        .unwrap();
    assert_eq!(
        changes.len(),
        (stored - 1) * limits.max_changes_per_report,
        "changes stored"
    );
    let summaries: Vec<_> = changes
        .iter()
        .filter(|c| c.kind == schoolfleet_server::ingest::CHANGES_TRUNCATED)
        .collect();
    assert_eq!(summaries.len(), stored - 1);
    assert_eq!(
        summaries[0].new_value,
        "4001 further changes in this report were not stored"
    );
}

#[tokio::test]
async fn a_heartbeat_flood_ends_the_stream_with_a_retry_hint() {
    let server = InProcessServer::start().await;
    let (_, identity) = enrolled_device(&server).await;
    let (tx, mut inbound) = open(&server, &identity).await;
    tokio::spawn(async move {
        for sequence in 0..100 {
            let heartbeat = AgentMessage {
                body: Some(agent_message::Body::Heartbeat(Heartbeat {
                    sequence,
                    ..Default::default()
                })),
            };
            if tx.send(heartbeat).await.is_err() {
                break;
            }
        }
        // Keep the stream open until the server ends it.
        tx.closed().await;
    });
    let status = loop {
        match inbound.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("too many heartbeats"),
        "{status:?}"
    );
    let wait: u64 = status
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Reconnecting at once is refused as well, before any write.
    let (tx, rx) = mpsc::channel(1);
    let err = agent_client(&server, Some(&identity))
        .await
        .open_stream(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    drop(tx);
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
}

#[tokio::test]
async fn renewals_and_problem_reports_are_rate_limited() {
    let server = InProcessServer::start_with(|c| {
        c.limits.device_renewals_per_day = 2;
        c.limits.device_problem_reports_per_hour = 2;
    })
    .await;
    let (_, identity) = enrolled_device(&server).await;
    let mut agent = agent_client(&server, Some(&identity)).await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        outcomes.push(
            agent
                .renew_certificate(RenewCertificateRequest { csr_pem: csr(&key) })
                .await
                .map(|_| ()),
        );
    }
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
    let err = outcomes[2].as_ref().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("at most 2 per day"), "{err:?}");

    let mut outcomes = Vec::new();
    for n in 0..3 {
        outcomes.push(
            agent
                .report_problem(ReportProblemRequest {
                    title: format!("Drucker {n}"),
                    description: "druckt nicht".into(),
                    hostname: "kus012-sp0101".into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().ticket),
        );
    }
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
    let err = outcomes[2].as_ref().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.metadata().get("retry-after").is_some());
    // Only the two allowed reports became tickets.
    let mut admin = server.client(&server.bootstrap_token).await;
    let tickets = admin
        .tickets
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(tickets.len(), 2);
}
