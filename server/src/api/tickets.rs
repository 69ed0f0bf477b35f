//! The service desk's tickets: create, list, show with timeline, comment,
//! assign, status, link devices, full-text search.
//!
//! A ticket belongs to one county and optionally one school (its tenant).
//! Every call checks TicketRead on that tenant first (invisible tickets are
//! NOT_FOUND), then the permission the call needs.

use crate::service::access;
use std::collections::HashMap;

use schoolfleet_proto::v1::ticket_service_server::TicketService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert, display_text, storage_status, tenant_id};
use crate::auth::{Permission, Principal, TenantRef};
use crate::storage::{
    self, NewTicket, SearchQuery, TicketChange, TicketQuery, TicketRecord, now_millis,
};
use crate::webhooks;

const MAX_TITLE: usize = 200;
const MAX_TEXT: usize = 20_000;

#[derive(Debug, Clone)]
pub struct TicketApi(pub AppState);

pub(crate) use crate::service::access::ticket_tenant;
pub(crate) use crate::service::input::{multiline_text, optional};

fn status_value(status: &str) -> Result<String, Status> {
    let status = status.trim().to_lowercase();
    if storage::TICKET_STATUSES.contains(&status.as_str()) {
        Ok(status)
    } else {
        Err(Status::invalid_argument(format!(
            "status {status:?} is invalid: use {}",
            storage::TICKET_STATUSES.join(", ")
        )))
    }
}

fn priority_value(priority: &str) -> Result<String, Status> {
    let priority = priority.trim().to_lowercase();
    if priority.is_empty() {
        return Ok("normal".into());
    }
    if storage::TICKET_PRIORITIES.contains(&priority.as_str()) {
        Ok(priority)
    } else {
        Err(Status::invalid_argument(format!(
            "priority {priority:?} is invalid: use {}",
            storage::TICKET_PRIORITIES.join(", ")
        )))
    }
}

impl TicketApi {
    async fn user_names(&self) -> Result<HashMap<String, String>, Status> {
        Ok(self
            .0
            .store
            .list_users()
            .await
            .map_err(storage_status)?
            .into_iter()
            .map(|u| (u.id, u.name))
            .collect())
    }

    async fn to_wire(&self, t: &TicketRecord) -> Result<Ticket, Status> {
        let names = self.user_names().await?;
        let devices = self
            .0
            .store
            .ticket_devices(&t.id)
            .await
            .map_err(storage_status)?;
        Ok(wire(t, &names, devices))
    }

    /// Re-reads the ticket after a change.
    async fn reload(&self, t: &TicketRecord) -> Result<Ticket, Status> {
        let fresh = self
            .0
            .store
            .get_ticket(t.number)
            .await
            .map_err(storage_status)?
            .ok_or_else(|| Status::not_found("ticket vanished"))?;
        self.to_wire(&fresh).await
    }

    async fn change(
        &self,
        principal: &Principal,
        ticket: &TicketRecord,
        change: TicketChange,
        action: &str,
    ) -> Result<Ticket, Status> {
        let state = &self.0;
        state
            .store
            .apply_ticket_change(&change)
            .await
            .map_err(storage_status)?;
        state
            .audit(
                &principal.actor(),
                action,
                &format!("ticket:{}", ticket.key()),
                Some(&ticket.county_id),
                "ok",
                format!("{}={}", change.kind, change.new_value),
            )
            .await;
        self.reload(ticket).await
    }

    fn base_change(principal: &Principal, ticket: &TicketRecord, kind: &str) -> TicketChange {
        TicketChange {
            ticket_id: ticket.id.clone(),
            at: now_millis(),
            actor: principal.actor(),
            kind: kind.into(),
            ..Default::default()
        }
    }
}

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
) -> Result<String, Status> {
    let clean = |s: &str, max| schoolfleet_proto::text::clean(s.trim(), max).value;
    let title = clean(&req.title, MAX_TITLE);
    if title.is_empty() {
        return Err(Status::invalid_argument("title required"));
    }
    let description = multiline_text("description", &req.description, MAX_TEXT, false)?;
    let reporter = format!("device:{}", device.id);
    let open_own = state
        .store
        .open_tickets_for_device(&device.id)
        .await
        .map_err(storage_status)?
        .into_iter()
        .filter(|t| t.reporter == reporter)
        .count();
    if open_own >= MAX_OPEN_AGENT_TICKETS {
        return Err(Status::resource_exhausted(format!(
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
        .await
        .map_err(storage_status)?;
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

pub(crate) fn wire(
    t: &TicketRecord,
    names: &HashMap<String, String>,
    devices: Vec<String>,
) -> Ticket {
    Ticket {
        key: t.key(),
        id: t.id.clone(),
        title: t.title.clone(),
        description: t.description.clone(),
        status: t.status.clone(),
        priority: t.priority.clone(),
        category: t.category.clone(),
        county_id: t.county_id.clone(),
        school_id: t.school_id.clone().unwrap_or_default(),
        assignee: t
            .assignee_id
            .as_ref()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
            .unwrap_or_default(),
        reporter: t.reporter.clone(),
        created_at: convert::ts(t.created_at),
        updated_at: convert::ts(t.updated_at),
        closed_at: convert::opt_ts(t.closed_at),
        device_ids: devices,
    }
}

#[tonic::async_trait]
impl TicketService for TicketApi {
    async fn create_ticket(
        &self,
        request: Request<CreateTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let title = display_text("title", &req.title, MAX_TITLE)?;
        if title.is_empty() {
            return Err(Status::invalid_argument("title required"));
        }
        let description = multiline_text("description", &req.description, MAX_TEXT, true)?;
        let priority = priority_value(&req.priority)?;
        let category = match optional(&req.category) {
            Some(c) => tenant_id("category", &c)?,
            None => "general".into(),
        };
        let mut devices = Vec::new();
        for device in &req.devices {
            let d =
                access::visible_device(state, &principal, device, Permission::DeviceRead).await?;
            if !devices.iter().any(|x: &storage::DeviceRecord| x.id == d.id) {
                devices.push(d);
            }
        }
        // The tenant follows from the devices, or is given.
        let (county_id, school_id) = if let Some(first) = devices.first() {
            if devices.iter().any(|d| d.county_id != first.county_id) {
                return Err(Status::invalid_argument(
                    "all devices of a ticket must belong to one county",
                ));
            }
            let school = devices
                .iter()
                .all(|d| d.school_id == first.school_id)
                .then(|| first.school_id.clone());
            if let Some(county) = optional(&req.county_id)
                && county != first.county_id
            {
                return Err(Status::invalid_argument(
                    "the county does not match the devices",
                ));
            }
            if let Some(given) = optional(&req.school_id)
                && Some(&given) != school.as_ref()
            {
                return Err(Status::invalid_argument(
                    "the school does not match the devices",
                ));
            }
            (first.county_id.clone(), school)
        } else if let Some(school) = optional(&req.school_id) {
            let school = state
                .store
                .get_school(&tenant_id("school", &school)?)
                .await
                .map_err(storage_status)?
                .filter(|s| {
                    principal.can(
                        Permission::TicketRead,
                        &TenantRef::school(&s.county_id, &s.id),
                    )
                })
                .ok_or_else(|| Status::not_found(format!("school {school:?} not found")))?;
            if let Some(county) = optional(&req.county_id)
                && county != school.county_id
            {
                return Err(Status::invalid_argument("the school is not in that county"));
            }
            (school.county_id, Some(school.id))
        } else if let Some(county) = optional(&req.county_id) {
            let county = tenant_id("county", &county)?;
            let exists = state
                .store
                .get_county(&county)
                .await
                .map_err(storage_status)?
                .is_some();
            if !exists || !principal.can(Permission::TicketRead, &TenantRef::County(county.clone()))
            {
                return Err(Status::not_found(format!("county {county:?} not found")));
            }
            (county, None)
        } else {
            return Err(Status::invalid_argument(
                "give at least one device, or the county (and school)",
            ));
        };
        let tenant = match &school_id {
            Some(s) => TenantRef::school(&county_id, s),
            None => TenantRef::County(county_id.clone()),
        };
        super::require(&principal, Permission::TicketWork, &tenant)?;
        let now = now_millis();
        let ticket = TicketRecord {
            id: uuid::Uuid::now_v7().to_string(),
            number: 0,
            title,
            description,
            status: "new".into(),
            priority,
            category,
            county_id,
            school_id,
            assignee_id: None,
            reporter: principal.actor(),
            created_at: now,
            updated_at: now,
            closed_at: None,
        };
        let created = state
            .store
            .create_ticket(&NewTicket {
                ticket,
                device_ids: devices.iter().map(|d| d.id.clone()).collect(),
                created_note: String::new(),
                announce: webhooks::ticket_created(&state.config),
            })
            .await
            .map_err(storage_status)?;
        state
            .audit(
                &principal.actor(),
                "ticket.create",
                &format!("ticket:{}", created.key()),
                Some(&created.county_id),
                "ok",
                format!("devices={}", devices.len()),
            )
            .await;
        Ok(Response::new(self.to_wire(&created).await?))
    }

    async fn list_tickets(
        &self,
        request: Request<ListTicketsRequest>,
    ) -> Result<Response<ListTicketsResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let statuses = req
            .statuses
            .iter()
            .map(|s| status_value(s))
            .collect::<Result<Vec<_>, _>>()?;
        let device_id = match optional(&req.device) {
            Some(d) => Some(
                access::visible_device(state, &principal, &d, Permission::DeviceRead)
                    .await?
                    .id,
            ),
            None => None,
        };
        let assignee_id = if req.mine {
            Some(principal.user_id.clone())
        } else {
            match optional(&req.assignee) {
                // An unknown user simply has no tickets.
                Some(name) => Some(
                    state
                        .store
                        .get_user(&name)
                        .await
                        .map_err(storage_status)?
                        .map(|u| u.id)
                        .unwrap_or_else(|| format!("unknown:{name}")),
                ),
                None => None,
            }
        };
        let limit = match req.limit {
            0 => 500,
            n => n.min(5000),
        };
        let records = state
            .store
            .list_tickets(&TicketQuery {
                filter: principal.filter(Permission::TicketRead),
                statuses,
                county_id: optional(&req.county_id),
                school_id: optional(&req.school_id),
                device_id,
                assignee_id,
                limit: i64::from(limit),
            })
            .await
            .map_err(storage_status)?;
        let names = self.user_names().await?;
        let mut tickets = Vec::with_capacity(records.len());
        for t in &records {
            let devices = state
                .store
                .ticket_devices(&t.id)
                .await
                .map_err(storage_status)?;
            tickets.push(wire(t, &names, devices));
        }
        Ok(Response::new(ListTicketsResponse { tickets }))
    }

    async fn get_ticket(
        &self,
        request: Request<TicketRef>,
    ) -> Result<Response<TicketDetail>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let ticket = access::visible_ticket(
            &self.0,
            &principal,
            &request.get_ref().ticket,
            Permission::TicketRead,
        )
        .await?;
        let timeline = state
            .store
            .ticket_timeline(&ticket.id)
            .await
            .map_err(storage_status)?
            .into_iter()
            .map(|entry| match entry {
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
            })
            .collect();
        Ok(Response::new(TicketDetail {
            ticket: Some(self.to_wire(&ticket).await?),
            timeline,
        }))
    }

    async fn comment_ticket(
        &self,
        request: Request<CommentTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let ticket =
            access::visible_ticket(&self.0, &principal, &req.ticket, Permission::TicketWork)
                .await?;
        let body = multiline_text("comment", &req.body, MAX_TEXT, true)?;
        if body.is_empty() {
            return Err(Status::invalid_argument("comment is empty"));
        }
        let mut change = Self::base_change(&principal, &ticket, "comment");
        change.body = body;
        Ok(Response::new(
            self.change(&principal, &ticket, change, "ticket.comment")
                .await?,
        ))
    }

    async fn assign_ticket(
        &self,
        request: Request<AssignTicketRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let ticket =
            access::visible_ticket(&self.0, &principal, &req.ticket, Permission::TicketWork)
                .await?;
        let names = self.user_names().await?;
        let old = ticket
            .assignee_id
            .as_ref()
            .and_then(|id| names.get(id).cloned())
            .unwrap_or_default();
        let assignee = match optional(&req.assignee) {
            None => None,
            Some(name) => {
                // The assignee must be able to work on this ticket: a
                // technician of another county only with a binding that
                // reaches this one (e.g. cooperation-wide).
                let user = state
                    .store
                    .get_user(&name)
                    .await
                    .map_err(storage_status)?
                    .ok_or_else(|| Status::not_found(format!("user {name:?} not found")))?;
                if !Principal::from_user(&user).can(Permission::TicketWork, &ticket_tenant(&ticket))
                {
                    return Err(Status::failed_precondition(format!(
                        "{} cannot work on tickets of {}",
                        user.name,
                        ticket.school_id.as_deref().unwrap_or(&ticket.county_id)
                    )));
                }
                Some(user)
            }
        };
        let mut change = Self::base_change(&principal, &ticket, "assignee");
        change.old_value = old;
        change.new_value = assignee
            .as_ref()
            .map(|u| u.name.clone())
            .unwrap_or_default();
        change.set_assignee = Some(assignee.as_ref().map(|u| u.id.clone()));
        if let Some(user) = &assignee {
            let mut assigned = ticket.clone();
            assigned.assignee_id = Some(user.id.clone());
            change.outbox = webhooks::ticket_event(
                &state.config,
                "ticket.assigned",
                &assigned,
                Some(&user.name),
                change.at,
            );
        }
        Ok(Response::new(
            self.change(&principal, &ticket, change, "ticket.assign")
                .await?,
        ))
    }

    async fn set_ticket_status(
        &self,
        request: Request<SetTicketStatusRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let ticket =
            access::visible_ticket(&self.0, &principal, &req.ticket, Permission::TicketWork)
                .await?;
        let status = status_value(&req.status)?;
        let mut change = Self::base_change(&principal, &ticket, "status");
        change.body = multiline_text("note", &req.note, MAX_TEXT, true)?;
        change.old_value = ticket.status.clone();
        change.new_value = status.clone();
        change.set_status = Some(status.clone());
        if status == "resolved" && ticket.status != "resolved" {
            let mut resolved = ticket.clone();
            resolved.status = status.clone();
            let names = self.user_names().await?;
            let assignee = ticket.assignee_id.as_ref().and_then(|id| names.get(id));
            change.outbox = webhooks::ticket_event(
                &state.config,
                "ticket.resolved",
                &resolved,
                assignee.map(String::as_str),
                change.at,
            );
        }
        Ok(Response::new(
            self.change(&principal, &ticket, change, "ticket.status")
                .await?,
        ))
    }

    async fn link_ticket_device(
        &self,
        request: Request<LinkTicketDeviceRequest>,
    ) -> Result<Response<Ticket>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let ticket =
            access::visible_ticket(&self.0, &principal, &req.ticket, Permission::TicketWork)
                .await?;
        let device =
            access::visible_device(state, &principal, &req.device, Permission::DeviceRead).await?;
        // A ticket stays inside its tenant: whoever may read it may read
        // all of its devices.
        let inside = device.county_id == ticket.county_id
            && ticket
                .school_id
                .as_ref()
                .is_none_or(|s| *s == device.school_id);
        if !inside {
            return Err(Status::failed_precondition(format!(
                "device {} is not in the ticket's {}",
                device.hostname,
                ticket.school_id.as_deref().unwrap_or(&ticket.county_id)
            )));
        }
        let mut change = Self::base_change(&principal, &ticket, "device");
        change.new_value = device.id.clone();
        change.body = device.hostname.clone();
        change.link_device = Some(device.id.clone());
        Ok(Response::new(
            self.change(&principal, &ticket, change, "ticket.link_device")
                .await?,
        ))
    }

    async fn list_device_tickets(
        &self,
        request: Request<DeviceTicketsRequest>,
    ) -> Result<Response<ListTicketsResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let device = access::visible_device(
            state,
            &principal,
            &request.get_ref().device,
            Permission::DeviceRead,
        )
        .await?;
        let records = state
            .store
            .open_tickets_for_device(&device.id)
            .await
            .map_err(storage_status)?;
        let names = self.user_names().await?;
        let mut tickets = Vec::new();
        for t in records
            .iter()
            .filter(|t| principal.can(Permission::TicketRead, &ticket_tenant(t)))
        {
            let devices = state
                .store
                .ticket_devices(&t.id)
                .await
                .map_err(storage_status)?;
            tickets.push(wire(t, &names, devices));
        }
        Ok(Response::new(ListTicketsResponse { tickets }))
    }

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        if req.query.trim().is_empty() || req.query.len() > 400 {
            return Err(Status::invalid_argument("query must be 1-400 characters"));
        }
        let limit = match req.limit {
            0 => 50,
            n => n.min(500),
        };
        let hits = state
            .store
            .search(&SearchQuery {
                text: req.query,
                ticket_filter: principal.filter(Permission::TicketRead),
                include_articles: req.include_articles
                    && principal.can_anywhere(Permission::KbRead),
                limit: i64::from(limit),
            })
            .await
            .map_err(storage_status)?;
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            let id = match hit.number {
                Some(number) => format!("SUP-{number}"),
                None => hit.ref_id,
            };
            out.push(SearchHit {
                kind: hit.kind,
                id,
                title: hit.title,
                county_id: hit.county_id,
            });
        }
        Ok(Response::new(SearchResponse { hits: out }))
    }
}
