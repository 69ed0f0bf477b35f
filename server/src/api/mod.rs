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

use tonic::{Request, Status};

pub use crate::state::AppState;

use crate::auth::{self, AuthError, Principal};
use crate::service::AppError;
use crate::storage::StorageError;

/// Maps storage errors to gRPC status codes through [`AppError`]: database
/// details are logged, not sent.
pub(crate) fn storage_status(err: StorageError) -> Status {
    AppError::from(err).into()
}

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Status {
        AppError::from(err).into()
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
            Ok(principal) => {
                if let Some(id) = auth::presented_token_id(request.metadata()) {
                    crate::service::users::note_token_use(self, &id).await;
                }
                Ok(principal)
            }
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
}

pub use crate::service::access::SHORT_ID_LEN;
