//! The session module against an in-process gRPC SessionService on port 0:
//! the real tonic streams, a scripted device behind them.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use schoolfleet::client::Api;
use schoolfleet::commands::shell::{Input, Outcome, pump};
use schoolfleet::profile::Secret;
use schoolfleet::session::{self, Attach, Attacher};
use schoolfleet_proto::v1::session_service_server::{SessionService, SessionServiceServer};
use schoolfleet_proto::v1::*;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A server whose device echoes stdin and exits 3.
#[derive(Default, Clone)]
struct FakeServer {
    /// Notified when the CLI dropped its StartSession stream.
    session_dropped: Arc<Notify>,
}

fn device(body: device_frame::Body) -> Result<DeviceFrame, Status> {
    Ok(DeviceFrame { body: Some(body) })
}

#[tonic::async_trait]
impl SessionService for FakeServer {
    type StartSessionStream = Boxed<SessionUpdate>;
    async fn start_session(
        &self,
        request: Request<StartSessionRequest>,
    ) -> Result<Response<Self::StartSessionStream>, Status> {
        let request = request.into_inner();
        if request.device == "kus012-pc09" {
            return Err(Status::unavailable("device kus012-pc09 is not connected"));
        }
        let (tx, rx) = mpsc::channel(4);
        let dropped = self.session_dropped.clone();
        tokio::spawn(async move {
            let updates = [
                session_update::Update::WaitingForConsent(WaitingForConsent {
                    session_id: "s1".into(),
                    timeout_seconds: 60,
                    hostname: String::new(),
                }),
                session_update::Update::Started(SessionStarted {
                    session_id: "s1".into(),
                    hostname: "kus012-pc01".into(),
                    max_file_bytes: 1000,
                    ..Default::default()
                }),
            ];
            for update in updates {
                let _ = tx
                    .send(Ok(SessionUpdate {
                        update: Some(update),
                    }))
                    .await;
            }
            tx.closed().await;
            dropped.notify_one();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type AttachStream = Boxed<DeviceFrame>;
    async fn attach(
        &self,
        request: Request<Streaming<ClientFrame>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut frames = request.into_inner();
        match frames.next().await {
            Some(Ok(ClientFrame {
                body: Some(client_frame::Body::Open(open)),
            })) if open.session_id == "s1" => {}
            _ => return Err(Status::invalid_argument("first frame must open s1")),
        }
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let _ = tx
                .send(device(device_frame::Body::Ready(ChannelReady::default())))
                .await;
            while let Some(Ok(frame)) = frames.next().await {
                match frame.body {
                    Some(client_frame::Body::Input(bytes)) => {
                        let _ = tx.send(device(device_frame::Body::Output(bytes))).await;
                    }
                    Some(client_frame::Body::Eof(_)) => {
                        let _ = tx
                            .send(device(device_frame::Body::Stderr(b"bye\n".to_vec())))
                            .await;
                        let _ = tx
                            .send(device(device_frame::Body::Exit(ChannelExit { code: 3 })))
                            .await;
                        return;
                    }
                    _ => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_sessions(
        &self,
        _: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn get_session(
        &self,
        _: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn end_session(
        &self,
        _: Request<EndSessionRequest>,
    ) -> Result<Response<EndSessionResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn approve_playback(
        &self,
        _: Request<ApprovePlaybackRequest>,
    ) -> Result<Response<ApprovePlaybackResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    type GetRecordingStream = Boxed<RecordingChunk>;
    async fn get_recording(
        &self,
        _: Request<GetRecordingRequest>,
    ) -> Result<Response<Self::GetRecordingStream>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn set_consent_policy(
        &self,
        _: Request<SetConsentPolicyRequest>,
    ) -> Result<Response<ConsentPolicy>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn list_consent_policies(
        &self,
        _: Request<ListConsentPoliciesRequest>,
    ) -> Result<Response<ListConsentPoliciesResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn enroll_totp(
        &self,
        _: Request<EnrollTotpRequest>,
    ) -> Result<Response<EnrollTotpResponse>, Status> {
        Err(Status::unimplemented(""))
    }
    async fn confirm_totp(
        &self,
        _: Request<ConfirmTotpRequest>,
    ) -> Result<Response<ConfirmTotpResponse>, Status> {
        Err(Status::unimplemented(""))
    }
}

async fn serve(fake: FakeServer) -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SessionServiceServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    Api::from_channel(channel, &Secret::new("sft_a_b"), &url).unwrap()
}

fn exec_request(device: &str) -> StartSessionRequest {
    StartSessionRequest {
        device: device.into(),
        reason: "Test".into(),
        ticket: String::new(),
        spec: Some(SessionSpec {
            kind: Some(session_spec::Kind::Exec(ExecSpec {
                argv: vec!["cat".into()],
                env: vec![],
            })),
        }),
        step_up: None,
    }
}

#[tokio::test]
async fn exec_over_real_streams_returns_output_stderr_and_status() {
    let fake = FakeServer::default();
    let api = serve(fake.clone()).await;
    let mut waited = 0;
    let session = session::start(&api, exec_request("kus012-pc01"), |_| waited += 1)
        .await
        .unwrap();
    assert_eq!(waited, 1);
    assert_eq!(session.hostname(), "kus012-pc01");
    assert_eq!(session.started.max_file_bytes, 1000);

    let channel = Attacher {
        api: api.clone(),
        session_id: session.id().to_owned(),
    }
    .attach(0)
    .await
    .unwrap();
    let (input_tx, input_rx) = mpsc::channel(4);
    input_tx
        .send(Input::Data(b"hallo welt\n".to_vec()))
        .await
        .unwrap();
    input_tx.send(Input::Eof).await.unwrap();
    let (_controls_tx, controls_rx) = mpsc::channel(1);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let outcome = pump(
        channel,
        Some(input_rx),
        controls_rx,
        session.watch_end(),
        &mut out,
        &mut err,
        api.server(),
    )
    .await;
    assert_eq!(outcome, Outcome::Exited(3));
    assert_eq!(out, b"hallo welt\n");
    assert_eq!(err, b"bye\n");

    // Dropping the session drops the StartSession stream: the server sees it.
    drop(session);
    tokio::time::timeout(Duration::from_secs(5), fake.session_dropped.notified())
        .await
        .expect("the server never saw the session end");
}

#[tokio::test]
async fn offline_device_is_reported_at_once() {
    let api = serve(FakeServer::default()).await;
    let err = session::start(&api, exec_request("kus012-pc09"), |_| {})
        .await
        .unwrap_err();
    assert!(err.is_offline());
    assert!(
        err.message(api.server()).contains("is not connected"),
        "{}",
        err.message(api.server())
    );
}

#[tokio::test]
async fn attach_to_another_session_is_refused_clearly() {
    let api = serve(FakeServer::default()).await;
    let err = Attacher {
        api,
        session_id: "other".into(),
    }
    .attach(0)
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("first frame must open s1"),
        "{err}"
    );
}
