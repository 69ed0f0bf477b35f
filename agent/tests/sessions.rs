//! The session manager against a real HTTP/2 server: consent answers on the
//! agent stream, channels dialled back with `attach` first, and sessions
//! ended by the server or the local user.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use schoolfleet_agent::session::consent::{self, ProviderChoice};
use schoolfleet_agent::session::{EndedLocally, SessionConfig, SessionManager, ended_event};
use schoolfleet_proto::v1::agent_message::Body as AgentBody;
use schoolfleet_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use schoolfleet_proto::v1::client_frame::Body as ClientBody;
use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
use schoolfleet_proto::v1::session_event::Event;
use schoolfleet_proto::v1::session_spec::Kind;
use schoolfleet_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

type Attached = (
    String,
    Streaming<DeviceFrame>,
    mpsc::Sender<Result<ClientFrame, Status>>,
);

/// Only SessionChannel: hands each attached channel to the test.
struct FakeServer {
    attached: mpsc::Sender<Attached>,
}

#[tonic::async_trait]
impl AgentService for FakeServer {
    async fn enroll(&self, _: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    type OpenStreamStream = ReceiverStream<Result<ServerMessage, Status>>;
    async fn open_stream(
        &self,
        _: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::OpenStreamStream>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn submit_inventory(
        &self,
        _: Request<InventoryReport>,
    ) -> Result<Response<ReportAck>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn renew_certificate(
        &self,
        _: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn report_problem(
        &self,
        _: Request<ReportProblemRequest>,
    ) -> Result<Response<ReportProblemResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    type SessionChannelStream = ReceiverStream<Result<ClientFrame, Status>>;
    async fn session_channel(
        &self,
        request: Request<Streaming<DeviceFrame>>,
    ) -> Result<Response<Self::SessionChannelStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no attach"))?;
        let Some(DeviceBody::Attach(attach)) = first.body else {
            return Err(Status::invalid_argument("first frame must be attach"));
        };
        let (tx, rx) = mpsc::channel(8);
        let _ = self.attached.send((attach.channel_id, inbound, tx)).await;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Harness {
    manager: SessionManager,
    channel: tonic::transport::Channel,
    events_tx: mpsc::Sender<AgentMessage>,
    events: mpsc::Receiver<AgentMessage>,
    attached: mpsc::Receiver<Attached>,
    _dir: tempfile::TempDir,
}

async fn harness(choice: ProviderChoice, consent_script: Option<&str>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let command = consent_script.map(|body| {
        let path = dir.path().join("consent.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    });
    let config = SessionConfig {
        consent_min: Default::default(),
        disabled: vec!["forward".parse().unwrap()],
        transfer_roots: vec![dir.path().to_owned()],
        consent: consent::build(choice, command).unwrap(),
        shell: PathBuf::from("/bin/sh"),
    };
    let (attached_tx, attached) = mpsc::channel(8);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServiceServer::new(FakeServer {
                attached: attached_tx,
            }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (events_tx, events) = mpsc::channel(8);
    Harness {
        manager: SessionManager::new(config),
        channel,
        events_tx,
        events,
        attached,
        _dir: dir,
    }
}

fn open(id: &str, consent: &str, kind: Kind) -> OpenSession {
    OpenSession {
        session_id: id.into(),
        spec: Some(SessionSpec { kind: Some(kind) }),
        consent: consent.into(),
        admin: "user:anna".into(),
        reason: "Drucker geht nicht".into(),
        ticket: "SUP-1".into(),
        consent_timeout_seconds: 5,
        max_file_bytes: 1 << 20,
    }
}

fn exec(argv: &[&str]) -> Kind {
    Kind::Exec(ExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![],
    })
}

async fn next_event(h: &mut Harness) -> SessionEvent {
    let message = tokio::time::timeout(Duration::from_secs(10), h.events.recv())
        .await
        .expect("no session event")
        .unwrap();
    match message.body {
        Some(AgentBody::SessionEvent(event)) => event,
        other => panic!("unexpected {other:?}"),
    }
}

async fn attach(h: &mut Harness, session: &str, channel: &str) -> Attached {
    h.manager.open_channel(
        OpenChannel {
            session_id: session.into(),
            channel_id: channel.into(),
            offset: 0,
        },
        h.channel.clone(),
    );
    tokio::time::timeout(Duration::from_secs(10), h.attached.recv())
        .await
        .expect("the agent did not dial back")
        .unwrap()
}

async fn next_frame(inbound: &mut Streaming<DeviceFrame>) -> Option<DeviceBody> {
    tokio::time::timeout(Duration::from_secs(10), inbound.message())
        .await
        .expect("no frame")
        .unwrap()
        .and_then(|f| f.body)
}

fn refusal(event: &SessionEvent) -> (SessionRefusal, String) {
    match &event.event {
        Some(Event::Refused(r)) => (r.refusal(), r.message.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_accepted_exec_session_runs_over_a_dialled_back_channel() {
    let mut h = harness(ProviderChoice::None, None).await;
    let kind = exec(&["sh", "-c", "cat; echo oops >&2; exit 4"]);
    h.manager
        .open_session(open("s-1", "none", kind), h.events_tx.clone());
    let event = next_event(&mut h).await;
    assert_eq!(event.session_id, "s-1");
    assert!(matches!(event.event, Some(Event::Accepted(_))), "{event:?}");
    let listed = h.manager.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].kind.as_str(), listed[0].state.as_str()),
        ("exec", "active")
    );
    assert_eq!(listed[0].summary, "sh -c cat; echo oops >&2; exit 4");

    let (channel_id, mut inbound, input) = attach(&mut h, "s-1", "c-1").await;
    assert_eq!(channel_id, "c-1");
    assert!(matches!(
        next_frame(&mut inbound).await,
        Some(DeviceBody::Ready(_))
    ));
    for body in [ClientBody::Input(b"abc".to_vec()), ClientBody::Eof(Eof {})] {
        input
            .send(Ok(ClientFrame { body: Some(body) }))
            .await
            .unwrap();
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = loop {
        match next_frame(&mut inbound).await {
            Some(DeviceBody::Output(d)) => out.extend(d),
            Some(DeviceBody::Stderr(d)) => err.extend(d),
            Some(DeviceBody::Exit(exit)) => break exit.code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        (out.as_slice(), err.as_slice(), exit),
        (&b"abc"[..], &b"oops\n"[..], 4)
    );
    // The agent closes its side after the final frame.
    drop(input);
    assert!(next_frame(&mut inbound).await.is_none());
    // The command runs once: a second channel is refused.
    let (_, mut inbound, _input) = attach(&mut h, "s-1", "c-again").await;
    match next_frame(&mut inbound).await {
        Some(DeviceBody::Error(error)) => {
            assert_eq!(error.code(), ChannelErrorCode::Protocol);
            assert!(
                error.message.contains("only one channel"),
                "{}",
                error.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_channel_for_an_unknown_session_is_a_protocol_error() {
    let mut h = harness(ProviderChoice::None, None).await;
    let (_, mut inbound, _input) = attach(&mut h, "nope", "c-9").await;
    match next_frame(&mut inbound).await {
        Some(DeviceBody::Error(error)) => {
            assert_eq!(error.code(), ChannelErrorCode::Protocol);
            assert!(
                error.message.contains("no accepted session nope"),
                "{}",
                error.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn refusals_say_why() {
    // Switched off on the device.
    let mut h = harness(ProviderChoice::None, None).await;
    let forward = Kind::Forward(ForwardSpec {
        host: "127.0.0.1".into(),
        port: 5900,
    });
    h.manager
        .open_session(open("s-f", "none", forward), h.events_tx.clone());
    let (kind, message) = refusal(&next_event(&mut h).await);
    assert_eq!(kind, SessionRefusal::Disabled);
    assert!(message.contains("forward is switched off"), "{message}");
    // Malformed.
    h.manager
        .open_session(open("s-e", "none", exec(&[])), h.events_tx.clone());
    assert_eq!(
        refusal(&next_event(&mut h).await).0,
        SessionRefusal::Invalid
    );
    // Prompt with nobody to ask.
    h.manager
        .open_session(open("s-p", "prompt", exec(&["true"])), h.events_tx.clone());
    assert_eq!(
        refusal(&next_event(&mut h).await).0,
        SessionRefusal::NoProvider
    );
    assert!(h.manager.list().is_empty());

    // The local user says no, or does not answer.
    let mut h = harness(ProviderChoice::Command, Some("exit 1")).await;
    h.manager
        .open_session(open("s-d", "prompt", exec(&["true"])), h.events_tx.clone());
    let (kind, message) = refusal(&next_event(&mut h).await);
    assert_eq!(
        (kind, message.as_str()),
        (SessionRefusal::Declined, "declined by the local user")
    );
    let mut h = harness(ProviderChoice::Command, Some("sleep 30")).await;
    let mut slow = open("s-n", "prompt", exec(&["true"]));
    slow.consent_timeout_seconds = 1;
    h.manager.open_session(slow, h.events_tx.clone());
    let (kind, message) = refusal(&next_event(&mut h).await);
    assert_eq!(
        (kind, message.as_str()),
        (SessionRefusal::NoAnswer, "no answer within 1 s")
    );
}

#[tokio::test]
async fn prompt_accepted_by_the_consent_command() {
    let mut h = harness(
        ProviderChoice::Command,
        Some("test \"$SCHOOLFLEET_SESSION_KIND\" = cp"),
    )
    .await;
    let copy = Kind::Copy(CopySpec {
        direction: CopyDirection::FromDevice as i32,
        path: "/tmp/x".into(),
        size: 0,
        sha256: String::new(),
    });
    h.manager
        .open_session(open("s-c", "prompt", copy), h.events_tx.clone());
    let event = next_event(&mut h).await;
    assert!(matches!(event.event, Some(Event::Accepted(_))), "{event:?}");
    assert_eq!(h.manager.list()[0].summary, "download /tmp/x");
}

#[tokio::test]
async fn close_session_ends_running_channels() {
    let mut h = harness(ProviderChoice::None, None).await;
    h.manager.open_session(
        open("s-2", "none", exec(&["sleep", "300"])),
        h.events_tx.clone(),
    );
    next_event(&mut h).await;
    let (_, mut inbound, _input) = attach(&mut h, "s-2", "c-2").await;
    assert!(matches!(
        next_frame(&mut inbound).await,
        Some(DeviceBody::Ready(_))
    ));
    h.manager.close_session("s-2", "ended by user:admin");
    match next_frame(&mut inbound).await {
        Some(DeviceBody::Error(error)) => assert_eq!(error.code(), ChannelErrorCode::Ended),
        other => panic!("unexpected {other:?}"),
    }
    assert!(h.manager.list().is_empty());
    // A channel opened after the close is refused.
    let (_, mut inbound, _input) = attach(&mut h, "s-2", "c-3").await;
    assert!(matches!(
        next_frame(&mut inbound).await,
        Some(DeviceBody::Error(_))
    ));
}

#[tokio::test]
async fn the_local_user_ends_sessions() {
    let mut h = harness(ProviderChoice::None, None).await;
    for id in ["s-a", "s-b"] {
        h.manager.open_session(
            open(id, "none", exec(&["sleep", "300"])),
            h.events_tx.clone(),
        );
        next_event(&mut h).await;
    }
    let (_, mut inbound, _input) = attach(&mut h, "s-a", "c-a").await;
    assert!(matches!(
        next_frame(&mut inbound).await,
        Some(DeviceBody::Ready(_))
    ));
    assert!(h.manager.end_local(Some("s-x")).is_err());
    let ended = h.manager.end_local(Some("s-a")).unwrap();
    assert_eq!(
        ended,
        vec![EndedLocally {
            id: "s-a".into(),
            accepted: true
        }]
    );
    assert!(matches!(
        next_frame(&mut inbound).await,
        Some(DeviceBody::Error(_))
    ));
    let message = ended_event(&ended[0], true, "ended by the local user at the device");
    match message.body {
        Some(AgentBody::SessionEvent(SessionEvent {
            session_id,
            event: Some(Event::Ended(e)),
        })) => {
            assert_eq!(session_id, "s-a");
            assert!(e.by_local_user);
        }
        other => panic!("unexpected {other:?}"),
    }
    let rest = h.manager.end_local(None).unwrap();
    assert_eq!(rest.len(), 1);
    assert!(h.manager.list().is_empty());
}
