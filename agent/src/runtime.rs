//! `schoolfleet-agent run`: the agent's one loop.
//!
//! One outbound mTLS stream to the server carries heartbeats and inventory
//! reports up, and acknowledgements and requests down. The loop never busy
//! polls: it sleeps until a timer fires, a message arrives, or someone at
//! the device asks through the control socket. Reports are written to the
//! spool before they are sent and removed only when acknowledged, so
//! nothing is lost while the server is down.
//!
//! Remote sessions hang off the same loop: `OpenSession`, `OpenChannel`
//! and `CloseSession` arrive on the stream and go to the
//! [`SessionManager`], whose tasks dial channels back over the same
//! connection. Losing the stream or shutting down stops every session.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use schoolfleet_proto::transport::{self, ChannelOptions, ClientIdentity, ServerTrust};
use schoolfleet_proto::v1::agent_message::Body as AgentBody;
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::server_message::Body as ServerBody;
use schoolfleet_proto::v1::*;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, jittered};
use crate::control::{self, AgentStatus, Audience, ControlCall, ControlRequest, ControlResponse};
use crate::identity::AgentIdentity;
use crate::inventory::{self, Platform};
use crate::session::consent::{self, ProviderChoice};
use crate::session::{Capability, SessionConfig, SessionManager};
use crate::spool::Spool;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub state_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// Overrides the server's inventory interval (tests, diagnostics).
    pub inventory_interval: Option<Duration>,
    /// Remote-session capabilities switched off on this device.
    pub remote_disable: Vec<Capability>,
    /// Copy sessions stay inside these; empty means /tmp and /var/tmp.
    pub transfer_roots: Vec<PathBuf>,
    pub consent_provider: ProviderChoice,
    /// The least consent this device applies (`--consent-min`).
    pub consent_min: crate::session::ConsentFloor,
    pub consent_command: Option<PathBuf>,
    /// Default `<state_dir>/user.sock`.
    pub user_socket: Option<PathBuf>,
    /// Default: root's login shell, else /bin/bash, else /bin/sh.
    pub shell: Option<PathBuf>,
}

impl RunOptions {
    pub fn new(state_dir: PathBuf) -> Self {
        RunOptions {
            state_dir,
            spool_max_bytes: 64 * 1024 * 1024,
            inventory_interval: None,
            remote_disable: Vec::new(),
            transfer_roots: Vec::new(),
            consent_provider: ProviderChoice::Auto,
            consent_min: Default::default(),
            consent_command: None,
            user_socket: None,
            shell: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "this agent is not enrolled (no identity in {0}): run `schoolfleet-agent enroll --server URL --token TOKEN`"
    )]
    NotEnrolled(String, #[source] crate::identity::IdentityError),
    #[error("cannot open the spool: {0}")]
    Spool(#[from] crate::spool::SpoolError),
    #[error("cannot open the control socket: {0}")]
    Control(std::io::Error),
    #[error("cannot open the user socket {0}: {1}")]
    UserSocket(String, std::io::Error),
    #[error(transparent)]
    Consent(#[from] crate::session::consent::ConsentError),
}

/// Renew the device certificate when it has less than this left.
const RENEW_BEFORE: chrono::TimeDelta = chrono::TimeDelta::days(30);
const RENEWAL_CHECK_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// How long the server may take to welcome a newly opened stream.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// After the server refused this device (revoked, retired, enrolled again,
/// unknown certificate): it will not change its mind in two minutes, and
/// thousands of refused agents must not hammer it. Restarting the agent
/// (after a new enrolment, say) tries again at once.
pub const REFUSED_RETRY: Duration = Duration::from_secs(6 * 3600);

/// When to try again after a refusal, jittered so refused fleets spread out.
pub fn refused_retry_delay() -> Duration {
    jittered(REFUSED_RETRY, 0.1)
}

/// A live stream to the server.
struct Connection {
    channel: tonic::transport::Channel,
    outbound: mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<ServerMessage>,
    /// The server's first message (its Welcome), read while connecting and
    /// handled by the loop like any other.
    first: Option<ServerMessage>,
    /// The server takes reports by `SubmitInventory` (its Welcome said so);
    /// their acknowledgements come back through `acks`.
    submit_inventory: bool,
    acks: (mpsc::Sender<ReportAck>, mpsc::Receiver<ReportAck>),
    /// Reports sent on this connection and not yet acknowledged.
    in_flight: HashSet<String>,
    since: Instant,
}

struct Agent {
    identity: AgentIdentity,
    state_dir: PathBuf,
    spool: Spool,
    platform: Arc<dyn Platform>,
    status: AgentStatus,
    /// Hash of the last inventory put into a report.
    reported_hash: Option<String>,
    heartbeat_interval: Duration,
    inventory_interval: Duration,
    inventory_override: Option<Duration>,
    heartbeat_sequence: u64,
    sessions: SessionManager,
}

/// Runs until `shutdown` is cancelled.
pub async fn run(options: RunOptions, shutdown: CancellationToken) -> Result<(), RunError> {
    let identity = AgentIdentity::load(&options.state_dir)
        .map_err(|e| RunError::NotEnrolled(options.state_dir.display().to_string(), e))?;
    let spool = Spool::open(&options.state_dir.join("spool"), options.spool_max_bytes)?;
    let (control_tx, mut control_rx) = mpsc::channel::<ControlCall>(8);
    let provider = consent::build(options.consent_provider, options.consent_command.clone())?;
    let transfer_roots = if options.transfer_roots.is_empty() {
        SessionConfig::default_transfer_roots()
    } else {
        options.transfer_roots.clone()
    };
    #[cfg(windows)]
    if options.transfer_roots.is_empty() {
        // The default root is the agent's own: made private before use.
        for root in &transfer_roots {
            if let Err(err) = crate::os::files::create_private_dir(root) {
                tracing::warn!(root = %root.display(), error = %err, "cannot create the transfer root");
            }
        }
    }
    for root in &transfer_roots {
        if !root.is_absolute() || !root.is_dir() {
            tracing::warn!(root = %root.display(), "transfer root is not an existing absolute directory; copies into it will fail");
        }
    }
    let session_config = SessionConfig {
        consent_min: options.consent_min,
        disabled: options.remote_disable.clone(),
        transfer_roots,
        consent: provider,
        shell: options
            .shell
            .clone()
            .unwrap_or_else(crate::session::default_shell),
    };
    tracing::info!(config = ?session_config, "remote sessions");
    let control_task =
        control::serve(&options.state_dir, control_tx.clone()).map_err(RunError::Control)?;
    let user_socket = options
        .user_socket
        .clone()
        .unwrap_or_else(|| control::user_socket_path(&options.state_dir));
    // Its own queue: local users cannot crowd out the root-only socket.
    let (user_tx, mut user_rx) = mpsc::channel::<ControlCall>(8);
    let user_task = control::serve_at(&user_socket, Audience::LocalUsers, user_tx)
        .map_err(|e| RunError::UserSocket(user_socket.display().to_string(), e))?;
    let mut agent = Agent {
        status: AgentStatus {
            device_id: identity.device_id.to_string(),
            server: identity.server_url.clone(),
            consent_min: options.consent_min.as_str().into(),
            ..Default::default()
        },
        identity,
        state_dir: options.state_dir.clone(),
        spool,
        platform: Arc::from(inventory::current_platform()),
        reported_hash: None,
        heartbeat_interval: Duration::from_secs(60),
        inventory_interval: options
            .inventory_interval
            .unwrap_or(Duration::from_secs(3600)),
        inventory_override: options.inventory_interval,
        heartbeat_sequence: 0,
        sessions: SessionManager::new(session_config),
    };
    tracing::info!(device = %agent.identity.device_id, server = %agent.identity.server_url, "agent starting");

    let mut connection: Option<Connection> = None;
    let mut backoff = Backoff::default();
    let mut next_attempt = Instant::now();
    let mut next_heartbeat = Instant::now() + agent.heartbeat_interval;
    // A full inventory on start.
    let mut next_inventory = Instant::now();
    let mut first_report = true;
    // Set when the server asked to retry a report later.
    let mut resend_at: Option<Instant> = None;
    let mut next_renewal_check = Instant::now();

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,

            _ = tokio::time::sleep_until(next_attempt), if connection.is_none() => {
                match agent.connect().await {
                    Ok(conn) => {
                        tracing::info!("connected to server");
                        agent.status.connected = true;
                        agent.status.last_error.clear();
                        connection = Some(conn);
                        next_heartbeat = Instant::now() + jittered(agent.heartbeat_interval, 0.1);
                        if let Some(conn) = connection.as_mut()
                            && let Err(e) = agent.send_spooled(conn).await
                        {
                            tracing::warn!(error = %e, "cannot send spooled reports");
                        }
                    }
                    Err(err) => {
                        let delay = if err.refused {
                            refused_retry_delay()
                        } else {
                            backoff.next_delay()
                        };
                        if err.refused {
                            tracing::error!(error = %err.message, retry_in = %humantime::format_duration(round_secs(delay)), "the server refused this device; trying again only rarely (restart the agent after enrolling it again)");
                        } else {
                            tracing::warn!(error = %err.message, retry_in = ?delay, "cannot connect to server");
                        }
                        agent.status.last_error = err.message;
                        next_attempt = Instant::now() + delay;
                    }
                }
            }

            message = next_message(&mut connection) => {
                let interval_before = agent.heartbeat_interval;
                let mut refused = false;
                let keep = match message {
                    Ok(Some(message)) => match agent.handle_server_message(message, connection.as_mut(), &mut resend_at) {
                        Next::Continue => true,
                        Next::Disconnect => false,
                        Next::CollectNow => {
                            // The server wants a fresh report even if unchanged.
                            agent.report_inventory("requested", true, connection.as_mut()).await;
                            true
                        }
                    },
                    Ok(None) => { tracing::warn!("server closed the stream"); false }
                    Err(status) => {
                        tracing::warn!(code = ?status.code(), error = %status.message(), "stream ended");
                        agent.status.last_error = status.message().to_owned();
                        refused = matches!(status.code(), tonic::Code::PermissionDenied | tonic::Code::Unauthenticated);
                        false
                    }
                };
                // The Welcome sets the server's interval; the first
                // heartbeat was timed with the old one (60 s), which can be
                // longer than the server's idle limit for this stream.
                if agent.heartbeat_interval != interval_before {
                    next_heartbeat = Instant::now() + jittered(agent.heartbeat_interval, 0.1);
                }
                if !keep {
                    if let Some(conn) = connection.take()
                        && conn.since.elapsed() > Duration::from_secs(30)
                    {
                        // A connection that held for a while resets the
                        // backoff; one that flaps does not.
                        backoff.reset();
                    }
                    agent.status.connected = false;
                    // Channels ride on this connection: nothing can reach them now.
                    agent.sessions.stop_all("lost the connection to the server");
                    let delay = if refused {
                        let delay = refused_retry_delay();
                        tracing::error!(error = %agent.status.last_error, retry_in = %humantime::format_duration(round_secs(delay)), "the server cut this device off; trying again only rarely (restart the agent after enrolling it again)");
                        delay
                    } else {
                        backoff.next_delay()
                    };
                    next_attempt = Instant::now() + delay;
                }
            }

            _ = tokio::time::sleep_until(next_renewal_check), if connection.is_some() => {
                if let Some(conn) = connection.as_ref() {
                    agent.renew_certificate_if_due(conn).await;
                }
                next_renewal_check = Instant::now() + RENEWAL_CHECK_INTERVAL;
            }

            _ = tokio::time::sleep_until(next_heartbeat), if connection.is_some() => {
                agent.heartbeat_sequence += 1;
                let heartbeat = Heartbeat {
                    sequence: agent.heartbeat_sequence,
                    inventory_hash: agent.status.inventory_hash.clone(),
                    uptime_seconds: agent.platform.uptime_seconds(),
                };
                if let Some(conn) = connection.as_ref() {
                    send(conn, AgentBody::Heartbeat(heartbeat)).await;
                }
                next_heartbeat = Instant::now() + jittered(agent.heartbeat_interval, 0.1);
            }

            _ = tokio::time::sleep_until(next_inventory) => {
                let reason = if first_report { "startup" } else { "interval" };
                first_report = false;
                agent.report_inventory(reason, false, connection.as_mut()).await;
                next_inventory = Instant::now() + jittered(agent.inventory_interval, 0.1);
            }

            _ = async { tokio::time::sleep_until(resend_at.unwrap_or_else(Instant::now)).await }, if resend_at.is_some() => {
                resend_at = None;
                if let Some(conn) = connection.as_mut()
                    && let Err(e) = agent.send_spooled(conn).await
                {
                    tracing::warn!(error = %e, "cannot resend spooled reports");
                }
            }

            Some((request, reply)) = next_call(&mut control_rx, &mut user_rx) => {
                let response = match request {
                    ControlRequest::Status => {
                        agent.status.spooled_reports = agent.spool.len();
                        agent.status.retry_in_seconds = if connection.is_none() {
                            next_attempt.saturating_duration_since(Instant::now()).as_secs()
                        } else {
                            0
                        };
                        agent.status.sessions = agent.sessions.list();
                        ControlResponse { ok: true, status: Some(agent.status.clone()), ..Default::default() }
                    }
                    ControlRequest::Sessions => {
                        ControlResponse { ok: true, sessions: agent.sessions.list(), ..Default::default() }
                    }
                    ControlRequest::EndSessions { session_id } => {
                        match agent.sessions.end_local(session_id.as_deref()) {
                            Ok(ended) => {
                                if let Some(conn) = connection.as_ref() {
                                    for session in &ended {
                                        let event = crate::session::ended_event(session, true, "ended by the local user at the device");
                                        let _ = conn.outbound.send(event).await;
                                    }
                                }
                                ControlResponse { ok: true, ended: ended.into_iter().map(|e| e.id).collect(), ..Default::default() }
                            }
                            Err(error) => ControlResponse { ok: false, error, ..Default::default() },
                        }
                    }
                    ControlRequest::CollectNow => {
                        match agent.report_inventory("requested", true, connection.as_mut()).await {
                            Some(report_id) => ControlResponse { ok: true, report_id, ..Default::default() },
                            None => ControlResponse { ok: false, error: "inventory report failed; see the agent log".into(), ..Default::default() },
                        }
                    }
                };
                let _ = reply.send(response);
            }
        }
    }
    control_task.abort();
    user_task.abort();
    crate::os::ipc::remove(&control::socket_path(&options.state_dir));
    crate::os::ipc::remove(&user_socket);
    // Tell the server, then make sure no session process outlives the agent.
    if let Some(conn) = connection.as_ref() {
        for session in agent.sessions.list() {
            let ended = crate::session::EndedLocally {
                accepted: session.state == "active",
                id: session.id,
            };
            let event = crate::session::ended_event(&ended, false, "the agent is shutting down");
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.outbound.send(event)).await;
        }
    }
    agent.sessions.shutdown().await;
    tracing::info!("agent stopped");
    Ok(())
}

/// The next control request, the root-only socket first.
async fn next_call(
    owner: &mut mpsc::Receiver<ControlCall>,
    users: &mut mpsc::Receiver<ControlCall>,
) -> Option<ControlCall> {
    tokio::select! {
        biased;
        Some(call) = owner.recv() => Some(call),
        Some(call) = users.recv() => Some(call),
        else => None,
    }
}

/// The next message of the stream, or never when there is no stream.
async fn next_message(
    connection: &mut Option<Connection>,
) -> Result<Option<ServerMessage>, tonic::Status> {
    let Some(conn) = connection else {
        return std::future::pending().await;
    };
    if let Some(first) = conn.first.take() {
        return Ok(Some(first));
    }
    tokio::select! {
        Some(ack) = conn.acks.1.recv() => Ok(Some(ServerMessage {
            body: Some(ServerBody::ReportAck(ack)),
        })),
        message = conn.inbound.message() => message,
    }
}

async fn send(conn: &Connection, body: AgentBody) -> bool {
    conn.outbound
        .send(AgentMessage { body: Some(body) })
        .await
        .is_ok()
}

/// Sends one report on the stream: in full to an older server; else only
/// its offer (size, hash, time), and the inventory by `SubmitInventory`
/// when the server asks for it (`send_inventory`). An unchanged inventory
/// never travels, and a busy server defers a report before its bytes are
/// sent.
async fn send_report(conn: &mut Connection, report: InventoryReport) -> bool {
    conn.in_flight.insert(report.report_id.clone());
    if !conn.submit_inventory {
        return send(conn, AgentBody::InventoryReport(report)).await;
    }
    let offer = InventoryReport {
        inventory_size: report.inventory.len() as u64,
        inventory: Vec::new(),
        ..report
    };
    send(conn, AgentBody::InventoryReport(offer)).await
}

/// Sends an offered report's inventory by its own call (a long-lived stream
/// would keep a buffer of its size); the answer comes back through the
/// connection's `acks`. A failed call keeps the report for later, like a
/// `retry` answer.
fn send_inventory(conn: &Connection, report: InventoryReport) {
    let mut client = AgentServiceClient::new(conn.channel.clone())
        .max_decoding_message_size(schoolfleet_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(schoolfleet_proto::MAX_MESSAGE_BYTES);
    let acks = conn.acks.0.clone();
    tokio::spawn(async move {
        let report_id = report.report_id.clone();
        let ack = match client.submit_inventory(report).await {
            Ok(response) => response.into_inner(),
            Err(status) => ReportAck {
                report_id,
                error: format!("{}: {}", code_text(status.code()), status.message()),
                retry: true,
                ..Default::default()
            },
        };
        let _ = acks.send(ack).await;
    });
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// What the loop does after a server message.
enum Next {
    Continue,
    Disconnect,
    CollectNow,
}

#[derive(Debug)]
struct ConnectError {
    message: String,
    /// The server refused this device (revoked, retired, unknown).
    refused: bool,
}

impl Agent {
    async fn connect(&self) -> Result<Connection, ConnectError> {
        let transport_error = |e: transport::TransportError| ConnectError {
            message: error_chain(&e),
            refused: false,
        };
        let channel = transport::connect(
            &self.identity.server_url,
            ServerTrust::CaPem(self.identity.ca_pem.clone()),
            Some(ClientIdentity {
                cert_chain_pem: self.identity.cert_pem.clone(),
                key_pem: self.identity.key_pem.clone(),
            }),
            ChannelOptions::default(),
        )
        .await
        .map_err(transport_error)?;
        let mut client = AgentServiceClient::new(channel.clone())
            .max_decoding_message_size(schoolfleet_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(schoolfleet_proto::MAX_MESSAGE_BYTES);
        let (outbound, rx) = mpsc::channel(64);
        let hello = Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            inventory_hash: self.reported_hash.clone().unwrap_or_default(),
            spooled_reports: self.spool.len() as u32,
            // The floor this agent enforces (`--consent-min`), so the
            // server records what applies.
            consent_min: self.status.consent_min.clone(),
        };
        let _ = outbound
            .send(AgentMessage {
                body: Some(AgentBody::Hello(hello)),
            })
            .await;
        let mut inbound = client
            .open_stream(ReceiverStream::new(rx))
            .await
            .map_err(|status| ConnectError {
                refused: matches!(
                    status.code(),
                    tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                ),
                message: format!("{}: {}", code_text(status.code()), status.message()),
            })?
            .into_inner();
        // The Welcome comes first and says how to send reports; the loop
        // handles it (intervals) like any later message.
        let first = match tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()).await {
            Ok(Ok(message)) => message,
            Ok(Err(status)) => {
                return Err(ConnectError {
                    refused: matches!(
                        status.code(),
                        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                    ),
                    message: format!("{}: {}", code_text(status.code()), status.message()),
                });
            }
            Err(_) => {
                return Err(ConnectError {
                    refused: false,
                    message: "the server did not answer the stream's opening".into(),
                });
            }
        };
        let submit_inventory = matches!(
            &first,
            Some(ServerMessage { body: Some(ServerBody::Welcome(w)) }) if w.submit_inventory
        );
        Ok(Connection {
            channel,
            outbound,
            inbound,
            first,
            submit_inventory,
            acks: mpsc::channel(16),
            in_flight: HashSet::new(),
            since: Instant::now(),
        })
    }

    /// Renews the device certificate over the live connection when it is
    /// close to expiry. The new key is made here and never leaves the
    /// device; the new certificate is used from the next connection on.
    async fn renew_certificate_if_due(&mut self, conn: &Connection) {
        let not_after = match self.identity.cert_not_after() {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the device certificate's expiry");
                return;
            }
        };
        if not_after - chrono::Utc::now() > RENEW_BEFORE {
            return;
        }
        let hostname = self.platform.host_name();
        let (key_pem, csr_pem) = match crate::identity::generate_key_and_csr(hostname.trim()) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::error!(error = %err, "cannot make a key for certificate renewal");
                return;
            }
        };
        // Bounded: this runs inside the agent's one loop, which must not
        // hang on a stalled server.
        let mut client = AgentServiceClient::new(conn.channel.clone());
        let call = client.renew_certificate(RenewCertificateRequest { csr_pem });
        let response = match tokio::time::timeout(Duration::from_secs(30), call).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!("certificate renewal timed out; will retry later");
                return;
            }
        };
        match response {
            Ok(response) => {
                let cert_pem = response.into_inner().certificate_pem;
                match self
                    .identity
                    .replace_certificate(&self.state_dir, cert_pem, key_pem)
                {
                    Ok(()) => tracing::info!(old_expiry = %not_after, "device certificate renewed"),
                    Err(err) => {
                        tracing::error!(error = %err, "cannot store the renewed certificate")
                    }
                }
            }
            Err(status) => tracing::warn!(error = %status.message(), "certificate renewal refused"),
        }
    }

    /// Sends every spooled report that is not already in flight.
    async fn send_spooled(&self, conn: &mut Connection) -> Result<(), crate::spool::SpoolError> {
        for entry in self.spool.entries()? {
            if conn.in_flight.contains(&entry.report_id) {
                continue;
            }
            if let Some(report) = self.spool.load(&entry)?
                && !send_report(conn, report).await
            {
                break;
            }
        }
        Ok(())
    }

    /// Collects the inventory and, if it changed (or `force`), spools and
    /// sends a report. Returns the report id when one was made.
    async fn report_inventory(
        &mut self,
        reason: &str,
        force: bool,
        connection: Option<&mut Connection>,
    ) -> Option<String> {
        // Collection reads many files: keep it off the async thread.
        let platform = self.platform.clone();
        let collected = match tokio::task::spawn_blocking(move || platform.collect()).await {
            Ok(inventory) => inventory,
            Err(err) => {
                tracing::error!(error = %err, "inventory collection panicked");
                return None;
            }
        };
        let hash = inventory::content_hash(&collected);
        self.status.inventory_hash = hash.clone();
        let changed = self.reported_hash.as_deref() != Some(hash.as_str());
        if !force && !changed && reason != "startup" {
            tracing::debug!("inventory unchanged");
            return None;
        }
        let reason = if !force && reason == "interval" {
            "changed"
        } else {
            reason
        };
        let report = InventoryReport {
            report_id: uuid::Uuid::new_v4().to_string(),
            collected_at: Some(schoolfleet_proto::time::to_timestamp(chrono::Utc::now())),
            content_hash: hash.clone(),
            inventory: collected.encode_to_vec(),
            reason: reason.to_owned(),
            inventory_size: 0,
        };
        if let Err(err) = self.spool.push(&report) {
            tracing::error!(error = %err, "cannot spool inventory report");
            return None;
        }
        self.reported_hash = Some(hash);
        let report_id = report.report_id.clone();
        tracing::info!(report = %report_id, reason, software = collected.software.len(), "inventory report made");
        if let Some(conn) = connection {
            send_report(conn, report).await;
        }
        Some(report_id)
    }

    /// Handles one message from the server.
    fn handle_server_message(
        &mut self,
        message: ServerMessage,
        connection: Option<&mut Connection>,
        resend_at: &mut Option<Instant>,
    ) -> Next {
        match message.body {
            Some(ServerBody::Welcome(welcome)) => {
                if welcome.heartbeat_interval_seconds > 0 {
                    self.heartbeat_interval =
                        Duration::from_secs(welcome.heartbeat_interval_seconds.into());
                }
                if self.inventory_override.is_none() && welcome.inventory_interval_seconds > 0 {
                    self.inventory_interval =
                        Duration::from_secs(welcome.inventory_interval_seconds.into());
                }
                Next::Continue
            }
            Some(ServerBody::ReportAck(ack)) if ack.send_inventory => {
                // The server has room for the offered report's inventory.
                let report = self.spool.entries().ok().and_then(|entries| {
                    let entry = entries.into_iter().find(|e| e.report_id == ack.report_id)?;
                    self.spool.load(&entry).ok().flatten()
                });
                match (connection, report) {
                    (Some(conn), Some(report)) => send_inventory(conn, report),
                    (Some(conn), None) => {
                        conn.in_flight.remove(&ack.report_id);
                    }
                    (None, _) => {}
                }
                Next::Continue
            }
            Some(ServerBody::ReportAck(ack)) => {
                if let Some(conn) = connection {
                    conn.in_flight.remove(&ack.report_id);
                }
                if ack.error.is_empty() || !ack.retry {
                    if !ack.error.is_empty() {
                        tracing::error!(report = %ack.report_id, error = %ack.error, "server rejected inventory report");
                    }
                    for warning in &ack.warnings {
                        tracing::warn!(report = %ack.report_id, warning = %warning, "server neutralised a value");
                    }
                    if let Err(err) = self.spool.remove(&ack.report_id) {
                        tracing::warn!(error = %err, "cannot remove acknowledged report");
                    }
                } else {
                    tracing::warn!(report = %ack.report_id, error = %ack.error, "server will take the report later");
                    let delay = crate::backoff::report_retry_delay(ack.retry_after_seconds);
                    *resend_at = Some(Instant::now() + delay);
                }
                Next::Continue
            }
            Some(ServerBody::CollectInventory(request)) => {
                tracing::info!(reason = %request.reason, "server asked for an inventory");
                Next::CollectNow
            }
            Some(ServerBody::Goodbye(goodbye)) => {
                tracing::warn!(reason = %goodbye.reason, "server ended the session");
                Next::Disconnect
            }
            Some(ServerBody::OpenSession(open)) => {
                if let Some(conn) = connection {
                    self.sessions.open_session(open, conn.outbound.clone());
                }
                Next::Continue
            }
            Some(ServerBody::OpenChannel(open)) => {
                if let Some(conn) = connection {
                    self.sessions.open_channel(open, conn.channel.clone());
                }
                Next::Continue
            }
            Some(ServerBody::CloseSession(close)) => {
                self.sessions
                    .close_session(&close.session_id, &close.reason);
                Next::Continue
            }
            Some(ServerBody::HeartbeatAck(ack)) => {
                tracing::trace!(sequence = ack.sequence, "heartbeat acknowledged");
                Next::Continue
            }
            None => Next::Continue,
        }
    }
}

fn code_text(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::PermissionDenied => "refused",
        tonic::Code::Unauthenticated => "not authenticated",
        tonic::Code::Unavailable => "server unavailable",
        _ => "error",
    }
}

/// "a: b: c" for an error and its sources.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
