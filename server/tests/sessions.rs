//! Remote sessions in-process: who may start what (and that every refusal
//! is audited), and the whole flow with a scripted agent: consent, a
//! channel relayed both ways, the end, the recording, the audit chain.

mod common;

use std::time::Duration;

use common::server::{Clients, InProcessServer};
use schoolfleet_proto::transport::{self, ChannelOptions, ClientIdentity, ServerTrust};
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::client_frame::Body as ClientBody;
use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
use schoolfleet_proto::v1::server_message::Body as ServerBody;
use schoolfleet_proto::v1::session_spec::Kind as SpecKind;
use schoolfleet_proto::v1::session_update::Update;
use schoolfleet_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const HOST: &str = "kus012-pc01";
const WAIT: Duration = Duration::from_secs(10);

/// Counties kus and kl, schools kus012 and kl001, and one enrolled device
/// in kus012 with its mTLS identity.
async fn setup(server: &InProcessServer) -> (String, ClientIdentity) {
    server.create_school("kus", "kus012").await;
    server.create_school("kl", "kl001").await;
    let token = server.enrollment_token("kus012", 1).await;
    server.enroll_device(token, HOST).await
}

/// A scripted agent: its stream, and its client for dialling channels.
struct FakeAgent {
    tx: mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<ServerMessage>,
    client: AgentServiceClient<tonic::transport::Channel>,
}

impl FakeAgent {
    async fn connect(server: &InProcessServer, identity: &ClientIdentity) -> Self {
        Self::connect_to(&server.url, server, identity).await
    }

    async fn connect_to(url: &str, server: &InProcessServer, identity: &ClientIdentity) -> Self {
        let channel = transport::connect(
            url,
            ServerTrust::Pinned(server.pin),
            Some(identity.clone()),
            ChannelOptions::default(),
        )
        .await
        .unwrap();
        let mut client = AgentServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(8);
        let mut inbound = client
            .open_stream(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let welcome = inbound.message().await.unwrap().unwrap();
        assert!(matches!(welcome.body, Some(ServerBody::Welcome(_))));
        FakeAgent {
            tx,
            inbound,
            client,
        }
    }

    async fn next(&mut self) -> ServerBody {
        tokio::time::timeout(WAIT, self.inbound.message())
            .await
            .expect("a message from the server")
            .unwrap()
            .unwrap()
            .body
            .unwrap()
    }

    async fn answer(&self, session_id: &str, event: session_event::Event) {
        self.tx
            .send(AgentMessage {
                body: Some(agent_message::Body::SessionEvent(SessionEvent {
                    session_id: session_id.into(),
                    event: Some(event),
                })),
            })
            .await
            .unwrap();
    }

    /// Dials the channel back; returns the sender of device frames and
    /// the stream of client frames.
    async fn dial(
        &mut self,
        channel_id: &str,
    ) -> (mpsc::Sender<DeviceFrame>, tonic::Streaming<ClientFrame>) {
        let (tx, rx) = mpsc::channel(8);
        tx.send(DeviceFrame {
            body: Some(DeviceBody::Attach(ChannelAttach {
                channel_id: channel_id.into(),
            })),
        })
        .await
        .unwrap();
        let inbound = self
            .client
            .session_channel(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        (tx, inbound)
    }
}

fn exec_request(device: &str, argv: &[&str]) -> StartSessionRequest {
    StartSessionRequest {
        device: device.into(),
        reason: "Druckertreiber prüfen".into(),
        ticket: String::new(),
        spec: Some(SessionSpec {
            kind: Some(SpecKind::Exec(ExecSpec {
                argv: argv.iter().map(|a| a.to_string()).collect(),
                env: vec![],
            })),
        }),
        step_up: None,
    }
}

fn forward_request(device: &str) -> StartSessionRequest {
    StartSessionRequest {
        spec: Some(SessionSpec {
            kind: Some(SpecKind::Forward(ForwardSpec {
                host: "127.0.0.1".into(),
                port: 5900,
            })),
        }),
        ..exec_request(device, &[])
    }
}

async fn start_error(clients: &mut Clients, request: StartSessionRequest) -> tonic::Status {
    match clients.sessions.start_session(request).await {
        Err(status) => status,
        Ok(response) => response
            .into_inner()
            .message()
            .await
            .expect_err("the session must not start"),
    }
}

async fn audit_entries(server: &InProcessServer, prefix: &str) -> Vec<AuditEntry> {
    let mut admin = server.client(&server.bootstrap_token).await;
    admin
        .audit
        .list_audit_events(ListAuditEventsRequest {
            action_prefix: prefix.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

#[tokio::test]
async fn who_may_start_what_and_every_refusal_is_audited() {
    let server = InProcessServer::start().await;
    let (device_id, _identity) = setup(&server).await;

    // A technician limited to exec and cp cannot forward.
    let mut tech = server
        .user_clients_remote("tech", "kus", "technician", "county:kus", "exec,cp")
        .await;
    let status = start_error(&mut tech, forward_request(HOST)).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let denied = audit_entries(&server, "session.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor, "user:tech");
    assert_eq!(denied[0].target, format!("device:{device_id}"));
    assert_eq!(denied[0].county_id, "kus");
    assert_eq!(denied[0].outcome, "denied");
    assert!(
        denied[0].details.contains("kind=forward"),
        "{}",
        denied[0].details
    );

    // Exec is allowed, but the device is not connected.
    let status = start_error(&mut tech, exec_request(HOST, &["true"])).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), format!("device {HOST} is not connected"));
    assert_eq!(audit_entries(&server, "session.denied").await.len(), 2);

    // Another county's admin does not even see the device.
    let mut kl_admin = server
        .user_clients("kl-admin", "kl", "admin", "county:kl")
        .await;
    for request in [
        exec_request(HOST, &["true"]),
        exec_request(&device_id, &["id"]),
    ] {
        let status = start_error(&mut kl_admin, request).await;
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    let denied = audit_entries(&server, "session.denied").await;
    assert_eq!(denied.len(), 4);
    assert!(
        denied[..2]
            .iter()
            .all(|e| e.actor == "user:kl-admin" && e.target == format!("device:{device_id}"))
    );

    // A viewer has no session capability at all.
    let mut viewer = server
        .user_clients("viewer", "kus", "viewer", "county:kus")
        .await;
    let status = start_error(&mut viewer, exec_request(HOST, &["true"])).await;
    assert_eq!(status.code(), Code::PermissionDenied);

    // Bad input is refused with a clear message, and audited too.
    let mut no_reason = exec_request(HOST, &["true"]);
    no_reason.reason = "  ".into();
    let status = start_error(&mut tech, no_reason).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("reason"), "{status:?}");
    let status = start_error(&mut tech, exec_request(HOST, &[])).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut control = exec_request(HOST, &["true"]);
    control.reason = "harmlos\x1b[2J".into();
    assert_eq!(
        start_error(&mut tech, control).await.code(),
        Code::InvalidArgument
    );
    assert_eq!(audit_entries(&server, "session.denied").await.len(), 8);

    // The remote limit is stored and shown.
    let mut admin = server.client(&server.bootstrap_token).await;
    let users = admin
        .users
        .list_users(ListUsersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .users;
    let tech_user = users.iter().find(|u| u.name == "tech").unwrap();
    assert_eq!(tech_user.roles[0].remote, "exec,cp");
    let status = admin
        .users
        .create_user(CreateUserRequest {
            name: "bad".into(),
            county_id: "kus".into(),
            roles: vec![RoleBinding {
                role: "technician".into(),
                scope: "county:kus".into(),
                remote: "exec,ssh".into(),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // The chain over all of this is intact.
    let verified = admin
        .audit
        .verify_audit_chain(VerifyAuditChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert!(verified.entries_checked >= 10);
}

/// Consent, one exec channel relayed both ways, exit ends the session, and
/// the records and audit entries say so.
#[tokio::test]
async fn exec_session_end_to_end_with_a_scripted_agent() {
    let server = InProcessServer::start().await;
    let (device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut tech = server
        .user_clients("tech", "kus", "technician", "county:kus")
        .await;

    let mut updates = tech
        .sessions
        .start_session(exec_request(HOST, &["cat"]))
        .await
        .unwrap()
        .into_inner();
    // Default consent is "prompt": the admin hears that the user is asked.
    let ServerBody::OpenSession(open) = agent.next().await else {
        panic!("expected OpenSession")
    };
    assert_eq!(open.consent, "prompt");
    assert_eq!(open.admin, "user:tech");
    assert_eq!(open.reason, "Druckertreiber prüfen");
    let first = updates.message().await.unwrap().unwrap().update.unwrap();
    assert!(matches!(first, Update::WaitingForConsent(_)), "{first:?}");
    agent
        .answer(
            &open.session_id,
            session_event::Event::Accepted(SessionAccepted {}),
        )
        .await;
    let Update::Started(started) = updates.message().await.unwrap().unwrap().update.unwrap() else {
        panic!("expected started")
    };
    assert_eq!(started.session_id, open.session_id);
    assert_eq!(started.hostname, HOST);
    assert_eq!(started.device_id, device_id);

    // Attach: the agent is asked to open a channel and dials back.
    let (cli_tx, cli_rx) = mpsc::channel(8);
    cli_tx
        .send(ClientFrame {
            body: Some(ClientBody::Open(ChannelOpen {
                session_id: started.session_id.clone(),
                offset: 0,
            })),
        })
        .await
        .unwrap();
    let mut sessions_client = tech.sessions.clone();
    let attach = tokio::spawn(async move {
        sessions_client
            .attach(ReceiverStream::new(cli_rx))
            .await
            .map(|r| r.into_inner())
    });
    let ServerBody::OpenChannel(open_channel) = agent.next().await else {
        panic!("expected OpenChannel")
    };
    assert_eq!(open_channel.session_id, started.session_id);
    let (dev_tx, mut dev_rx) = agent.dial(&open_channel.channel_id).await;
    let mut cli_in = attach.await.unwrap().unwrap();

    // A second attach to an exec session is refused.
    let (second_tx, second_rx) = mpsc::channel(1);
    second_tx
        .send(ClientFrame {
            body: Some(ClientBody::Open(ChannelOpen {
                session_id: started.session_id.clone(),
                offset: 0,
            })),
        })
        .await
        .unwrap();
    let status = tech
        .sessions
        .attach(ReceiverStream::new(second_rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Admin -> device.
    cli_tx
        .send(ClientFrame {
            body: Some(ClientBody::Input(b"hallo".to_vec())),
        })
        .await
        .unwrap();
    cli_tx
        .send(ClientFrame {
            body: Some(ClientBody::Eof(Eof {})),
        })
        .await
        .unwrap();
    let got = dev_rx.message().await.unwrap().unwrap();
    assert_eq!(got.body, Some(ClientBody::Input(b"hallo".to_vec())));
    let got = dev_rx.message().await.unwrap().unwrap();
    assert_eq!(got.body, Some(ClientBody::Eof(Eof {})));

    // Device -> admin: stdout, stderr, exit.
    for body in [
        DeviceBody::Ready(ChannelReady::default()),
        DeviceBody::Output(b"hallo".to_vec()),
        DeviceBody::Stderr(b"warnung\n".to_vec()),
        DeviceBody::Exit(ChannelExit { code: 3 }),
    ] {
        dev_tx.send(DeviceFrame { body: Some(body) }).await.unwrap();
    }
    drop(dev_tx);
    let mut received = Vec::new();
    while let Some(frame) = tokio::time::timeout(WAIT, cli_in.message())
        .await
        .unwrap()
        .unwrap()
    {
        received.push(frame.body.unwrap());
    }
    assert_eq!(
        received,
        [
            DeviceBody::Ready(ChannelReady::default()),
            DeviceBody::Output(b"hallo".to_vec()),
            DeviceBody::Stderr(b"warnung\n".to_vec()),
            DeviceBody::Exit(ChannelExit { code: 3 }),
        ]
    );

    // The exit ends the session.
    let Update::Ended(ended) = tokio::time::timeout(WAIT, updates.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .update
        .unwrap()
    else {
        panic!("expected ended")
    };
    assert_eq!(ended.reason, "exit 3");
    assert_eq!(ended.exit_code, Some(3));
    assert!(updates.message().await.unwrap().is_none());
    let ServerBody::CloseSession(close) = agent.next().await else {
        panic!("expected CloseSession")
    };
    assert_eq!(close.session_id, started.session_id);

    let session = tech
        .sessions
        .get_session(GetSessionRequest {
            session_id: started.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.state, SessionState::Ended as i32);
    assert_eq!(session.kind, SessionKind::Exec as i32);
    assert_eq!(session.summary, "cat");
    assert_eq!(session.hostname, HOST);
    assert_eq!(session.exit_code, Some(3));
    assert_eq!(session.bytes_to_device, 5);
    assert_eq!(session.bytes_from_device, 5 + 8);
    assert_eq!(session.channels, 1);
    assert_eq!(session.end_reason, "exit 3");

    let start = audit_entries(&server, "session.start").await;
    assert_eq!(start.len(), 1);
    assert_eq!(start[0].target, format!("session:{}", started.session_id));
    let end = audit_entries(&server, "session.end").await;
    let end: Vec<_> = end.iter().filter(|e| e.action == "session.end").collect();
    assert_eq!(end.len(), 1);
    assert!(
        end[0].details.contains("bytes_to_device=5")
            && end[0].details.contains("bytes_from_device=13"),
        "{}",
        end[0].details
    );
}

/// Refused at the device: the admin hears why, the row is denied, audited.
#[tokio::test]
async fn refusal_at_the_device_is_reported_and_audited() {
    let server = InProcessServer::start().await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let mut updates = admin
        .sessions
        .start_session(exec_request(HOST, &["id"]))
        .await
        .unwrap()
        .into_inner();
    let ServerBody::OpenSession(open) = agent.next().await else {
        panic!("expected OpenSession")
    };
    agent
        .answer(
            &open.session_id,
            session_event::Event::Refused(SessionRefused {
                refusal: SessionRefusal::Declined as i32,
                message: "declined by the local user".into(),
            }),
        )
        .await;
    let status = loop {
        match updates.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("declined by the local user"),
        "{status:?}"
    );
    let session = admin
        .sessions
        .get_session(GetSessionRequest {
            session_id: open.session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.state, SessionState::Denied as i32);
    let denied = audit_entries(&server, "session.denied").await;
    assert_eq!(denied.len(), 1);
    assert!(
        denied[0].details.contains("declined"),
        "{}",
        denied[0].details
    );
}

/// A shell session is recorded; the local user ending it ends the admin's
/// side with the reason; the recording plays back as asciicast v2.
#[tokio::test]
async fn shell_is_recorded_and_the_local_user_can_end_it() {
    let server = InProcessServer::start_with(|c| c.sessions.default_consent = "none".into()).await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let mut updates = admin
        .sessions
        .start_session(StartSessionRequest {
            spec: Some(SessionSpec {
                kind: Some(SpecKind::Shell(ShellSpec {
                    term: "xterm-256color".into(),
                    size: Some(WindowSize {
                        cols: 100,
                        rows: 30,
                    }),
                })),
            }),
            ..exec_request(HOST, &[])
        })
        .await
        .unwrap()
        .into_inner();
    let ServerBody::OpenSession(open) = agent.next().await else {
        panic!("expected OpenSession")
    };
    assert_eq!(open.consent, "none");
    agent
        .answer(
            &open.session_id,
            session_event::Event::Accepted(SessionAccepted {}),
        )
        .await;
    let Update::Started(started) = updates.message().await.unwrap().unwrap().update.unwrap() else {
        panic!("expected started")
    };
    let (cli_tx, cli_rx) = mpsc::channel(8);
    cli_tx
        .send(ClientFrame {
            body: Some(ClientBody::Open(ChannelOpen {
                session_id: started.session_id.clone(),
                offset: 0,
            })),
        })
        .await
        .unwrap();
    let mut sessions_client = admin.sessions.clone();
    let attach = tokio::spawn(async move {
        sessions_client
            .attach(ReceiverStream::new(cli_rx))
            .await
            .map(|r| r.into_inner())
    });
    let ServerBody::OpenChannel(open_channel) = agent.next().await else {
        panic!("expected OpenChannel")
    };
    let (dev_tx, mut dev_rx) = agent.dial(&open_channel.channel_id).await;
    let mut cli_in = attach.await.unwrap().unwrap();
    // "ü" split over two frames; a password typed in is not recorded.
    cli_tx
        .send(ClientFrame {
            body: Some(ClientBody::Input(b"geheim\r".to_vec())),
        })
        .await
        .unwrap();
    dev_rx.message().await.unwrap().unwrap();
    cli_tx
        .send(ClientFrame {
            body: Some(ClientBody::Resize(WindowSize {
                cols: 120,
                rows: 40,
            })),
        })
        .await
        .unwrap();
    dev_rx.message().await.unwrap().unwrap();
    for data in [b"Gr\xc3".to_vec(), b"\xbc\xc3\x9fe\r\n".to_vec()] {
        dev_tx
            .send(DeviceFrame {
                body: Some(DeviceBody::Output(data)),
            })
            .await
            .unwrap();
        cli_in.message().await.unwrap().unwrap();
    }

    // The local user ends it.
    agent
        .answer(
            &started.session_id,
            session_event::Event::Ended(SessionEnded {
                by_local_user: true,
                reason: String::new(),
            }),
        )
        .await;
    let frame = tokio::time::timeout(WAIT, cli_in.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(DeviceBody::Error(error)) = frame.body else {
        panic!("expected an error frame, got {frame:?}")
    };
    assert_eq!(error.code, ChannelErrorCode::Ended as i32);
    assert_eq!(error.message, "ended by the local user at the device");
    // The agent's channel is ended by the server with a status.
    assert!(
        tokio::time::timeout(WAIT, dev_rx.message())
            .await
            .unwrap()
            .is_err()
    );
    let Update::Ended(ended) = tokio::time::timeout(WAIT, updates.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .update
        .unwrap()
    else {
        panic!("expected ended")
    };
    assert_eq!(ended.reason, "ended by the local user at the device");

    let mut cast = Vec::new();
    let mut chunks = admin
        .sessions
        .get_recording(GetRecordingRequest {
            session_id: started.session_id.clone(),
            reason: "Prüfung".into(),
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(chunk) = chunks.message().await.unwrap() {
        cast.extend(chunk.data);
    }
    let cast = String::from_utf8(cast).unwrap();
    let lines: Vec<serde_json::Value> = cast
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["version"], 2);
    assert_eq!(lines[0]["width"], 100);
    assert_eq!(lines[0]["env"]["TERM"], "xterm-256color");
    assert_eq!(lines[1][1], "r");
    assert_eq!(lines[1][2], "120x40");
    let output: String = lines[2..]
        .iter()
        .filter(|l| l[1] == "o")
        .map(|l| l[2].as_str().unwrap())
        .collect();
    assert_eq!(output, "Grüße\r\n");
    assert!(!cast.contains("geheim"), "input must not be recorded");

    // A technician may not play recordings.
    let mut tech = server
        .user_clients("tech", "kus", "technician", "county:kus")
        .await;
    let status = tech
        .sessions
        .get_recording(GetRecordingRequest {
            session_id: started.session_id.clone(),
            reason: "Prüfung".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    drop(dev_tx);
}

/// The admin dropping StartSession ends the session and tells the agent.
#[tokio::test]
async fn dropping_the_start_stream_ends_the_session() {
    let server = InProcessServer::start_with(|c| c.sessions.default_consent = "none".into()).await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let mut updates = admin
        .sessions
        .start_session(forward_request(HOST))
        .await
        .unwrap()
        .into_inner();
    let ServerBody::OpenSession(open) = agent.next().await else {
        panic!("expected OpenSession")
    };
    agent
        .answer(
            &open.session_id,
            session_event::Event::Accepted(SessionAccepted {}),
        )
        .await;
    updates.message().await.unwrap().unwrap();
    drop(updates);
    let ServerBody::CloseSession(close) = agent.next().await else {
        panic!("expected CloseSession")
    };
    assert_eq!(close.session_id, open.session_id);
    assert_eq!(close.reason, "admin side disconnected");
    let mut ended = None;
    for _ in 0..50 {
        let s = server
            .store()
            .get_session(&open.session_id)
            .await
            .unwrap()
            .unwrap();
        if s.state == "ended" {
            ended = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ended.expect("session ended").end_reason,
        "admin side disconnected"
    );
}

/// Starts a session that the agent accepts; returns the update stream and
/// the session id.
async fn started_session(
    clients: &mut Clients,
    agent: &mut FakeAgent,
    request: StartSessionRequest,
) -> (tonic::Streaming<SessionUpdate>, String) {
    let mut updates = clients
        .sessions
        .start_session(request)
        .await
        .unwrap()
        .into_inner();
    let ServerBody::OpenSession(open) = agent.next().await else {
        panic!("expected OpenSession")
    };
    agent
        .answer(
            &open.session_id,
            session_event::Event::Accepted(SessionAccepted {}),
        )
        .await;
    loop {
        match updates.message().await.unwrap().unwrap().update.unwrap() {
            Update::Started(s) => return (updates, s.session_id),
            Update::WaitingForConsent(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Attaches a channel and lets the agent dial it back.
async fn attached_channel(
    clients: &Clients,
    agent: &mut FakeAgent,
    session_id: &str,
) -> (
    mpsc::Sender<ClientFrame>,
    tonic::Streaming<DeviceFrame>,
    mpsc::Sender<DeviceFrame>,
    tonic::Streaming<ClientFrame>,
) {
    let (cli_tx, cli_rx) = mpsc::channel(8);
    cli_tx
        .send(ClientFrame {
            body: Some(ClientBody::Open(ChannelOpen {
                session_id: session_id.into(),
                offset: 0,
            })),
        })
        .await
        .unwrap();
    let mut sessions_client = clients.sessions.clone();
    let attach = tokio::spawn(async move {
        sessions_client
            .attach(ReceiverStream::new(cli_rx))
            .await
            .map(|r| r.into_inner())
    });
    let ServerBody::OpenChannel(open_channel) = agent.next().await else {
        panic!("expected OpenChannel")
    };
    let (dev_tx, dev_rx) = agent.dial(&open_channel.channel_id).await;
    let cli_in = attach.await.unwrap().unwrap();
    (cli_tx, cli_in, dev_tx, dev_rx)
}

async fn ended_notice(updates: &mut tonic::Streaming<SessionUpdate>) -> SessionEndedNotice {
    loop {
        let update = tokio::time::timeout(WAIT, updates.message())
            .await
            .expect("the session ends")
            .unwrap()
            .expect("an ended notice before the stream closes")
            .update
            .unwrap();
        if let Update::Ended(ended) = update {
            return ended;
        }
    }
}

/// Losing the agent mid-session: the admin's channel gets DEVICE_GONE and
/// the session ends with "device disconnected or not responding", without hanging.
#[tokio::test]
async fn losing_the_agent_ends_the_admin_side_clearly() {
    let server = InProcessServer::start_with(|c| c.sessions.default_consent = "none".into()).await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let (mut updates, session_id) = started_session(
        &mut admin,
        &mut agent,
        exec_request(HOST, &["sleep", "600"]),
    )
    .await;
    let (_cli_tx, mut cli_in, dev_tx, dev_rx) =
        attached_channel(&admin, &mut agent, &session_id).await;
    // The agent process dies: its connection and every stream on it go.
    drop(dev_tx);
    drop(dev_rx);
    drop(agent);
    let frame = tokio::time::timeout(WAIT, cli_in.message())
        .await
        .expect("no hang")
        .unwrap()
        .unwrap();
    let Some(DeviceBody::Error(error)) = frame.body else {
        panic!("expected an error frame, got {frame:?}")
    };
    assert_eq!(error.code, ChannelErrorCode::DeviceGone as i32);
    assert_eq!(
        error.message,
        format!("lost the connection to {HOST}: the device is not responding or went offline")
    );
    let ended = ended_notice(&mut updates).await;
    assert_eq!(ended.reason, "device disconnected or not responding");
}

/// EndSession: someone else needs SessionEnd; the starter may always.
#[tokio::test]
async fn ending_a_session_needs_the_starter_or_session_end() {
    let server = InProcessServer::start_with(|c| c.sessions.default_consent = "none".into()).await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut tech = server
        .user_clients("tech", "kus", "technician", "county:kus")
        .await;
    let mut other_tech = server
        .user_clients("tech2", "kus", "technician", "county:kus")
        .await;
    let mut kl_admin = server
        .user_clients("kl-admin", "kl", "admin", "county:kl")
        .await;
    let (mut updates, session_id) =
        started_session(&mut tech, &mut agent, forward_request(HOST)).await;
    let end = |reason: &str| EndSessionRequest {
        session_id: session_id.clone(),
        reason: reason.into(),
    };

    // Another county's admin does not see it; a colleague sees it in the
    // list but may not end it, nor attach to it.
    let status = kl_admin.sessions.end_session(end("x")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let listed = kl_admin
        .sessions
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert!(listed.is_empty(), "{listed:?}");
    let live = other_tech
        .sessions
        .list_sessions(ListSessionsRequest {
            device: HOST.into(),
            state: "live".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].actor, "user:tech");
    assert_eq!(live[0].summary, "127.0.0.1:5900");
    let status = other_tech.sessions.end_session(end("x")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let (open_tx, open_rx) = mpsc::channel(1);
    open_tx
        .send(ClientFrame {
            body: Some(ClientBody::Open(ChannelOpen {
                session_id: session_id.clone(),
                offset: 0,
            })),
        })
        .await
        .unwrap();
    let status = other_tech
        .sessions
        .attach(ReceiverStream::new(open_rx))
        .await
        .unwrap_err();
    // Exactly the answer for a session that is not live: no existence leak.
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let (open_tx, open_rx) = mpsc::channel(1);
    let unknown = uuid::Uuid::now_v7().to_string();
    open_tx
        .send(ClientFrame {
            body: Some(ClientBody::Open(ChannelOpen {
                session_id: unknown.clone(),
                offset: 0,
            })),
        })
        .await
        .unwrap();
    let not_live = other_tech
        .sessions
        .attach(ReceiverStream::new(open_rx))
        .await
        .unwrap_err();
    assert_eq!(not_live.code(), Code::NotFound);
    assert_eq!(
        status.message().replace(&session_id, "ID"),
        not_live.message().replace(&unknown, "ID")
    );
    let attach_denied = audit_entries(&server, "session.attach").await;
    assert_eq!(attach_denied.len(), 1);
    assert_eq!(
        (
            attach_denied[0].actor.as_str(),
            attach_denied[0].outcome.as_str()
        ),
        ("user:tech2", "denied")
    );

    // The cooperation admin may end it.
    let mut admin = server.client(&server.bootstrap_token).await;
    let answer = admin
        .sessions
        .end_session(end("Wartung"))
        .await
        .unwrap()
        .into_inner()
        .session
        .expect("the session as recorded");
    // Read-your-writes: the answer and the next read show the end.
    assert_eq!(answer.state, SessionState::Ended as i32, "{answer:?}");
    assert_eq!(answer.end_reason, "ended by user:admin: Wartung");
    let shown = tech
        .sessions
        .get_session(GetSessionRequest {
            session_id: session_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.state, SessionState::Ended as i32, "{shown:?}");
    let ended = ended_notice(&mut updates).await;
    assert_eq!(ended.reason, "ended by user:admin: Wartung");
    let ServerBody::CloseSession(close) = agent.next().await else {
        panic!("expected CloseSession")
    };
    assert_eq!(close.reason, "ended by user:admin: Wartung");
    // Over is over.
    let status = tech.sessions.end_session(end("")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
}

/// A session without traffic ends after the idle timeout.
#[tokio::test]
async fn idle_sessions_end() {
    let server = InProcessServer::start_with(|c| {
        c.sessions.default_consent = "none".into();
        c.sessions.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let (mut updates, _) = started_session(&mut admin, &mut agent, forward_request(HOST)).await;
    let ended = ended_notice(&mut updates).await;
    assert_eq!(ended.reason, "idle timeout (1s)");
}

/// Consent policy: set per school and class, listed with the default,
/// and applied to the next session.
#[tokio::test]
async fn consent_policy_is_managed_and_applied() {
    let server = InProcessServer::start().await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let mut tech = server
        .user_clients("tech", "kus", "technician", "county:kus")
        .await;
    let mut kl_admin = server
        .user_clients("kl-admin", "kl", "admin", "county:kl")
        .await;
    let set = |school: &str, class: &str, consent: &str| SetConsentPolicyRequest {
        school_id: school.into(),
        device_class: class.into(),
        consent: consent.into(),
    };
    let status = tech
        .sessions
        .set_consent_policy(set("kus012", "", "none"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = kl_admin
        .sessions
        .set_consent_policy(set("kus012", "", "none"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = admin
        .sessions
        .set_consent_policy(set("kus012", "", "ask"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    admin
        .sessions
        .set_consent_policy(set("kus012", "", "notify"))
        .await
        .unwrap();
    admin
        .sessions
        .set_consent_policy(set("kus012", "schueler-pc", "none"))
        .await
        .unwrap();
    let listed = tech
        .sessions
        .list_consent_policies(ListConsentPoliciesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.default_consent, "prompt");
    assert_eq!(listed.policies.len(), 2);
    assert!(
        kl_admin
            .sessions
            .list_consent_policies(ListConsentPoliciesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .policies
            .is_empty()
    );
    // The class policy applies to this schueler-pc.
    let _session = tech
        .sessions
        .start_session(exec_request(HOST, &["true"]))
        .await
        .unwrap();
    let ServerBody::OpenSession(open) = agent.next().await else {
        panic!("expected OpenSession")
    };
    assert_eq!(open.consent, "none");
    assert_eq!(
        audit_entries(&server, "consent.set").await.len(),
        2,
        "both changes are audited"
    );
}

/// The audit log: county-scoped readers see their county only; the
/// retention sweep prunes and the chain still verifies.
#[tokio::test]
async fn audit_log_is_scoped_and_pruned_verifiably() {
    let server =
        InProcessServer::start_with(|c| c.audit.retention = Duration::from_secs(3600)).await;
    // The oldest entry first (the chain is still empty: the bootstrap
    // admin is not audited), then everything the setup writes, then one
    // of the other county.
    let entry = |county: &str, at| schoolfleet_server::storage::AuditEvent {
        at,
        actor: "user:x".into(),
        action: "test.entry".into(),
        target: format!("county:{county}"),
        county_id: Some(county.into()),
        outcome: "ok".into(),
        details: String::new(),
        school_id: None,
    };
    assert_eq!(
        server.store().append_audit(&entry("kus", 1)).await.unwrap(),
        1
    );
    setup(&server).await;
    let now = schoolfleet_server::storage::now_millis();
    server
        .store()
        .append_audit(&entry("kl", now))
        .await
        .unwrap();
    let mut coordinator = server
        .user_clients("coord", "kl", "coordinator", "county:kl")
        .await;
    let entries = coordinator
        .audit
        .list_audit_events(ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e.county_id == "kl"), "{entries:?}");
    let mut tech = server
        .user_clients("tech", "kus", "technician", "county:kus")
        .await;
    let status = tech
        .audit
        .list_audit_events(ListAuditEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    schoolfleet_server::server::sweep_retention(&server.state).await;
    let verified = coordinator
        .audit
        .verify_audit_chain(VerifyAuditChainRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.pruned_before_seq, 2, "{verified:?}");
    assert_eq!(verified.first_seq, 2);
    let pruned = audit_entries(&server, "audit.pruned").await;
    assert_eq!(pruned.len(), 1);
}

/// Many forward channels at once, each relayed both ways without mixing
/// bytes; the byte counts add up.
#[tokio::test]
async fn concurrent_forward_channels_keep_their_bytes_apart() {
    let server = InProcessServer::start_with(|c| c.sessions.default_consent = "none".into()).await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let (mut updates, session_id) =
        started_session(&mut admin, &mut agent, forward_request(HOST)).await;
    const CHANNELS: usize = 20;
    const FRAMES: usize = 20;
    const FRAME: usize = 32 * 1024;
    let mut tasks = Vec::new();
    for n in 0..CHANNELS {
        let (cli_tx, mut cli_in, dev_tx, mut dev_rx) =
            attached_channel(&admin, &mut agent, &session_id).await;
        // The device side echoes every input frame, then exits on eof.
        tasks.push(tokio::spawn(async move {
            while let Some(frame) = dev_rx.message().await.unwrap() {
                match frame.body.unwrap() {
                    ClientBody::Input(data) => dev_tx
                        .send(DeviceFrame {
                            body: Some(DeviceBody::Output(data)),
                        })
                        .await
                        .unwrap(),
                    ClientBody::Eof(_) => {
                        dev_tx
                            .send(DeviceFrame {
                                body: Some(DeviceBody::Exit(ChannelExit { code: 0 })),
                            })
                            .await
                            .unwrap();
                        // As an agent must: keep the call until the server
                        // ends it, or the queued exit may never be sent.
                        drop(dev_tx);
                        let end = dev_rx.message().await;
                        assert!(matches!(end, Ok(None)), "{end:?}");
                        return;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
        tasks.push(tokio::spawn(async move {
            let writer = tokio::spawn(async move {
                for _ in 0..FRAMES {
                    cli_tx
                        .send(ClientFrame {
                            body: Some(ClientBody::Input(vec![n as u8; FRAME])),
                        })
                        .await
                        .unwrap();
                }
                cli_tx
                    .send(ClientFrame {
                        body: Some(ClientBody::Eof(Eof {})),
                    })
                    .await
                    .unwrap();
                cli_tx
            });
            let mut received = 0;
            loop {
                let frame = cli_in.message().await.unwrap().unwrap();
                match frame.body.unwrap() {
                    DeviceBody::Output(data) => {
                        assert!(
                            data.iter().all(|b| *b == n as u8),
                            "bytes of another channel"
                        );
                        received += data.len();
                    }
                    DeviceBody::Exit(exit) => {
                        assert_eq!(exit.code, 0);
                        break;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(received, FRAMES * FRAME);
            drop(writer.await.unwrap());
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("relay finishes")
            .unwrap();
    }
    // A forward channel's exit does not end the session.
    let mut admin2 = server.client(&server.bootstrap_token).await;
    admin2
        .sessions
        .end_session(EndSessionRequest {
            session_id: session_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let ended = ended_notice(&mut updates).await;
    assert_eq!(ended.reason, "ended by user:admin");
    let session = admin
        .sessions
        .get_session(GetSessionRequest { session_id })
        .await
        .unwrap()
        .into_inner();
    let total = (CHANNELS * FRAMES * FRAME) as u64;
    assert_eq!(session.bytes_to_device, total);
    assert_eq!(session.bytes_from_device, total);
    assert_eq!(session.channels, CHANNELS as u32);
}

/// A copy moving more than max_file_bytes is cut with a clear error, and
/// uploads above the limit are refused before the device is asked.
#[tokio::test]
async fn copies_above_the_limit_are_refused_and_cut() {
    let server = InProcessServer::start_with(|c| {
        c.sessions.default_consent = "none".into();
        c.sessions.max_file_bytes = 1000;
    })
    .await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let copy = |size: u64| StartSessionRequest {
        spec: Some(SessionSpec {
            kind: Some(SpecKind::Copy(CopySpec {
                direction: CopyDirection::ToDevice as i32,
                path: "/tmp/x".into(),
                size,
                sha256: "ab".repeat(32),
            })),
        }),
        ..exec_request(HOST, &[])
    };
    let status = start_error(&mut admin, copy(1001)).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("limit"), "{status:?}");

    let (_updates, session_id) = started_session(&mut admin, &mut agent, copy(1000)).await;
    let (cli_tx, mut cli_in, _dev_tx, mut dev_rx) =
        attached_channel(&admin, &mut agent, &session_id).await;
    // A client that lied about the size is cut off past the limit.
    for _ in 0..2 {
        cli_tx
            .send(ClientFrame {
                body: Some(ClientBody::Input(vec![0; 600])),
            })
            .await
            .unwrap();
    }
    let frame = tokio::time::timeout(WAIT, cli_in.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(DeviceBody::Error(error)) = frame.body else {
        panic!("expected an error frame, got {frame:?}")
    };
    assert_eq!(error.code, ChannelErrorCode::Failed as i32);
    assert!(error.message.contains("1000 bytes"), "{error:?}");
    // The device got the first frame, then a status instead of the rest.
    dev_rx.message().await.unwrap().unwrap();
    let status = tokio::time::timeout(WAIT, dev_rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
}

/// Sends `frame` on a freshly attached channel and returns how the admin's
/// stream ended and what the agent saw.
async fn attach_and_send(
    frame: ClientFrame,
) -> (
    Result<Option<DeviceFrame>, tonic::Status>,
    Option<Result<ClientFrame, tonic::Status>>,
) {
    let server = InProcessServer::start_with(|c| c.sessions.default_consent = "none".into()).await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let (_updates, session_id) =
        started_session(&mut admin, &mut agent, exec_request(HOST, &["cat"])).await;
    let (cli_tx, mut cli_in, _dev_tx, mut dev_rx) =
        attached_channel(&admin, &mut agent, &session_id).await;
    cli_tx.send(frame).await.unwrap();
    let ended = tokio::time::timeout(WAIT, cli_in.message())
        .await
        .expect("the admin side hears how the channel ended");
    let at_agent = tokio::time::timeout(WAIT, dev_rx.message())
        .await
        .expect("the agent side ends too")
        .transpose();
    (ended, at_agent)
}

/// An input frame over the one frame limit is refused with
/// INVALID_ARGUMENT naming the limit; the agent never gets it.
#[tokio::test]
async fn input_over_the_frame_limit_is_refused_clearly() {
    let big = vec![7u8; schoolfleet_proto::MAX_FRAME_PAYLOAD + 1];
    let (ended, at_agent) = attach_and_send(ClientFrame {
        body: Some(ClientBody::Input(big)),
    })
    .await;
    let status = ended.expect_err("an error, not a silent end");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("262144 bytes per frame"),
        "{status:?}"
    );
    match at_agent {
        Some(Ok(frame)) => panic!(
            "the oversized frame reached the agent: {:?}",
            frame.body.map(|_| ())
        ),
        Some(Err(status)) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        None => {}
    }
}

/// A frame over the gRPC message limit ends Attach with an error status,
/// never with OK and no final frame.
#[tokio::test]
async fn a_frame_over_the_message_limit_is_no_silent_end() {
    let huge = vec![7u8; schoolfleet_proto::MAX_MESSAGE_BYTES + 1024];
    let (ended, _) = attach_and_send(ClientFrame {
        body: Some(ClientBody::Input(huge)),
    })
    .await;
    let status = ended.expect_err("Attach ended with OK and no final frame");
    assert_ne!(status.code(), Code::Ok);
    assert!(status.message().contains("input failed"), "{status:?}");
}

/// A 1 MB session id is not repeated in the error (a 1 MB grpc-message
/// header breaks clients).
#[tokio::test]
async fn errors_never_echo_unbounded_input() {
    let server = InProcessServer::start().await;
    let admin = server.client(&server.bootstrap_token).await;
    let (tx, rx) = mpsc::channel(1);
    tx.send(ClientFrame {
        body: Some(ClientBody::Open(ChannelOpen {
            session_id: "s".repeat(1_000_000),
            offset: 0,
        })),
    })
    .await
    .unwrap();
    let status = admin
        .sessions
        .clone()
        .attach(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{}", status.message().len());
    assert!(status.message().len() < 200, "{}", status.message().len());
    let status = admin
        .devices
        .clone()
        .get_device(GetDeviceRequest {
            device: "d".repeat(1_000_000),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{}", status.message().len());
    assert!(status.message().len() < 200, "{}", status.message().len());
}

/// A TCP relay between a device and the server that can freeze: it then
/// stops moving bytes in either direction but keeps both connections open,
/// like a device whose machine hangs.
async fn freezable_relay(server_url: &str) -> (String, tokio_util::sync::CancellationToken) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = server_url.trim_start_matches("https://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let freeze = tokio_util::sync::CancellationToken::new();
    let frozen = freeze.clone();
    tokio::spawn(async move {
        let (device, _) = listener.accept().await.unwrap();
        let upstream = tokio::net::TcpStream::connect(&target).await.unwrap();
        let (dr, dw) = device.into_split();
        let (ur, uw) = upstream.into_split();
        let pipe = |mut from: tokio::net::tcp::OwnedReadHalf,
                    mut to: tokio::net::tcp::OwnedWriteHalf,
                    frozen: tokio_util::sync::CancellationToken| async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = tokio::select! {
                    _ = frozen.cancelled() => {
                        // Silent, but the sockets stay open.
                        std::future::pending::<()>().await;
                        return (from, to);
                    }
                    n = from.read(&mut buf) => match n {
                        Ok(0) | Err(_) => return (from, to),
                        Ok(n) => n,
                    },
                };
                if to.write_all(&buf[..n]).await.is_err() {
                    return (from, to);
                }
            }
        };
        tokio::join!(pipe(dr, uw, frozen.clone()), pipe(ur, dw, frozen));
    });
    (url, freeze)
}

/// A device that freezes mid-session is noticed by the server's HTTP/2
/// keepalive within interval + timeout, and the admin hears that it does
/// not respond, instead of silence for the agent's idle limit.
#[tokio::test]
async fn a_frozen_device_is_noticed_by_keepalive_and_reported() {
    let server = InProcessServer::start_with(|c| {
        c.sessions.default_consent = "none".into();
        c.agents.keepalive_interval = Duration::from_secs(1);
        c.agents.keepalive_timeout = Duration::from_secs(1);
    })
    .await;
    let (_device_id, identity) = setup(&server).await;
    let (url, freeze) = freezable_relay(&server.url).await;
    let mut agent = FakeAgent::connect_to(&url, &server, &identity).await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let (mut updates, session_id) = started_session(
        &mut admin,
        &mut agent,
        exec_request(HOST, &["sleep", "600"]),
    )
    .await;
    let (_cli_tx, mut cli_in, _dev_tx, _dev_rx) =
        attached_channel(&admin, &mut agent, &session_id).await;
    freeze.cancel();
    let frame = tokio::time::timeout(Duration::from_secs(8), cli_in.message())
        .await
        .expect("the admin hears of the frozen device within seconds")
        .unwrap()
        .unwrap();
    let Some(DeviceBody::Error(error)) = frame.body else {
        panic!("expected an error frame, got {frame:?}")
    };
    assert_eq!(error.code, ChannelErrorCode::DeviceGone as i32);
    assert!(error.message.contains("not responding"), "{error:?}");
    let ended = ended_notice(&mut updates).await;
    assert!(ended.reason.contains("not responding"), "{ended:?}");
    drop(agent);
}

/// Live sessions are limited per device and per user; a refusal is clear
/// and audited, and ending a session frees its place.
#[tokio::test]
async fn live_sessions_are_limited_per_device_and_per_user() {
    let server = InProcessServer::start_with(|c| {
        c.sessions.default_consent = "none".into();
        c.sessions.max_live_per_device = 1;
        c.sessions.max_live_per_user = 1;
    })
    .await;
    let (_device_id, identity) = setup(&server).await;
    let mut agent = FakeAgent::connect(&server, &identity).await;
    let mut tech = server
        .user_clients("tech", "kus", "technician", "county:kus")
        .await;
    let mut admin = server.client(&server.bootstrap_token).await;
    let (_updates, session_id) =
        started_session(&mut tech, &mut agent, forward_request(HOST)).await;

    // The device has its one session: another user is refused.
    let status = start_error(&mut admin, forward_request(HOST)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_live_per_device"),
        "{status:?}"
    );
    // The user has their one session too.
    let status = start_error(&mut tech, forward_request(HOST)).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_live_per_user"), "{status:?}");
    let denied = audit_entries(&server, "session.denied").await;
    assert_eq!(denied.len(), 2, "{denied:?}");

    // Ended, its place is free again.
    tech.sessions
        .end_session(EndSessionRequest {
            session_id,
            reason: String::new(),
        })
        .await
        .unwrap();
    let _ = agent.next().await; // CloseSession
    started_session(&mut admin, &mut agent, forward_request(HOST)).await;
}
