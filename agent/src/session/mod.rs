//! Remote sessions on the device: consent, the table of accepted sessions,
//! and their channels (shell, exec, forward, copy).
//!
//! The server asks with `OpenSession` on the agent stream; the manager
//! applies the device's own switches and the consent mode, then answers
//! with a `SessionEvent`. Each `OpenChannel` of an accepted session starts
//! the work and dials `AgentService.SessionChannel` back over the existing
//! connection. Everything from the server is validated again here: the
//! device trusts its own configuration, not the request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::session::channel::Stop;
use schoolfleet_proto::v1::CopyDirection;
use schoolfleet_proto::v1::agent_message::Body as AgentBody;
use schoolfleet_proto::v1::session_event::Event;
use schoolfleet_proto::v1::session_spec::Kind;
use schoolfleet_proto::v1::{
    AgentMessage, OpenChannel, OpenSession, SessionAccepted, SessionEnded, SessionEvent,
    SessionRefusal, SessionRefused,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

pub mod channel;
pub mod consent;
#[cfg(unix)]
pub mod copy;
#[cfg(windows)]
#[path = "copy_windows.rs"]
pub mod copy;
pub mod exec;
pub mod forward;
#[cfg(unix)]
pub mod paths;
pub mod shell;
#[cfg_attr(not(windows), allow(dead_code))] // Windows cp; tested everywhere
pub mod winpath;

use channel::{ChannelIo, Finish};
use consent::{ConsentAnswer, ConsentProvider, ConsentRequest};

/// Longest consent wait the agent accepts from the server.
const MAX_CONSENT_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_CONSENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for channels to kill their processes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Exec argv limits (the server checks the same).
const MAX_ARG: usize = 4096;
const MAX_ARGV: usize = 64 * 1024;
/// Running channels per session (forward: one per TCP connection).
const MAX_CHANNELS: usize = 256;
/// Consent questions open at once on this device. Forty dialogs in a row
/// are pressure on a pupil to click "allow"; more wait for the admin to
/// try again. (The per-user limit is the server's.)
pub const MAX_PENDING_PROMPTS: usize = 2;

/// The four capabilities; each can be switched off on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    Shell,
    Exec,
    Forward,
    Cp,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Shell => "shell",
            Capability::Exec => "exec",
            Capability::Forward => "forward",
            Capability::Cp => "cp",
        }
    }
}

impl std::str::FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "shell" => Ok(Capability::Shell),
            "exec" => Ok(Capability::Exec),
            "forward" => Ok(Capability::Forward),
            "cp" => Ok(Capability::Cp),
            other => Err(format!(
                "unknown capability {other:?} (shell, exec, forward, cp)"
            )),
        }
    }
}

/// The least consent this device applies (`--consent-min`), whatever mode
/// the server sends: even a compromised server cannot go below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConsentFloor {
    #[default]
    None,
    Notify,
    Prompt,
}

impl ConsentFloor {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentFloor::None => "none",
            ConsentFloor::Notify => "notify",
            ConsentFloor::Prompt => "prompt",
        }
    }

    /// The mode to apply: the server's, raised to the floor.
    pub fn apply(self, server_mode: &str) -> &'static str {
        let asked = server_mode.parse().unwrap_or(ConsentFloor::Prompt);
        self.max(asked).as_str()
    }
}

impl ConsentFloor {
    /// The floor with the installer's setting on top (the MSI's
    /// `CONSENT_MIN`): the stricter of the two wins, so neither the
    /// command line nor the registry can lower the other. A value that is
    /// not a mode counts as "prompt" (fail closed); the second part says
    /// so for the log.
    pub fn with_setup_value(self, setup: Option<&str>) -> (ConsentFloor, Option<String>) {
        match setup.map(str::trim) {
            None | Some("") => (self, None),
            Some(text) => match text.parse::<ConsentFloor>() {
                Ok(floor) => (self.max(floor), None),
                Err(e) => (ConsentFloor::Prompt, Some(e)),
            },
        }
    }
}

impl std::str::FromStr for ConsentFloor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(ConsentFloor::None),
            "notify" => Ok(ConsentFloor::Notify),
            "prompt" => Ok(ConsentFloor::Prompt),
            other => Err(format!(
                "unknown consent mode {other:?} (none, notify, prompt)"
            )),
        }
    }
}

pub struct SessionConfig {
    /// The least consent applied here, whatever the server sends.
    pub consent_min: ConsentFloor,
    pub disabled: Vec<Capability>,
    pub transfer_roots: Vec<PathBuf>,
    pub consent: Arc<dyn ConsentProvider>,
    /// The login shell for shell sessions.
    pub shell: PathBuf,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("consent_min", &self.consent_min)
            .field("disabled", &self.disabled)
            .field("transfer_roots", &self.transfer_roots)
            .field("consent", &self.consent.name())
            .field("shell", &self.shell)
            .finish()
    }
}

impl SessionConfig {
    #[cfg(unix)]
    pub fn default_transfer_roots() -> Vec<PathBuf> {
        vec![PathBuf::from("/tmp"), PathBuf::from("/var/tmp")]
    }

    /// A directory of its own that only SYSTEM and Administrators can
    /// write to (created with that DACL at the first copy): Windows has no
    /// shared temp directory safe for this.
    #[cfg(windows)]
    pub fn default_transfer_roots() -> Vec<PathBuf> {
        vec![PathBuf::from(r"C:\ProgramData\schoolfleet\transfer")]
    }
}

/// Windows: PowerShell from the system directory.
#[cfg(windows)]
pub fn default_shell() -> PathBuf {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\Windows".into());
    PathBuf::from(root).join("System32\\WindowsPowerShell\\v1.0\\powershell.exe")
}

/// root's login shell from /etc/passwd, else /bin/bash, else /bin/sh.
#[cfg(unix)]
pub fn default_shell() -> PathBuf {
    let from_passwd = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("root:"))
                .and_then(|line| line.split(':').nth(6))
                .map(PathBuf::from)
        });
    from_passwd
        .filter(|p| {
            p.is_absolute() && p.exists() && !p.ends_with("nologin") && !p.ends_with("false")
        })
        .or_else(|| Some(PathBuf::from("/bin/bash")).filter(|p| p.exists()))
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// A session as the local user sees it (`schoolfleet-agent sessions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSession {
    pub id: String,
    pub kind: String,
    pub admin: String,
    pub reason: String,
    #[serde(default)]
    pub ticket: String,
    /// RFC 3339.
    pub started: String,
    pub summary: String,
    /// "waiting for consent" or "active".
    pub state: String,
    /// The consent mode applied here: the server's, raised to the floor.
    #[serde(default)]
    pub consent: String,
}

struct Entry {
    info: LocalSession,
    spec: Kind,
    max_file_bytes: u64,
    accepted: bool,
    /// Waiting for the local user's answer to a prompt.
    prompting: bool,
    cancel: Stop,
    /// Channels opened so far, and those still running.
    opened: u32,
    active: Arc<AtomicUsize>,
}

/// Decrements a session's running-channel count when a channel task ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The table of sessions and the tasks that serve them. Cheap to clone.
#[derive(Clone)]
pub struct SessionManager {
    config: Arc<SessionConfig>,
    table: Arc<Mutex<HashMap<String, Entry>>>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A session ended at the device: the server has to be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedLocally {
    pub id: String,
    /// False while it was still waiting for consent.
    pub accepted: bool,
}

impl SessionManager {
    pub fn new(config: SessionConfig) -> Self {
        SessionManager {
            config: Arc::new(config),
            table: Arc::new(Mutex::new(HashMap::new())),
            tasks: TaskTracker::new(),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere must not take remote sessions down with it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `OpenSession` from the server. The answer goes out on `events` (the
    /// agent stream) once consent is settled.
    pub fn open_session(&self, open: OpenSession, events: mpsc::Sender<AgentMessage>) {
        let id = open.session_id.clone();
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()) {
            tracing::warn!("refusing a session with a malformed id");
            return;
        }
        if self.table().contains_key(&id) {
            tracing::warn!(session = %id, "duplicate OpenSession ignored");
            return;
        }
        let refuse = |refusal: SessionRefusal, message: String| {
            tracing::info!(session = %id, admin = %open.admin, reason = %open.reason, refusal = ?refusal, message = %message, "remote session refused");
            let events = events.clone();
            let id = id.clone();
            tokio::spawn(async move {
                send_event(&events, refused(&id, refusal, message)).await;
            });
        };
        let (capability, spec, summary) = match validate_spec(&open, &self.config) {
            Ok(valid) => valid,
            Err(message) => return refuse(SessionRefusal::Invalid, message),
        };
        if self.config.disabled.contains(&capability) {
            return refuse(
                SessionRefusal::Disabled,
                format!(
                    "remote {} is switched off on this device",
                    capability.as_str()
                ),
            );
        }
        if !matches!(open.consent.as_str(), "none" | "notify" | "prompt") {
            return refuse(
                SessionRefusal::Invalid,
                format!("unknown consent mode {:?}", open.consent),
            );
        }
        let consent_mode = self.config.consent_min.apply(&open.consent).to_owned();
        if consent_mode != open.consent {
            tracing::info!(session = %id, server = %open.consent, applied = %consent_mode, "consent raised to this device's floor (--consent-min)");
        }
        let prompting = consent_mode == "prompt";
        if prompting {
            let open_prompts = self.table().values().filter(|e| e.prompting).count();
            if open_prompts >= MAX_PENDING_PROMPTS {
                return refuse(
                    SessionRefusal::Busy,
                    format!(
                        "{open_prompts} consent questions are already open on this device (at most {MAX_PENDING_PROMPTS}); try again once they are answered"
                    ),
                );
            }
        }
        let cancel = Stop::default();
        let info = LocalSession {
            id: id.clone(),
            kind: capability.as_str().to_owned(),
            admin: open.admin.clone(),
            reason: open.reason.clone(),
            ticket: open.ticket.clone(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            summary: summary.clone(),
            state: "waiting for consent".into(),
            consent: consent_mode.clone(),
        };
        self.table().insert(
            id.clone(),
            Entry {
                info,
                spec,
                max_file_bytes: open.max_file_bytes,
                accepted: false,
                prompting,
                cancel: cancel.clone(),
                opened: 0,
                active: Arc::new(AtomicUsize::new(0)),
            },
        );
        let request = ConsentRequest {
            session_id: id.clone(),
            kind: capability.as_str().to_owned(),
            summary,
            admin: open.admin.clone(),
            reason: open.reason.clone(),
            ticket: open.ticket.clone(),
        };
        let timeout = match open.consent_timeout_seconds {
            0 => DEFAULT_CONSENT_TIMEOUT,
            s => Duration::from_secs(s.into()).min(MAX_CONSENT_TIMEOUT),
        };
        let manager = self.clone();
        let provider = self.config.consent.clone();
        self.tasks.spawn(async move {
            let answer = match consent_mode.as_str() {
                "prompt" => {
                    tokio::select! {
                        // Closed or ended while asking: nobody waits for the answer.
                        _ = cancel.cancelled() => return,
                        answer = provider.ask(&request, timeout) => answer,
                    }
                }
                "notify" => {
                    // The notice never holds up the session.
                    let provider = provider.clone();
                    let request = request.clone();
                    tokio::spawn(async move { provider.notify(&request).await });
                    ConsentAnswer::Accepted
                }
                _ => ConsentAnswer::Accepted,
            };
            manager
                .settle(&request, &consent_mode, answer, timeout, &events)
                .await;
        });
    }

    async fn settle(
        &self,
        request: &ConsentRequest,
        consent_mode: &str,
        answer: ConsentAnswer,
        timeout: Duration,
        events: &mpsc::Sender<AgentMessage>,
    ) {
        let id = &request.session_id;
        let (refusal, message) = match answer {
            ConsentAnswer::Accepted => {
                {
                    let mut table = self.table();
                    let Some(entry) = table.get_mut(id) else {
                        return;
                    };
                    entry.accepted = true;
                    entry.prompting = false;
                    entry.info.state = "active".into();
                }
                // The command line only at debug: it may carry a secret.
                tracing::info!(session = %id, admin = %request.admin, reason = %request.reason, ticket = %request.ticket, kind = %request.kind, consent = %consent_mode, "remote session started");
                tracing::debug!(session = %id, summary = %request.summary, "remote session command");
                send_event(
                    events,
                    SessionEvent {
                        session_id: id.clone(),
                        event: Some(Event::Accepted(SessionAccepted {})),
                    },
                )
                .await;
                return;
            }
            ConsentAnswer::Declined => (
                SessionRefusal::Declined,
                "declined by the local user".to_owned(),
            ),
            ConsentAnswer::NoAnswer => (
                SessionRefusal::NoAnswer,
                format!("no answer within {} s", timeout.as_secs()),
            ),
            ConsentAnswer::NoProvider(message) => (SessionRefusal::NoProvider, message),
        };
        if self.table().remove(id).is_none() {
            return;
        }
        tracing::info!(session = %id, admin = %request.admin, reason = %request.reason, kind = %request.kind, refusal = ?refusal, message = %message, "remote session refused");
        send_event(events, refused(id, refusal, message)).await;
    }

    /// `OpenChannel` from the server: start the work and dial back.
    pub fn open_channel(&self, open: OpenChannel, connection: tonic::transport::Channel) {
        let channel_id = &open.channel_id;
        if channel_id.is_empty()
            || channel_id.len() > 128
            || !channel_id.chars().all(|c| c.is_ascii_graphic())
        {
            tracing::warn!(session = %open.session_id, "ignoring a channel with a malformed id");
            return;
        }
        let admitted = {
            let mut table = self.table();
            match table
                .get_mut(&open.session_id)
                .filter(|entry| entry.accepted)
            {
                None => Err(format!(
                    "no accepted session {} on this device",
                    open.session_id
                )),
                // The server opens exactly one; a second would run the
                // command again without anyone asking.
                Some(entry)
                    if matches!(entry.spec, Kind::Shell(_) | Kind::Exec(_)) && entry.opened > 0 =>
                {
                    Err("a shell or exec session has only one channel".to_owned())
                }
                Some(entry) if entry.active.load(Ordering::Relaxed) >= MAX_CHANNELS => {
                    Err(format!("more than {MAX_CHANNELS} channels in one session"))
                }
                Some(entry) => {
                    entry.opened += 1;
                    entry.active.fetch_add(1, Ordering::Relaxed);
                    Ok((
                        entry.spec.clone(),
                        entry.max_file_bytes,
                        entry.cancel.child(),
                        ActiveGuard(entry.active.clone()),
                    ))
                }
            }
        };
        let config = self.config.clone();
        self.tasks.spawn(async move {
            let (out, inbound) = match channel::dial(connection, &open.channel_id).await {
                Ok(pair) => pair,
                Err(status) => {
                    tracing::warn!(session = %open.session_id, channel = %open.channel_id, error = %status.message(), "cannot open the session channel");
                    return;
                }
            };
            let (spec, max_file_bytes, cancel, _active) = match admitted {
                Ok(admitted) => admitted,
                Err(message) => {
                    tracing::warn!(session = %open.session_id, channel = %open.channel_id, %message, "channel refused");
                    let io = ChannelIo::new(out, inbound, Stop::default());
                    io.finish(Finish::protocol(message)).await;
                    return;
                }
            };
            let mut io = ChannelIo::new(out, inbound, cancel);
            let finish = match spec {
                Kind::Shell(spec) => {
                    shell::run(&config.shell, &spec.term, spec.size, &mut io).await
                }
                Kind::Exec(spec) => exec::run(&spec.argv, &spec.env, &mut io).await,
                Kind::Forward(spec) => forward::run(&spec.host, spec.port as u16, &mut io).await,
                Kind::Copy(spec) => {
                    let request = copy::CopyRequest {
                        upload: spec.direction == CopyDirection::ToDevice as i32,
                        path: spec.path,
                        size: spec.size,
                        sha256: spec.sha256,
                        offset: open.offset,
                        max_file_bytes,
                    };
                    copy::run(&request, &config.transfer_roots, &mut io).await
                }
            };
            match &finish {
                Finish::Exit(code) => tracing::info!(session = %open.session_id, channel = %open.channel_id, code, "session channel finished"),
                Finish::Error(code, message) => tracing::info!(session = %open.session_id, channel = %open.channel_id, code = ?code, message = %message, "session channel ended"),
                Finish::Gone => tracing::info!(session = %open.session_id, channel = %open.channel_id, "session channel closed by the server"),
            }
            io.finish(finish).await;
        });
    }

    /// `CloseSession` from the server: stop its channels and forget it.
    pub fn close_session(&self, session_id: &str, reason: &str) {
        if let Some(entry) = self.table().remove(session_id) {
            entry.cancel.stop(reason);
            self.announce_end(&entry.info, reason);
        }
    }

    /// Stops every session (stream lost, shutdown).
    pub fn stop_all(&self, reason: &str) -> Vec<String> {
        let entries: Vec<Entry> = self.table().drain().map(|(_, e)| e).collect();
        entries
            .into_iter()
            .map(|entry| {
                entry.cancel.stop(reason);
                self.announce_end(&entry.info, reason);
                entry.info.id
            })
            .collect()
    }

    /// `schoolfleet-agent sessions end [ID]`: ends one or all sessions.
    pub fn end_local(&self, session_id: Option<&str>) -> Result<Vec<EndedLocally>, String> {
        let entries: Vec<Entry> = {
            let mut table = self.table();
            match session_id {
                Some(id) => match table.remove(id) {
                    Some(entry) => vec![entry],
                    None => return Err(format!("no session {id} on this device")),
                },
                None => table.drain().map(|(_, e)| e).collect(),
            }
        };
        Ok(entries
            .into_iter()
            .map(|entry| {
                let reason = "ended by the local user at the device";
                entry.cancel.stop(reason);
                self.announce_end(&entry.info, reason);
                EndedLocally {
                    id: entry.info.id,
                    accepted: entry.accepted,
                }
            })
            .collect())
    }

    pub fn list(&self) -> Vec<LocalSession> {
        let mut sessions: Vec<LocalSession> =
            self.table().values().map(|e| e.info.clone()).collect();
        sessions.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
        sessions
    }

    /// Stops everything and waits (bounded) until processes are killed.
    pub async fn shutdown(&self) {
        self.stop_all("the agent is shutting down");
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("session tasks did not stop in time");
        }
    }
}

/// The message that tells the server the device ended a session.
pub fn ended_event(ended: &EndedLocally, by_local_user: bool, reason: &str) -> AgentMessage {
    let event = if ended.accepted {
        Event::Ended(SessionEnded {
            by_local_user,
            reason: reason.to_owned(),
        })
    } else {
        Event::Refused(SessionRefused {
            refusal: SessionRefusal::Declined as i32,
            message: reason.to_owned(),
        })
    };
    AgentMessage {
        body: Some(AgentBody::SessionEvent(SessionEvent {
            session_id: ended.id.clone(),
            event: Some(event),
        })),
    }
}

impl SessionManager {
    /// Logs the end and, where the user was told of or asked about the
    /// session, tells them it is over (the visible indicator ends too).
    fn announce_end(&self, info: &LocalSession, reason: &str) {
        log_end(info, reason);
        if info.state != "active" || info.consent == "none" {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let provider = self.config.consent.clone();
        let request = ConsentRequest {
            session_id: info.id.clone(),
            kind: info.kind.clone(),
            summary: info.summary.clone(),
            admin: info.admin.clone(),
            reason: info.reason.clone(),
            ticket: info.ticket.clone(),
        };
        let why = reason.to_owned();
        runtime.spawn(async move { provider.notify_end(&request, &why).await });
    }
}

fn log_end(info: &LocalSession, reason: &str) {
    tracing::info!(session = %info.id, admin = %info.admin, reason = %info.reason, kind = %info.kind, end_reason = %reason, "remote session ended");
}

fn refused(id: &str, refusal: SessionRefusal, message: String) -> SessionEvent {
    SessionEvent {
        session_id: id.to_owned(),
        event: Some(Event::Refused(SessionRefused {
            refusal: refusal as i32,
            message,
        })),
    }
}

async fn send_event(events: &mpsc::Sender<AgentMessage>, event: SessionEvent) {
    let message = AgentMessage {
        body: Some(AgentBody::SessionEvent(event)),
    };
    if events.send(message).await.is_err() {
        tracing::warn!("cannot answer the session: the stream is gone");
    }
}

/// Checks a spec from the server; returns the capability, the spec with
/// defaults filled in, and the summary for the user and the log.
fn validate_spec(
    open: &OpenSession,
    config: &SessionConfig,
) -> Result<(Capability, Kind, String), String> {
    let kind = open
        .spec
        .as_ref()
        .and_then(|s| s.kind.clone())
        .ok_or("the session has no spec")?;
    match kind {
        Kind::Shell(mut spec) => {
            spec.term = shell::term_or_default(&spec.term).to_owned();
            let size = spec.size.unwrap_or_default();
            spec.size = Some(shell::clamp_size(size));
            let summary = config
                .shell
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "shell".into());
            Ok((Capability::Shell, Kind::Shell(spec), summary))
        }
        Kind::Exec(spec) => {
            if spec.argv.is_empty() || spec.argv[0].is_empty() {
                return Err("the command is empty".into());
            }
            if spec
                .argv
                .iter()
                .any(|a| a.len() > MAX_ARG || a.contains('\0'))
            {
                return Err("a command argument is too long or contains NUL".into());
            }
            if spec.argv.iter().map(String::len).sum::<usize>() > MAX_ARGV {
                return Err("the command line is too long".into());
            }
            schoolfleet_proto::exec_env::check(&spec.env)?;
            // What the local user sees (listing, question, notice) and the
            // log: secrets masked with the server's default rules.
            let shown = schoolfleet_proto::redact::Redactor::default().argv(&spec.argv);
            let summary: String = shown.join(" ").chars().take(200).collect();
            Ok((Capability::Exec, Kind::Exec(spec), summary))
        }
        Kind::Forward(spec) => {
            forward::validate_target(&spec.host, spec.port)?;
            let summary = format!("{}:{}", spec.host, spec.port);
            Ok((Capability::Forward, Kind::Forward(spec), summary))
        }
        Kind::Copy(mut spec) => {
            check_copy_path(&spec.path)?;
            let verb = match CopyDirection::try_from(spec.direction) {
                Ok(CopyDirection::ToDevice) => {
                    if spec.size > open.max_file_bytes {
                        return Err(format!(
                            "{} bytes is above the limit of {} bytes",
                            spec.size, open.max_file_bytes
                        ));
                    }
                    spec.sha256 = spec.sha256.to_ascii_lowercase();
                    if spec.sha256.len() != 64
                        || !spec.sha256.chars().all(|c| c.is_ascii_hexdigit())
                    {
                        return Err("the upload needs a SHA-256 (64 hex digits)".into());
                    }
                    "upload"
                }
                Ok(CopyDirection::FromDevice) => "download",
                _ => return Err("the copy direction is missing".into()),
            };
            let summary = format!("{verb} {}", spec.path);
            Ok((Capability::Cp, Kind::Copy(spec), summary))
        }
    }
}

/// A copy path as the device's system spells them: absolute, bounded.
#[cfg(unix)]
fn check_copy_path(path: &str) -> Result<(), String> {
    if path.is_empty() || !path.starts_with('/') {
        return Err("the copy path must be absolute".into());
    }
    if path.len() > paths::MAX_PATH || path.contains('\0') {
        return Err("the copy path is too long or contains NUL".into());
    }
    Ok(())
}

/// `C:\...`, with nothing Windows would reinterpret (see `winpath`).
#[cfg(windows)]
fn check_copy_path(path: &str) -> Result<(), String> {
    winpath::parse(path).map(|_| ()).map_err(|e| e.to_string())
}

pub use crate::os::process::exit_code;
#[cfg(unix)]
pub use crate::os::process::kill_group;

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::{ExecSpec, SessionSpec};

    /// A provider that never answers: the question stays open.
    struct Silent;

    impl ConsentProvider for Silent {
        fn name(&self) -> &'static str {
            "silent"
        }
        fn ask<'a>(
            &'a self,
            _: &'a ConsentRequest,
            _: Duration,
        ) -> consent::BoxFuture<'a, ConsentAnswer> {
            Box::pin(std::future::pending())
        }
        fn notify<'a>(&'a self, _: &'a ConsentRequest) -> consent::BoxFuture<'a, ()> {
            Box::pin(async {})
        }
    }

    fn open(id: &str, consent: &str) -> OpenSession {
        OpenSession {
            session_id: id.into(),
            spec: Some(SessionSpec {
                kind: Some(Kind::Exec(ExecSpec {
                    argv: vec!["true".into()],
                    env: vec![],
                })),
            }),
            consent: consent.into(),
            admin: "user:anna".into(),
            reason: "test".into(),
            consent_timeout_seconds: 60,
            ..Default::default()
        }
    }

    async fn next_event(rx: &mut mpsc::Receiver<AgentMessage>) -> SessionEvent {
        let message = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an answer in time")
            .unwrap();
        match message.body {
            Some(AgentBody::SessionEvent(event)) => event,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_floor_only_raises_the_mode() {
        use ConsentFloor::*;
        assert_eq!(None.apply("none"), "none");
        assert_eq!(Notify.apply("none"), "notify");
        assert_eq!(Prompt.apply("notify"), "prompt");
        assert_eq!(Notify.apply("prompt"), "prompt");
        assert_eq!(
            None.apply("bogus"),
            "prompt",
            "unknown text is the strictest"
        );
    }

    /// Remembers what it was told: start and end notices.
    #[derive(Default)]
    struct Told(std::sync::Mutex<Vec<String>>);

    impl ConsentProvider for Told {
        fn name(&self) -> &'static str {
            "told"
        }
        fn ask<'a>(
            &'a self,
            _: &'a ConsentRequest,
            _: Duration,
        ) -> consent::BoxFuture<'a, ConsentAnswer> {
            Box::pin(async { ConsentAnswer::Declined })
        }
        fn notify<'a>(&'a self, request: &'a ConsentRequest) -> consent::BoxFuture<'a, ()> {
            let line = format!("start {}", request.summary);
            Box::pin(async move { self.0.lock().unwrap().push(line) })
        }
        fn notify_end<'a>(
            &'a self,
            request: &'a ConsentRequest,
            why: &'a str,
        ) -> consent::BoxFuture<'a, ()> {
            let line = format!("end {} ({why})", request.summary);
            Box::pin(async move { self.0.lock().unwrap().push(line) })
        }
    }

    #[tokio::test]
    async fn a_notified_session_is_announced_at_start_and_end_masked() {
        let told = Arc::new(Told::default());
        let manager = SessionManager::new(SessionConfig {
            consent_min: ConsentFloor::Notify,
            disabled: Vec::new(),
            transfer_roots: Vec::new(),
            consent: told.clone(),
            shell: PathBuf::from("/bin/sh"),
        });
        let (tx, mut rx) = mpsc::channel(16);
        let mut session = open("s-1", "none");
        session.spec = Some(SessionSpec {
            kind: Some(Kind::Exec(ExecSpec {
                argv: vec!["chpasswd".into(), "max:Geheim123".into()],
                env: vec![],
            })),
        });
        manager.open_session(session, tx.clone());
        let event = next_event(&mut rx).await;
        assert!(matches!(event.event, Some(Event::Accepted(_))), "{event:?}");
        let listed = manager.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].summary, "chpasswd ***", "the local listing masks");
        assert_eq!(listed[0].consent, "notify", "raised to the floor");
        manager.close_session("s-1", "ended by the admin");
        for _ in 0..100 {
            if told.0.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            *told.0.lock().unwrap(),
            [
                "start chpasswd ***",
                "end chpasswd *** (ended by the admin)"
            ]
        );
        manager.shutdown().await;
    }

    #[test]
    fn the_installers_floor_only_raises_and_garbage_prompts() {
        use ConsentFloor::*;
        assert_eq!(None.with_setup_value(Option::None), (None, Option::None));
        assert_eq!(Notify.with_setup_value(Some("")), (Notify, Option::None));
        assert_eq!(
            None.with_setup_value(Some("prompt")),
            (Prompt, Option::None)
        );
        assert_eq!(
            Prompt.with_setup_value(Some(" none ")),
            (Prompt, Option::None)
        );
        let (floor, warning) = None.with_setup_value(Some("Prompt!"));
        assert_eq!(floor, Prompt);
        assert!(warning.is_some());
    }

    #[tokio::test]
    async fn at_most_two_consent_questions_are_open_at_once() {
        let manager = SessionManager::new(SessionConfig {
            consent_min: ConsentFloor::None,
            disabled: Vec::new(),
            transfer_roots: Vec::new(),
            consent: Arc::new(Silent),
            shell: PathBuf::from("/bin/sh"),
        });
        let (tx, mut rx) = mpsc::channel(16);
        for i in 0..MAX_PENDING_PROMPTS {
            manager.open_session(open(&format!("s-{i}"), "prompt"), tx.clone());
        }
        manager.open_session(open("s-extra", "prompt"), tx.clone());
        let event = next_event(&mut rx).await;
        assert_eq!(event.session_id, "s-extra");
        match event.event {
            Some(Event::Refused(r)) => {
                assert_eq!(r.refusal, SessionRefusal::Busy as i32);
                assert!(
                    r.message.contains("consent questions are already open"),
                    "{}",
                    r.message
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Sessions that ask nobody are not held back.
        manager.open_session(open("s-none", "none"), tx.clone());
        let event = next_event(&mut rx).await;
        assert_eq!(event.session_id, "s-none");
        assert!(matches!(event.event, Some(Event::Accepted(_))), "{event:?}");
        // Once a question is gone, a new one may be asked.
        manager.close_session("s-0", "the admin gave up");
        manager.open_session(open("s-later", "prompt"), tx.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            rx.try_recv().is_err(),
            "the new question must be asked, not refused"
        );
        assert_eq!(
            manager
                .list()
                .iter()
                .filter(|s| s.state == "waiting for consent")
                .count(),
            2
        );
        manager.shutdown().await;
    }
}
