//! The agent stream as the registry and the store see it.

mod common;

use std::time::Duration;

use common::server::InProcessServer;
use schoolfleet_proto::transport::{self, ChannelOptions, ClientIdentity, ServerTrust};
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Enrols a device in a fresh school; returns its id and mTLS identity.
async fn enrolled_device(server: &InProcessServer) -> (String, ClientIdentity) {
    server.create_school("kus", "kus012").await;
    let token = server.enrollment_token("kus012", 1).await;
    server.enroll_device(token, "kus012-sp0101").await
}

/// Opens the agent stream on its own connection (with a Hello first, if
/// `hello`) and waits for the Welcome. The sender keeps the stream open;
/// dropping it ends the stream.
async fn open(
    server: &InProcessServer,
    identity: &ClientIdentity,
    hello: bool,
) -> (mpsc::Sender<AgentMessage>, tonic::Streaming<ServerMessage>) {
    let channel = transport::connect(
        &server.url,
        ServerTrust::Pinned(server.pin),
        Some(identity.clone()),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    let (tx, rx) = mpsc::channel(8);
    if hello {
        tx.send(AgentMessage {
            body: Some(agent_message::Body::Hello(Hello::default())),
        })
        .await
        .unwrap();
    }
    let mut inbound = AgentServiceClient::new(channel)
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

/// An agent that reconnects while its old stream is still open (NAT dropped
/// the old connection silently, say) replaces the old stream. The old
/// stream ending must not mark the device disconnected: the new one is live.
#[tokio::test]
async fn replaced_stream_does_not_mark_the_device_offline() {
    let server = InProcessServer::start().await;
    let (device_id, identity) = enrolled_device(&server).await;

    let (_old_tx, mut old_inbound) = open(&server, &identity, true).await;
    // No Hello on the new stream: its touch on Hello would paper over a
    // late "disconnected" from the old stream until the next message.
    let (_new_tx, _new_inbound) = open(&server, &identity, false).await;

    // The old stream is told that it was replaced.
    let ended = tokio::time::timeout(Duration::from_secs(10), old_inbound.message())
        .await
        .expect("the old stream ends");
    assert_eq!(ended.unwrap_err().code(), tonic::Code::Aborted);
    // Let the old stream's task finish its bookkeeping.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let device = server
        .store()
        .get_device(&device_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        device.connected,
        "the device has a live stream but is recorded as disconnected"
    );
    assert_eq!(server.state.agents.connected_count(), 1);
}

/// The stream of the device ending for good still records the disconnect.
#[tokio::test]
async fn closed_stream_marks_the_device_disconnected() {
    let server = InProcessServer::start().await;
    let (device_id, identity) = enrolled_device(&server).await;

    let (tx, mut inbound) = open(&server, &identity, true).await;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), inbound.message()).await;
    let mut connected = true;
    for _ in 0..50 {
        let device = server
            .store()
            .get_device(&device_id)
            .await
            .unwrap()
            .unwrap();
        connected = device.connected;
        if !connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !connected,
        "a closed stream must mark the device disconnected"
    );
    assert_eq!(server.state.agents.connected_count(), 0);
}

/// Each heartbeat is answered once it is recorded, with its sequence, so an
/// agent (and the load generator) can measure how long that took.
#[tokio::test]
async fn heartbeats_are_acknowledged_after_they_are_recorded() {
    let server = InProcessServer::start().await;
    let (device_id, identity) = enrolled_device(&server).await;
    let (tx, mut inbound) = open(&server, &identity, true).await;
    let before = server
        .store()
        .get_device(&device_id)
        .await
        .unwrap()
        .unwrap()
        .last_seen
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for sequence in [7, 8] {
        tx.send(AgentMessage {
            body: Some(agent_message::Body::Heartbeat(Heartbeat {
                sequence,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("an answer to the heartbeat")
            .unwrap()
            .unwrap();
        match answer.body {
            Some(server_message::Body::HeartbeatAck(ack)) => assert_eq!(ack.sequence, sequence),
            other => panic!("expected a heartbeat acknowledgement, got {other:?}"),
        }
        // Acknowledged means written.
        let seen = server
            .store()
            .get_device(&device_id)
            .await
            .unwrap()
            .unwrap()
            .last_seen
            .unwrap();
        assert!(seen > before, "last_seen {seen} not after {before}");
    }
}

fn inventory_report(hostname: &str, content_hash: &str) -> InventoryReport {
    use prost::Message;
    let inventory = Inventory {
        system: Some(SystemInfo {
            hostname: hostname.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    InventoryReport {
        report_id: uuid::Uuid::new_v4().to_string(),
        collected_at: Some(schoolfleet_proto::time::to_timestamp(chrono::Utc::now())),
        content_hash: content_hash.into(),
        reason: "startup".into(),
        inventory: inventory.encode_to_vec(),
        inventory_size: 0,
    }
}

/// The Welcome tells the agent to send reports by `SubmitInventory`; a
/// report sent so is stored and acknowledged in the answer, the same
/// report again is a duplicate, an offer (size only) is asked for its
/// inventory or, with the current content, stored at once, and a call
/// without a device certificate is refused. Reports on the stream (older
/// agents) still work.
#[tokio::test]
async fn reports_go_by_their_own_call_and_still_on_the_stream() {
    let server = InProcessServer::start().await;
    let (device_id, identity) = enrolled_device(&server).await;
    let channel = transport::connect(
        &server.url,
        ServerTrust::Pinned(server.pin),
        Some(identity.clone()),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut inbound = AgentServiceClient::new(channel.clone())
        .open_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    match inbound.message().await.unwrap().unwrap().body {
        Some(server_message::Body::Welcome(w)) => assert!(w.submit_inventory),
        other => panic!("expected the Welcome, got {other:?}"),
    }

    let mut client = AgentServiceClient::new(channel.clone());
    let first = inventory_report("kus012-sp0101", &"b".repeat(64));
    let ack = client
        .submit_inventory(first.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.report_id, first.report_id);
    assert!(ack.error.is_empty() && !ack.retry, "{ack:?}");
    let stored = server
        .store()
        .get_inventory(&device_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.content_hash, "b".repeat(64));

    // Sent again: a duplicate, acknowledged as such.
    let again = client
        .submit_inventory(first.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate, "{again:?}");

    // On the stream, as an older agent sends it.
    let on_stream = inventory_report("kus012-sp0101", &"c".repeat(64));
    tx.send(AgentMessage {
        body: Some(agent_message::Body::InventoryReport(on_stream.clone())),
    })
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), inbound.message())
        .await
        .expect("an acknowledgement on the stream")
        .unwrap()
        .unwrap();
    match answer.body {
        Some(server_message::Body::ReportAck(ack)) => {
            assert_eq!(ack.report_id, on_stream.report_id);
            assert!(ack.error.is_empty(), "{ack:?}");
        }
        other => panic!("expected a report acknowledgement, got {other:?}"),
    }
    let reports = server
        .store()
        .list_inventory_reports(&device_id, 10)
        .await
        .unwrap();
    assert_eq!(reports.len(), 2);

    // Offered first: new content is asked for, then stored when sent.
    let offer_of = |report: &InventoryReport| InventoryReport {
        inventory: Vec::new(),
        inventory_size: report.inventory.len() as u64,
        ..report.clone()
    };
    let changed = inventory_report("kus012-sp0101", &"e".repeat(64));
    let answer = client
        .submit_inventory(offer_of(&changed))
        .await
        .unwrap()
        .into_inner();
    assert!(
        answer.send_inventory && answer.error.is_empty(),
        "{answer:?}"
    );
    assert_eq!(
        server
            .store()
            .get_inventory(&device_id)
            .await
            .unwrap()
            .unwrap()
            .content_hash,
        "c".repeat(64),
        "an offer alone changed the inventory"
    );
    let ack = client
        .submit_inventory(changed.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(ack.error.is_empty() && !ack.send_inventory, "{ack:?}");
    let stored = server
        .store()
        .get_inventory(&device_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.content_hash, "e".repeat(64));

    // The same content offered again (a reboot) is stored from the offer:
    // the inventory never travels.
    let reboot = InventoryReport {
        report_id: uuid::Uuid::new_v4().to_string(),
        collected_at: Some(schoolfleet_proto::time::to_timestamp(
            chrono::Utc::now() + chrono::TimeDelta::seconds(1),
        )),
        ..changed.clone()
    };
    let ack = client
        .submit_inventory(offer_of(&reboot))
        .await
        .unwrap()
        .into_inner();
    assert!(
        ack.error.is_empty() && !ack.send_inventory && !ack.retry,
        "{ack:?}"
    );
    let after = server
        .store()
        .get_inventory(&device_id)
        .await
        .unwrap()
        .unwrap();
    assert!(after.collected_at > stored.collected_at);
    assert_eq!(after.inventory, stored.inventory);
    assert_eq!(
        server
            .store()
            .list_inventory_reports(&device_id, 10)
            .await
            .unwrap()
            .len(),
        4
    );

    // An offer larger than any message is refused.
    let huge = InventoryReport {
        inventory_size: u64::MAX,
        ..offer_of(&inventory_report("kus012-sp0101", &"f".repeat(64)))
    };
    let ack = client.submit_inventory(huge).await.unwrap().into_inner();
    assert!(
        !ack.error.is_empty() && !ack.retry && !ack.send_inventory,
        "{ack:?}"
    );

    // Without a device certificate the call is refused.
    let anonymous = transport::connect(
        &server.url,
        ServerTrust::Pinned(server.pin),
        None,
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    let refused = AgentServiceClient::new(anonymous)
        .submit_inventory(inventory_report("x", &"d".repeat(64)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}
