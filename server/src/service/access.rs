//! Finding objects for a caller: the one way to look up a device, a
//! ticket or a session on behalf of a principal, and the permission
//! checks every service function shares.
//!
//! Objects outside the caller's read scope are NOT_FOUND, exactly like
//! objects that do not exist, so their existence does not leak; only a
//! visible object may answer DENIED for the permission asked.

use schoolfleet_proto::text::echo;

use super::error::{AppError, AppResult};
use crate::auth::{Permission, Principal, TenantRef};
use crate::state::AppState;
use crate::storage::{DeviceRecord, SessionRecord, TicketRecord, parse_ticket_key};

/// Hex digits of a device id the CLI shows as its short id (the random end
/// of a UUIDv7; its start is the enrolment time, shared by a batch).
pub const SHORT_ID_LEN: usize = 8;

fn is_short_id(text: &str) -> bool {
    (SHORT_ID_LEN..=12).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Requires `permission` on `target`, or DENIED.
pub fn require(principal: &Principal, permission: Permission, target: &TenantRef) -> AppResult<()> {
    if principal.can(permission, target) {
        Ok(())
    } else {
        Err(AppError::denied(format!(
            "{} lacks {permission:?} here",
            principal.name
        )))
    }
}

/// The tenant of a device.
pub fn device_tenant(d: &DeviceRecord) -> TenantRef {
    TenantRef::school(&d.county_id, &d.school_id)
}

/// The tenant of a ticket: its school, or its county when it has none.
pub fn ticket_tenant(t: &TicketRecord) -> TenantRef {
    match &t.school_id {
        Some(school) => TenantRef::school(&t.county_id, school),
        None => TenantRef::County(t.county_id.clone()),
    }
}

/// The tenant of a session: the school of its device.
pub fn session_tenant(s: &SessionRecord) -> TenantRef {
    TenantRef::school(&s.county_id, &s.school_id)
}

/// Finds a device by id, host name or short id (the last [`SHORT_ID_LEN`]
/// or more hex digits of its id) among those the caller may read, then
/// checks `permission` on it. Invisible devices are NOT_FOUND; a host
/// name or short id that matches several visible devices is
/// FAILED_PRECONDITION (use the whole id).
pub async fn visible_device(
    state: &AppState,
    principal: &Principal,
    device: &str,
    permission: Permission,
) -> AppResult<DeviceRecord> {
    let device = device.trim();
    if device.is_empty() {
        return Err(AppError::invalid("device id or host name required"));
    }
    let not_found = || AppError::not_found(format!("device {} not found", echo(device)));
    let visible = |d: &DeviceRecord| principal.can(Permission::DeviceRead, &device_tenant(d));
    let record = match state.store.get_device(device).await? {
        Some(d) => Some(d).filter(visible),
        None => {
            let mut matches: Vec<DeviceRecord> = state
                .store
                .find_devices_by_hostname(device)
                .await?
                .into_iter()
                .filter(visible)
                .collect();
            // The short id of the `devices` table: the end of the id.
            if matches.is_empty() && is_short_id(device) {
                matches = state
                    .store
                    .find_devices_by_id_suffix(device)
                    .await?
                    .into_iter()
                    .filter(visible)
                    .collect();
                if matches.len() > 1 {
                    return Err(AppError::failed_precondition(format!(
                        "short id {} matches {} devices; use the whole device id",
                        echo(device),
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
                    return Err(AppError::failed_precondition(format!(
                        "host name {} matches {n} devices; use the device id \
                         (the ID column of `schoolfleet devices`)",
                        echo(device)
                    )));
                }
            }
        }
    };
    let record = record.ok_or_else(not_found)?;
    if !principal.can(permission, &device_tenant(&record)) {
        return Err(AppError::denied(format!(
            "{} may not do this on device {}",
            principal.name, record.hostname
        )));
    }
    Ok(record)
}

/// The ticket named by `key` (`SUP-1234` or `1234`) if the caller may read
/// it, then checks `permission` on it. Invisible tickets are NOT_FOUND.
pub async fn visible_ticket(
    state: &AppState,
    principal: &Principal,
    key: &str,
    permission: Permission,
) -> AppResult<TicketRecord> {
    let not_found = || AppError::not_found(format!("ticket {:?} not found", key.trim()));
    let number = parse_ticket_key(key).ok_or_else(not_found)?;
    let ticket = state
        .store
        .get_ticket(number)
        .await?
        .filter(|t| principal.can(Permission::TicketRead, &ticket_tenant(t)))
        .ok_or_else(not_found)?;
    require(principal, permission, &ticket_tenant(&ticket))?;
    Ok(ticket)
}

/// The session record for a caller: NOT_FOUND unless the caller started
/// it or holds SessionRead on its school.
pub async fn visible_session(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> AppResult<SessionRecord> {
    let not_found = || AppError::not_found(format!("session {} not found", echo(id.trim())));
    let session = state
        .store
        .get_session(id.trim())
        .await?
        .ok_or_else(not_found)?;
    if session.user_id == principal.user_id
        || principal.can(Permission::SessionRead, &session_tenant(&session))
    {
        Ok(session)
    } else {
        Err(not_found())
    }
}

/// Does the caller know this tenant at all: does one of its role bindings
/// (whatever the role) lie in it or contain it? A tenant the caller does
/// not know answers NOT_FOUND like one that does not exist, so that its
/// existence does not leak; a known one may answer DENIED.
pub async fn tenant_known(
    state: &AppState,
    principal: &Principal,
    target: &TenantRef,
) -> AppResult<bool> {
    use schoolfleet_proto::scope::Scope;
    for grant in &principal.bindings {
        let known = match (&grant.scope, target) {
            (Scope::Cooperation, _) | (_, TenantRef::Cooperation) => true,
            (Scope::County(c), t) => t.county_id() == Some(c.as_str()),
            (Scope::School(s), TenantRef::School { school, .. }) => s == school,
            (Scope::School(s), TenantRef::County(county)) => state
                .store
                .get_school(s)
                .await?
                .is_some_and(|school| &school.county_id == county),
        };
        if known {
            return Ok(true);
        }
    }
    Ok(false)
}
