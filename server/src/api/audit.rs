//! The audit service: list entries (county- or school-scoped) and verify
//! the chain.

use schoolfleet_proto::v1::audit_service_server::AuditService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert, storage_status};
use crate::auth::Permission;
use crate::storage::AuditQuery;

#[derive(Debug, Clone)]
pub struct AuditApi(pub AppState);

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let filter = principal.filter(Permission::AuditRead);
        if filter.is_empty() {
            return Err(Status::permission_denied(format!(
                "{} may not read the audit log",
                principal.name
            )));
        }
        // County readers get their counties' entries; school-scoped readers
        // (the school lead) only the entries that name their school.
        let counties = (!filter.all).then(|| filter.counties.clone());
        let schools = if filter.all {
            Vec::new()
        } else {
            filter.schools.clone()
        };
        let target = req.target.trim();
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
        let since = match req.since {
            Some(ts) => Some(
                schoolfleet_proto::time::from_timestamp(&ts)
                    .ok_or_else(|| Status::invalid_argument("since is not a valid time"))?
                    .timestamp_millis(),
            ),
            None => None,
        };
        let limit = match req.limit {
            0 => 100,
            n => n.min(10_000),
        };
        let prefix = req.action_prefix.trim();
        let entries = state
            .store
            .list_audit_entries(&AuditQuery {
                counties,
                schools,
                action_prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
                targets,
                since,
                limit: limit as i64,
            })
            .await
            .map_err(storage_status)?;
        Ok(Response::new(ListAuditEventsResponse {
            entries: entries
                .into_iter()
                .map(|e| AuditEntry {
                    seq: e.seq.max(0) as u64,
                    at: convert::ts(e.event.at),
                    actor: e.event.actor,
                    action: e.event.action,
                    target: e.event.target,
                    county_id: e.event.county_id.unwrap_or_default(),
                    outcome: e.event.outcome,
                    details: e.event.details,
                    school_id: e.event.school_id.unwrap_or_default(),
                    prev_hash: e.prev_hash,
                    hash: e.hash,
                })
                .collect(),
        }))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<VerifyAuditChainRequest>,
    ) -> Result<Response<VerifyAuditChainResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        if !principal.can_anywhere(Permission::AuditRead) {
            return Err(Status::permission_denied(format!(
                "{} may not read the audit log",
                principal.name
            )));
        }
        let (result, head) =
            crate::audit::verify(state.store.as_ref(), state.config.audit.retention)
                .await
                .map_err(storage_status)?;
        let (broken_at_seq, problem) = result.broken.clone().unwrap_or_default();
        tracing::info!(
            ok = result.broken.is_none(),
            entries = result.entries_checked,
            "audit chain verified"
        );
        Ok(Response::new(VerifyAuditChainResponse {
            ok: result.broken.is_none(),
            entries_checked: result.entries_checked,
            first_seq: result.first_seq,
            last_seq: result.last_seq,
            broken_at_seq,
            problem,
            pruned_before_seq: head.pruned_before_seq.max(0) as u64,
            head_seq: head.seq.max(0) as u64,
            head_hash: head.head_hash,
            head_mac: head.head_mac,
        }))
    }
}
