//! The four-eyes rule for recordings (issue 12, part 3, optional):
//! with `[sessions] recording_four_eyes`, playing a recording needs a
//! second person's approval. Someone else who may read recordings on the
//! session's school approves one user for one session, with a reason, for
//! `recording_approval_validity`. Approvals, refusals and the reads are
//! audited; approvals go with their session (its retention).

use schoolfleet_proto::text::echo;

use crate::auth::{Permission, Principal};
use crate::service::access::{self, session_tenant};
use crate::service::input::display_text;
use crate::service::{AppError, AppResult};
use crate::state::AppState;
use crate::storage::{Millis, SessionRecord, now_millis};

/// `sessions approve-playback SESSION --for USER --reason TEXT`: returns
/// when the approval expires.
pub async fn approve(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
    user: &str,
    reason: &str,
) -> AppResult<Millis> {
    let session = access::visible_session(state, principal, session_id).await?;
    let tenant = session_tenant(&session);
    access::require(principal, Permission::RecordingRead, &tenant)?;
    if reason.trim().is_empty() {
        return Err(AppError::invalid(
            "a reason is required to approve a playback (--reason): it is audited",
        ));
    }
    let reason = display_text("reason", reason, 500)?;
    // Only a user who may read recordings there can be approved; anyone
    // else answers like a user that does not exist.
    let user = user.trim();
    let not_found = || AppError::not_found(format!("user {} not found", echo(user)));
    let requester = state.store.get_user(user).await?.ok_or_else(not_found)?;
    if !Principal::from_user(&requester).can(Permission::RecordingRead, &tenant) {
        return Err(not_found());
    }
    if requester.id == principal.user_id {
        return Err(AppError::denied(
            "nobody approves their own playback: that is the second pair of eyes",
        ));
    }
    if !state.config.sessions.recording_four_eyes {
        return Err(AppError::failed_precondition(
            "the four-eyes rule is off ([sessions] recording_four_eyes = false): \
             no approval is needed",
        ));
    }
    let now = now_millis();
    let expires = now
        + state
            .config
            .sessions
            .recording_approval_validity
            .as_millis() as Millis;
    state
        .store
        .approve_playback(
            &session.id,
            &requester.id,
            &principal.user_id,
            &reason,
            now,
            expires,
        )
        .await?;
    state
        .audit_school(
            &principal.actor(),
            "session.playback_approved",
            &format!("session:{}", session.id),
            &session.county_id,
            &session.school_id,
            "ok",
            format!("for=user:{} reason={reason:?}", requester.name),
        )
        .await;
    Ok(expires)
}

/// Before a recording is read: with the rule on, the caller needs a valid
/// approval by someone else. Returns the approver's id (for the audit
/// entry of the read), `None` when the rule is off. A refusal is audited.
pub async fn check(
    state: &AppState,
    principal: &Principal,
    session: &SessionRecord,
) -> AppResult<Option<String>> {
    if !state.config.sessions.recording_four_eyes {
        return Ok(None);
    }
    match state
        .store
        .playback_approver(&session.id, &principal.user_id, now_millis())
        .await?
    {
        Some(approver) => Ok(Some(approver)),
        None => {
            let why = format!(
                "the four-eyes rule is on: someone else who may read recordings of {} approves \
                 first: schoolfleet sessions approve-playback {} --for {} --reason ...",
                session.school_id, session.id, principal.name
            );
            state
                .audit_school(
                    &principal.actor(),
                    "session.recording_read",
                    &format!("session:{}", session.id),
                    &session.county_id,
                    &session.school_id,
                    "denied",
                    "no approval (four-eyes rule)".into(),
                )
                .await;
            Err(AppError::denied(why))
        }
    }
}
