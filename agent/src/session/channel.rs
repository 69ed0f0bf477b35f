//! One channel's frame plumbing: the dial-back stream to the server, and
//! the reading of ClientFrames with the checks every worker needs.

use std::pin::Pin;
use std::time::Duration;

use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::client_frame::Body as ClientBody;
use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
use schoolfleet_proto::v1::{
    ChannelAttach, ChannelError, ChannelErrorCode, ChannelExit, ClientFrame, DeviceFrame,
    WindowSize,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

/// Stops a session's channels, and keeps why, so that the admin is told
/// ("ended by the local user at the device") rather than a bare "ended".
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    reason: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl Stop {
    /// Stops with a reason; the first reason given is kept.
    pub fn stop(&self, reason: &str) {
        let _ = self.reason.set(reason.to_owned());
        self.token.cancel();
    }

    pub fn cancel(&self) {
        self.token.cancel();
    }

    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// A stop for one channel: stopped with its session, or on its own.
    pub fn child(&self) -> Stop {
        Stop {
            token: self.token.child_token(),
            reason: self.reason.clone(),
        }
    }

    pub fn reason(&self) -> String {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "the session was ended".to_owned())
    }
}

/// Largest data frame either way: the one limit of CLI, relay and agent.
pub const MAX_FRAME: usize = schoolfleet_proto::MAX_FRAME_PAYLOAD;
/// Frames queued towards the server; a slow admin slows the device side.
pub const QUEUE: usize = 8;
/// How long the server has to answer the dial-back.
const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// After our final frame, how long we wait for the server to close.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub type Inbound = Pin<Box<dyn Stream<Item = Result<ClientFrame, tonic::Status>> + Send>>;

/// What the admin side sent next.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Data(Vec<u8>),
    Resize(WindowSize),
    Eof,
    /// The server ended the stream (status or EOF) before we finished.
    Closed(String),
    /// The frames broke the protocol.
    Protocol(String),
    /// The session was ended (CloseSession, local user, agent shutdown),
    /// with the reason for the admin.
    Cancelled(String),
}

/// How a channel ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Finish {
    Exit(i32),
    Error(ChannelErrorCode, String),
    /// The server side is gone; there is nobody to tell.
    Gone,
}

impl Finish {
    pub fn failed(message: impl Into<String>) -> Self {
        Finish::Error(ChannelErrorCode::Failed, message.into())
    }
    pub fn protocol(message: impl Into<String>) -> Self {
        Finish::Error(ChannelErrorCode::Protocol, message.into())
    }
    pub fn ended() -> Self {
        Finish::Error(ChannelErrorCode::Ended, "the session was ended".into())
    }
    pub fn ended_because(reason: String) -> Self {
        Finish::Error(ChannelErrorCode::Ended, reason)
    }
    /// How a channel ends when the admin side or the session stopped it.
    pub fn stopped(input: Input) -> Self {
        match input {
            Input::Protocol(message) => Finish::protocol(message),
            Input::Cancelled(reason) => Finish::ended_because(reason),
            _ => Finish::Gone,
        }
    }
}

pub struct ChannelIo {
    pub out: mpsc::Sender<DeviceFrame>,
    pub inbound: Inbound,
    pub cancel: Stop,
    /// Set once the inbound stream ended, so it is not polled again.
    inbound_done: bool,
}

pub fn frame(body: DeviceBody) -> DeviceFrame {
    DeviceFrame { body: Some(body) }
}

impl ChannelIo {
    pub fn new(out: mpsc::Sender<DeviceFrame>, inbound: Inbound, cancel: Stop) -> Self {
        ChannelIo {
            out,
            inbound,
            cancel,
            inbound_done: false,
        }
    }

    /// The next input, cancellation first.
    pub async fn next_input(&mut self) -> Input {
        if self.inbound_done {
            self.cancel.cancelled().await;
            return Input::Cancelled(self.cancel.reason());
        }
        loop {
            let item = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Input::Cancelled(self.cancel.reason()),
                item = self.inbound.next() => item,
            };
            let input = match item {
                None => Input::Closed("the server closed the channel".into()),
                Some(Err(status)) => Input::Closed(format!(
                    "the server ended the channel: {}",
                    status.message()
                )),
                Some(Ok(ClientFrame { body })) => match body {
                    Some(ClientBody::Input(data)) if data.len() > MAX_FRAME => {
                        Input::Protocol(format!(
                            "an input frame of {} bytes is over the session frame limit of {MAX_FRAME} bytes",
                            data.len()
                        ))
                    }
                    Some(ClientBody::Input(data)) => Input::Data(data),
                    Some(ClientBody::Resize(size)) => Input::Resize(size),
                    Some(ClientBody::Eof(_)) => Input::Eof,
                    Some(ClientBody::Open(_)) => Input::Protocol("unexpected open frame".into()),
                    // An empty frame carries nothing; skip it.
                    None => continue,
                },
            };
            if matches!(input, Input::Closed(_) | Input::Protocol(_)) {
                self.inbound_done = true;
            }
            return input;
        }
    }

    /// Sends a frame; false when the server side is gone. (`&mut`: the
    /// inbound stream is not Sync, so no shared borrow may cross an await.)
    pub async fn send(&mut self, body: DeviceBody) -> bool {
        self.out.send(frame(body)).await.is_ok()
    }

    /// Sends the final frame, closes our side and waits (bounded) for the
    /// server to close its side, so the final frame is not lost to a reset.
    pub async fn finish(mut self, finish: Finish) {
        let last = match finish {
            Finish::Exit(code) => Some(DeviceBody::Exit(ChannelExit { code })),
            Finish::Error(code, message) => Some(DeviceBody::Error(ChannelError {
                code: code as i32,
                message,
            })),
            Finish::Gone => None,
        };
        let Some(last) = last else { return };
        if self.out.send(frame(last)).await.is_err() {
            return;
        }
        drop(self.out);
        if self.inbound_done {
            return;
        }
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Some(Ok(_)) = self.inbound.next().await {}
        })
        .await;
    }
}

/// Dials `AgentService.SessionChannel` on the existing connection and
/// sends `attach` first.
pub async fn dial(
    channel: tonic::transport::Channel,
    channel_id: &str,
) -> Result<(mpsc::Sender<DeviceFrame>, Inbound), tonic::Status> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let attach = frame(DeviceBody::Attach(ChannelAttach {
        channel_id: channel_id.to_owned(),
    }));
    tx.send(attach)
        .await
        .map_err(|_| tonic::Status::internal("channel queue closed"))?;
    let mut client = AgentServiceClient::new(channel)
        .max_decoding_message_size(schoolfleet_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(schoolfleet_proto::MAX_MESSAGE_BYTES);
    let response = tokio::time::timeout(
        DIAL_TIMEOUT,
        client.session_channel(ReceiverStream::new(rx)),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("the server did not answer the channel"))??;
    Ok((tx, Box::pin(response.into_inner())))
}

/// A channel pair for tests: the worker's `ChannelIo` and the test's ends.
pub fn test_pair(
    cancel: Stop,
) -> (
    ChannelIo,
    mpsc::Sender<Result<ClientFrame, tonic::Status>>,
    mpsc::Receiver<DeviceFrame>,
) {
    let (out_tx, out_rx) = mpsc::channel(QUEUE);
    let (in_tx, in_rx) = mpsc::channel(QUEUE);
    let io = ChannelIo::new(out_tx, Box::pin(ReceiverStream::new(in_rx)), cancel);
    (io, in_tx, out_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_over_the_shared_limit_gets_a_clear_error() {
        assert_eq!(MAX_FRAME, 256 * 1024);
        let (mut io, input, _out) = test_pair(Stop::default());
        for size in [MAX_FRAME, MAX_FRAME + 1] {
            input
                .send(Ok(ClientFrame {
                    body: Some(ClientBody::Input(vec![0; size])),
                }))
                .await
                .unwrap();
        }
        assert!(matches!(io.next_input().await, Input::Data(d) if d.len() == MAX_FRAME));
        match io.next_input().await {
            Input::Protocol(message) => assert_eq!(
                message,
                "an input frame of 262145 bytes is over the session frame limit of 262144 bytes"
            ),
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
}
