//! Data-protection rules on what a session may be (issue 12, parts 3 and
//! 4), on a real server with its SQLite file: exec secrets never reach the
//! session row, the audit or the database file; forward targets outside
//! the device and the allow-list are refused and audited.

mod common;

use common::server::{Clients, InProcessServer};
use schoolfleet_proto::v1::session_spec::Kind as SpecKind;
use schoolfleet_proto::v1::*;
use tonic::Code;

const HOST: &str = "kus012-pc01";

async fn start(c: &mut Clients, kind: SpecKind) -> tonic::Status {
    let started = c
        .sessions
        .start_session(StartSessionRequest {
            device: HOST.into(),
            reason: "Konto".into(),
            spec: Some(SessionSpec { kind: Some(kind) }),
            ..Default::default()
        })
        .await;
    match started {
        Ok(_) => panic!("no agent is connected: the start cannot succeed"),
        Err(status) => status,
    }
}

async fn audit(c: &mut Clients) -> Vec<AuditEntry> {
    c.audit
        .list_audit_events(ListAuditEventsRequest {
            action_prefix: "session.".into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

#[tokio::test]
async fn exec_secrets_are_redacted_in_the_row_the_audit_and_the_file() {
    let server = InProcessServer::start().await;
    server.create_school("kus", "kus012").await;
    let token = server.enrollment_token("kus012", 1).await;
    server.enroll_device(token, HOST).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    for argv in [
        vec!["chpasswd", "max.mustermann:Geheim123"],
        vec!["sh", "-c", "echo max.mustermann:Geheim123 | chpasswd"],
        vec!["mysql", "--password=Geheim123", "schule"],
    ] {
        let status = start(
            &mut admin,
            SpecKind::Exec(ExecSpec {
                argv: argv.iter().map(|a| a.to_string()).collect(),
                env: vec![],
            }),
        )
        .await;
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    let sessions = admin
        .sessions
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    let summaries: Vec<&str> = sessions.iter().map(|s| s.summary.as_str()).collect();
    assert_eq!(
        summaries,
        ["mysql --password=*** schule", "sh -c ***", "chpasswd ***"]
    );
    for entry in audit(&mut admin).await {
        assert!(!entry.details.contains("Geheim123"), "{entry:?}");
    }
    // Nothing in the database file or its WAL either (the spec column too).
    let dir = &server.state.config.server.data_dir;
    for file in ["schoolfleet.db", "schoolfleet.db-wal"] {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(9).any(|w| w == b"Geheim123"),
            "the secret is in {file}"
        );
    }
    assert!(dir.join("schoolfleet.db").exists());
}

#[tokio::test]
async fn forward_targets_are_the_device_itself_and_the_allow_list() {
    let server = InProcessServer::start_with(|config| {
        config
            .sessions
            .forward_allow
            .insert("kus012".into(), vec!["drucker.schule.local:631".into()]);
    })
    .await;
    server.create_school("kus", "kus012").await;
    let token = server.enrollment_token("kus012", 1).await;
    server.enroll_device(token, HOST).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let forward = |host: &str, port| {
        SpecKind::Forward(ForwardSpec {
            host: host.into(),
            port,
        })
    };
    // Allowed targets get as far as the (offline) device.
    for (host, port) in [
        ("127.0.0.1", 5900),
        ("localhost", 22),
        ("drucker.schule.local", 631),
    ] {
        let status = start(&mut admin, forward(host, port)).await;
        assert_eq!(status.code(), Code::Unavailable, "{host}: {status:?}");
    }
    // The administration network, a listed host on another port: refused.
    for (host, port) in [("10.1.2.3", 5432), ("drucker.schule.local", 22)] {
        let status = start(&mut admin, forward(host, port)).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{host}: {status:?}");
        assert!(status.message().contains("not allowed"), "{status:?}");
    }
    let refused = audit(&mut admin)
        .await
        .into_iter()
        .filter(|e| e.action == "session.denied" && e.details.contains("is not allowed"))
        .count();
    assert_eq!(refused, 2);
}
