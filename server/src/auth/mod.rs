//! Who is calling, and what they may do.
//!
//! Admins authenticate with API tokens (`authorization: Bearer sft_...`),
//! agents with their device certificate (see `api::agent`). Roles are bound
//! to a scope; every call is authorised against the tenant of every object
//! it touches. Anything that cannot be proven is refused: authentication
//! fails closed.

pub mod mfa;
mod principal;
mod roles;
pub mod secrets;

pub use principal::{Principal, TenantRef};
pub use roles::{Permission, RemoteLimit, Role};

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::storage::{Store, now_millis};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing API token: send `authorization: Bearer sft_...`")]
    Missing,
    #[error("invalid API token: {0}")]
    Invalid(String),
    #[error("API token expired")]
    Expired,
    #[error("API token revoked")]
    Revoked,
    #[error("storage unavailable: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// The id of the API token presented, if the header holds one that parses.
/// The id is not secret (it names the token); the secret is never returned.
pub fn presented_token_id(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let header = metadata
        .get(schoolfleet_proto::AUTHORIZATION_HEADER)?
        .to_str()
        .ok()?;
    let token = header.strip_prefix("Bearer ")?;
    schoolfleet_proto::tokens::parse_api_token(token)
        .ok()
        .map(|parts| parts.id)
}

/// Resolves the caller of an admin request from its metadata.
pub async fn authenticate(
    store: &Arc<dyn Store>,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Principal, AuthError> {
    let header = metadata
        .get(schoolfleet_proto::AUTHORIZATION_HEADER)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid("not ASCII".into()))?;
    let token = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| AuthError::Invalid("expected the Bearer scheme".into()))?;
    let parts = schoolfleet_proto::tokens::parse_api_token(token)
        .map_err(|e| AuthError::Invalid(e.to_string()))?;
    // The same answer for an unknown id and a wrong secret: a caller must
    // not learn which token ids exist.
    let unknown = || AuthError::Invalid("unknown token".into());
    let record = store.get_api_token(&parts.id).await?.ok_or_else(unknown)?;
    let presented = secrets::hash_secret(&parts.secret);
    if !bool::from(presented.as_bytes().ct_eq(record.secret_hash.as_bytes())) {
        return Err(unknown());
    }
    if record.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    if record.expires_at.is_some_and(|at| at <= now_millis()) {
        return Err(AuthError::Expired);
    }
    let user = store.get_user(&record.user_id).await?.ok_or_else(unknown)?;
    Ok(Principal::from_user(&user))
}
