//! What `shell`, `exec`, `forward` and `cp` share: opening a session and
//! attaching channels to it.
//!
//! A session lives exactly as long as its StartSession response stream
//! (see `session.proto`). [`Session`] keeps that stream in a task and
//! reports its end; dropping the `Session` drops the stream, which ends the
//! session on the server and the device. A channel is one Attach call: a
//! bounded sender of [`ClientFrame`]s and a stream of [`DeviceFrame`]s, so a
//! slow side slows the other instead of filling memory.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::{
    ChannelErrorCode, ChannelOpen, ChannelReady, ClientFrame, DeviceFrame, SessionStarted,
    SessionUpdate, StartSessionRequest, WaitingForConsent, client_frame, device_frame,
    session_update,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status};

use crate::client::{Api, describe_status};

/// Frames queued towards the server per channel. Small on purpose: the
/// HTTP/2 window does the buffering, this only smooths bursts.
pub const CHANNEL_QUEUE: usize = 8;

/// Largest `input` frame the protocol allows: the server refuses bigger
/// ones with INVALID_ARGUMENT. Every reader below reads at most this much
/// per frame (checked at compile time where its buffer size is defined).
pub const MAX_FRAME_BYTES: usize = schoolfleet_proto::MAX_FRAME_PAYLOAD;

/// Device frames of one channel, as tonic delivers them (or a fake in tests).
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<DeviceFrame, Status>> + Send>>;

/// Why a session did not start.
#[derive(Debug)]
pub enum StartError {
    /// The server refused (or could not be reached): NOT_FOUND,
    /// PERMISSION_DENIED, UNAVAILABLE for an offline device, FAILED_PRECONDITION
    /// when the device's user said no, …
    Refused(Status),
    /// The stream ended before `started`.
    Closed(String),
}

impl StartError {
    pub fn message(&self, server: &str) -> String {
        match self {
            // The server answered: it is the device that cannot be reached,
            // which "cannot reach server …" would misstate.
            StartError::Refused(status) if self.is_offline() => {
                format!("device offline: {}", for_terminal(status.message()))
            }
            StartError::Refused(status) => describe_status(status, server),
            StartError::Closed(reason) => for_terminal(reason).into_owned(),
        }
    }

    /// UNAVAILABLE sent by the server means "the device is not connected";
    /// one made by the transport (it has a source error) means the server
    /// itself could not be reached.
    pub fn is_offline(&self) -> bool {
        matches!(self, StartError::Refused(s)
            if s.code() == Code::Unavailable && std::error::Error::source(s).is_none())
    }

    /// Refusals by policy or at the device, as opposed to failures.
    pub fn is_denied(&self) -> bool {
        matches!(self, StartError::Refused(s) if matches!(
            s.code(),
            Code::PermissionDenied | Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument
        ))
    }
}

/// How a session ended, from the server's `ended` notice or from the stream
/// breaking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub reason: String,
    pub exit_code: Option<i32>,
}

/// A started session. Dropping it ends the session.
#[derive(Debug)]
pub struct Session {
    pub started: SessionStarted,
    ended: watch::Receiver<Option<Ended>>,
    keeper: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropping the StartSession stream is how the CLI ends a session.
        self.keeper.abort();
    }
}

impl Session {
    /// Waits until the session is over.
    pub async fn ended(&mut self) -> Ended {
        loop {
            if let Some(ended) = self.ended.borrow_and_update().clone() {
                return ended;
            }
            if self.ended.changed().await.is_err() {
                // The keeper is gone without a word: only possible if it
                // panicked; treat it like a broken stream.
                return Ended {
                    reason: "lost track of the session".into(),
                    exit_code: None,
                };
            }
        }
    }

    /// After the remote process exited by itself: waits (at most `limit`)
    /// for the server's end notice, which it sends once the end is
    /// recorded, so that `sessions show` right after agrees with what the
    /// CLI said. Dropping the session at once would race that write.
    pub async fn settle(&mut self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, self.ended()).await;
    }

    /// A receiver to wait on from another task.
    pub fn watch_end(&self) -> watch::Receiver<Option<Ended>> {
        self.ended.clone()
    }

    pub fn id(&self) -> &str {
        &self.started.session_id
    }

    pub fn hostname(&self) -> &str {
        &self.started.hostname
    }
}

/// Calls StartSession and waits for `started`. `on_waiting` is called when
/// the device's user is being asked.
pub async fn start(
    api: &Api,
    request: StartSessionRequest,
    on_waiting: impl FnMut(&WaitingForConsent),
) -> Result<Session, StartError> {
    let updates = api
        .sessions()
        .start_session(request)
        .await
        .map_err(StartError::Refused)?
        .into_inner();
    follow(updates, api.server().to_owned(), on_waiting).await
}

/// The part of [`start`] after the call: reads updates until `started`,
/// then hands the stream to a task that waits for its end.
pub async fn follow<S>(
    mut updates: S,
    server: String,
    mut on_waiting: impl FnMut(&WaitingForConsent),
) -> Result<Session, StartError>
where
    S: Stream<Item = Result<SessionUpdate, Status>> + Unpin + Send + 'static,
{
    let started = loop {
        match updates.next().await {
            None => {
                return Err(StartError::Closed(
                    "the server closed the session before it started".into(),
                ));
            }
            Some(Err(status)) => return Err(StartError::Refused(status)),
            Some(Ok(update)) => match update.update {
                Some(session_update::Update::WaitingForConsent(waiting)) => on_waiting(&waiting),
                Some(session_update::Update::Started(started)) => break started,
                Some(session_update::Update::Ended(ended)) => {
                    return Err(StartError::Closed(format!(
                        "the session ended before it started: {}",
                        ended.reason
                    )));
                }
                // A newer server's update kind: nothing to do with it.
                None => {}
            },
        }
    };
    let (tell_end, ended) = watch::channel(None);
    let keeper = tokio::spawn(async move {
        let end = wait_for_end(&mut updates, &server).await;
        let _ = tell_end.send(Some(end));
        // Hold the stream until the Session is dropped (which aborts this
        // task): letting go of it is how the CLI ends a session.
        std::future::pending::<()>().await;
    });
    Ok(Session {
        started,
        ended,
        keeper,
    })
}

async fn wait_for_end<S>(updates: &mut S, server: &str) -> Ended
where
    S: Stream<Item = Result<SessionUpdate, Status>> + Unpin,
{
    loop {
        match updates.next().await {
            None => {
                return Ended {
                    reason: "the server closed the session".into(),
                    exit_code: None,
                };
            }
            Some(Err(status)) => {
                return Ended {
                    reason: format!("lost the session: {}", describe_status(&status, server)),
                    exit_code: None,
                };
            }
            Some(Ok(SessionUpdate {
                update: Some(session_update::Update::Ended(notice)),
            })) => {
                return Ended {
                    reason: notice.reason,
                    exit_code: notice.exit_code,
                };
            }
            Some(Ok(_)) => {}
        }
    }
}

/// The stderr line while the device's user is asked.
pub fn waiting_message(device: &str, waiting: &WaitingForConsent) -> String {
    // The server names the host; older servers do not, so fall back to the
    // device as the admin typed it.
    let device = for_terminal(if waiting.hostname.is_empty() {
        device
    } else {
        &waiting.hostname
    });
    if waiting.timeout_seconds > 0 {
        format!(
            "Waiting for the user at {device} to accept the session (up to {} s) …",
            waiting.timeout_seconds
        )
    } else {
        format!("Waiting for the user at {device} to accept the session …")
    }
}

/// One channel of a session.
pub struct Channel {
    pub input: mpsc::Sender<ClientFrame>,
    pub frames: FrameStream,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").finish_non_exhaustive()
    }
}

/// Opens channels on one session; a trait so the copy and forward logic can
/// be tested against a fake device.
pub trait Attach {
    fn attach(&self, offset: u64) -> impl Future<Output = anyhow::Result<Channel>> + Send;
}

/// Attaches through the server.
#[derive(Debug, Clone)]
pub struct Attacher {
    pub api: Api,
    pub session_id: String,
}

impl Attach for Attacher {
    async fn attach(&self, offset: u64) -> anyhow::Result<Channel> {
        let (input, outgoing) = mpsc::channel(CHANNEL_QUEUE);
        input
            .send(ClientFrame {
                body: Some(client_frame::Body::Open(ChannelOpen {
                    session_id: self.session_id.clone(),
                    offset,
                })),
            })
            .await
            .map_err(|_| anyhow::anyhow!("internal: channel queue closed"))?;
        let frames = self
            .api
            .sessions()
            .attach(ReceiverStream::new(outgoing))
            .await
            .map_err(|status| anyhow::anyhow!(describe_status(&status, self.api.server())))?
            .into_inner();
        Ok(Channel {
            input,
            frames: Box::pin(frames),
        })
    }
}

pub fn input_frame(bytes: Vec<u8>) -> ClientFrame {
    ClientFrame {
        body: Some(client_frame::Body::Input(bytes)),
    }
}

pub fn eof_frame() -> ClientFrame {
    ClientFrame {
        body: Some(client_frame::Body::Eof(Default::default())),
    }
}

pub fn resize_frame(cols: u16, rows: u16) -> ClientFrame {
    ClientFrame {
        body: Some(client_frame::Body::Resize(
            schoolfleet_proto::v1::WindowSize {
                cols: cols.into(),
                rows: rows.into(),
            },
        )),
    }
}

/// A device frame, read for what the commands need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Ready(ChannelReady),
    Output(Vec<u8>),
    Stderr(Vec<u8>),
    Eof,
    Exit(i32),
    Failed(ChannelFailure),
}

/// Why a channel ended without `exit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFailure {
    pub kind: FailureKind,
    /// From the server or the device: print through `for_terminal` (Display does).
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The session was ended (admin, local user, timeouts).
    Ended,
    /// The device's connection was lost.
    DeviceGone,
    /// The device could not do it (command not found, refused, checksum).
    Failed,
    Protocol,
    /// The Attach stream broke or closed without a final frame: the
    /// session may still be alive, so a copy can retry.
    Broken,
}

impl ChannelFailure {
    pub fn broken(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Broken,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == FailureKind::Broken
    }

    /// The device could not start the program because it does not exist.
    /// The agent says so in the text of a FAILED error before `ready`
    /// ("command not found: PROGRAM"); an agent that reports exit 127
    /// itself needs nothing here.
    pub fn is_command_not_found(&self) -> bool {
        self.kind == FailureKind::Failed && self.message.starts_with("command not found")
    }
}

impl fmt::Display for ChannelFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = for_terminal(&self.message);
        match self.kind {
            FailureKind::Ended if message.is_empty() => f.write_str("the session was ended"),
            FailureKind::Ended => write!(f, "the session was ended: {message}"),
            FailureKind::Protocol => write!(f, "protocol error: {message}"),
            _ => f.write_str(&message),
        }
    }
}

impl std::error::Error for ChannelFailure {}

/// The next event of a channel. A closed or broken stream becomes
/// `Failed(Broken)`, so callers see exactly one final event.
pub async fn next_event(frames: &mut FrameStream, server: &str) -> Event {
    loop {
        let frame = match frames.next().await {
            None => {
                return Event::Failed(ChannelFailure::broken(
                    "the channel closed without an exit status",
                ));
            }
            Some(Err(status)) => {
                return Event::Failed(ChannelFailure::broken(format!(
                    "lost the channel: {}",
                    describe_status(&status, server)
                )));
            }
            Some(Ok(frame)) => frame,
        };
        return match frame.body {
            Some(device_frame::Body::Ready(ready)) => Event::Ready(ready),
            Some(device_frame::Body::Output(bytes)) => Event::Output(bytes),
            Some(device_frame::Body::Stderr(bytes)) => Event::Stderr(bytes),
            Some(device_frame::Body::Eof(_)) => Event::Eof,
            Some(device_frame::Body::Exit(exit)) => Event::Exit(exit.code),
            Some(device_frame::Body::Error(error)) => {
                let kind = match ChannelErrorCode::try_from(error.code) {
                    Ok(ChannelErrorCode::Ended) => FailureKind::Ended,
                    Ok(ChannelErrorCode::DeviceGone) => FailureKind::DeviceGone,
                    Ok(ChannelErrorCode::Protocol) => FailureKind::Protocol,
                    _ => FailureKind::Failed,
                };
                Event::Failed(ChannelFailure {
                    kind,
                    message: error.message,
                })
            }
            // `attach` is the agent's greeting to the server; an empty body is
            // a newer frame kind. Neither means anything here.
            Some(device_frame::Body::Attach(_)) | None => continue,
        };
    }
}

#[cfg(test)]
pub mod fake {
    //! Builders for fake device frames in tests.
    use super::*;
    use schoolfleet_proto::v1::{ChannelError, ChannelExit, Eof};

    pub fn ready(size: u64, sha256: &str, offset: u64) -> DeviceFrame {
        body(device_frame::Body::Ready(ChannelReady {
            size,
            sha256: sha256.into(),
            offset,
        }))
    }
    pub fn output(bytes: &[u8]) -> DeviceFrame {
        body(device_frame::Body::Output(bytes.to_vec()))
    }
    pub fn stderr(bytes: &[u8]) -> DeviceFrame {
        body(device_frame::Body::Stderr(bytes.to_vec()))
    }
    pub fn eof() -> DeviceFrame {
        body(device_frame::Body::Eof(Eof {}))
    }
    pub fn exit(code: i32) -> DeviceFrame {
        body(device_frame::Body::Exit(ChannelExit { code }))
    }
    pub fn error(code: ChannelErrorCode, message: &str) -> DeviceFrame {
        body(device_frame::Body::Error(ChannelError {
            code: code as i32,
            message: message.into(),
        }))
    }
    fn body(body: device_frame::Body) -> DeviceFrame {
        DeviceFrame { body: Some(body) }
    }

    /// A frame stream that yields `frames` and then, if `then_break`, a
    /// transport error instead of a clean end.
    pub fn stream(frames: Vec<DeviceFrame>, then_break: bool) -> FrameStream {
        let mut items: Vec<Result<DeviceFrame, Status>> = frames.into_iter().map(Ok).collect();
        if then_break {
            items.push(Err(Status::unavailable("connection reset")));
        }
        Box::pin(tokio_stream::iter(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::SessionEndedNotice;

    fn update(u: session_update::Update) -> Result<SessionUpdate, Status> {
        Ok(SessionUpdate { update: Some(u) })
    }

    #[tokio::test]
    async fn start_reports_waiting_then_started_then_end() {
        let updates = tokio_stream::iter(vec![
            update(session_update::Update::WaitingForConsent(
                WaitingForConsent {
                    session_id: "s1".into(),
                    timeout_seconds: 60,
                    hostname: String::new(),
                },
            )),
            update(session_update::Update::Started(SessionStarted {
                session_id: "s1".into(),
                hostname: "kus012-pc01".into(),
                ..Default::default()
            })),
            update(session_update::Update::Ended(SessionEndedNotice {
                reason: "exit 3".into(),
                exit_code: Some(3),
            })),
        ]);
        let mut waited = Vec::new();
        let mut session = follow(updates, "https://s".into(), |w| {
            waited.push(waiting_message("kus012-pc01", w))
        })
        .await
        .unwrap();
        assert_eq!(
            waited,
            ["Waiting for the user at kus012-pc01 to accept the session (up to 60 s) …"]
        );
        assert_eq!(session.id(), "s1");
        assert_eq!(
            session.ended().await,
            Ended {
                reason: "exit 3".into(),
                exit_code: Some(3)
            }
        );
    }

    #[tokio::test]
    async fn refusal_before_start_is_a_start_error() {
        let updates = tokio_stream::iter(vec![Err(Status::failed_precondition(
            "the local user declined",
        ))]);
        let err = follow(updates, "s".into(), |_| {}).await.unwrap_err();
        assert!(err.is_denied() && !err.is_offline());
        assert_eq!(err.message("s"), "refused: the local user declined");

        let offline = StartError::Refused(Status::unavailable("device pc1 is not connected"));
        assert!(offline.is_offline() && !offline.is_denied());
        assert_eq!(
            offline.message("https://s"),
            "device offline: device pc1 is not connected"
        );
        let mut status = Status::unavailable("transport error");
        status.set_source(std::sync::Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )));
        let transport = StartError::Refused(status);
        if transport.is_offline() {
            panic!("a transport failure is not an offline device: {transport:?}");
        }

        let closed = follow(tokio_stream::iter(vec![]), "s".into(), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(closed, StartError::Closed(_)));
    }

    #[tokio::test]
    async fn broken_start_stream_ends_the_session_with_a_reason() {
        let updates = tokio_stream::iter(vec![
            update(session_update::Update::Started(SessionStarted::default())),
            Err(Status::unavailable("connection reset")),
        ]);
        let mut session = follow(updates, "https://s".into(), |_| {}).await.unwrap();
        let ended = session.ended().await;
        assert!(ended.reason.starts_with("lost the session"), "{ended:?}");
        assert_eq!(ended.exit_code, None);
    }

    #[tokio::test]
    async fn channel_events_end_in_exactly_one_final_event() {
        let mut frames = fake::stream(
            vec![
                fake::output(b"hi"),
                fake::error(ChannelErrorCode::DeviceGone, "lost the connection to pc1"),
            ],
            false,
        );
        assert_eq!(
            next_event(&mut frames, "s").await,
            Event::Output(b"hi".to_vec())
        );
        let Event::Failed(failure) = next_event(&mut frames, "s").await else {
            panic!("expected a failure")
        };
        assert_eq!(failure.kind, FailureKind::DeviceGone);
        assert!(!failure.is_retryable());
        assert_eq!(failure.to_string(), "lost the connection to pc1");

        let mut broken = fake::stream(vec![], true);
        let Event::Failed(failure) = next_event(&mut broken, "s").await else {
            panic!("expected a failure")
        };
        assert!(failure.is_retryable(), "{failure:?}");
    }

    #[test]
    fn failure_messages_are_neutralised() {
        let failure = ChannelFailure {
            kind: FailureKind::Failed,
            message: "nope\u{1b}[2J".into(),
        };
        assert_eq!(failure.to_string(), "nope\\x1b[2J");
    }
}
