//! The application state every transport shares (gRPC today, the web
//! portal next): the store, the CA, config, the live agents and sessions.

use std::sync::Arc;

use crate::agents::AgentRegistry;
use crate::config::Config;
use crate::pki::CertificateAuthority;
use crate::storage::{AuditEvent, Store, now_millis};

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ca: Arc<CertificateAuthority>,
    pub config: Arc<Config>,
    pub agents: Arc<AgentRegistry>,
    /// "Agent seen" writes (stream opens, heartbeats), committed in groups.
    pub seen: crate::heartbeats::SeenWriter,
    pub compliance: Arc<crate::compliance::ComplianceEngine>,
    /// Bounds how many inventory reports are decoded and stored at once.
    pub ingest: Arc<crate::ingest::IngestGate>,
    /// Remote sessions live on this replica (consents, sessions, channels).
    pub sessions: Arc<crate::sessions::SessionBroker>,
    /// Rate limits per device (reports, heartbeats, renewals, problems).
    pub device_limits: Arc<crate::limits::DeviceLimits>,
    /// Failed enrolments and API-token authentications: limits and the
    /// aggregated audit.
    pub auth_failures: Arc<crate::limits::AuthFailures>,
    /// Data keys (outside the database) sealing TOTP secrets and recordings.
    pub keys: Arc<crate::keyring::Keyring>,
    /// This replica among those sharing one store, and the relay of remote
    /// sessions to the replica holding a device's stream.
    pub cluster: Arc<crate::cluster::Cluster>,
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Tracks the per-agent stream tasks, so shutdown can wait for them to
    /// mark their devices disconnected.
    pub tasks: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// Writes the aggregated audit entries of failed authentications and
    /// enrolments of the window that ended (one per token or peer). Run by
    /// a task each `limits.auth_failure_audit_window`, and at shutdown.
    pub async fn flush_auth_failures(&self) {
        for (key, failures) in self.auth_failures.drain() {
            let county = match key.county_id.clone() {
                Some(county) => Some(county),
                None => self.county_of_api_token(&key.target).await,
            };
            let more_peers = if failures.count as usize > failures.peers.len() {
                " (and possibly more)"
            } else {
                ""
            };
            let event = AuditEvent {
                at: failures.last_at,
                actor: "anonymous".into(),
                action: key.action.to_owned(),
                target: key.target.clone(),
                county_id: county,
                outcome: "denied".into(),
                details: format!(
                    "count={} first={} last={} peers={}{more_peers} reasons={}",
                    failures.count,
                    failures.first_at,
                    failures.last_at,
                    failures.peers.join(","),
                    failures.reasons.join("; "),
                ),
                school_id: None,
            };
            if let Err(err) = self.store.append_audit(&event).await {
                tracing::error!(error = %err, target = %key.target, "cannot write audit event");
            }
        }
    }

    /// The county of the user that holds `api_token:<id>`, so that the
    /// county's auditors see attempts on their tokens.
    async fn county_of_api_token(&self, target: &str) -> Option<String> {
        let id = target.strip_prefix("api_token:")?;
        let token = self.store.get_api_token(id).await.ok()??;
        self.store.get_user(&token.user_id).await.ok()??.county_id
    }

    /// Appends to the audit log. A failure to audit is logged loudly but
    /// does not undo the action that already happened.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        county_id: Option<&str>,
        outcome: &str,
        details: String,
    ) {
        let event = AuditEvent {
            at: now_millis(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            county_id: county_id.map(str::to_owned),
            outcome: outcome.to_owned(),
            details,
            school_id: None,
        };
        if let Err(err) = self.store.append_audit(&event).await {
            tracing::error!(error = %err, action, target, "cannot write audit event");
        }
    }

    /// Like [`AppState::audit`], for an event about one school (a session,
    /// a device, a consent setting): the entry carries the school, so its
    /// school lead reads it.
    #[allow(clippy::too_many_arguments)]
    pub async fn audit_school(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        county_id: &str,
        school_id: &str,
        outcome: &str,
        details: String,
    ) {
        let event = AuditEvent {
            at: now_millis(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            county_id: Some(county_id.to_owned()),
            outcome: outcome.to_owned(),
            details,
            school_id: (!school_id.is_empty()).then(|| school_id.to_owned()),
        };
        if let Err(err) = self.store.append_audit(&event).await {
            tracing::error!(error = %err, action, target, "cannot write audit event");
        }
    }
}
