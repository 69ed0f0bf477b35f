//! The gRPC services. Each admin call authenticates its caller, then checks
//! the permission against the tenant of every object it touches. Objects
//! the caller may not see are reported as NOT_FOUND, so that a county's
//! admin does not even learn that another county's device exists.

mod agent;
mod audit;
mod compliance;
mod convert;
mod devices;
mod enrollment;
mod kb;
mod sessions;
mod tenants;
pub(crate) mod tickets;
mod users;

pub use agent::AgentApi;
pub use audit::AuditApi;
pub use compliance::ComplianceApi;
pub use devices::{DeviceApi, InventoryApi};
pub use enrollment::EnrollmentApi;
pub use kb::KnowledgeApi;
pub use sessions::SessionApi;
pub use tenants::TenantApi;
pub use tickets::TicketApi;
pub use users::UserApi;

use std::sync::Arc;

use tonic::{Request, Status};

use crate::agents::AgentRegistry;
use crate::auth::{self, AuthError, Permission, Principal, TenantRef};
use crate::config::Config;
use crate::pki::CertificateAuthority;
use crate::storage::{AuditEvent, DeviceRecord, StorageError, Store, now_millis};

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ca: Arc<CertificateAuthority>,
    pub config: Arc<Config>,
    pub agents: Arc<AgentRegistry>,
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

/// Maps storage errors to gRPC status codes. Database details are logged,
/// not sent: they may name tables or values.
pub(crate) fn storage_status(err: StorageError) -> Status {
    match err {
        StorageError::NotFound(what) => Status::not_found(format!("{what} not found")),
        StorageError::Conflict(what) => Status::already_exists(format!("{what} already exists")),
        StorageError::TokenUnusable(why) => Status::permission_denied(why),
        other => {
            tracing::error!(error = %other, "storage failure");
            Status::unavailable("storage unavailable; see the server log")
        }
    }
}

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Status {
        match err {
            AuthError::Storage(e) => storage_status(e),
            other => Status::unauthenticated(other.to_string()),
        }
    }
}

impl AppState {
    /// Authenticates the caller's API token. Failures are limited per token
    /// id and per peer, logged (never the secret) and audited in aggregate.
    pub(crate) async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let peer = crate::limits::peer_key(request.remote_addr());
        let too_many = |l: crate::limits::Limited| l.status("too many failed authentications");
        self.auth_failures.admit(&peer).map_err(too_many)?;
        match auth::authenticate(&self.store, request.metadata()).await {
            Ok(principal) => Ok(principal),
            Err(AuthError::Storage(e)) => Err(storage_status(e)),
            Err(err) => {
                let token_id = auth::presented_token_id(request.metadata());
                let reason = err.to_string();
                let key = crate::limits::FailureKey {
                    action: "api_token.authenticate",
                    target: match &token_id {
                        Some(id) => format!("api_token:{id}"),
                        None => format!("peer:{peer}"),
                    },
                    // The county is looked up when the entry is written.
                    county_id: None,
                };
                self.auth_failures
                    .record(key, token_id.as_deref(), &peer, &reason)
                    .map_err(too_many)?;
                tracing::warn!(token = token_id.as_deref().unwrap_or("-"), %peer, %reason, "API token refused");
                Err(err.into())
            }
        }
    }

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

    /// Finds a device by id, host name or short id (the last
    /// `SHORT_ID_LEN` or more hex digits of its id) among those the caller may read,
    /// then checks `permission` on it. Invisible devices are NOT_FOUND.
    pub(crate) async fn visible_device(
        &self,
        principal: &Principal,
        device: &str,
        permission: Permission,
    ) -> Result<DeviceRecord, Status> {
        let device = device.trim();
        if device.is_empty() {
            return Err(Status::invalid_argument("device id or host name required"));
        }
        let not_found = || {
            Status::not_found(format!(
                "device {} not found",
                schoolfleet_proto::text::echo(device)
            ))
        };
        let visible = |d: &DeviceRecord| {
            principal.can(
                Permission::DeviceRead,
                &TenantRef::school(&d.county_id, &d.school_id),
            )
        };
        let record = match self
            .store
            .get_device(device)
            .await
            .map_err(storage_status)?
        {
            Some(d) => Some(d).filter(visible),
            None => {
                let mut matches: Vec<DeviceRecord> = self
                    .store
                    .find_devices_by_hostname(device)
                    .await
                    .map_err(storage_status)?
                    .into_iter()
                    .filter(visible)
                    .collect();
                // The short id of the `devices` table: the end of the id.
                if matches.is_empty() && is_short_id(device) {
                    matches = self
                        .store
                        .find_devices_by_id_suffix(device)
                        .await
                        .map_err(storage_status)?
                        .into_iter()
                        .filter(visible)
                        .collect();
                    if matches.len() > 1 {
                        return Err(Status::failed_precondition(format!(
                            "short id {} matches {} devices; use the whole device id",
                            schoolfleet_proto::text::echo(device),
                            matches.len()
                        )));
                    }
                }
                // Prefer active devices when a host name was reused.
                if matches.len() > 1 {
                    let active: Vec<_> = matches
                        .iter()
                        .filter(|d| d.status == "active")
                        .cloned()
                        .collect();
                    if active.len() == 1 {
                        matches = active;
                    }
                }
                match matches.len() {
                    0 => None,
                    1 => matches.pop(),
                    n => {
                        return Err(Status::failed_precondition(format!(
                            "host name {} matches {n} devices; use the device id \
                             (the ID column of `schoolfleet devices`)",
                            schoolfleet_proto::text::echo(device)
                        )));
                    }
                }
            }
        };
        let record = record.ok_or_else(not_found)?;
        if !principal.can(
            permission,
            &TenantRef::school(&record.county_id, &record.school_id),
        ) {
            return Err(Status::permission_denied(format!(
                "{} may not do this on device {}",
                principal.name, record.hostname
            )));
        }
        Ok(record)
    }

    /// Does the caller know this tenant at all: does one of its role
    /// bindings (whatever the role) lie in it or contain it? A tenant the
    /// caller does not know answers NOT_FOUND like one that does not exist,
    /// so that its existence does not leak; a known one may answer
    /// PERMISSION_DENIED.
    pub(crate) async fn tenant_known(
        &self,
        principal: &Principal,
        target: &TenantRef,
    ) -> Result<bool, Status> {
        use schoolfleet_proto::scope::Scope;
        for grant in &principal.bindings {
            let known = match (&grant.scope, target) {
                (Scope::Cooperation, _) | (_, TenantRef::Cooperation) => true,
                (Scope::County(c), t) => t.county_id() == Some(c.as_str()),
                (Scope::School(s), TenantRef::School { school, .. }) => s == school,
                (Scope::School(s), TenantRef::County(county)) => self
                    .store
                    .get_school(s)
                    .await
                    .map_err(storage_status)?
                    .is_some_and(|school| &school.county_id == county),
            };
            if known {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Appends to the audit log. A failure to audit is logged loudly but
    /// does not undo the action that already happened.
    pub(crate) async fn audit(
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
        };
        if let Err(err) = self.store.append_audit(&event).await {
            tracing::error!(error = %err, action, target, "cannot write audit event");
        }
    }
}

/// Requires `permission` on `target`, or PERMISSION_DENIED.
pub(crate) fn require(
    principal: &Principal,
    permission: Permission,
    target: &TenantRef,
) -> Result<(), Status> {
    if principal.can(permission, target) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{} lacks {permission:?} here",
            principal.name
        )))
    }
}

/// Validates a tenant id (county, school, device class) from a request.
pub(crate) fn tenant_id(field: &str, value: &str) -> Result<String, Status> {
    let value = value.trim();
    if schoolfleet_proto::scope::is_valid_tenant_id(value) {
        Ok(value.to_owned())
    } else {
        Err(Status::invalid_argument(format!(
            "{field} {value:?} is invalid: use 1-32 lowercase letters, digits, '-' or '_'"
        )))
    }
}

/// Validates a human-readable name or description.
pub(crate) fn display_text(field: &str, value: &str, max: usize) -> Result<String, Status> {
    let cleaned = schoolfleet_proto::text::clean(value.trim(), max);
    if cleaned.changed {
        return Err(Status::invalid_argument(format!(
            "{field} is too long (max {max} bytes) or contains control characters"
        )));
    }
    Ok(cleaned.value)
}

/// Hex digits of a device id the CLI shows as its short id (the random end
/// of a UUIDv7; its start is the enrolment time, shared by a batch).
pub const SHORT_ID_LEN: usize = 8;

fn is_short_id(text: &str) -> bool {
    (SHORT_ID_LEN..=12).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}
