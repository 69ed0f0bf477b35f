//! Relays one channel: ClientFrames from the admin's `Attach` to the
//! agent's `SessionChannel`, DeviceFrames back. Frames are moved, not
//! copied; both directions go through bounded queues, so a slow reader
//! slows the writer (HTTP/2 flow control end to end). Nothing here touches
//! the database per frame: counters are atomics, the recording is
//! buffered and written by its own task.

use std::sync::{Arc, Mutex};

use prost::Message as _;
use schoolfleet_proto::v1::client_frame::Body as ClientBody;
use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
use schoolfleet_proto::v1::{ChannelError, ChannelErrorCode, ClientFrame, DeviceFrame};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::policy::Kind;
use super::{AgentLeg, ChannelGuard, DEVICE_GONE_REASON, LiveSession};

/// Frames in flight per direction.
pub const QUEUE_FRAMES: usize = 8;

/// Data in one frame, in both directions: the one limit the CLI and the
/// agent keep as well, so a frame relayed here is one the agent takes.
const MAX_FRAME_DATA: usize = schoolfleet_proto::MAX_FRAME_PAYLOAD;

/// A frame bigger than any well-formed one: the data frames are checked
/// against `MAX_FRAME_DATA`, and no other kind needs more than a little.
/// Without this, `ready` frames with a padded checksum up to the
/// message limit (8 MiB) would be queued and passed on whole.
fn oversized(frame: &impl prost::Message) -> bool {
    frame.encoded_len() > MAX_FRAME_DATA + 1024
}

/// What the admin hears when the device's side ended without a last
/// frame: it closed the connection, or stopped answering keepalive pings.
fn device_gone_message(hostname: &str) -> String {
    format!("lost the connection to {hostname}: the device is not responding or went offline")
}

fn too_large(what: &str, len: usize) -> String {
    format!("{what} of {len} bytes exceeds the limit of {MAX_FRAME_DATA} bytes per frame")
}

/// Why a channel stopped.
#[derive(Debug, Clone)]
enum Cause {
    /// The agent sent `exit` or `error`.
    AgentFinished,
    /// The agent's stream broke without a final frame.
    AgentGone,
    /// The admin side went away.
    ClientGone,
    /// The admin side broke the protocol or its stream failed (a frame over
    /// the message limit, say); it hears this status, never a silent end.
    ClientError(Status),
    /// A frame broke the protocol; the message says how.
    Protocol(String),
    /// A copy moved more than the limit.
    Limit(String),
}

struct Stop {
    token: CancellationToken,
    cause: Mutex<Option<Cause>>,
}

impl Stop {
    fn stop(&self, cause: Cause) {
        let mut c = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_none() {
            *c = Some(cause);
        }
        drop(c);
        self.token.cancel();
    }

    /// `None`: the session ended (the parent token).
    fn cause(&self) -> Option<Cause> {
        self.cause.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn error_frame(code: ChannelErrorCode, message: impl Into<String>) -> DeviceFrame {
    DeviceFrame {
        body: Some(DeviceBody::Error(ChannelError {
            code: code as i32,
            message: message.into(),
        })),
    }
}

/// Queues a chunk for the recording writer. Awaiting here is the
/// backpressure if the database is slow; it never drops recorded output.
async fn write_recording(chunk: Option<super::ChunkOut>) {
    if let Some((data, writer)) = chunk {
        let _ = writer.send(data).await;
    }
}

/// Runs the channel until it ends. `client_tx` is the admin's response
/// stream; `_guard` counts the channel as active until it ends.
pub async fn run(
    live: Arc<LiveSession>,
    _guard: ChannelGuard,
    channel_id: String,
    agent: AgentLeg,
    client_in: Streaming<ClientFrame>,
    client_tx: mpsc::Sender<Result<DeviceFrame, Status>>,
) {
    let stop = Stop {
        token: live.cancel.child_token(),
        cause: Mutex::new(None),
    };
    let AgentLeg { inbound, outbound } = agent;
    tokio::join!(
        to_agent(&live, &stop, client_in, outbound),
        from_agent(&live, &stop, inbound, &client_tx),
    );
    tracing::debug!(session = %live.info.id, channel = %channel_id, cause = ?stop.cause(), "channel closed");
}

async fn to_agent(
    live: &LiveSession,
    stop: &Stop,
    mut client_in: Streaming<ClientFrame>,
    agent_tx: mpsc::Sender<Result<ClientFrame, Status>>,
) {
    let mut uploaded: u64 = 0;
    let mut client_done = false;
    loop {
        if client_done {
            // The admin closed its sending side (stdin done): keep the
            // agent's stream open for the output until the channel ends.
            stop.token.cancelled().await;
            break;
        }
        let message = tokio::select! {
            biased;
            _ = stop.token.cancelled() => break,
            m = client_in.message() => m,
        };
        let frame = match message {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                client_done = true;
                continue;
            }
            // Cancelled: the admin's side went away. Anything else (a
            // frame over the gRPC message limit, a broken body) is said.
            Err(status) if status.code() == tonic::Code::Cancelled => {
                stop.stop(Cause::ClientGone);
                break;
            }
            Err(status) => {
                stop.stop(Cause::ClientError(Status::new(
                    status.code(),
                    format!(
                        "the channel's input failed: {}",
                        schoolfleet_proto::text::clean(status.message(), 300).value
                    ),
                )));
                break;
            }
        };
        if let Some(ClientBody::Input(data)) = &frame.body
            && data.len() > MAX_FRAME_DATA
        {
            stop.stop(Cause::ClientError(Status::invalid_argument(too_large(
                "an input frame",
                data.len(),
            ))));
            break;
        }
        if oversized(&frame) {
            stop.stop(Cause::ClientError(Status::invalid_argument(too_large(
                "a frame",
                frame.encoded_len(),
            ))));
            break;
        }
        match &frame.body {
            Some(ClientBody::Input(data)) => {
                live.add_to_device(data.len());
                if live.info.kind == Kind::Copy {
                    uploaded += data.len() as u64;
                    if uploaded > live.info.max_file_bytes {
                        stop.stop(Cause::Limit(format!(
                            "the upload exceeds the limit of {} bytes",
                            live.info.max_file_bytes
                        )));
                        break;
                    }
                }
            }
            Some(ClientBody::Resize(size)) => {
                if live.info.kind == Kind::Shell {
                    write_recording(live.record_resize(size.cols, size.rows)).await;
                }
            }
            Some(ClientBody::Eof(_)) => {}
            Some(ClientBody::Open(_)) | None => {
                stop.stop(Cause::Protocol(
                    "`open` is only allowed as the first frame".into(),
                ));
                break;
            }
        }
        tokio::select! {
            biased;
            _ = stop.token.cancelled() => break,
            sent = agent_tx.send(Ok(frame)) => if sent.is_err() {
                // The agent's stream is gone; `from_agent` reports it.
                stop.token.cancelled().await;
                break;
            },
        }
    }
    // Tell the agent to stop, unless it finished by itself. Never block
    // on a full queue: dropping the sender ends the stream as well.
    let why = match stop.cause() {
        Some(Cause::AgentFinished) | Some(Cause::AgentGone) => return,
        Some(Cause::ClientGone) => Status::cancelled("the admin side closed the channel"),
        Some(Cause::ClientError(status)) => {
            Status::aborted(format!("the admin side broke off: {}", status.message()))
        }
        Some(Cause::Protocol(m)) | Some(Cause::Limit(m)) => Status::aborted(m),
        None => Status::aborted(
            live.end_reason()
                .map(|(r, _)| format!("session ended: {r}"))
                .unwrap_or_else(|| "session ended".into()),
        ),
    };
    let _ = agent_tx.try_send(Err(why));
}

async fn from_agent(
    live: &LiveSession,
    stop: &Stop,
    mut agent_in: Streaming<DeviceFrame>,
    client_tx: &mpsc::Sender<Result<DeviceFrame, Status>>,
) {
    let mut downloaded: u64 = 0;
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.token.cancelled() => break,
            _ = client_tx.closed() => {
                stop.stop(Cause::ClientGone);
                break;
            }
            m = agent_in.message() => m,
        };
        let frame = match message {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => {
                stop.stop(Cause::AgentGone);
                break;
            }
        };
        if oversized(&frame) {
            stop.stop(Cause::Protocol(format!(
                "the device sent {}",
                too_large("a frame", frame.encoded_len())
            )));
            break;
        }
        let mut finished = None;
        match &frame.body {
            Some(DeviceBody::Output(data)) | Some(DeviceBody::Stderr(data)) => {
                if data.len() > MAX_FRAME_DATA {
                    stop.stop(Cause::Protocol(format!(
                        "the device sent {}",
                        too_large("an output frame", data.len())
                    )));
                    break;
                }
                live.add_from_device(data.len());
                match live.info.kind {
                    Kind::Shell => write_recording(live.record_output(data)).await,
                    Kind::Copy => {
                        downloaded += data.len() as u64;
                        if downloaded > live.info.max_file_bytes {
                            stop.stop(Cause::Limit(format!(
                                "the download exceeds the limit of {} bytes",
                                live.info.max_file_bytes
                            )));
                            break;
                        }
                    }
                    _ => {}
                }
            }
            Some(DeviceBody::Exit(exit)) => finished = Some(Ok(exit.code)),
            Some(DeviceBody::Error(error)) => {
                finished = Some(Err(
                    schoolfleet_proto::text::clean(&error.message, 300).value
                ))
            }
            Some(DeviceBody::Ready(_)) | Some(DeviceBody::Eof(_)) => {}
            Some(DeviceBody::Attach(_)) | None => {
                stop.stop(Cause::Protocol(
                    "`attach` is only allowed as the first frame".into(),
                ));
                break;
            }
        }
        tokio::select! {
            biased;
            _ = stop.token.cancelled() => break,
            sent = client_tx.send(Ok(frame)) => if sent.is_err() {
                stop.stop(Cause::ClientGone);
                break;
            },
        }
        if let Some(result) = finished {
            stop.stop(Cause::AgentFinished);
            // A shell or command that is done ends its session; so does a
            // finished copy (the CLI only retries a broken one), so that its
            // reason says so rather than "admin side disconnected".
            match (live.info.kind, result) {
                (Kind::Shell | Kind::Exec, Ok(code)) => {
                    live.end(format!("exit {code}"), Some(code))
                }
                (Kind::Shell | Kind::Exec, Err(message)) => {
                    live.end(format!("failed at the device: {message}"), None)
                }
                (Kind::Copy, Ok(0)) => live.end("copy complete", Some(0)),
                _ => {}
            }
            return;
        }
    }
    // Tell the admin side why, unless it is gone.
    let frame = match stop.cause() {
        Some(Cause::AgentFinished) | Some(Cause::ClientGone) => return,
        Some(Cause::ClientError(status)) => {
            // The stream ends with this status, not OK.
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                client_tx.send(Err(status)),
            )
            .await;
            return;
        }
        Some(Cause::AgentGone) => error_frame(
            ChannelErrorCode::DeviceGone,
            device_gone_message(&live.info.hostname),
        ),
        Some(Cause::Protocol(m)) => error_frame(ChannelErrorCode::Protocol, m),
        Some(Cause::Limit(m)) => error_frame(ChannelErrorCode::Failed, m),
        None => match live.end_reason() {
            Some((reason, _)) if reason == DEVICE_GONE_REASON => error_frame(
                ChannelErrorCode::DeviceGone,
                device_gone_message(&live.info.hostname),
            ),
            Some((reason, _)) => error_frame(ChannelErrorCode::Ended, reason),
            None => error_frame(ChannelErrorCode::Ended, "session ended"),
        },
    };
    // Bounded wait: a CLI that stopped reading must not hold the task.
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), client_tx.send(Ok(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::ChannelReady;

    #[test]
    fn frames_of_every_kind_are_bounded() {
        let data = DeviceFrame {
            body: Some(DeviceBody::Output(vec![0; 256 * 1024])),
        };
        assert!(!oversized(&data));
        let padded_ready = DeviceFrame {
            body: Some(DeviceBody::Ready(ChannelReady {
                size: 1,
                sha256: "a".repeat(4 * 1024 * 1024),
                offset: 0,
            })),
        };
        assert!(oversized(&padded_ready));
        let big_input = ClientFrame {
            body: Some(ClientBody::Input(vec![0; MAX_FRAME_DATA + 4096])),
        };
        assert!(oversized(&big_input));
    }
}
