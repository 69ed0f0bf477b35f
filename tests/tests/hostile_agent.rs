//! An enrolled device that sends hostile data: terminal escapes in its host
//! name, an oversized software list, invalid UTF-8. Each is neutralised or
//! refused with a clear error, and nothing else the agent sent is lost.

use std::time::Duration;

use prost::Message;
use schoolfleet_agent::identity::AgentIdentity;
use schoolfleet_e2e::*;
use schoolfleet_proto::transport::{self, ChannelOptions};
use schoolfleet_proto::v1::agent_message::Body;
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::server_message::Body as ServerBody;
use schoolfleet_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn inventory(hostname: &str, packages: usize) -> Inventory {
    Inventory {
        system: Some(SystemInfo {
            hostname: hostname.into(),
            ..Default::default()
        }),
        os: Some(OperatingSystem {
            family: "linux".into(),
            name: "Debian GNU/Linux".into(),
            version: "12".into(),
            ..Default::default()
        }),
        software: (0..packages)
            .map(|i| SoftwarePackage {
                name: format!("pkg-{i}"),
                version: "1.0".into(),
                source: "dpkg".into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

struct Stream {
    tx: mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<ServerMessage>,
    clock: i64,
}

impl Stream {
    async fn send_report(&mut self, inventory_bytes: Vec<u8>) -> (String, ReportAck) {
        self.clock += 1;
        let report_id = uuid::Uuid::new_v4().to_string();
        let report = InventoryReport {
            report_id: report_id.clone(),
            collected_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + self.clock,
                nanos: 0,
            }),
            content_hash: format!("{:064x}", self.clock),
            inventory: inventory_bytes,
            reason: "test".into(),
            inventory_size: 0,
        };
        self.tx
            .send(AgentMessage {
                body: Some(Body::InventoryReport(report)),
            })
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), self.inbound.message())
                .await
                .expect("ack within 20 s")
                .expect("stream stays up")
                .expect("stream not closed");
            if let Some(ServerBody::ReportAck(ack)) = message.body {
                assert_eq!(ack.report_id, report_id);
                return (report_id, ack);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_are_neutralised_or_refused_and_nothing_else_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("server")).unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let cli = server.admin_cli(&dir.path().join("cli"));
    cli.ok(&["county", "add", "don", "--name", "Donnersbergkreis"]);
    cli.ok(&[
        "school",
        "add",
        "don003",
        "--county",
        "don",
        "--name",
        "Gymnasium",
    ]);
    let token = cli.enrollment_token("don003", "1h", 1);
    let agent = AgentProcess::new(&dir.path().join("agent"));
    assert!(agent.enroll(&server.url(), &token).status.success());

    // Speak the agent protocol directly, with the real device certificate.
    let identity = AgentIdentity::load(&agent.state_dir).unwrap();
    let channel = transport::connect(
        &server.url(),
        identity.server_trust(),
        Some(identity.client_identity()),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    let (tx, rx) = mpsc::channel(16);
    tx.send(AgentMessage {
        body: Some(Body::Hello(Hello {
            agent_version: "evil\u{1b}[31m".into(),
            // Not a consent mode: recorded as unknown, never as given.
            consent_min: "prompt\u{1b}[2J'; DROP TABLE devices;--".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let inbound = AgentServiceClient::new(channel)
        .open_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut stream = Stream {
        tx,
        inbound,
        clock: 0,
    };

    let (first, ack) = stream
        .send_report(inventory("honest-pc", 3).encode_to_vec())
        .await;
    assert!(ack.error.is_empty(), "{ack:?}");

    let evil_host =
        "pc\u{1b}]0;pwned\u{7}\u{1b}[2J<script>alert(1)</script>'; DROP TABLE devices;--";
    let (escapes, ack) = stream
        .send_report(inventory(evil_host, 3).encode_to_vec())
        .await;
    assert!(ack.error.is_empty(), "{ack:?}");
    assert!(
        ack.warnings.iter().any(|w| w.contains("hostname")),
        "no warning about the host name: {ack:?}"
    );

    let (_, ack) = stream
        .send_report(inventory("big-pc", 25_000).encode_to_vec())
        .await;
    assert!(
        ack.error.contains("25000") && ack.error.contains("20000"),
        "oversized list not refused clearly: {ack:?}"
    );
    assert!(!ack.retry);

    // SystemInfo { hostname: <0xff 0xfe> } encoded by hand: prost refuses to.
    let (_, ack) = stream.send_report(vec![0x0a, 4, 0x0a, 2, 0xff, 0xfe]).await;
    assert!(
        ack.error.to_lowercase().contains("utf-8"),
        "invalid UTF-8 not refused clearly: {ack:?}"
    );

    let (last, ack) = stream
        .send_report(inventory("recovered-pc", 5).encode_to_vec())
        .await;
    assert!(
        ack.error.is_empty(),
        "the stream did not survive the hostile reports: {ack:?}"
    );

    // Everything valid arrived; nothing refused was stored.
    let device_id = identity.device_id.to_string();
    let reports = cli.json(&["device", "reports", &device_id]);
    let ids: Vec<&str> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["report_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{reports}");
    for id in [&first, &escapes, &last] {
        assert!(ids.contains(&id.as_str()), "report {id} lost: {reports}");
    }
    let show = cli.json(&["device", "show", &device_id]);
    assert_eq!(show["software"]["count"], 5);
    assert_eq!(show["overview"]["hostname"], "recovered-pc");
    assert_eq!(show["overview"]["agent_consent_min"], "", "{show}");
    assert!(
        server.log().contains("unknown consent floor"),
        "the refused floor is not logged"
    );

    // The escape-laden host name was stored neutralised; the history shows
    // it, and the CLI output carries no raw escape character.
    let history = cli.ok(&["device", "history", &device_id]);
    let raw = cli.ok(&["-o", "csv", "device", "history", &device_id]);
    for text in [&history, &raw] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "raw control character printed:\n{text}"
        );
    }
    assert!(
        history.contains("<script>"),
        "HTML should be shown as text, unchanged:\n{history}"
    );
    let agent_version = cli.json(&["devices"])[0]["agent_version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!agent_version.contains('\u{1b}'), "{agent_version:?}");
}

/// A device's strings never forge a server log line or come back unbounded:
/// a channel id with a newline, a fake log line and raw ESC is logged
/// cleaned, and the error repeats at most a bounded part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_strings_are_cleaned_before_they_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("server")).unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let cli = server.admin_cli(&dir.path().join("cli"));
    cli.ok(&["county", "add", "don", "--name", "Donnersbergkreis"]);
    cli.ok(&[
        "school",
        "add",
        "don003",
        "--county",
        "don",
        "--name",
        "Gymnasium",
    ]);
    let token = cli.enrollment_token("don003", "1h", 1);
    let agent = AgentProcess::new(&dir.path().join("agent"));
    assert!(agent.enroll(&server.url(), &token).status.success());
    let identity = AgentIdentity::load(&agent.state_dir).unwrap();
    let channel = transport::connect(
        &server.url(),
        identity.server_trust(),
        Some(identity.client_identity()),
        ChannelOptions::default(),
    )
    .await
    .unwrap();

    let marker = format!("forged-{}", uuid::Uuid::new_v4().simple());
    let forged = format!(
        "x\n2026-01-01T00:00:00.000000Z  INFO schoolfleet_server: {marker} admin logged in\u{1b}[2K{}",
        "A".repeat(100_000)
    );
    let (tx, rx) = mpsc::channel(1);
    tx.send(DeviceFrame {
        body: Some(device_frame::Body::Attach(ChannelAttach {
            channel_id: forged,
        })),
    })
    .await
    .unwrap();
    let status = AgentServiceClient::new(channel)
        .session_channel(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(status.message().len() < 200, "{}", status.message().len());

    wait_until(Duration::from_secs(10), "the warning in the log", || {
        server.log().contains("unknown or expired session channel")
    });
    let log = server.log();
    assert!(!log.contains('\u{1b}'), "raw ESC in the server log");
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00"),
            "a device forged a log line: {line}"
        );
    }
    assert!(
        !log.contains(&"A".repeat(1000)),
        "unbounded device text logged"
    );
}
