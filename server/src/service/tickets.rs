//! The service desk's tickets: queue, ticket with its timeline, create,
//! comment, assign, status, device links, search.
//!
//! A ticket belongs to one county and optionally one school (its tenant).
//! Every function finds the ticket through [`access::visible_ticket`]
//! (TicketRead first, so invisible tickets are NOT_FOUND), then checks the
//! permission it needs. Lists go through `Principal::filter(TicketRead)`.

use std::collections::HashMap;

use super::access::{self, ticket_tenant};
use super::input::{display_text, multiline_text, optional, tenant_id};
use super::{AppError, AppResult};
use crate::auth::{Permission, Principal, TenantRef};
use crate::state::AppState;
use crate::storage::{
    self, DeviceRecord, NewTicket, SearchHit, SearchQuery, TicketChange, TicketQuery, TicketRecord,
    TimelineEntry, now_millis,
};
use crate::webhooks;

pub const MAX_TITLE: usize = 200;
pub const MAX_TEXT: usize = 20_000;

/// A ticket as callers see it: the record, the assignee's name (empty
/// when unassigned) and the ids of its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketView {
    pub ticket: TicketRecord,
    pub assignee: String,
    pub device_ids: Vec<String>,
}

/// A ticket with its timeline, oldest entry first (see `ticket_timeline`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketDetail {
    pub view: TicketView,
    pub timeline: Vec<TimelineEntry>,
}

/// The filters of the ticket queue. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    /// `new`, `open`, ... (see `storage::TICKET_STATUSES`); empty: all.
    pub statuses: Vec<String>,
    pub county_id: String,
    pub school_id: String,
    /// Device id, host name or short id; must be visible to the caller.
    pub device: String,
    /// A user name; an unknown name has no tickets.
    pub assignee: String,
    /// Only tickets assigned to the caller (wins over `assignee`).
    pub mine: bool,
    /// At most this many (0: 500; capped at 5,000), newest first.
    pub limit: u32,
}

/// A new ticket from a person. Its tenant follows from the devices, or
/// from the school or county given.
#[derive(Debug, Clone, Default)]
pub struct NewTicketRequest {
    pub title: String,
    pub description: String,
    /// `low`, `normal` (default), `high`, `urgent`.
    pub priority: String,
    /// A tenant-id-like word; default `general`.
    pub category: String,
    pub county_id: String,
    pub school_id: String,
    /// Device ids, host names or short ids.
    pub devices: Vec<String>,
}

fn status_value(status: &str) -> AppResult<String> {
    let status = status.trim().to_lowercase();
    if storage::TICKET_STATUSES.contains(&status.as_str()) {
        Ok(status)
    } else {
        Err(AppError::invalid(format!(
            "status {status:?} is invalid: use {}",
            storage::TICKET_STATUSES.join(", ")
        )))
    }
}

fn priority_value(priority: &str) -> AppResult<String> {
    let priority = priority.trim().to_lowercase();
    if priority.is_empty() {
        return Ok("normal".into());
    }
    if storage::TICKET_PRIORITIES.contains(&priority.as_str()) {
        Ok(priority)
    } else {
        Err(AppError::invalid(format!(
            "priority {priority:?} is invalid: use {}",
            storage::TICKET_PRIORITIES.join(", ")
        )))
    }
}

async fn user_names(state: &AppState) -> AppResult<HashMap<String, String>> {
    Ok(state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect())
}

fn view(t: TicketRecord, names: &HashMap<String, String>, device_ids: Vec<String>) -> TicketView {
    let assignee = t
        .assignee_id
        .as_ref()
        .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
        .unwrap_or_default();
    TicketView {
        ticket: t,
        assignee,
        device_ids,
    }
}

/// Views of many tickets with one query for all their devices (the
/// queue must not cost one query per ticket).
async fn views(state: &AppState, records: Vec<TicketRecord>) -> AppResult<Vec<TicketView>> {
    let names = user_names(state).await?;
    let ids: Vec<String> = records.iter().map(|t| t.id.clone()).collect();
    let mut devices = state.store.devices_of_tickets(&ids).await?;
    Ok(records
        .into_iter()
        .map(|t| {
            let d = devices.remove(&t.id).unwrap_or_default();
            view(t, &names, d)
        })
        .collect())
}

async fn view_one(state: &AppState, t: TicketRecord) -> AppResult<TicketView> {
    let names = user_names(state).await?;
    let devices = state.store.ticket_devices(&t.id).await?;
    Ok(view(t, &names, devices))
}

/// Applies a change, audits it, and returns the ticket as it is now.
async fn change(
    state: &AppState,
    principal: &Principal,
    ticket: &TicketRecord,
    change: TicketChange,
    action: &str,
) -> AppResult<TicketView> {
    state.store.apply_ticket_change(&change).await?;
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
    let fresh = state
        .store
        .get_ticket(ticket.number)
        .await?
        .ok_or_else(|| AppError::not_found("ticket vanished"))?;
    view_one(state, fresh).await
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

/// The ticket queue: the caller's visible tickets matching `filter`,
/// newest first, each with its devices (one query for all of them).
pub async fn list(
    state: &AppState,
    principal: &Principal,
    filter: &TicketFilter,
) -> AppResult<Vec<TicketView>> {
    let statuses = filter
        .statuses
        .iter()
        .map(|s| status_value(s))
        .collect::<AppResult<Vec<_>>>()?;
    let device_id = match optional(&filter.device) {
        Some(d) => Some(
            access::visible_device(state, principal, &d, Permission::DeviceRead)
                .await?
                .id,
        ),
        None => None,
    };
    let assignee_id = if filter.mine {
        Some(principal.user_id.clone())
    } else {
        match optional(&filter.assignee) {
            // An unknown user simply has no tickets.
            Some(name) => Some(
                state
                    .store
                    .get_user(&name)
                    .await?
                    .map(|u| u.id)
                    .unwrap_or_else(|| format!("unknown:{name}")),
            ),
            None => None,
        }
    };
    let limit = match filter.limit {
        0 => 500,
        n => n.min(5000),
    };
    let records = state
        .store
        .list_tickets(&TicketQuery {
            filter: principal.filter(Permission::TicketRead),
            statuses,
            county_id: optional(&filter.county_id),
            school_id: optional(&filter.school_id),
            device_id,
            assignee_id,
            limit: i64::from(limit),
        })
        .await?;
    views(state, records).await
}

/// One ticket with its full timeline (events, sessions, inventory and
/// compliance changes of its devices while it was open).
pub async fn show(state: &AppState, principal: &Principal, key: &str) -> AppResult<TicketDetail> {
    let ticket = access::visible_ticket(state, principal, key, Permission::TicketRead).await?;
    let timeline = state.store.ticket_timeline(&ticket.id).await?;
    Ok(TicketDetail {
        view: view_one(state, ticket).await?,
        timeline,
    })
}

/// Opens a ticket (TicketWork on its tenant). Audited; announces
/// `ticket.created` to webhooks in the same transaction.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    req: &NewTicketRequest,
) -> AppResult<TicketView> {
    let title = display_text("title", &req.title, MAX_TITLE)?;
    if title.is_empty() {
        return Err(AppError::invalid("title required"));
    }
    let description = multiline_text("description", &req.description, MAX_TEXT, true)?;
    let priority = priority_value(&req.priority)?;
    let category = match optional(&req.category) {
        Some(c) => tenant_id("category", &c)?,
        None => "general".into(),
    };
    let mut devices: Vec<DeviceRecord> = Vec::new();
    for device in &req.devices {
        let d = access::visible_device(state, principal, device, Permission::DeviceRead).await?;
        if !devices.iter().any(|x| x.id == d.id) {
            devices.push(d);
        }
    }
    // The tenant follows from the devices, or is given.
    let (county_id, school_id) = if let Some(first) = devices.first() {
        if devices.iter().any(|d| d.county_id != first.county_id) {
            return Err(AppError::invalid(
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
            return Err(AppError::invalid("the county does not match the devices"));
        }
        if let Some(given) = optional(&req.school_id)
            && Some(&given) != school.as_ref()
        {
            return Err(AppError::invalid("the school does not match the devices"));
        }
        (first.county_id.clone(), school)
    } else if let Some(school) = optional(&req.school_id) {
        let school = state
            .store
            .get_school(&tenant_id("school", &school)?)
            .await?
            .filter(|s| {
                principal.can(
                    Permission::TicketRead,
                    &TenantRef::school(&s.county_id, &s.id),
                )
            })
            .ok_or_else(|| AppError::not_found(format!("school {school:?} not found")))?;
        if let Some(county) = optional(&req.county_id)
            && county != school.county_id
        {
            return Err(AppError::invalid("the school is not in that county"));
        }
        (school.county_id, Some(school.id))
    } else if let Some(county) = optional(&req.county_id) {
        let county = tenant_id("county", &county)?;
        let exists = state.store.get_county(&county).await?.is_some();
        if !exists || !principal.can(Permission::TicketRead, &TenantRef::County(county.clone())) {
            return Err(AppError::not_found(format!("county {county:?} not found")));
        }
        (county, None)
    } else {
        return Err(AppError::invalid(
            "give at least one device, or the county (and school)",
        ));
    };
    let tenant = match &school_id {
        Some(s) => TenantRef::school(&county_id, s),
        None => TenantRef::County(county_id.clone()),
    };
    access::require(principal, Permission::TicketWork, &tenant)?;
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
        .await?;
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
    view_one(state, created).await
}

/// Adds a comment (TicketWork). Multi-line; control characters refused.
pub async fn comment(
    state: &AppState,
    principal: &Principal,
    key: &str,
    body: &str,
) -> AppResult<TicketView> {
    let ticket = access::visible_ticket(state, principal, key, Permission::TicketWork).await?;
    let body = multiline_text("comment", body, MAX_TEXT, true)?;
    if body.is_empty() {
        return Err(AppError::invalid("comment is empty"));
    }
    let mut c = base_change(principal, &ticket, "comment");
    c.body = body;
    change(state, principal, &ticket, c, "ticket.comment").await
}

/// Assigns the ticket to the user named `assignee`, or unassigns it when
/// empty. The assignee must hold TicketWork on the ticket's tenant.
pub async fn assign(
    state: &AppState,
    principal: &Principal,
    key: &str,
    assignee: &str,
) -> AppResult<TicketView> {
    let ticket = access::visible_ticket(state, principal, key, Permission::TicketWork).await?;
    let names = user_names(state).await?;
    let old = ticket
        .assignee_id
        .as_ref()
        .and_then(|id| names.get(id).cloned())
        .unwrap_or_default();
    let assignee = match optional(assignee) {
        None => None,
        Some(name) => {
            // The assignee must be able to work on this ticket: a
            // technician of another county only with a binding that
            // reaches this one (e.g. cooperation-wide).
            let user = state
                .store
                .get_user(&name)
                .await?
                .ok_or_else(|| AppError::not_found(format!("user {name:?} not found")))?;
            if !Principal::from_user(&user).can(Permission::TicketWork, &ticket_tenant(&ticket)) {
                return Err(AppError::failed_precondition(format!(
                    "{} cannot work on tickets of {}",
                    user.name,
                    ticket.school_id.as_deref().unwrap_or(&ticket.county_id)
                )));
            }
            Some(user)
        }
    };
    let mut c = base_change(principal, &ticket, "assignee");
    c.old_value = old;
    c.new_value = assignee
        .as_ref()
        .map(|u| u.name.clone())
        .unwrap_or_default();
    c.set_assignee = Some(assignee.as_ref().map(|u| u.id.clone()));
    if let Some(user) = &assignee {
        let mut assigned = ticket.clone();
        assigned.assignee_id = Some(user.id.clone());
        c.outbox = webhooks::ticket_event(
            &state.config,
            "ticket.assigned",
            &assigned,
            Some(&user.name),
            c.at,
        );
    }
    change(state, principal, &ticket, c, "ticket.assign").await
}

/// Sets the status with an optional note; `resolved` is announced to
/// webhooks.
pub async fn set_status(
    state: &AppState,
    principal: &Principal,
    key: &str,
    status: &str,
    note: &str,
) -> AppResult<TicketView> {
    let ticket = access::visible_ticket(state, principal, key, Permission::TicketWork).await?;
    let status = status_value(status)?;
    let mut c = base_change(principal, &ticket, "status");
    c.body = multiline_text("note", note, MAX_TEXT, true)?;
    c.old_value = ticket.status.clone();
    c.new_value = status.clone();
    c.set_status = Some(status.clone());
    if status == "resolved" && ticket.status != "resolved" {
        let mut resolved = ticket.clone();
        resolved.status = status.clone();
        let names = user_names(state).await?;
        let assignee = ticket.assignee_id.as_ref().and_then(|id| names.get(id));
        c.outbox = webhooks::ticket_event(
            &state.config,
            "ticket.resolved",
            &resolved,
            assignee.map(String::as_str),
            c.at,
        );
    }
    change(state, principal, &ticket, c, "ticket.status").await
}

/// Links a device of the ticket's tenant to it.
pub async fn link_device(
    state: &AppState,
    principal: &Principal,
    key: &str,
    device: &str,
) -> AppResult<TicketView> {
    let ticket = access::visible_ticket(state, principal, key, Permission::TicketWork).await?;
    let device = access::visible_device(state, principal, device, Permission::DeviceRead).await?;
    // A ticket stays inside its tenant: whoever may read it may read all
    // of its devices.
    let inside = device.county_id == ticket.county_id
        && ticket
            .school_id
            .as_ref()
            .is_none_or(|s| *s == device.school_id);
    if !inside {
        return Err(AppError::failed_precondition(format!(
            "device {} is not in the ticket's {}",
            device.hostname,
            ticket.school_id.as_deref().unwrap_or(&ticket.county_id)
        )));
    }
    let mut c = base_change(principal, &ticket, "device");
    c.new_value = device.id.clone();
    c.body = device.hostname.clone();
    c.link_device = Some(device.id.clone());
    change(state, principal, &ticket, c, "ticket.link_device").await
}

/// The open tickets of one device that the caller may read.
pub async fn open_for_device(
    state: &AppState,
    principal: &Principal,
    device: &str,
) -> AppResult<Vec<TicketView>> {
    let device = access::visible_device(state, principal, device, Permission::DeviceRead).await?;
    let records = state
        .store
        .open_tickets_for_device(&device.id)
        .await?
        .into_iter()
        .filter(|t| principal.can(Permission::TicketRead, &ticket_tenant(t)))
        .collect();
    views(state, records).await
}

/// Full-text search over the caller's tickets and, if asked and allowed,
/// the knowledge base. `limit` 0: 50; capped at 500.
pub async fn search(
    state: &AppState,
    principal: &Principal,
    text: &str,
    include_articles: bool,
    limit: u32,
) -> AppResult<Vec<SearchHit>> {
    if text.trim().is_empty() || text.len() > 400 {
        return Err(AppError::invalid("query must be 1-400 characters"));
    }
    let limit = match limit {
        0 => 50,
        n => n.min(500),
    };
    Ok(state
        .store
        .search(&SearchQuery {
            text: text.to_owned(),
            ticket_filter: principal.filter(Permission::TicketRead),
            include_articles: include_articles && principal.can_anywhere(Permission::KbRead),
            limit: i64::from(limit),
        })
        .await?)
}
