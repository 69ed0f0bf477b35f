//! The agent service: enrolment, and the one long-lived stream per agent.

use std::pin::Pin;
use std::time::Duration;

use schoolfleet_proto::v1::agent_message::Body as AgentBody;
use schoolfleet_proto::v1::agent_service_server::AgentService;
use schoolfleet_proto::v1::server_message::Body as ServerBody;
use schoolfleet_proto::v1::*;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{AppState, storage_status};
use crate::agents::Outbound;
use crate::auth::{Permission, Principal, TenantRef, secrets};
use crate::ingest;
use crate::storage::{
    AgentHello, AgentSeen, AgentStream, CertificateRecord, DeviceRecord, DeviceStatus, Enrolment,
    HardwareIdentity, now_millis,
};

#[derive(Debug, Clone)]
pub struct AgentApi(pub AppState);

/// System UUIDs that firmware vendors ship on many machines at once. They
/// cannot identify hardware, so a device reporting one is never matched.
const PLACEHOLDER_UUIDS: &[&str] = &[
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",
];

fn identifies_hardware(system_uuid: &str) -> bool {
    let uuid = system_uuid.to_ascii_lowercase();
    uuid.len() >= 16 && !PLACEHOLDER_UUIDS.contains(&uuid.as_str())
}

fn cleaned(field: &str, value: &str, max: usize) -> Result<String, Status> {
    if value.len() > max * 4 {
        return Err(Status::invalid_argument(format!("{field} is too long")));
    }
    Ok(schoolfleet_proto::text::clean(value.trim(), max).value)
}

/// Who an enrolling agent is, decided only by what it can prove.
enum Binding {
    /// It presented the current certificate of this device.
    Proven(DeviceRecord),
    /// The token was made for the reinstall of this device.
    Reinstall(DeviceRecord),
    /// A new device; `resembles` is an existing one with the same hardware
    /// hints, proposed to an admin for `device adopt`.
    New { resembles: Option<DeviceRecord> },
}

impl AgentApi {
    /// Decides which device an enrolment binds to. Only the device key (a
    /// certificate presented on the connection) or a reinstall token made
    /// for one device re-enrol an existing device; the hardware identifiers
    /// the agent sends are hints that only propose a link.
    async fn bind_identity(
        &self,
        token: &crate::storage::EnrollmentToken,
        presented_cert: Option<&str>,
        hardware: &HardwareIdentity,
    ) -> Result<Binding, Status> {
        let state = &self.0;
        let revoked =
            || Status::permission_denied("this device was revoked and cannot enrol again");
        let proven = match presented_cert {
            Some(fingerprint) => state
                .store
                .get_device_by_cert(fingerprint)
                .await
                .map_err(storage_status)?,
            None => None,
        };
        // A proven device moves to the token's school only if the token's
        // creator may manage it where it is now; in another county it is
        // not this token's device at all.
        let proven = match proven {
            Some(d) if d.county_id != token.county_id => None,
            Some(d) if d.school_id != token.school_id => {
                self.creator_may_manage(token, &d).await?.then_some(d)
            }
            other => other,
        };
        if let Some(reinstall) = &token.reinstall_device_id {
            let device = state
                .store
                .get_device(reinstall)
                .await
                .map_err(storage_status)?
                .ok_or_else(|| {
                    Status::failed_precondition(
                        "the device this reinstall token was made for no longer exists",
                    )
                })?;
            if proven.as_ref().is_some_and(|p| p.id != device.id) {
                return Err(Status::permission_denied(
                    "this token is for the reinstall of another device",
                ));
            }
            if device.status() == DeviceStatus::Revoked {
                return Err(revoked());
            }
            return Ok(Binding::Reinstall(device));
        }
        if let Some(device) = proven {
            if device.status() == DeviceStatus::Revoked {
                return Err(revoked());
            }
            return Ok(Binding::Proven(device));
        }
        let resembles = state
            .store
            .find_device_by_hardware(&token.county_id, hardware)
            .await
            .map_err(storage_status)?;
        // Stolen hardware of a revoked device stays refused; that grants
        // nothing, so a hint may decide it.
        if resembles
            .as_ref()
            .is_some_and(|d| d.status() == DeviceStatus::Revoked)
        {
            return Err(Status::permission_denied(
                "this hardware belongs to a revoked device and cannot enrol again",
            ));
        }
        // Propose a link only to a device the token's creator may manage,
        // so the proposal leaks nothing across schools.
        let resembles = match resembles {
            Some(d) if self.creator_may_manage(token, &d).await? => Some(d),
            _ => None,
        };
        Ok(Binding::New { resembles })
    }

    async fn creator_may_manage(
        &self,
        token: &crate::storage::EnrollmentToken,
        device: &DeviceRecord,
    ) -> Result<bool, Status> {
        let creator = self
            .0
            .store
            .get_user(&token.created_by)
            .await
            .map_err(storage_status)?;
        Ok(creator.is_some_and(|u| {
            Principal::from_user(&u).can(
                Permission::DeviceManage,
                &TenantRef::school(&device.county_id, &device.school_id),
            )
        }))
    }

    /// Maps the client certificate of this connection to an active device.
    /// Fails closed: no certificate, an unknown one, or a device that is
    /// not active are all refused.
    /// Returns the device and the fingerprint of the presented certificate.
    async fn authenticate_device<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(DeviceRecord, String), Status> {
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a device certificate is required: enrol this agent first")
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
        let fingerprint = hex::encode(crate::pki::cert_fingerprint(leaf.as_ref()));
        let device = self
            .0
            .store
            .get_device_by_cert(&fingerprint)
            .await
            .map_err(storage_status)?
            .ok_or_else(|| {
                Status::unauthenticated(
                    "unknown device certificate: the device was enrolled again or deleted",
                )
            })?;
        match device.status() {
            DeviceStatus::Active => Ok((device, fingerprint)),
            DeviceStatus::Revoked => Err(Status::permission_denied("this device was revoked")),
            DeviceStatus::Retired => Err(Status::permission_denied(
                "this device was retired; enrol it again",
            )),
        }
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let state = &self.0;
        let peer = crate::limits::peer_key(request.remote_addr());
        // A certificate presented on this connection proves possession of
        // its key (the TLS handshake signed with it): the one proof of who a
        // device is.
        let presented_cert = request
            .peer_certs()
            .and_then(|certs| {
                certs
                    .first()
                    .map(|c| crate::pki::cert_fingerprint(c.as_ref()))
            })
            .map(hex::encode);
        let req = request.into_inner();
        // Failures are limited per token id and per peer, logged, and
        // audited in aggregate (one entry per token and window): a flood of
        // wrong secrets must not write a row per attempt.
        let failures = &state.auth_failures;
        let too_many = |l: crate::limits::Limited| l.status("too many failed enrolments");
        failures.admit(&peer).map_err(too_many)?;
        // Counts the failure; over a limit the answer becomes
        // RESOURCE_EXHAUSTED (and is not logged again).
        let fail = |target: String,
                    county: Option<&str>,
                    token_id: Option<&str>,
                    reason: &str,
                    status: Status| {
            let key = crate::limits::FailureKey {
                action: "device.enroll",
                target,
                county_id: county.map(str::to_owned),
            };
            match failures.record(key, token_id, &peer, reason) {
                Ok(()) => {
                    tracing::warn!(token = token_id.unwrap_or("-"), %peer, %reason, "enrolment refused");
                    status
                }
                Err(limited) => too_many(limited),
            }
        };
        let parts = match schoolfleet_proto::tokens::parse_enrollment_token(&req.token) {
            Ok(parts) => parts,
            Err(e) => {
                let status = Status::unauthenticated(e.to_string());
                return Err(fail(
                    format!("peer:{peer}"),
                    None,
                    None,
                    "malformed token",
                    status,
                ));
            }
        };
        if parts.ca_pin != state.ca.fingerprint() {
            return Err(Status::failed_precondition(
                "this enrolment token was issued by a server with another CA",
            ));
        }
        let token_id = parts.token.id.as_str();
        let unknown = || Status::unauthenticated("unknown enrolment token");
        let Some(token) = state
            .store
            .get_enrollment_token(token_id)
            .await
            .map_err(storage_status)?
        else {
            let target = format!("peer:{peer}");
            return Err(fail(
                target,
                None,
                Some(token_id),
                "unknown token",
                unknown(),
            ));
        };
        let target = format!("enrollment_token:{}", token.id);
        let presented = secrets::hash_secret(&parts.token.secret);
        if !bool::from(presented.as_bytes().ct_eq(token.secret_hash.as_bytes())) {
            let county = Some(token.county_id.as_str());
            return Err(fail(
                target,
                county,
                Some(token_id),
                "wrong secret",
                unknown(),
            ));
        }
        let now = now_millis();
        if let Some(reason) = token.unusable_reason(now) {
            let status = Status::permission_denied(format!("enrolment refused: {reason}"));
            let county = Some(token.county_id.as_str());
            return Err(fail(target, county, Some(token_id), &reason, status));
        }
        if req.csr_pem.len() > 16 * 1024 {
            return Err(Status::invalid_argument(
                "certificate signing request is too large",
            ));
        }
        let hostname = cleaned("hostname", &req.hostname, 253)?;
        let agent_version = cleaned("agent_version", &req.agent_version, 64)?;
        let mut hardware = HardwareIdentity {
            system_uuid: cleaned("system_uuid", &req.system_uuid, 64)?.to_ascii_lowercase(),
            serial_number: cleaned("serial_number", &req.serial_number, 128)?,
            machine_id: cleaned("machine_id", &req.machine_id, 64)?.to_ascii_lowercase(),
        };
        if !identifies_hardware(&hardware.system_uuid) {
            hardware.system_uuid.clear();
        }
        let binding = self
            .bind_identity(&token, presented_cert.as_deref(), &hardware)
            .await?;
        let (existing, proof, resembles) = match binding {
            Binding::Proven(d) => (Some(d), "device key", None),
            Binding::Reinstall(d) => (Some(d), "reinstall token", None),
            Binding::New { resembles } => (None, "", resembles),
        };
        let device_id = match &existing {
            Some(d) => d.id.clone(),
            None => uuid::Uuid::now_v7().to_string(),
        };
        let device_uuid = uuid::Uuid::parse_str(&device_id)
            .map_err(|_| Status::internal("stored device id is not a UUID"))?;
        let issued = state
            .ca
            .sign_device_csr(
                &req.csr_pem,
                device_uuid,
                state.config.agents.device_cert_validity,
            )
            .map_err(|e| {
                Status::invalid_argument(format!("certificate signing request refused: {e}"))
            })?;
        let device = DeviceRecord {
            id: device_id.clone(),
            county_id: token.county_id.clone(),
            school_id: token.school_id.clone(),
            device_class: token.device_class.clone(),
            status: DeviceStatus::Active.as_str().to_owned(),
            hostname: hostname.clone(),
            system_uuid: hardware.system_uuid,
            serial_number: hardware.serial_number,
            machine_id: hardware.machine_id,
            cert_fingerprint: Some(hex::encode(issued.fingerprint)),
            cert_serial: Some(issued.serial_hex.clone()),
            cert_not_after: Some(issued.not_after.timestamp_millis()),
            enrolled_at: now,
            last_seen: None,
            connected: false,
            agent_version,
            agent_consent_min: None,
            inventory_at: None,
            inventory_hash: None,
            os_name: String::new(),
            os_version: String::new(),
            vendor: String::new(),
            model: String::new(),
            memory_total_bytes: 0,
            ip_addresses: String::new(),
        };
        let reenrolled = existing.is_some();
        state
            .store
            .enroll_device(&Enrolment {
                token_id: token.id.clone(),
                now,
                device,
                existing: reenrolled,
            })
            .await
            .map_err(storage_status)?;
        if reenrolled {
            // The device proved who it is; an older installation holding
            // the previous certificate must not keep streaming.
            state.agents.disconnect(
                &device_id,
                Status::unauthenticated("this device was enrolled again"),
            );
        }
        let from_text = schoolfleet_proto::text::clean(&peer, 64).value;
        state
            .audit(
                &format!("device:{device_id}"),
                if reenrolled {
                    "device.reenroll"
                } else {
                    "device.enroll"
                },
                &format!("device:{device_id}"),
                Some(&token.county_id),
                "ok",
                if reenrolled {
                    format!(
                        "hostname={hostname} school={} token={} proof={proof} from {from_text}",
                        token.school_id, token.id
                    )
                } else {
                    format!(
                        "hostname={hostname} school={} token={} from {from_text}",
                        token.school_id, token.id
                    )
                },
            )
            .await;
        let history = |kind: &str, old_value: String, new_value: String| {
            crate::storage::InventoryChangeRecord {
                report_id: String::new(),
                at: now,
                kind: kind.to_owned(),
                subject: "identity".to_owned(),
                old_value,
                new_value,
            }
        };
        if let Some(old) = &existing {
            let note = history(
                "reenrolled",
                format!("certificate {}", old.cert_serial.as_deref().unwrap_or("-")),
                format!(
                    "certificate {} (proof: {proof}; token {})",
                    issued.serial_hex, token.id
                ),
            );
            if let Err(e) = state.store.record_device_change(&device_id, &note).await {
                tracing::error!(error = %e, device = %device_id, "could not record the re-enrolment in the history");
            }
        }
        if let Some(old) = &resembles {
            // A hint, never proof: the new device is on its own until an
            // admin confirms the link. Both histories show the proposal.
            let text = format!(
                "{device_id} ({hostname}) may be the same PC as {} ({}); confirm with `schoolfleet device adopt {device_id} {}`",
                old.id, old.hostname, old.id
            );
            for id in [&device_id, &old.id] {
                let note = history("link_proposed", String::new(), text.clone());
                if let Err(e) = state.store.record_device_change(id, &note).await {
                    tracing::error!(error = %e, device = %id, "could not record the proposed link");
                }
            }
            state
                .audit(
                    &format!("device:{device_id}"),
                    "device.link_proposed",
                    &format!("device:{}", old.id),
                    Some(&token.county_id),
                    "ok",
                    format!("new device {device_id} matches the hardware hints of {}; not linked until an admin adopts it", old.id),
                )
                .await;
        }
        tracing::info!(device = %device_id, school = %token.school_id, reenrolled, "device enrolled");
        Ok(Response::new(EnrollResponse {
            device_id,
            certificate_pem: issued.cert_pem,
            ca_certificate_pem: state.ca.cert_pem().to_owned(),
            reenrolled,
            school: token.school_id,
            device_class: token.device_class,
            resembles_device: resembles.map(|d| d.id).unwrap_or_default(),
        }))
    }

    type SessionChannelStream =
        Pin<Box<dyn Stream<Item = Result<ClientFrame, Status>> + Send + 'static>>;

    async fn session_channel(
        &self,
        request: Request<Streaming<DeviceFrame>>,
    ) -> Result<Response<Self::SessionChannelStream>, Status> {
        let (device, _) = self.authenticate_device(&request).await?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(self.0.config.sessions.attach_timeout, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no `attach` frame in time"))??;
        let channel_id = match first.and_then(|f| f.body) {
            Some(device_frame::Body::Attach(attach)) => attach.channel_id,
            _ => {
                return Err(Status::invalid_argument(
                    "the first frame of SessionChannel must be `attach`",
                ));
            }
        };
        let (tx, rx) = mpsc::channel(crate::sessions::relay::QUEUE_FRAMES);
        let leg = crate::sessions::AgentLeg {
            inbound,
            outbound: tx,
        };
        // Only the device the channel was opened on can claim it.
        if !self
            .0
            .sessions
            .deliver_channel(&channel_id, &device.id, leg)
        {
            // The id is the device's text: cleaned and bounded before it
            // reaches a log line or a status message.
            let channel = schoolfleet_proto::text::echo(&channel_id);
            tracing::warn!(device = %device.id, %channel, "unknown or expired session channel");
            return Err(Status::not_found(format!(
                "channel {channel} is not expected (expired or unknown)"
            )));
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn submit_inventory(
        &self,
        request: Request<InventoryReport>,
    ) -> Result<Response<ReportAck>, Status> {
        let (device, _) = self.authenticate_device(&request).await?;
        let ack = ingest::receive(&self.0, &device, request.into_inner()).await;
        Ok(Response::new(ack))
    }

    async fn report_problem(
        &self,
        request: Request<ReportProblemRequest>,
    ) -> Result<Response<ReportProblemResponse>, Status> {
        let (device, _) = self.authenticate_device(&request).await?;
        let limits = &self.0.config.limits;
        self.0
            .device_limits
            .problem_reports
            .check(&device.id)
            .map_err(|l| {
                l.status(&format!(
                    "too many problem reports from this device (at most {} per hour)",
                    limits.device_problem_reports_per_hour
                ))
            })?;
        let key = super::tickets::report_from_agent(&self.0, &device, request.into_inner()).await?;
        Ok(Response::new(ReportProblemResponse { ticket: key }))
    }

    async fn renew_certificate(
        &self,
        request: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        let state = &self.0;
        let (device, fingerprint) = self.authenticate_device(&request).await?;
        state
            .device_limits
            .renewals
            .check(&device.id)
            .map_err(|l| {
                l.status(&format!(
                    "too many certificate renewals from this device (at most {} per day)",
                    state.config.limits.device_renewals_per_day
                ))
            })?;
        let req = request.into_inner();
        if req.csr_pem.len() > 16 * 1024 {
            return Err(Status::invalid_argument(
                "certificate signing request is too large",
            ));
        }
        let device_uuid = uuid::Uuid::parse_str(&device.id)
            .map_err(|_| Status::internal("stored device id is not a UUID"))?;
        let issued = state
            .ca
            .sign_device_csr(
                &req.csr_pem,
                device_uuid,
                state.config.agents.device_cert_validity,
            )
            .map_err(|e| {
                Status::invalid_argument(format!("certificate signing request refused: {e}"))
            })?;
        let renewed = CertificateRecord {
            fingerprint: hex::encode(issued.fingerprint),
            serial: issued.serial_hex.clone(),
            not_after: issued.not_after.timestamp_millis(),
        };
        if !state
            .store
            .renew_device_cert(&device.id, &fingerprint, &renewed)
            .await
            .map_err(storage_status)?
        {
            return Err(Status::failed_precondition(
                "the device certificate changed meanwhile (re-enrolled or revoked)",
            ));
        }
        state
            .audit(
                &format!("device:{}", device.id),
                "device.renew_certificate",
                &format!("device:{}", device.id),
                Some(&device.county_id),
                "ok",
                format!(
                    "serial={} not_after={}",
                    issued.serial_hex, issued.not_after
                ),
            )
            .await;
        tracing::info!(device = %device.id, not_after = %issued.not_after, "device certificate renewed");
        Ok(Response::new(RenewCertificateResponse {
            certificate_pem: issued.cert_pem,
        }))
    }

    type OpenStreamStream = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send>>;

    async fn open_stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::OpenStreamStream>, Status> {
        let state = self.0.clone();
        let (device, fingerprint) = self.authenticate_device(&request).await?;
        // Opening a stream costs writes like a heartbeat, and counts as one.
        state
            .device_limits
            .heartbeats
            .check(&device.id)
            .map_err(|l| l.status("this device connects too often"))?;
        if device.cert_fingerprint.as_deref() == Some(fingerprint.as_str()) {
            // The renewed certificate is in use: the old one is no longer needed.
            state
                .store
                .confirm_device_cert(&device.id, &fingerprint)
                .await
                .map_err(storage_status)?;
        }
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        // Record first: a failed write must not leave a registered stream
        // that requests would be "delivered" to.
        let stream_id = uuid::Uuid::new_v4().to_string();
        let stream = AgentStream {
            id: &stream_id,
            replica: state.cluster.replica_id(),
        };
        let seen = AgentSeen::new(&device.id, now_millis(), &stream, None);
        state.seen.record(seen).await.map_err(storage_status)?;
        let connection = state.agents.register(&device.id, tx.clone());
        let welcome = Welcome {
            device_id: device.id.clone(),
            heartbeat_interval_seconds: state.config.agents.heartbeat_interval.as_secs() as u32,
            inventory_interval_seconds: state.config.agents.inventory_interval.as_secs() as u32,
            server_time: Some(schoolfleet_proto::time::to_timestamp(chrono::Utc::now())),
            submit_inventory: true,
        };
        let _ = tx
            .send(Ok(ServerMessage {
                body: Some(ServerBody::Welcome(welcome)),
            }))
            .await;
        tracing::info!(device = %device.id, hostname = %device.hostname, "agent connected");
        let tasks = state.tasks.clone();
        tasks.spawn(async move {
            let stream = AgentStream {
                id: &stream_id,
                replica: state.cluster.replica_id(),
            };
            let reason = serve_stream(&state, &device, &stream, inbound, &tx).await;
            // A stream that was replaced by a newer one of the same device
            // must not mark the device disconnected: the newer one is live.
            // (Revoke and retire already cleared `connected` themselves.)
            // Sessions opened on this stream end with it.
            // Whether the agent closed its connection or stopped answering
            // the keepalive pings, hyper reports the same end of stream;
            // the admin is told both.
            state.sessions.device_gone(&device.id, connection);
            // Only the stream the store names may mark the device
            // disconnected: the agent may have reconnected to another
            // replica while this one waited for its keepalive to time out.
            state.agents.unregister(&device.id, connection);
            if let Err(err) = state
                .store
                .record_agent_gone(&device.id, now_millis(), &stream_id)
                .await
            {
                tracing::warn!(device = %device.id, error = %err, "cannot mark device disconnected");
            }
            tracing::info!(device = %device.id, reason, "agent disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Reads the agent's messages until the stream ends; returns why it ended.
async fn serve_stream(
    state: &AppState,
    device: &DeviceRecord,
    stream: &AgentStream<'_>,
    mut inbound: Streaming<AgentMessage>,
    outbound: &Outbound,
) -> &'static str {
    // An agent that stays silent for three heartbeats is gone (NAT dropped
    // the connection without a reset, say).
    let idle_limit = state.config.agents.heartbeat_interval * 3 + Duration::from_secs(5);
    loop {
        let message = tokio::select! {
            _ = state.shutdown.cancelled() => return "server shutting down",
            _ = outbound.closed() => return "stream closed by server",
            next = tokio::time::timeout(idle_limit, inbound.message()) => next,
        };
        let message = match message {
            Err(_) => return "idle timeout",
            Ok(Err(status)) => {
                tracing::warn!(device = %device.id, error = %schoolfleet_proto::text::echo(status.message()), code = ?status.code(), "agent stream error");
                return "stream error";
            }
            Ok(Ok(None)) => return "closed by agent",
            Ok(Ok(Some(message))) => message,
        };
        // Hellos and heartbeats each cost a write; a device that sends them
        // faster than its share is told so and its stream ends (the agent
        // reconnects with backoff).
        if matches!(
            message.body,
            Some(AgentBody::Hello(_) | AgentBody::Heartbeat(_))
        ) && let Err(limited) = state.device_limits.heartbeats.check(&device.id)
        {
            tracing::warn!(device = %device.id, "heartbeats over the rate limit; ending the stream");
            let _ = outbound
                .send(Err(limited.status("too many heartbeats from this device")))
                .await;
            return "heartbeats over the rate limit";
        }
        let reply = match message.body {
            Some(AgentBody::Hello(hello)) => {
                let version = schoolfleet_proto::text::clean(&hello.agent_version, 64).value;
                // Hostile like every agent field: only a known mode is kept.
                let consent_min = match crate::sessions::consent_floor::reported(&hello.consent_min)
                {
                    Ok(floor) => floor,
                    Err(_) => {
                        tracing::warn!(device = %device.id, consent_min = %schoolfleet_proto::text::echo(&hello.consent_min), "agent reported an unknown consent floor; recorded as unknown");
                        None
                    }
                };
                let hello = AgentHello {
                    version: &version,
                    consent_min,
                };
                touch(state, device, stream, Some(&hello), None).await
            }
            Some(AgentBody::Heartbeat(heartbeat)) => {
                // The hash confirms the stored inventory current, in the
                // same grouped write as the heartbeat itself.
                let confirms = (!heartbeat.inventory_hash.is_empty()).then(|| {
                    schoolfleet_proto::text::clean(&heartbeat.inventory_hash, 64)
                        .value
                        .to_ascii_lowercase()
                });
                // The acknowledgement follows the write, so the agent (and
                // the load generator) sees how long recording it took.
                touch(state, device, stream, None, confirms).await.map(|_| {
                    Some(ServerBody::HeartbeatAck(HeartbeatAck {
                        sequence: heartbeat.sequence,
                    }))
                })
            }
            Some(AgentBody::InventoryReport(report)) => Ok(Some(ServerBody::ReportAck(
                ingest::receive(state, device, report).await,
            ))),
            Some(AgentBody::SessionEvent(event)) => {
                state.sessions.on_agent_event(&device.id, event);
                Ok(None)
            }
            None => Ok(None),
        };
        match reply {
            Ok(Some(body)) => {
                if outbound
                    .send(Ok(ServerMessage { body: Some(body) }))
                    .await
                    .is_err()
                {
                    return "stream closed";
                }
            }
            Ok(None) => {}
            Err(status) => {
                let _ = outbound.send(Err(status)).await;
                return "device no longer active";
            }
        }
    }
}

/// Records that the device is alive. Ends the stream when the device was
/// revoked or retired in the meantime (possibly on another replica).
async fn touch(
    state: &AppState,
    device: &DeviceRecord,
    stream: &AgentStream<'_>,
    hello: Option<&AgentHello<'_>>,
    inventory_hash: Option<String>,
) -> Result<Option<ServerBody>, Status> {
    let mut seen = AgentSeen::new(&device.id, now_millis(), stream, hello);
    if let Some(hash) = inventory_hash {
        seen = seen.confirming(hash);
    }
    match state.seen.record(seen).await {
        Ok(true) => Ok(None),
        Ok(false) => Err(Status::permission_denied(
            "this device was revoked or retired",
        )),
        Err(err) => {
            // A storage hiccup must not drop a healthy agent.
            tracing::warn!(device = %device.id, error = %err, "cannot record heartbeat");
            Ok(None)
        }
    }
}
