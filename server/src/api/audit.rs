//! The audit service: the adapter of `AuditService` over `service::audit`.

use schoolfleet_proto::v1::audit_service_server::AuditService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert};
use crate::service::audit::{self, EntryFilter};

#[derive(Debug, Clone)]
pub struct AuditApi(pub AppState);

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let reader = audit::reader(&principal)?;
        let since = match req.since {
            Some(ts) => Some(
                schoolfleet_proto::time::from_timestamp(&ts)
                    .ok_or_else(|| Status::invalid_argument("since is not a valid time"))?
                    .timestamp_millis(),
            ),
            None => None,
        };
        let filter = EntryFilter {
            target: &req.target,
            action_prefix: &req.action_prefix,
            since,
            limit: req.limit,
        };
        let entries = audit::entries(&self.0, &reader, &filter).await?;
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
        let principal = self.0.principal(&request).await?;
        let (result, head) = audit::verify(&self.0, &principal).await?;
        let (broken_at_seq, problem) = result.broken.clone().unwrap_or_default();
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
