//! The life of a remote session, whatever transport asked for it: start
//! (authorise, check, ask the device for consent, hold), open channels,
//! supervise (idle timeout, maximum duration, end requests from other
//! replicas), record shell output, end and clean up. Every start, refusal
//! and end is audited here.
//!
//! `api/sessions.rs` is the gRPC adapter: it turns [`Progress`] into
//! `SessionUpdate`s and relays channels with `relay::run`.

use std::sync::Arc;
use std::time::Duration;

use schoolfleet_proto::text::echo;
use schoolfleet_proto::v1::server_message::Body as ServerBody;
use schoolfleet_proto::v1::{CloseSession, OpenChannel, OpenSession, ServerMessage, SessionSpec};
use tokio::sync::mpsc;

use super::policy::{self, CheckedSpec, Kind};
use super::recording::Recorder;
use super::{AgentLeg, ChannelGuard, ConsentAnswer, LiveSession, Recording, SessionInfo};
use crate::auth::{Permission, Principal, TenantRef};
use crate::service::access::{self, require, session_tenant};
use crate::service::input::display_text;
use crate::service::{AppError, AppResult};
use crate::state::AppState;
use crate::storage::{
    DeviceRecord, SESSION_ACTIVE, SESSION_DENIED, SESSION_ENDED, SESSION_PENDING, SessionEnd,
    SessionRecord, now_millis,
};

/// Concurrent channels of one forward session.
pub const MAX_FORWARD_CHANNELS: usize = 256;
/// Concurrent channels of one copy session (a retry may overlap the
/// teardown of the broken attempt).
pub const MAX_COPY_CHANNELS: usize = 4;
/// How long a request waits for room in a device's queue.
const DELIVERY_PATIENCE: Duration = Duration::from_secs(5);
/// How often the supervisor looks for EndSession from other replicas.
const END_REQUEST_POLL: Duration = Duration::from_secs(5);
/// How long `end` waits for the stop to be recorded before it answers
/// with the session still ending: longer than one end-request poll on
/// another replica plus the drain of the session's channels.
const END_CONFIRM_WAIT: Duration = Duration::from_secs(10);

/// What a start asks for.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Device id, host name or short id.
    pub device: String,
    /// Shown to the user at the device and audited; required.
    pub reason: String,
    /// Optional ticket key (`SUP-1234`) the session works on.
    pub ticket: String,
    pub spec: Option<SessionSpec>,
    /// The second factor, where `[sessions] require_mfa` asks for one.
    pub step_up: Option<schoolfleet_proto::v1::StepUp>,
}

/// The device was asked and the user there must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingForConsent {
    pub session_id: String,
    pub timeout_seconds: u32,
    pub hostname: String,
}

/// The session runs: channels may be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStarted {
    pub session_id: String,
    pub device_id: String,
    pub hostname: String,
    pub consent: String,
    pub idle_timeout_seconds: u32,
    pub max_duration_seconds: u32,
    pub max_file_bytes: u64,
}

/// The session ended (after it started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnded {
    pub reason: String,
    pub exit_code: Option<i32>,
}

/// What the starter hears while a session lives. A refusal after the
/// device was asked arrives as an `Err` in the same stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    WaitingForConsent(WaitingForConsent),
    Started(SessionStarted),
    Ended(SessionEnded),
}

type Updates = mpsc::Sender<Result<Progress, AppError>>;

/// Audits a refused start. The device is looked up without the
/// caller's permissions, so the entry lands in the device's county
/// even when the caller may not see it.
async fn audit_denied(
    state: &AppState,
    attempt: &Attempt<'_>,
    device: Option<&DeviceRecord>,
    session_id: Option<&str>,
    why: &str,
) {
    let Attempt {
        principal,
        device_arg,
        kind,
        reason_text,
    } = *attempt;
    let found = match device {
        Some(d) => Some(d.clone()),
        None => match state.store.get_device(device_arg.trim()).await {
            Ok(Some(d)) => Some(d),
            _ => state
                .store
                .find_devices_by_hostname(device_arg.trim())
                .await
                .ok()
                .filter(|v| v.len() == 1)
                .and_then(|mut v| v.pop()),
        },
    };
    let target = match (session_id, &found) {
        (Some(id), _) => format!("session:{id}"),
        (None, Some(d)) => format!("device:{}", d.id),
        (None, None) => format!(
            "device:{}",
            schoolfleet_proto::text::clean(device_arg.trim(), 100).value
        ),
    };
    let device_text = found
        .as_ref()
        .map(|d| format!("device={} hostname={}", d.id, d.hostname))
        .unwrap_or_else(|| "device=unknown".into());
    let details = format!(
        "{why}; kind={} {device_text} reason={:?}",
        kind.map_or("unknown", Kind::as_str),
        schoolfleet_proto::text::clean(reason_text, 500).value
    );
    match &found {
        Some(d) => {
            state
                .audit_school(
                    &principal.actor(),
                    "session.denied",
                    &target,
                    &d.county_id,
                    &d.school_id,
                    "denied",
                    details,
                )
                .await
        }
        None => {
            state
                .audit(
                    &principal.actor(),
                    "session.denied",
                    &target,
                    None,
                    "denied",
                    details,
                )
                .await
        }
    }
}

/// Waits until another replica has recorded the end of a session, at
/// most [`END_CONFIRM_WAIT`]; a session still running by then shows
/// as ENDING.
async fn wait_ended_in_store(state: &AppState, id: &str) -> AppResult<()> {
    let deadline = tokio::time::Instant::now() + END_CONFIRM_WAIT;
    while tokio::time::Instant::now() < deadline {
        let current = state.store.get_session(id).await?;
        if current.is_none_or(|s| !is_live_state(&s.state)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Pending or active: the states in which a session can still be ended.
pub fn is_live_state(state: &str) -> bool {
    state == SESSION_PENDING || state == SESSION_ACTIVE
}

/// A start request as the denial audit needs it.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    principal: &'a Principal,
    device_arg: &'a str,
    kind: Option<Kind>,
    reason_text: &'a str,
}

/// The reason text: required, at most 500 bytes, no control characters.
fn check_reason(reason: &str) -> AppResult<String> {
    if reason.trim().is_empty() {
        return Err(AppError::invalid(
            "a reason is required (--reason): it is shown to the user and audited",
        ));
    }
    display_text("reason", reason, 500)
}

pub async fn start(
    state: &AppState,
    principal: &Principal,
    req: StartRequest,
) -> AppResult<mpsc::Receiver<Result<Progress, AppError>>> {
    let limits = &state.config.sessions;
    let kind = policy::kind_of(req.spec.as_ref());
    let attempt = Attempt {
        principal,
        device_arg: &req.device,
        kind: None,
        reason_text: &req.reason,
    };
    let Some(kind) = kind else {
        let status = AppError::invalid("spec is required: shell, exec, forward or copy");
        audit_denied(state, &attempt, None, None, status.message()).await;
        return Err(status);
    };
    let device =
        match access::visible_device(state, principal, &req.device, kind.permission()).await {
            Ok(d) => d,
            Err(err) => {
                let status = err;
                audit_denied(
                    state,
                    &Attempt {
                        kind: Some(kind),
                        ..attempt
                    },
                    None,
                    None,
                    status.message(),
                )
                .await;
                return Err(status);
            }
        };
    let checked = async {
        let reason = check_reason(&req.reason)?;
        let ticket = if req.ticket.trim().is_empty() {
            String::new()
        } else {
            access::visible_ticket(state, principal, &req.ticket, Permission::TicketRead)
                .await?
                .key()
        };
        let spec = policy::check_spec(req.spec.as_ref(), limits.max_file_bytes)
            .map_err(AppError::invalid)?;
        let spec = super::guard_spec(limits, &device, req.spec.as_ref(), spec)
            .map_err(AppError::denied)?;
        if device.status != "active" {
            return Err(AppError::failed_precondition(format!(
                "device {} is {}",
                device.hostname, device.status
            )));
        }
        // Soft limits (two starts at the same moment may both pass):
        // enough to stop a flood of sessions or consent dialogs.
        let (by_user, on_device) = state
            .store
            .count_live_sessions(&principal.user_id, &device.id)
            .await
            ?;
        if by_user >= i64::from(limits.max_live_per_user) {
            return Err(AppError::exhausted(format!(
                "you have {by_user} live sessions, the limit ([sessions] max_live_per_user); \
                 end some first (schoolfleet sessions list --live)"
            )));
        }
        if on_device >= i64::from(limits.max_live_per_device) {
            return Err(AppError::exhausted(format!(
                "device {} has {on_device} live sessions, the limit ([sessions] max_live_per_device)",
                device.hostname
            )));
        }
        let step_up =
            super::step_up::check(state, principal, kind, &reason, req.step_up.as_ref()).await?;
        Ok::<_, AppError>((reason, ticket, spec, step_up))
    }
    .await;
    let (reason, ticket, spec, step_up) = match checked {
        Ok(v) => v,
        Err(status) => {
            audit_denied(
                state,
                &Attempt {
                    kind: Some(kind),
                    ..attempt
                },
                Some(&device),
                None,
                status.message(),
            )
            .await;
            return Err(status);
        }
    };
    let consent = policy::resolve_consent(
        state.store.as_ref(),
        &device.school_id,
        &device.device_class,
        &limits.default_consent,
    )
    .await?;
    // The agent raises the mode to its own floor whatever is sent; record
    // (and tell the admin) the mode that will apply.
    let consent =
        super::consent_floor::with_agent_floor(consent, device.agent_consent_min.as_deref());
    let session_id = uuid::Uuid::new_v4().to_string();
    let record = SessionRecord {
        id: session_id.clone(),
        kind: kind.as_str().into(),
        state: SESSION_PENDING.into(),
        device_id: device.id.clone(),
        county_id: device.county_id.clone(),
        school_id: device.school_id.clone(),
        user_id: principal.user_id.clone(),
        actor: principal.actor(),
        reason: reason.clone(),
        ticket: ticket.clone(),
        summary: spec.summary.clone(),
        spec: spec.json.clone(),
        consent: consent.clone(),
        started_at: now_millis(),
        ended_at: None,
        end_reason: String::new(),
        bytes_to_device: 0,
        bytes_from_device: 0,
        exit_code: None,
        has_recording: false,
        channels: 0,
        end_requested_at: None,
        end_requested_reason: String::new(),
        step_up,
    };
    state.store.insert_session(&record).await?;
    let consent_timeout = limits.consent_timeout;
    let open = ServerMessage {
        body: Some(ServerBody::OpenSession(OpenSession {
            session_id: session_id.clone(),
            spec: req.spec.clone(),
            consent: consent.clone(),
            admin: principal.actor(),
            reason: reason.clone(),
            ticket: ticket.clone(),
            consent_timeout_seconds: consent_timeout.as_secs() as u32,
            max_file_bytes: limits.max_file_bytes,
        })),
    };
    // Registered before asking, so that a quick answer is not lost; the
    // stream it went out on is filled in once sent.
    let (answer, connection, mut guard) = {
        let probe = crate::agents::ConnectionId::unknown();
        let answer = state
            .sessions
            .expect_consent(&session_id, &device.id, probe);
        let mut guard = StartGuard {
            state: state.clone(),
            session_id: session_id.clone(),
            device_id: device.id.clone(),
            armed: true,
        };
        match state
            .agents
            .deliver(&device.id, open, DELIVERY_PATIENCE)
            .await
        {
            Some(connection) => {
                state
                    .sessions
                    .set_consent_connection(&session_id, connection);
                (answer, connection, guard)
            }
            None => {
                guard.armed = false;
                state.sessions.forget_consent(&session_id);
                let why = format!("device {} is not connected", device.hostname);
                deny(state, &session_id, &why).await;
                audit_denied(
                    state,
                    &Attempt {
                        kind: Some(kind),
                        ..attempt
                    },
                    Some(&device),
                    Some(&session_id),
                    &why,
                )
                .await;
                return Err(AppError::unavailable(why));
            }
        }
    };
    let (tx, rx) = mpsc::channel(4);
    if consent == "prompt" {
        let _ = tx
            .send(Ok(Progress::WaitingForConsent(WaitingForConsent {
                session_id: session_id.clone(),
                timeout_seconds: consent_timeout.as_secs() as u32,
                hostname: device.hostname.clone(),
            })))
            .await;
    }
    let info = SessionInfo {
        id: session_id,
        kind,
        device_id: device.id.clone(),
        hostname: device.hostname.clone(),
        county_id: device.county_id.clone(),
        school_id: device.school_id.clone(),
        user_id: principal.user_id.clone(),
        actor: principal.actor(),
        connection,
        max_file_bytes: limits.max_file_bytes,
    };
    let start = Start {
        info,
        record,
        spec,
        answer,
    };
    // From here on the session task owns the cleanup.
    guard.armed = false;
    state.tasks.spawn(drive(state.clone(), start, tx));
    Ok(rx)
}

/// A channel of a live session, joined with the device's dial-back and
/// ready to relay.
pub struct OpenedChannel {
    pub live: Arc<LiveSession>,
    pub slot: ChannelGuard,
    pub channel_id: String,
    pub leg: AgentLeg,
}

/// Opens one more channel of a live session for the user who started it:
/// admits it against the session's channel limit, asks the device to dial
/// back, and waits for that (at most `sessions.attach_timeout`).
pub async fn open_channel(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
    offset: u64,
) -> AppResult<OpenedChannel> {
    let attach_timeout = state.config.sessions.attach_timeout;
    let session_id = session_id.trim().to_owned();
    // The same answer for a session that is not live and one that is
    // another user's: its existence does not leak.
    let not_live = || {
        AppError::not_found(format!(
            "session {} is not live on this server",
            echo(&session_id)
        ))
    };
    let live = state.sessions.live(&session_id).ok_or_else(not_live)?;
    if let Err((why, status)) = may_attach(principal, &live, not_live) {
        state
            .audit_school(
                &principal.actor(),
                "session.attach",
                &format!("session:{}", live.info.id),
                &live.info.county_id,
                &live.info.school_id,
                "denied",
                why,
            )
            .await;
        return Err(status);
    }
    if live.cancel.is_cancelled() {
        return Err(not_live());
    }
    let slot = admit_channel(&live)?;
    let channel_id = uuid::Uuid::new_v4().to_string();
    let leg = state
        .sessions
        .expect_channel(&channel_id, &live.info.device_id);
    // If the admin gives up while we wait, the registration goes too.
    let _pending = state.sessions.pending_channel_guard(&channel_id);
    let sent = state
        .agents
        .deliver(
            &live.info.device_id,
            ServerMessage {
                body: Some(ServerBody::OpenChannel(OpenChannel {
                    session_id: session_id.clone(),
                    channel_id: channel_id.clone(),
                    offset,
                })),
            },
            DELIVERY_PATIENCE,
        )
        .await;
    if sent.is_none() {
        state.sessions.forget_channel(&channel_id);
        return Err(AppError::unavailable(format!(
            "device {} is not connected",
            live.info.hostname
        )));
    }
    let leg = tokio::select! {
        leg = tokio::time::timeout(attach_timeout, leg) => leg,
        _ = live.cancel.cancelled() => {
            state.sessions.forget_channel(&channel_id);
            return Err(AppError::failed_precondition(format!(
                "session ended: {}",
                live.end_reason().map(|(r, _)| r).unwrap_or_default()
            )));
        }
    };
    let leg = match leg {
        Ok(Ok(leg)) => leg,
        _ => {
            state.sessions.forget_channel(&channel_id);
            return Err(AppError::unavailable(format!(
                "{} did not open the channel within {}",
                live.info.hostname,
                humantime::format_duration(attach_timeout)
            )));
        }
    };
    Ok(OpenedChannel {
        live,
        slot,
        channel_id,
        leg,
    })
}

pub async fn end(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
    why: &str,
) -> AppResult<SessionRecord> {
    let session = access::visible_session(state, principal, session_id).await?;
    if session.user_id != principal.user_id {
        require(principal, Permission::SessionEnd, &session_tenant(&session))?;
    }
    let why = if why.trim().is_empty() {
        String::new()
    } else {
        display_text("reason", why, 500)?
    };
    let reason = if why.is_empty() {
        format!("ended by {}", principal.actor())
    } else {
        format!("ended by {}: {why}", principal.actor())
    };
    // Record the request first: from here on every read shows the
    // session as ending (other replicas pick it up from the store too).
    let recorded = state
        .store
        .request_session_end(&session.id, now_millis(), &reason)
        .await?;
    let live = state.sessions.live(&session.id);
    if let Some(live) = &live {
        live.end(reason.clone(), None);
    } else if !recorded && !is_live_state(&session.state) {
        return Err(AppError::failed_precondition(format!(
            "session {} is not live",
            session.id
        )));
    }
    state
        .audit_school(
            &principal.actor(),
            "session.end_request",
            &format!("session:{}", session.id),
            &session.county_id,
            &session.school_id,
            "ok",
            reason,
        )
        .await;
    // Answer with the end as recorded, so that `sessions show` right
    // after never says less than this call did.
    match &live {
        Some(live) => {
            live.wait_recorded(END_CONFIRM_WAIT).await;
        }
        None => wait_ended_in_store(state, &session.id).await?,
    }
    let session = state
        .store
        .get_session(&session.id)
        .await?
        .ok_or_else(|| AppError::not_found("session vanished"))?;
    Ok(session)
}

/// Only the starter may attach, and only while still holding the
/// capability on the device's school: a permission taken away (or a
/// binding's `remote` list narrowed) stops new channels of a running
/// session too, not just new sessions. The error: the audit detail and
/// the status for the caller.
/// Only the user who started a session attaches to it. Anyone else hears
/// `not_live`, exactly what a session that is not live answers.
fn may_attach(
    principal: &Principal,
    live: &LiveSession,
    not_live: impl Fn() -> AppError,
) -> Result<(), (String, AppError)> {
    if live.info.user_id != principal.user_id {
        return Err((format!("started by {}", live.info.actor), not_live()));
    }
    let permission = live.info.kind.permission();
    if !principal.can(
        permission,
        &TenantRef::school(&live.info.county_id, &live.info.school_id),
    ) {
        return Err((
            format!("{permission:?} no longer granted"),
            AppError::denied(format!(
                "{} no longer may use {} on {}",
                principal.name,
                live.info.kind.as_str(),
                live.info.hostname
            )),
        ));
    }
    Ok(())
}

/// Admits one more channel of `live`, or says why not. The slot is taken
/// before the device is asked, and held until the channel ends: channels
/// still waiting for the dial-back count against the limit too, so one
/// caller cannot pile up pending channels (each an `OpenChannel` at the
/// device) beyond it.
fn admit_channel(live: &Arc<LiveSession>) -> AppResult<ChannelGuard> {
    let slot = match live.info.kind {
        // Claimed atomically: two racing attaches cannot both become
        // the one channel.
        Kind::Shell | Kind::Exec if !live.claim_only_channel() => {
            return Err(AppError::failed_precondition(format!(
                "a {} session has exactly one channel, and it was opened",
                live.info.kind.as_str()
            )));
        }
        Kind::Shell | Kind::Exec => live.channel_guard(),
        Kind::Forward => live
            .try_channel_guard(MAX_FORWARD_CHANNELS)
            .ok_or_else(|| {
                AppError::exhausted(format!(
                    "at most {MAX_FORWARD_CHANNELS} connections at once per forward session"
                ))
            })?,
        Kind::Copy => live.try_channel_guard(MAX_COPY_CHANNELS).ok_or_else(|| {
            AppError::exhausted("too many transfers at once in this copy session")
        })?,
    };
    if matches!(live.info.kind, Kind::Forward | Kind::Copy) {
        live.open_channel();
    }
    Ok(slot)
}

/// Stores a denial of a session that never started.
async fn deny(state: &AppState, session_id: &str, why: &str) {
    let end = SessionEnd {
        state: SESSION_DENIED.into(),
        ended_at: now_millis(),
        end_reason: why.to_owned(),
        bytes_to_device: 0,
        bytes_from_device: 0,
        exit_code: None,
        has_recording: false,
        channels: 0,
    };
    if let Err(err) = state.store.finish_session(session_id, &end).await {
        tracing::error!(session = %session_id, error = %err, "cannot store session denial");
    }
}

struct Start {
    info: SessionInfo,
    record: SessionRecord,
    spec: CheckedSpec,
    answer: tokio::sync::oneshot::Receiver<ConsentAnswer>,
}

/// Cleans up after a StartSession call dropped (the admin gave up) between
/// asking the device and handing the session to its task.
struct StartGuard {
    state: AppState,
    session_id: String,
    device_id: String,
    armed: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.state.sessions.forget_consent(&self.session_id);
        let (state, session_id, device_id) = (
            self.state.clone(),
            self.session_id.clone(),
            self.device_id.clone(),
        );
        let why = "the admin side disconnected before the session started";
        tokio::spawn(async move {
            close_session(&state, &device_id, &session_id, why).await;
            deny(&state, &session_id, why).await;
        });
    }
}

/// Tells the agent to stop the session's processes. Waits for room in
/// the queue: a lost CloseSession would leave processes running.
async fn close_session(state: &AppState, device_id: &str, session_id: &str, reason: &str) {
    let message = ServerMessage {
        body: Some(ServerBody::CloseSession(CloseSession {
            session_id: session_id.to_owned(),
            reason: reason.to_owned(),
        })),
    };
    if state
        .agents
        .deliver(device_id, message, DELIVERY_PATIENCE)
        .await
        .is_none()
    {
        tracing::debug!(session = %session_id, "device not connected; its sessions ended with its stream");
    }
}

/// Waits for consent, then holds the session until it ends, then cleans up.
async fn drive(state: AppState, start: Start, tx: Updates) {
    let Start {
        info,
        record,
        spec,
        answer,
    } = start;
    let limits = state.config.sessions.clone();
    let wait = limits.consent_timeout + Duration::from_secs(10);
    let outcome = tokio::select! {
        a = tokio::time::timeout(wait, answer) => match a {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => ConsentAnswer::DeviceGone,
            Err(_) => ConsentAnswer::Refused(format!(
                "no answer from the device within {} s",
                wait.as_secs()
            )),
        },
        _ = tx.closed() => ConsentAnswer::Refused("the admin side disconnected before the session started".into()),
        _ = state.shutdown.cancelled() => ConsentAnswer::Refused("the server is shutting down".into()),
    };
    state.sessions.forget_consent(&info.id);
    let denial = match outcome {
        ConsentAnswer::Accepted => None,
        ConsentAnswer::Refused(why) => Some((
            why.clone(),
            AppError::failed_precondition(format!("refused at {}: {why}", info.hostname)),
        )),
        ConsentAnswer::DeviceGone => {
            let why = format!("lost the connection to {}", info.hostname);
            Some((why.clone(), AppError::unavailable(why)))
        }
    };
    if let Some((why, status)) = denial {
        close_session(&state, &info.device_id, &info.id, &why).await;
        deny(&state, &info.id, &why).await;
        state
            .audit_school(
                &info.actor,
                "session.denied",
                &format!("session:{}", info.id),
                &info.county_id,
                &info.school_id,
                "denied",
                format!(
                    "{why}; kind={} device={} hostname={} reason={:?}",
                    info.kind.as_str(),
                    info.device_id,
                    info.hostname,
                    record.reason
                ),
            )
            .await;
        tracing::info!(session = %info.id, device = %info.hostname, actor = %info.actor, why, "session denied");
        let _ = tx.send(Err(status)).await;
        return;
    }

    let mut writer = None;
    let recording = if info.kind == Kind::Shell {
        let (wtx, wrx) = mpsc::channel::<Vec<u8>>(16);
        writer = Some(tokio::spawn(write_recording(
            state.clone(),
            info.id.clone(),
            wrx,
        )));
        Some(Recording {
            recorder: Recorder::new(
                spec.size.0,
                spec.size.1,
                &spec.term,
                record.started_at / 1000,
                limits.max_recording_bytes,
            ),
            writer: wtx,
        })
    } else {
        None
    };
    let live = Arc::new(LiveSession::new(info.clone(), recording));
    state.sessions.insert_live(live.clone());
    if let Err(err) = state
        .store
        .activate_session(&info.id, &record.consent)
        .await
    {
        tracing::error!(session = %info.id, error = %err, "cannot mark session active");
    }
    state
        .audit_school(
            &info.actor,
            "session.start",
            &format!("session:{}", info.id),
            &info.county_id,
            &info.school_id,
            "ok",
            format!(
                "kind={} device={} hostname={} consent={} step_up={} reason={:?} ticket={:?} summary={:?}",
                info.kind.as_str(),
                info.device_id,
                info.hostname,
                record.consent,
                if record.step_up.is_empty() { "none" } else { &record.step_up },
                record.reason,
                record.ticket,
                record.summary
            ),
        )
        .await;
    // The command line (redacted, still) only at debug.
    tracing::info!(session = %info.id, device = %info.hostname, actor = %info.actor,
        kind = info.kind.as_str(), "session started");
    tracing::debug!(session = %info.id, summary = %record.summary, "session command");
    let started = SessionStarted {
        session_id: info.id.clone(),
        device_id: info.device_id.clone(),
        hostname: info.hostname.clone(),
        consent: record.consent.clone(),
        idle_timeout_seconds: limits.idle_timeout.as_secs() as u32,
        max_duration_seconds: limits.max_duration.as_secs() as u32,
        max_file_bytes: limits.max_file_bytes,
    };
    if tx.send(Ok(Progress::Started(started))).await.is_err() {
        live.end("admin side disconnected", None);
    }

    supervise(&state, &live, &tx, &limits).await;

    // --- the end, whatever caused it ---
    state.sessions.remove_live(&info.id);
    let (reason, exit_code) = live.end_reason().unwrap_or_else(|| ("ended".into(), None));
    close_session(&state, &info.device_id, &info.id, &reason).await;
    // Channels see the cancellation at once; give them a moment to send
    // their last frames so the byte counts are final.
    for _ in 0..100 {
        if live.active_channels() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut has_recording = false;
    if let Some((last, queue)) = live.finish_recording() {
        if let Some(last) = last {
            let _ = queue.send(last).await;
        }
        drop(queue);
        if let Some(writer) = writer {
            has_recording = writer.await.unwrap_or(false);
        }
    }
    let (to_device, from_device) = live.bytes();
    let end = SessionEnd {
        state: SESSION_ENDED.into(),
        ended_at: now_millis(),
        end_reason: reason.clone(),
        bytes_to_device: to_device as i64,
        bytes_from_device: from_device as i64,
        exit_code: exit_code.map(i64::from),
        has_recording,
        channels: live.channels_opened() as i64,
    };
    match state.store.finish_session(&info.id, &end).await {
        Ok(_) => {}
        Err(err) => tracing::error!(session = %info.id, error = %err, "cannot store session end"),
    }
    let duration = live.elapsed().as_secs();
    state
        .audit_school(
            &info.actor,
            "session.end",
            &format!("session:{}", info.id),
            &info.county_id,
            &info.school_id,
            "ok",
            format!(
                "reason={reason:?} duration_s={duration} bytes_to_device={to_device} \
                 bytes_from_device={from_device} exit_code={} channels={} kind={} device={} hostname={}",
                exit_code.map_or("-".to_owned(), |c| c.to_string()),
                end.channels,
                info.kind.as_str(),
                info.device_id,
                info.hostname
            ),
        )
        .await;
    // The row and its audit entry are written: EndSession may answer now.
    live.mark_recorded();
    tracing::info!(session = %info.id, device = %info.hostname, reason, duration_s = duration,
        bytes_to_device = to_device, bytes_from_device = from_device, "session ended");
    let _ = tx
        .send(Ok(Progress::Ended(SessionEnded { reason, exit_code })))
        .await;
}

/// Enforces idle timeout and maximum duration, flushes the recording by
/// age, and picks up EndSession from other replicas, until the end.
async fn supervise(
    state: &AppState,
    live: &Arc<LiveSession>,
    tx: &Updates,
    limits: &crate::config::SessionsSection,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_poll = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = live.cancel.cancelled() => return,
            _ = tx.closed() => live.end("admin side disconnected", None),
            _ = state.shutdown.cancelled() => live.end("server shutting down", None),
            _ = tick.tick() => {
                if live.idle_for() >= limits.idle_timeout {
                    live.end(format!("idle timeout ({})", humantime::format_duration(limits.idle_timeout)), None);
                } else if live.elapsed() >= limits.max_duration {
                    live.end(format!("maximum duration reached ({})", humantime::format_duration(limits.max_duration)), None);
                }
                if let Some((chunk, queue)) = live.recording_due() {
                    let _ = queue.send(chunk).await;
                }
                if last_poll.elapsed() >= END_REQUEST_POLL {
                    last_poll = tokio::time::Instant::now();
                    match state.store.get_session(&live.info.id).await {
                        Ok(Some(s)) if s.end_requested_at.is_some() => {
                            live.end(s.end_requested_reason, None);
                        }
                        Ok(_) => {}
                        Err(err) => tracing::warn!(session = %live.info.id, error = %err, "cannot poll session end requests"),
                    }
                }
            }
        }
    }
}

/// Writes recording chunks in order; returns whether anything was stored.
async fn write_recording(
    state: AppState,
    session_id: String,
    mut chunks: mpsc::Receiver<Vec<u8>>,
) -> bool {
    let mut chunk_no = 0i64;
    while let Some(data) = chunks.recv().await {
        let sealed = super::sealed::seal_chunk(&state.keys, &session_id, chunk_no, &data);
        match state
            .store
            .append_recording_chunk(&session_id, chunk_no, &sealed)
            .await
        {
            Ok(()) => chunk_no += 1,
            // A gap would corrupt the file: stop recording, say so loudly.
            Err(err) => {
                tracing::error!(session = %session_id, error = %err, "cannot store recording; recording stops");
                while chunks.recv().await.is_some() {}
                break;
            }
        }
    }
    chunk_no > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ErrorKind;

    fn live(kind: Kind) -> Arc<LiveSession> {
        Arc::new(LiveSession::new(
            SessionInfo {
                id: "s".into(),
                kind,
                device_id: "d".into(),
                hostname: "pc".into(),
                county_id: "kus".into(),
                school_id: "kus012".into(),
                user_id: "u".into(),
                actor: "user:u".into(),
                connection: crate::agents::ConnectionId::unknown(),
                max_file_bytes: 1,
            },
            None,
        ))
    }

    fn technician(remote: &str) -> Principal {
        Principal::from_user(&crate::storage::User {
            id: "u".into(),
            name: "tina".into(),
            county_id: Some("kus".into()),
            created_at: 0,
            bindings: vec![crate::storage::RoleBindingRecord {
                role: "technician".into(),
                scope: "county:kus".into(),
                remote: remote.into(),
            }],
        })
    }

    /// A capability taken away mid-session stops new channels, too.
    #[test]
    fn attaching_needs_the_capability_still() {
        let forward = live(Kind::Forward);
        let not_live = || AppError::not_found("not live");
        assert!(may_attach(&technician(""), &forward, not_live).is_ok());
        let (why, status) = may_attach(&technician("exec"), &forward, not_live).unwrap_err();
        assert_eq!(status.kind(), ErrorKind::Denied);
        assert!(why.contains("SessionForward"), "{why}");
        let mut other = technician("");
        other.user_id = "someone-else".into();
        let (why, status) = may_attach(&other, &forward, not_live).unwrap_err();
        assert_eq!(why, "started by user:u");
        // Someone else's session looks exactly like one that is not live.
        assert_eq!(status.kind(), ErrorKind::NotFound);
        assert_eq!(status.message(), "not live");
    }

    /// Channels the device has not dialled back yet hold their slot: the
    /// limit holds however many attaches wait at once.
    #[test]
    fn pending_channels_count_against_the_limit() {
        for (kind, limit) in [
            (Kind::Forward, MAX_FORWARD_CHANNELS),
            (Kind::Copy, MAX_COPY_CHANNELS),
        ] {
            let live = live(kind);
            let pending: Vec<ChannelGuard> = (0..limit)
                .map(|_| admit_channel(&live).expect("within the limit"))
                .collect();
            let err = admit_channel(&live).expect_err("one over the limit");
            assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
            drop(pending);
            assert!(admit_channel(&live).is_ok(), "slots are given back");
        }
        let shell = live(Kind::Shell);
        let _only = admit_channel(&shell).unwrap();
        assert!(admit_channel(&shell).is_err());
    }
}
