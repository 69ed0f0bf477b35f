//! Reading remote sessions: lists, one session, ending one, the four-eyes
//! approval of a playback and the checked, audited opening of a recording.
//! The one implementation behind `SessionService.ListSessions`,
//! `GetSession`, `EndSession`, `ApprovePlayback` and `GetRecording`.
//! Starting and attaching are the lifecycle (`sessions::lifecycle`) and
//! the relay.

use std::collections::HashMap;

use super::{AppError, AppResult, access};
use crate::auth::{Permission, Principal};
use crate::sessions::policy::Kind;
use crate::state::AppState;
use crate::storage::{Millis, SessionQuery, SessionRecord};

/// A session with the host name of its device (empty if the device is
/// gone).
#[derive(Debug, Clone)]
pub struct SessionEntry {
    pub session: SessionRecord,
    pub hostname: String,
}

/// Which sessions to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter<'a> {
    /// A device (id or host name) the caller may see; empty: all.
    pub device: &'a str,
    /// `""`, `"all"` or `"live"` (pending and active only).
    pub state: &'a str,
    /// 0: 50; at most 1,000.
    pub limit: u32,
}

/// The sessions the caller may read (SessionRead), newest first. DENIED
/// without SessionRead anywhere; an invisible device is NOT_FOUND.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    filter: ListFilter<'_>,
) -> AppResult<Vec<SessionEntry>> {
    let tenants = principal.filter(Permission::SessionRead);
    if tenants.is_empty() {
        return Err(AppError::denied(format!(
            "{} may not see sessions",
            principal.name
        )));
    }
    let device_id = if filter.device.trim().is_empty() {
        None
    } else {
        Some(
            access::visible_device(state, principal, filter.device, Permission::SessionRead)
                .await?
                .id,
        )
    };
    let live_only = match filter.state.trim() {
        "" | "all" => false,
        "live" => true,
        other => {
            return Err(AppError::invalid(format!(
                "state {other:?} is invalid: use \"live\" or \"all\""
            )));
        }
    };
    let limit = match filter.limit {
        0 => 50,
        n => n.min(1000),
    };
    let rows = state
        .store
        .list_sessions(&SessionQuery {
            filter: tenants,
            device_id,
            live_only,
            limit: limit as i64,
        })
        .await?;
    let mut hostnames = HashMap::new();
    let mut sessions = Vec::with_capacity(rows.len());
    for row in rows {
        sessions.push(entry(state, row, &mut hostnames).await?);
    }
    Ok(sessions)
}

/// One session the caller started or may read (NOT_FOUND otherwise).
pub async fn get(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
) -> AppResult<SessionEntry> {
    let session = access::visible_session(state, principal, session_id).await?;
    entry(state, session, &mut HashMap::new()).await
}

/// Ends a session (`sessions::lifecycle::end`: own sessions, or
/// SessionEnd on its school) and returns it as it is now.
pub async fn end(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
    reason: &str,
) -> AppResult<SessionEntry> {
    let session = crate::sessions::lifecycle::end(state, principal, session_id, reason).await?;
    entry(state, session, &mut HashMap::new()).await
}

/// Approves `user`'s playback of a session's recording (four eyes,
/// `sessions::four_eyes::approve`); returns when the approval expires.
pub async fn approve_playback(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
    user: &str,
    reason: &str,
) -> AppResult<Millis> {
    crate::sessions::four_eyes::approve(state, principal, session_id, user, reason).await
}

/// Checks and audits a read of a session's recording, in this order: the
/// session is visible, the caller holds RecordingRead on its school, a
/// reason is given, the four-eyes approval (if required) exists, there is
/// a recording (or a live shell writing one). Returns the session whose
/// sealed chunks the caller may now read (`sessions::sealed::open_chunk`).
pub async fn open_recording(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
    reason: &str,
) -> AppResult<SessionRecord> {
    let session = access::visible_session(state, principal, session_id).await?;
    access::require(
        principal,
        Permission::RecordingRead,
        &access::session_tenant(&session),
    )?;
    let why = crate::sessions::sealed::read_reason(reason)?;
    let approver = crate::sessions::four_eyes::check(state, principal, &session).await?;
    // A live shell has its recording written as it goes.
    let live = session.kind == Kind::Shell.as_str() && state.sessions.live(&session.id).is_some();
    if !session.has_recording && !live {
        return Err(AppError::not_found(format!(
            "session {} has no recording",
            session.id
        )));
    }
    state
        .audit_school(
            &principal.actor(),
            "session.recording_read",
            &format!("session:{}", session.id),
            &session.county_id,
            &session.school_id,
            "ok",
            match approver {
                Some(approver) => format!("reason={why:?} approved_by=user_id:{approver}"),
                None => format!("reason={why:?}"),
            },
        )
        .await;
    Ok(session)
}

/// The session with its device's host name, read once per device.
async fn entry(
    state: &AppState,
    session: SessionRecord,
    hostnames: &mut HashMap<String, String>,
) -> AppResult<SessionEntry> {
    if !hostnames.contains_key(&session.device_id) {
        let host = state
            .store
            .get_device(&session.device_id)
            .await?
            .map(|d| d.hostname)
            .unwrap_or_default();
        hostnames.insert(session.device_id.clone(), host);
    }
    let hostname = hostnames[&session.device_id].clone();
    Ok(SessionEntry { session, hostname })
}
