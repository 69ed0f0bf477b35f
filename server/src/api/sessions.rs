//! The gRPC adapter of remote sessions: `SessionService` (start, attach
//! channels, list, end, recordings, consent policy). The lifecycle itself
//! is `sessions::lifecycle`, the reads are `service::sessions`; this file
//! maps proto to their calls and back.

use std::pin::Pin;

use schoolfleet_proto::v1::client_frame::Body as ClientBody;
use schoolfleet_proto::v1::session_service_server::SessionService;
use schoolfleet_proto::v1::session_update::Update;
use schoolfleet_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{AppState, convert};
use crate::service::AppError;
use crate::service::access;
use crate::service::sessions::{self, SessionEntry};
use crate::sessions::lifecycle::{self, Progress, is_live_state};
use crate::sessions::policy::Kind;
use crate::sessions::relay;
use crate::storage::{
    ConsentPolicyRecord, SESSION_ACTIVE, SESSION_DENIED, SESSION_ENDED, SESSION_PENDING,
};

#[derive(Debug, Clone)]
pub struct SessionApi(pub AppState);

/// A lifecycle event as the wire's `SessionUpdate`.
fn update(progress: Result<Progress, AppError>) -> Result<SessionUpdate, Status> {
    let update = match progress? {
        Progress::WaitingForConsent(w) => Update::WaitingForConsent(WaitingForConsent {
            session_id: w.session_id,
            timeout_seconds: w.timeout_seconds,
            hostname: w.hostname,
        }),
        Progress::Started(s) => Update::Started(SessionStarted {
            session_id: s.session_id,
            device_id: s.device_id,
            hostname: s.hostname,
            consent: s.consent,
            idle_timeout_seconds: s.idle_timeout_seconds,
            max_duration_seconds: s.max_duration_seconds,
            max_file_bytes: s.max_file_bytes,
        }),
        Progress::Ended(e) => Update::Ended(SessionEndedNotice {
            reason: e.reason,
            exit_code: e.exit_code,
        }),
    };
    Ok(SessionUpdate {
        update: Some(update),
    })
}

impl SessionApi {
    /// The replica to relay a `StartSession` to: the one holding the
    /// device's stream, if not this one. A device the caller may not use
    /// is not relayed: the start fails here, and is audited here.
    async fn relay_target_for_start(
        &self,
        principal: &crate::auth::Principal,
        req: &StartSessionRequest,
        caller: &tonic::metadata::MetadataMap,
    ) -> Option<crate::cluster::RelayTarget> {
        let state = &self.0;
        if !state.cluster.relays() {
            return None;
        }
        let kind = crate::sessions::policy::kind_of(req.spec.as_ref())?;
        let device = access::visible_device(state, principal, &req.device, kind.permission())
            .await
            .ok()?;
        if state.agents.holds(&device.id) {
            return None;
        }
        state
            .cluster
            .relay_target(state.store.as_ref(), &device.id, caller)
            .await
    }

    /// The replica to relay an `Attach` of `session_id` to: the one holding
    /// the stream of the session's device, if not this one.
    async fn relay_target_of(
        &self,
        session_id: &str,
        caller: &tonic::metadata::MetadataMap,
    ) -> Option<crate::cluster::RelayTarget> {
        let state = &self.0;
        if !state.cluster.relays() || session_id.len() > 64 {
            return None;
        }
        let session = state.store.get_session(session_id).await.ok()??;
        if state.agents.holds(&session.device_id) {
            return None;
        }
        state
            .cluster
            .relay_target(state.store.as_ref(), &session.device_id, caller)
            .await
    }
}

/// A session as the wire's `Session`.
fn to_proto(entry: SessionEntry) -> Session {
    let SessionEntry {
        session: s,
        hostname,
    } = entry;
    let ending = s.end_requested_at.is_some() && is_live_state(&s.state);
    let state = match s.state.as_str() {
        _ if ending => SessionState::Ending,
        SESSION_PENDING => SessionState::Pending,
        SESSION_ACTIVE => SessionState::Active,
        SESSION_ENDED => SessionState::Ended,
        SESSION_DENIED => SessionState::Denied,
        _ => SessionState::Unspecified,
    };
    Session {
        kind: Kind::parse(&s.kind).map_or(SessionKind::Unspecified, Kind::proto) as i32,
        state: state as i32,
        hostname,
        started_at: convert::ts(s.started_at),
        ended_at: s.ended_at.and_then(convert::ts),
        end_reason: if ending {
            s.end_requested_reason
        } else {
            s.end_reason
        },
        bytes_to_device: s.bytes_to_device.max(0) as u64,
        bytes_from_device: s.bytes_from_device.max(0) as u64,
        exit_code: s.exit_code.map(|c| c as i32),
        has_recording: s.has_recording,
        channels: s.channels.max(0) as u32,
        id: s.id,
        device_id: s.device_id,
        county_id: s.county_id,
        school_id: s.school_id,
        actor: s.actor,
        reason: s.reason,
        ticket: s.ticket,
        summary: s.summary,
        consent: s.consent,
        step_up: s.step_up,
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SessionService for SessionApi {
    type StartSessionStream = BoxStream<SessionUpdate>;

    async fn start_session(
        &self,
        request: Request<StartSessionRequest>,
    ) -> Result<Response<Self::StartSessionStream>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let caller = request.metadata().clone();
        let req = request.into_inner();
        // The device's stream is on another replica: the session lives
        // there, which authorises, asks and audits it as the caller.
        if let Some(target) = self.relay_target_for_start(&principal, &req, &caller).await {
            tracing::debug!(replica = %target.replica_id, "relaying StartSession");
            let updates = state.cluster.start_session(&target, &caller, req).await?;
            return Ok(Response::new(crate::cluster::boxed(updates)));
        }
        let start = lifecycle::StartRequest {
            device: req.device,
            reason: req.reason,
            ticket: req.ticket,
            spec: req.spec,
            step_up: req.step_up,
        };
        let progress = lifecycle::start(state, &principal, start).await?;
        // Dropping this stream (the admin went away) closes the lifecycle's
        // queue, which it watches.
        Ok(Response::new(Box::pin(
            ReceiverStream::new(progress).map(update),
        )))
    }

    type AttachStream = BoxStream<DeviceFrame>;

    async fn attach(
        &self,
        request: Request<Streaming<ClientFrame>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let caller = request.metadata().clone();
        let mut inbound = request.into_inner();
        let attach_timeout = state.config.sessions.attach_timeout;
        let first = tokio::time::timeout(attach_timeout, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no `open` frame in time"))??;
        let open = match first.and_then(|f| f.body) {
            Some(ClientBody::Open(open)) => open,
            _ => {
                return Err(Status::invalid_argument(
                    "the first frame of Attach must be `open`",
                ));
            }
        };
        // A session started through another replica lives where the
        // device's stream is: attach there, as the caller.
        if state.sessions.live(open.session_id.trim()).is_none()
            && let Some(target) = self.relay_target_of(open.session_id.trim(), &caller).await
        {
            let first = ClientFrame {
                body: Some(ClientBody::Open(open)),
            };
            let frames = state
                .cluster
                .attach(&target, &caller, first, inbound)
                .await?;
            return Ok(Response::new(crate::cluster::boxed(frames)));
        }
        let channel =
            lifecycle::open_channel(state, &principal, &open.session_id, open.offset).await?;
        let (tx, rx) = mpsc::channel(relay::QUEUE_FRAMES);
        state.tasks.spawn(relay::run(
            channel.live,
            channel.slot,
            channel.channel_id,
            channel.leg,
            inbound,
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let filter = sessions::ListFilter {
            device: &req.device,
            state: &req.state,
            limit: req.limit,
        };
        let entries = sessions::list(state, &principal, filter).await?;
        Ok(Response::new(ListSessionsResponse {
            sessions: entries.into_iter().map(to_proto).collect(),
        }))
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let principal = self.0.principal(&request).await?;
        let entry = sessions::get(&self.0, &principal, &request.get_ref().session_id).await?;
        Ok(Response::new(to_proto(entry)))
    }

    async fn end_session(
        &self,
        request: Request<EndSessionRequest>,
    ) -> Result<Response<EndSessionResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let entry = sessions::end(state, &principal, &req.session_id, &req.reason).await?;
        Ok(Response::new(EndSessionResponse {
            session: Some(to_proto(entry)),
        }))
    }

    async fn approve_playback(
        &self,
        request: Request<ApprovePlaybackRequest>,
    ) -> Result<Response<ApprovePlaybackResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let expires = sessions::approve_playback(
            &self.0,
            &principal,
            &req.session_id,
            &req.user,
            &req.reason,
        )
        .await?;
        Ok(Response::new(ApprovePlaybackResponse {
            expires_at: convert::ts(expires),
        }))
    }

    type GetRecordingStream = BoxStream<RecordingChunk>;

    async fn get_recording(
        &self,
        request: Request<GetRecordingRequest>,
    ) -> Result<Response<Self::GetRecordingStream>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let session =
            sessions::open_recording(state, &principal, &req.session_id, &req.reason).await?;
        let (tx, rx) = mpsc::channel(4);
        let store = state.store.clone();
        let keys = state.keys.clone();
        tokio::spawn(async move {
            for chunk_no in 0.. {
                let chunk = store.recording_chunk(&session.id, chunk_no).await;
                match crate::sessions::sealed::open_chunk(&keys, &session.id, chunk_no, chunk) {
                    Ok(Some(data)) => {
                        if tx.send(Ok(RecordingChunk { data })).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn set_consent_policy(
        &self,
        request: Request<SetConsentPolicyRequest>,
    ) -> Result<Response<ConsentPolicy>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let policy = crate::service::consent::set_policy(
            state,
            &principal,
            &req.school_id,
            &req.device_class,
            &req.consent,
        )
        .await?;
        Ok(Response::new(consent_to_proto(&policy)))
    }

    async fn list_consent_policies(
        &self,
        request: Request<ListConsentPoliciesRequest>,
    ) -> Result<Response<ListConsentPoliciesResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let policies =
            crate::service::consent::policies(state, &principal, Some(&req.school_id)).await?;
        Ok(Response::new(ListConsentPoliciesResponse {
            policies: policies.iter().map(consent_to_proto).collect(),
            default_consent: state.config.sessions.default_consent.clone(),
        }))
    }

    async fn enroll_totp(
        &self,
        request: Request<EnrollTotpRequest>,
    ) -> Result<Response<EnrollTotpResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        Ok(Response::new(
            crate::sessions::step_up::enroll(&self.0, &principal, request.get_ref()).await?,
        ))
    }

    async fn confirm_totp(
        &self,
        request: Request<ConfirmTotpRequest>,
    ) -> Result<Response<ConfirmTotpResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        Ok(Response::new(
            crate::sessions::step_up::confirm(&self.0, &principal, request.get_ref()).await?,
        ))
    }
}

fn consent_to_proto(p: &ConsentPolicyRecord) -> ConsentPolicy {
    ConsentPolicy {
        school_id: p.school_id.clone(),
        device_class: p.device_class.clone(),
        consent: p.consent.clone(),
        updated_by: p.updated_by.clone(),
        updated_at: convert::ts(p.updated_at),
    }
}
