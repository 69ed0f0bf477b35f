//! The local control socket: a Unix socket in the state directory (not a
//! network port) through which the person or admin at the device asks the
//! running agent for its status or a fresh inventory report. Only the
//! agent's own user can open it (mode 0600).
//!
//! A second socket, `user.sock` (mode 0666), lets any local user see the
//! remote sessions on the device and end them; it accepts nothing else.
//!
//! Each socket has its own connection limit and its own queue to the agent
//! loop, so a local user holding connections open can exhaust neither the
//! agent's descriptors nor the root-only socket. Connections over the limit
//! get an immediate error and are closed; every caller's uid and pid
//! (SO_PEERCRED) are logged.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::os::ipc;
pub use crate::os::{Audience, Peer};
use crate::session::LocalSession;

/// The endpoint for root (SYSTEM and Administrators): every request.
pub const SOCKET_NAME: &str = "agent";
/// The endpoint for every local user: list and end remote sessions only.
pub const USER_SOCKET_NAME: &str = "user";

/// Largest request line accepted; the protocol only has tiny messages.
const MAX_LINE: usize = 4096;
/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Connections served at once per socket.
pub const MAX_CONNECTIONS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum ControlRequest {
    Status,
    CollectNow,
    /// Remote sessions on this device (also on the user socket).
    Sessions,
    /// End one session, or all when `session_id` is empty (also on the
    /// user socket).
    EndSessions {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
}

impl ControlRequest {
    /// What any local user may ask through the user socket.
    pub fn allowed_for_local_users(&self) -> bool {
        matches!(
            self,
            ControlRequest::Sessions | ControlRequest::EndSessions { .. }
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AgentStatus>,
    /// For collect-now: the id of the report that was made.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub report_id: String,
    /// For sessions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<LocalSession>,
    /// For end-sessions: the ids that were ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub device_id: String,
    pub server: String,
    pub connected: bool,
    pub spooled_reports: usize,
    pub inventory_hash: String,
    pub last_error: String,
    /// While disconnected: seconds until the next connection attempt.
    #[serde(default)]
    pub retry_in_seconds: u64,
    /// Remote sessions open on this device.
    #[serde(default)]
    pub sessions: Vec<LocalSession>,
    /// The least consent this device applies (`--consent-min`).
    #[serde(default)]
    pub consent_min: String,
}

/// A request from the socket, with the channel for its answer.
pub type ControlCall = (ControlRequest, oneshot::Sender<ControlResponse>);

/// `<state_dir>/agent.sock` on Unix, a named pipe on Windows.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    ipc::endpoint(state_dir, SOCKET_NAME)
}

/// `<state_dir>/user.sock` on Unix, a named pipe on Windows.
pub fn user_socket_path(state_dir: &Path) -> PathBuf {
    ipc::endpoint(state_dir, USER_SOCKET_NAME)
}

/// Binds the socket (replacing a stale one) with mode 0600 and forwards
/// requests to the agent loop.
pub fn serve(
    state_dir: &Path,
    calls: mpsc::Sender<ControlCall>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    serve_at(&socket_path(state_dir), Audience::Owner, calls)
}

/// Binds a socket for `audience`: 0600 for the owner, 0666 for local
/// users, who may only list and end remote sessions.
pub fn serve_at(
    path: &Path,
    audience: Audience,
    calls: mpsc::Sender<ControlCall>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut listener = ipc::Listener::bind(path, audience)?;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused = RefusalLog::default();
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let calls = calls.clone();
                            tokio::spawn(async move {
                                handle(stream, peer, audience, calls).await;
                                drop(slot);
                            });
                        }
                        Err(_) => {
                            refused.note(audience, peer);
                            // Best effort, never waiting: the client may not read.
                            ipc::try_write(&stream, BUSY_RESPONSE.as_bytes());
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }))
}

const BUSY_RESPONSE: &str =
    "{\"ok\":false,\"error\":\"too many connections to the agent; try again later\"}\n";

/// Refused connections are logged at most every few seconds, with a count,
/// so that a flood does not become a flood of log lines.
#[derive(Debug, Default)]
struct RefusalLog {
    count: u64,
    last: Option<std::time::Instant>,
}

impl RefusalLog {
    fn note(&mut self, audience: Audience, peer: Peer) {
        self.count += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(5))
        {
            return;
        }
        tracing::warn!(socket = ?audience, %peer, refused = self.count, limit = MAX_CONNECTIONS, "control socket busy: connection refused");
        self.count = 0;
        self.last = Some(std::time::Instant::now());
    }
}

async fn handle(
    stream: impl AsyncRead + AsyncWrite + Send + 'static,
    peer: Peer,
    audience: Audience,
    calls: mpsc::Sender<ControlCall>,
) {
    let (read, mut write) = tokio::io::split(stream);
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_LINE as u64));
    // Anyone may connect to the user socket: a silent client must not hold
    // a task and a file descriptor forever.
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let response = match read.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())) {
        Ok(_) => match serde_json::from_str::<ControlRequest>(&line) {
            Ok(request)
                if audience == Audience::LocalUsers && !request.allowed_for_local_users() =>
            {
                tracing::warn!(%peer, request = ?request, "refused on the user socket");
                error_response("only `sessions` and `sessions end` are allowed on this socket")
            }
            Ok(request) => {
                tracing::info!(socket = ?audience, %peer, request = ?request, "control request");
                let (tx, rx) = oneshot::channel();
                if calls.send((request, tx)).await.is_err() {
                    error_response("agent is shutting down")
                } else {
                    rx.await
                        .unwrap_or_else(|_| error_response("agent dropped the request"))
                }
            }
            Err(err) => error_response(&format!("invalid request: {err}")),
        },
        Err(err) => error_response(&format!("cannot read request: {err}")),
    };
    let mut text = serde_json::to_string(&response).unwrap_or_else(|_| "{\"ok\":false}".into());
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
}

fn error_response(error: &str) -> ControlResponse {
    ControlResponse {
        ok: false,
        error: error.to_owned(),
        ..Default::default()
    }
}

/// Client side, used by `schoolfleet-agent status` and `collect-now`.
pub async fn call(state_dir: &Path, request: &ControlRequest) -> std::io::Result<ControlResponse> {
    call_at(&socket_path(state_dir), request).await
}

/// Client side for a socket path (`schoolfleet-agent sessions` uses the
/// user socket).
pub async fn call_at(path: &Path, request: &ControlRequest) -> std::io::Result<ControlResponse> {
    let stream = ipc::connect(path).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot reach the running agent at {}: {e}", path.display()),
        )
    })?;
    let (read, mut write) = tokio::io::split(stream);
    let mut text = serde_json::to_string(request).map_err(std::io::Error::other)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read.take(1 << 20))
        .read_line(&mut line)
        .await?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_roundtrip_and_owner_only_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel::<ControlCall>(4);
        let _server = serve(dir.path(), tx).unwrap();
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let report_id = if request == ControlRequest::CollectNow {
                    "r-1".into()
                } else {
                    String::new()
                };
                let _ = reply.send(ControlResponse {
                    ok: true,
                    report_id,
                    ..Default::default()
                });
            }
        });
        let response = call(dir.path(), &ControlRequest::CollectNow).await.unwrap();
        assert!(response.ok);
        assert_eq!(response.report_id, "r-1");
        let mode = std::fs::metadata(socket_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn garbage_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel::<ControlCall>(1);
        let _server = serve(dir.path(), tx).unwrap();
        let stream = tokio::net::UnixStream::connect(socket_path(dir.path()))
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        write
            .write_all(b"{\"command\":\"format-disk\"}\n")
            .await
            .unwrap();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await.unwrap();
        let response: ControlResponse = serde_json::from_str(&line).unwrap();
        assert!(!response.ok);
        assert!(
            response.error.contains("invalid request"),
            "{}",
            response.error
        );
    }

    #[tokio::test]
    async fn the_user_socket_is_open_to_all_but_only_for_sessions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = user_socket_path(dir.path());
        let (tx, mut rx) = mpsc::channel::<ControlCall>(4);
        let _server = serve_at(&path, Audience::LocalUsers, tx).unwrap();
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let ended = match request {
                    ControlRequest::EndSessions { session_id } => {
                        vec![session_id.unwrap_or_else(|| "all".into())]
                    }
                    _ => Vec::new(),
                };
                let _ = reply.send(ControlResponse {
                    ok: true,
                    ended,
                    ..Default::default()
                });
            }
        });
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        let end = ControlRequest::EndSessions {
            session_id: Some("s-1".into()),
        };
        let response = call_at(&path, &end).await.unwrap();
        assert!(response.ok);
        assert_eq!(response.ended, vec!["s-1".to_owned()]);
        for forbidden in [ControlRequest::Status, ControlRequest::CollectNow] {
            let response = call_at(&path, &forbidden).await.unwrap();
            assert!(!response.ok, "{forbidden:?} must be refused");
            assert!(
                response.error.contains("only `sessions`"),
                "{}",
                response.error
            );
        }
    }

    #[tokio::test]
    async fn the_user_socket_refuses_connections_over_its_limit_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = user_socket_path(dir.path());
        let (user_tx, mut user_rx) = mpsc::channel::<ControlCall>(4);
        let (owner_tx, mut owner_rx) = mpsc::channel::<ControlCall>(4);
        let _user = serve_at(&path, Audience::LocalUsers, user_tx).unwrap();
        let _owner = serve(dir.path(), owner_tx).unwrap();
        let answer = |rx: &mut mpsc::Receiver<ControlCall>| {
            let mut rx = std::mem::replace(rx, mpsc::channel(1).1);
            tokio::spawn(async move {
                while let Some((_, reply)) = rx.recv().await {
                    let _ = reply.send(ControlResponse {
                        ok: true,
                        ..Default::default()
                    });
                }
            })
        };
        let _a = answer(&mut user_rx);
        let _b = answer(&mut owner_rx);
        // A local user holds every slot open without sending anything.
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(tokio::net::UnixStream::connect(&path).await.unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // The next one is answered at once (well before REQUEST_TIMEOUT).
        let started = std::time::Instant::now();
        let err = call_at(&path, &ControlRequest::Sessions).await;
        let response = err.unwrap();
        assert!(!response.ok);
        assert!(
            response.error.contains("too many connections"),
            "{}",
            response.error
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // The root-only socket has its own limit and still answers.
        let owner = call(dir.path(), &ControlRequest::Status).await.unwrap();
        assert!(owner.ok, "{owner:?}");
        // Once the holders go, the user socket serves again.
        drop(held);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let again = call_at(&path, &ControlRequest::Sessions).await.unwrap();
        assert!(again.ok, "{again:?}");
    }
}
