//! Remote sessions on this replica: consent answers being waited for, live
//! sessions, and channels waiting for the agent to dial back. In memory,
//! like the agent streams they ride on; the store keeps the records.

pub mod consent_floor;
pub mod forward_policy;
pub mod four_eyes;
pub mod lifecycle;
pub mod policy;
pub mod recording;
pub mod redact;
pub mod relay;
pub mod sealed;
pub mod spec_guard;
pub mod step_up;
pub use spec_guard::guard_spec;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schoolfleet_proto::text::echo;
use schoolfleet_proto::v1::session_event::Event;
use schoolfleet_proto::v1::{ClientFrame, DeviceFrame, SessionEvent};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use crate::agents::ConnectionId;
use policy::Kind;
use recording::Recorder;

/// The end reason used when the device's stream is lost.
/// The session's end when the device's stream ended: the agent closed its
/// connection, or the device stopped answering HTTP/2 keepalive pings
/// (frozen, network gone); the server cannot tell the two apart.
pub const DEVICE_GONE_REASON: &str = "device disconnected or not responding";

/// What the agent said about a session it was asked to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentAnswer {
    Accepted,
    Refused(String),
    DeviceGone,
}

/// The device side of a channel, handed from `SessionChannel` to `Attach`.
#[derive(Debug)]
pub struct AgentLeg {
    pub inbound: Streaming<DeviceFrame>,
    pub outbound: mpsc::Sender<Result<ClientFrame, Status>>,
}

struct PendingConsent {
    device_id: String,
    connection: ConnectionId,
    answer: oneshot::Sender<ConsentAnswer>,
}

struct PendingChannel {
    device_id: String,
    deliver: oneshot::Sender<AgentLeg>,
}

#[derive(Default)]
struct Inner {
    consents: HashMap<String, PendingConsent>,
    live: HashMap<String, Arc<LiveSession>>,
    channels: HashMap<String, PendingChannel>,
}

#[derive(Default)]
pub struct SessionBroker {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SessionBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBroker").finish_non_exhaustive()
    }
}

impl SessionBroker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Single inserts and removes: a panic cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the agent's answer to `OpenSession` of `session_id`.
    pub fn expect_consent(
        &self,
        session_id: &str,
        device_id: &str,
        connection: ConnectionId,
    ) -> oneshot::Receiver<ConsentAnswer> {
        let (tx, rx) = oneshot::channel();
        self.lock().consents.insert(
            session_id.to_owned(),
            PendingConsent {
                device_id: device_id.to_owned(),
                connection,
                answer: tx,
            },
        );
        rx
    }

    pub fn set_consent_connection(&self, session_id: &str, connection: ConnectionId) {
        if let Some(p) = self.lock().consents.get_mut(session_id) {
            p.connection = connection;
        }
    }

    pub fn forget_consent(&self, session_id: &str) {
        self.lock().consents.remove(session_id);
    }

    pub fn insert_live(&self, session: Arc<LiveSession>) {
        self.lock().live.insert(session.info.id.clone(), session);
    }

    pub fn remove_live(&self, session_id: &str) {
        self.lock().live.remove(session_id);
    }

    pub fn live(&self, session_id: &str) -> Option<Arc<LiveSession>> {
        self.lock().live.get(session_id).cloned()
    }

    pub fn live_sessions(&self) -> Vec<Arc<LiveSession>> {
        self.lock().live.values().cloned().collect()
    }

    /// A `SessionEvent` from the stream of `device_id`. Events about
    /// another device's sessions are ignored (and logged).
    pub fn on_agent_event(&self, device_id: &str, event: SessionEvent) {
        let mut inner = self.lock();
        match event.event {
            Some(Event::Accepted(_)) | Some(Event::Refused(_)) => {
                let Some(pending) = inner.consents.remove(&event.session_id) else {
                    tracing::debug!(device = %device_id, session = %echo(&event.session_id), "consent answer for no pending session");
                    return;
                };
                if pending.device_id != device_id {
                    tracing::warn!(device = %device_id, session = %echo(&event.session_id), "consent answer from the wrong device ignored");
                    inner.consents.insert(event.session_id, pending);
                    return;
                }
                let answer = match event.event {
                    Some(Event::Accepted(_)) => ConsentAnswer::Accepted,
                    Some(Event::Refused(r)) => {
                        let message = schoolfleet_proto::text::clean(&r.message, 300).value;
                        ConsentAnswer::Refused(if message.is_empty() {
                            "refused at the device".into()
                        } else {
                            message
                        })
                    }
                    _ => return,
                };
                let _ = pending.answer.send(answer);
            }
            Some(Event::Ended(ended)) => {
                let reason = if ended.by_local_user {
                    "ended by the local user at the device".to_owned()
                } else {
                    let why = schoolfleet_proto::text::clean(&ended.reason, 200).value;
                    if why.is_empty() {
                        "ended at the device".to_owned()
                    } else {
                        format!("ended at the device: {why}")
                    }
                };
                if let Some(live) = inner
                    .live
                    .get(&event.session_id)
                    .filter(|l| l.info.device_id == device_id)
                {
                    live.end(reason, None);
                } else if inner
                    .consents
                    .get(&event.session_id)
                    .is_some_and(|p| p.device_id == device_id)
                    && let Some(pending) = inner.consents.remove(&event.session_id)
                {
                    // Checked before removing: another device's word must
                    // not drop (and so deny) a session it does not own.
                    let _ = pending.answer.send(ConsentAnswer::Refused(reason));
                }
            }
            None => {}
        }
    }

    /// The device's stream `connection` ended: its sessions are over.
    pub fn device_gone(&self, device_id: &str, connection: ConnectionId) {
        let mut inner = self.lock();
        for live in inner.live.values() {
            if live.info.device_id == device_id && live.info.connection == connection {
                live.end(DEVICE_GONE_REASON, None);
            }
        }
        let gone: Vec<String> = inner
            .consents
            .iter()
            .filter(|(_, p)| p.device_id == device_id && p.connection == connection)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(p) = inner.consents.remove(&id) {
                let _ = p.answer.send(ConsentAnswer::DeviceGone);
            }
        }
    }

    /// Registers a channel the agent is asked to dial back.
    pub fn expect_channel(&self, channel_id: &str, device_id: &str) -> oneshot::Receiver<AgentLeg> {
        let (tx, rx) = oneshot::channel();
        self.lock().channels.insert(
            channel_id.to_owned(),
            PendingChannel {
                device_id: device_id.to_owned(),
                deliver: tx,
            },
        );
        rx
    }

    pub fn forget_channel(&self, channel_id: &str) {
        self.lock().channels.remove(channel_id);
    }

    /// Forgets the pending channel when dropped (a delivered one is gone
    /// already, so this is a no-op then).
    pub fn pending_channel_guard(self: &Arc<Self>, channel_id: &str) -> PendingChannelGuard {
        PendingChannelGuard {
            broker: self.clone(),
            channel_id: channel_id.to_owned(),
        }
    }

    /// Hands the agent's dialled-back stream to the waiting `Attach`.
    /// Only the device the channel was opened on may claim it.
    pub fn deliver_channel(&self, channel_id: &str, device_id: &str, leg: AgentLeg) -> bool {
        let pending = {
            let mut inner = self.lock();
            match inner.channels.get(channel_id) {
                Some(p) if p.device_id == device_id => inner.channels.remove(channel_id),
                _ => None,
            }
        };
        pending.is_some_and(|p| p.deliver.send(leg).is_ok())
    }
}

/// A started session on this replica.
pub struct LiveSession {
    pub info: SessionInfo,
    started: Instant,
    /// Cancelled when the session ends; every channel watches it.
    pub cancel: CancellationToken,
    /// Cancelled once the end is written to the store, so `EndSession`
    /// can answer with what a following read will show.
    recorded: CancellationToken,
    end: Mutex<Option<(String, Option<i32>)>>,
    bytes_to_device: AtomicU64,
    bytes_from_device: AtomicU64,
    /// Milliseconds since `started` of the last data frame.
    last_activity_ms: AtomicU64,
    channels_opened: AtomicU64,
    active_channels: AtomicUsize,
    recording: Mutex<Option<Recording>>,
}

/// The queue to a recording's writer task.
pub type RecordingQueue = mpsc::Sender<Vec<u8>>;
/// A chunk that is due, and the queue to send it to.
pub type ChunkOut = (Vec<u8>, RecordingQueue);

/// The recorder of a shell session and the queue to its writer task.
pub struct Recording {
    pub recorder: Recorder,
    pub writer: mpsc::Sender<Vec<u8>>,
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("id", &self.info.id)
            .field("kind", &self.info.kind)
            .field("device_id", &self.info.device_id)
            .finish_non_exhaustive()
    }
}

/// The identity of a session, for [`LiveSession::new`].
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub kind: Kind,
    pub device_id: String,
    pub hostname: String,
    pub county_id: String,
    pub school_id: String,
    pub user_id: String,
    pub actor: String,
    pub connection: ConnectionId,
    pub max_file_bytes: u64,
}

impl LiveSession {
    pub fn new(info: SessionInfo, recording: Option<Recording>) -> Self {
        LiveSession {
            info,
            started: Instant::now(),
            cancel: CancellationToken::new(),
            recorded: CancellationToken::new(),
            end: Mutex::new(None),
            bytes_to_device: AtomicU64::new(0),
            bytes_from_device: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
            channels_opened: AtomicU64::new(0),
            active_channels: AtomicUsize::new(0),
            recording: Mutex::new(recording),
        }
    }

    /// Ends the session; only the first reason counts.
    pub fn end(&self, reason: impl Into<String>, exit_code: Option<i32>) {
        {
            let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
            if end.is_none() {
                *end = Some((reason.into(), exit_code));
            }
        }
        self.cancel.cancel();
    }

    /// Called by the session's task once its end is in the store.
    pub fn mark_recorded(&self) {
        self.recorded.cancel();
    }

    /// Waits until the end is in the store, at most `limit`; true if it is.
    pub async fn wait_recorded(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.recorded.cancelled())
            .await
            .is_ok()
    }

    pub fn end_reason(&self) -> Option<(String, Option<i32>)> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_activity_ms.store(now, Ordering::Relaxed);
    }

    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    pub fn add_to_device(&self, n: usize) {
        self.bytes_to_device.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    pub fn add_from_device(&self, n: usize) {
        self.bytes_from_device
            .fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_to_device.load(Ordering::Relaxed),
            self.bytes_from_device.load(Ordering::Relaxed),
        )
    }

    /// Counts a new channel; returns how many were opened before it.
    pub fn open_channel(&self) -> u64 {
        self.channels_opened.fetch_add(1, Ordering::Relaxed)
    }

    /// Claims the first and only channel (shell, exec); false when taken.
    pub fn claim_only_channel(&self) -> bool {
        self.channels_opened
            .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    pub fn channels_opened(&self) -> u64 {
        self.channels_opened.load(Ordering::Relaxed)
    }

    pub fn active_channels(&self) -> usize {
        self.active_channels.load(Ordering::Relaxed)
    }

    /// Counts the channel as active until the guard drops.
    pub fn channel_guard(self: &Arc<Self>) -> ChannelGuard {
        self.active_channels.fetch_add(1, Ordering::Relaxed);
        ChannelGuard(self.clone())
    }

    /// Like [`Self::channel_guard`], but only while fewer than `limit`
    /// channels are counted. Taken before the device is asked, so that
    /// channels still waiting for the dial-back count too, and checked and
    /// counted in one step, so that racing attaches cannot overshoot.
    pub fn try_channel_guard(self: &Arc<Self>, limit: usize) -> Option<ChannelGuard> {
        self.active_channels
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(ChannelGuard(self.clone()))
    }

    fn with_recording<T>(&self, f: impl FnOnce(&mut Recording, f64) -> T) -> Option<T> {
        let t = self.started.elapsed().as_secs_f64();
        let mut guard = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().map(|r| f(r, t))
    }

    /// Records PTY output; returns a chunk to write, with its queue.
    pub fn record_output(&self, data: &[u8]) -> Option<ChunkOut> {
        self.with_recording(|r, t| {
            r.recorder.output(t, data);
            r.recorder
                .take_chunk(t, false)
                .map(|c| (c, r.writer.clone()))
        })
        .flatten()
    }

    pub fn record_resize(&self, cols: u32, rows: u32) -> Option<ChunkOut> {
        self.with_recording(|r, t| {
            r.recorder.resize(t, cols, rows);
            r.recorder
                .take_chunk(t, false)
                .map(|c| (c, r.writer.clone()))
        })
        .flatten()
    }

    /// A chunk that is due by age (the supervisor's tick).
    pub fn recording_due(&self) -> Option<ChunkOut> {
        self.with_recording(|r, t| {
            r.recorder
                .take_chunk(t, false)
                .map(|c| (c, r.writer.clone()))
        })
        .flatten()
    }

    /// Ends the recording: the last chunk, and the queue (dropping it
    /// lets the writer finish).
    pub fn finish_recording(&self) -> Option<(Option<Vec<u8>>, RecordingQueue)> {
        let t = self.started.elapsed().as_secs_f64();
        let mut guard = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        guard.take().map(|mut r| (r.recorder.finish(t), r.writer))
    }
}

#[derive(Debug)]
pub struct PendingChannelGuard {
    broker: Arc<SessionBroker>,
    channel_id: String,
}

impl Drop for PendingChannelGuard {
    fn drop(&mut self) {
        self.broker.forget_channel(&self.channel_id);
    }
}

/// Decrements the session's active channel count when dropped.
#[derive(Debug)]
pub struct ChannelGuard(Arc<LiveSession>);

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        self.0.active_channels.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Arc<LiveSession> {
        Arc::new(LiveSession::new(
            SessionInfo {
                id: "s".into(),
                kind: Kind::Forward,
                device_id: "d".into(),
                hostname: "pc".into(),
                county_id: "kus".into(),
                school_id: "kus012".into(),
                user_id: "u".into(),
                actor: "user:u".into(),
                connection: ConnectionId::unknown(),
                max_file_bytes: 1,
            },
            None,
        ))
    }

    #[test]
    fn another_device_cannot_end_a_pending_session() {
        use schoolfleet_proto::v1::{SessionAccepted, SessionEnded};
        let broker = SessionBroker::default();
        let mut answer = broker.expect_consent("s1", "dev-a", ConnectionId::unknown());
        let event = |e: Event| SessionEvent {
            session_id: "s1".into(),
            event: Some(e),
        };
        broker.on_agent_event(
            "dev-b",
            event(Event::Ended(SessionEnded {
                by_local_user: true,
                reason: String::new(),
            })),
        );
        assert!(answer.try_recv().is_err(), "no answer yet");
        broker.on_agent_event("dev-a", event(Event::Accepted(SessionAccepted {})));
        assert_eq!(answer.try_recv(), Ok(ConsentAnswer::Accepted));
    }

    #[test]
    fn channel_slots_are_bounded_and_given_back() {
        let live = live();
        let held: Vec<ChannelGuard> = (0..3)
            .map(|_| live.try_channel_guard(3).expect("room for three"))
            .collect();
        assert!(live.try_channel_guard(3).is_none(), "a fourth is refused");
        assert_eq!(live.active_channels(), 3);
        drop(held);
        assert_eq!(live.active_channels(), 0);
        assert!(live.try_channel_guard(3).is_some());
    }
}
