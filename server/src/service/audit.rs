//! Reading the audit log (county- or school-scoped) and verifying its chain.

use super::{AppError, AppResult};
use crate::audit::{ChainHead, Verification};
use crate::auth::{Permission, Principal};
use crate::state::AppState;
use crate::storage::{AuditEntryRecord, AuditQuery, Millis};

/// A caller that may read the audit log, with the counties it may read;
/// school-scoped readers (the school lead) read only the entries that
/// name their school.
#[derive(Debug, Clone)]
pub struct AuditReader {
    /// `None`: every entry.
    counties: Option<Vec<String>>,
    schools: Vec<String>,
}

/// DENIED unless the caller has AuditRead somewhere.
pub fn reader(principal: &Principal) -> AppResult<AuditReader> {
    let filter = principal.filter(Permission::AuditRead);
    if filter.is_empty() {
        return Err(denied(principal));
    }
    Ok(AuditReader {
        counties: (!filter.all).then(|| filter.counties.clone()),
        schools: if filter.all {
            Vec::new()
        } else {
            filter.schools.clone()
        },
    })
}

fn denied(principal: &Principal) -> AppError {
    AppError::denied(format!("{} may not read the audit log", principal.name))
}

/// What to list: all fields optional (empty, `None` or 0).
#[derive(Debug, Clone, Default)]
pub struct EntryFilter<'a> {
    /// `kind:id`, or a bare id or name that matches any kind of object.
    pub target: &'a str,
    pub action_prefix: &'a str,
    pub since: Option<Millis>,
    /// 0: 100; at most 10,000.
    pub limit: u32,
}

/// The entries the reader may see, newest first.
pub async fn entries(
    state: &AppState,
    reader: &AuditReader,
    filter: &EntryFilter<'_>,
) -> AppResult<Vec<AuditEntryRecord>> {
    let target = filter.target.trim();
    let targets = if target.is_empty() {
        Vec::new()
    } else if target.contains(':') {
        vec![target.to_owned()]
    } else {
        // A bare id or name matches whatever kind of object it names.
        ["", "session:", "device:", "user:", "school:"]
            .iter()
            .map(|prefix| format!("{prefix}{target}"))
            .collect()
    };
    let limit = match filter.limit {
        0 => 100,
        n => n.min(10_000),
    };
    let prefix = filter.action_prefix.trim();
    Ok(state
        .store
        .list_audit_entries(&AuditQuery {
            counties: reader.counties.clone(),
            schools: reader.schools.clone(),
            action_prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            targets,
            since: filter.since,
            limit: limit as i64,
        })
        .await?)
}

/// Verifies the whole chain (within the retention) and returns the result
/// with the head it was checked against. Needs AuditRead anywhere.
pub async fn verify(
    state: &AppState,
    principal: &Principal,
) -> AppResult<(Verification, ChainHead)> {
    if !principal.can_anywhere(Permission::AuditRead) {
        return Err(denied(principal));
    }
    let (result, head) =
        crate::audit::verify(state.store.as_ref(), state.config.audit.retention).await?;
    tracing::info!(
        ok = result.broken.is_none(),
        entries = result.entries_checked,
        "audit chain verified"
    );
    Ok((result, head))
}
