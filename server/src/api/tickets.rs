//! The gRPC adapter of the service desk's tickets (`TicketService`) over
//! `service::tickets`, and `report_from_agent` behind
//! `AgentService.ReportProblem`.

use schoolfleet_proto::v1::ticket_service_server::TicketService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert};
use crate::service::input::multiline_text;
use crate::service::tickets::{self as svc, MAX_TEXT, MAX_TITLE, TicketView};
use crate::service::{AppError, AppResult};
use crate::storage::{self, NewTicket, TicketRecord, now_millis};
use crate::webhooks;

#[derive(Debug, Clone)]
pub struct TicketApi(pub AppState);

/// Open tickets a device may have reported itself and still open: a
/// hostile or broken agent cannot flood the service desk.
const MAX_OPEN_AGENT_TICKETS: usize = 5;

/// A ticket reported by an agent (already authenticated by its device
/// certificate). Every string is hostile: cleaned and cut, never refused
/// for its content.
pub(crate) async fn report_from_agent(
    state: &AppState,
    device: &storage::DeviceRecord,
    req: ReportProblemRequest,
) -> AppResult<String> {
    let clean = |s: &str, max| schoolfleet_proto::text::clean(s.trim(), max).value;
    let title = clean(&req.title, MAX_TITLE);
    if title.is_empty() {
        return Err(AppError::invalid("title required"));
    }
    let description = multiline_text("description", &req.description, MAX_TEXT, false)?;
    let reporter = format!("device:{}", device.id);
    let open_own = state
        .store
        .open_tickets_for_device(&device.id)
        .await?
        .into_iter()
        .filter(|t| t.reporter == reporter)
        .count();
    if open_own >= MAX_OPEN_AGENT_TICKETS {
        return Err(AppError::exhausted(format!(
            "this device already has {open_own} open reports"
        )));
    }
    // The snapshot: facts about the machine only, no personal data.
    let snapshot = format!(
        "hostname: {}\nos: {}\nuptime_seconds: {}\ndisk_free_bytes: {}\ninventory_hash: {}",
        clean(&req.hostname, 255),
        clean(&req.os, 255),
        req.uptime_seconds,
        req.disk_free_bytes,
        clean(&req.inventory_hash, 128),
    );
    let now = now_millis();
    let ticket = TicketRecord {
        id: uuid::Uuid::now_v7().to_string(),
        number: 0,
        title,
        description,
        status: "new".into(),
        priority: "normal".into(),
        category: "agent".into(),
        county_id: device.county_id.clone(),
        school_id: Some(device.school_id.clone()),
        assignee_id: None,
        reporter: reporter.clone(),
        created_at: now,
        updated_at: now,
        closed_at: None,
    };
    let created = state
        .store
        .create_ticket(&NewTicket {
            ticket,
            device_ids: vec![device.id.clone()],
            created_note: snapshot,
            announce: webhooks::ticket_created(&state.config),
        })
        .await?;
    state
        .audit(
            &reporter,
            "ticket.report",
            &format!("ticket:{}", created.key()),
            Some(&created.county_id),
            "ok",
            format!("hostname={}", device.hostname),
        )
        .await;
    Ok(created.key())
}

/// A ticket on the wire.
pub(crate) fn wire(view: TicketView) -> Ticket {
    let t = view.ticket;
    Ticket {
        key: t.key(),
        id: t.id.clone(),
        title: t.title,
        description: t.description,
        status: t.status,
        priority: t.priority,
        category: t.category,
        county_id: t.county_id,
        school_id: t.school_id.unwrap_or_default(),
        assignee: view.assignee,
        reporter: t.reporter,
        created_at: convert::ts(t.created_at),
        updated_at: convert::ts(t.updated_at),
        closed_at: convert::opt_ts(t.closed_at),
        device_ids: view.device_ids,
    }
}

fn timeline_entry(entry: storage::TimelineEntry) -> TimelineEntry {
    match entry {
        storage::TimelineEntry::Event(e) => TimelineEntry {
            at: convert::ts(e.at),
            device_id: if e.kind == "device" {
                e.new_value.clone()
            } else {
                String::new()
            },
            kind: e.kind,
            actor: e.actor,
            body: e.body,
            old_value: e.old_value,
            new_value: e.new_value,
            subject: String::new(),
            change_kind: String::new(),
            ended_at: None,
            exit_code: None,
        },
        storage::TimelineEntry::Session(session) => TimelineEntry {
            at: convert::ts(session.started_at),
            kind: "session".into(),
            actor: session.actor,
            body: session.reason,
            old_value: String::new(),
            new_value: if session.end_reason.is_empty() {
                session.state
            } else {
                format!("{}: {}", session.state, session.end_reason)
            },
            device_id: session.device_id,
            subject: session.id,
            change_kind: session.kind,
            ended_at: session.ended_at.and_then(convert::ts),
            exit_code: session.exit_code.map(|c| c as i32),
        },
        storage::TimelineEntry::Compliance(change) => TimelineEntry {
            at: convert::ts(change.at),
            kind: "compliance".into(),
            actor: "compliance".into(),
            body: change.actual,
            old_value: change.old_status,
            new_value: change.new_status,
            device_id: change.device_id,
            subject: change.rule_id,
            change_kind: format!("standard revision {}", change.revision),
            ended_at: None,
            exit_code: None,
        },
        storage::TimelineEntry::Inventory { device_id, change } => TimelineEntry {
            at: convert::ts(change.at),
            kind: "inventory".into(),
            actor: format!("device:{device_id}"),
            body: String::new(),
            old_value: change.old_value,
            new_value: change.new_value,
            device_id,
            subject: change.subject,
            change_kind: change.kind,
            ended_at: None,
            exit_code: None,
        },
    }
}

#[tonic::async_trait]
impl TicketService for TicketApi {
    async fn create_ticket(
        &self,
        request: Request<CreateTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let new = svc::NewTicketRequest {
            title: req.title,
            description: req.description,
            priority: req.priority,
            category: req.category,
            county_id: req.county_id,
            school_id: req.school_id,
            devices: req.devices,
        };
        let view = svc::create(&self.0, &principal, &new).await?;
        Ok(Response::new(wire(view)))
    }

    async fn list_tickets(
        &self,
        request: Request<ListTicketsRequest>,
    ) -> Result<Response<ListTicketsResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let filter = svc::TicketFilter {
            statuses: req.statuses,
            county_id: req.county_id,
            school_id: req.school_id,
            device: req.device,
            assignee: req.assignee,
            mine: req.mine,
            limit: req.limit,
        };
        let views = svc::list(&self.0, &principal, &filter).await?;
        Ok(Response::new(ListTicketsResponse {
            tickets: views.into_iter().map(wire).collect(),
        }))
    }

    async fn get_ticket(
        &self,
        request: Request<TicketRef>,
    ) -> Result<Response<TicketDetail>, Status> {
        let principal = self.0.principal(&request).await?;
        let detail = svc::show(&self.0, &principal, &request.get_ref().ticket).await?;
        Ok(Response::new(TicketDetail {
            ticket: Some(wire(detail.view)),
            timeline: detail.timeline.into_iter().map(timeline_entry).collect(),
        }))
    }

    async fn comment_ticket(
        &self,
        request: Request<CommentTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let view = svc::comment(&self.0, &principal, &req.ticket, &req.body).await?;
        Ok(Response::new(wire(view)))
    }

    async fn assign_ticket(
        &self,
        request: Request<AssignTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let view = svc::assign(&self.0, &principal, &req.ticket, &req.assignee).await?;
        Ok(Response::new(wire(view)))
    }

    async fn set_ticket_status(
        &self,
        request: Request<SetTicketStatusRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let view =
            svc::set_status(&self.0, &principal, &req.ticket, &req.status, &req.note).await?;
        Ok(Response::new(wire(view)))
    }

    async fn link_ticket_device(
        &self,
        request: Request<LinkTicketDeviceRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let view = svc::link_device(&self.0, &principal, &req.ticket, &req.device).await?;
        Ok(Response::new(wire(view)))
    }

    async fn list_device_tickets(
        &self,
        request: Request<DeviceTicketsRequest>,
    ) -> Result<Response<ListTicketsResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let views = svc::open_for_device(&self.0, &principal, &request.get_ref().device).await?;
        Ok(Response::new(ListTicketsResponse {
            tickets: views.into_iter().map(wire).collect(),
        }))
    }

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let hits = svc::search(
            &self.0,
            &principal,
            &req.query,
            req.include_articles,
            req.limit,
        )
        .await?;
        let hits = hits
            .into_iter()
            .map(|hit| SearchHit {
                kind: hit.kind,
                id: match hit.number {
                    Some(number) => format!("SUP-{number}"),
                    None => hit.ref_id,
                },
                title: hit.title,
                county_id: hit.county_id,
            })
            .collect();
        Ok(Response::new(SearchResponse { hits }))
    }
}
