//! The step-up before a remote session (OPS.1.2.5 A17): a second factor on
//! top of the API token, for the capabilities `[sessions] require_mfa`
//! names. TOTP today; the wire message (`StepUp`) has one case per method
//! so WebAuthn can be added beside it.
//!
//! A code proves presence for one start: its user, device, kind and reason
//! go into the session row and the audit entry with the method. A code's
//! time step is stored per user and only a later step is accepted, so a
//! code is used once, on every replica. For a fan-out `exec` the same user
//! may start more sessions of the same kind with the same reason (its
//! SHA-256 is kept, not the text) within `mfa_grace` without a new code;
//! those are recorded as `totp-grace`.

use schoolfleet_proto::v1::step_up::Method;
use schoolfleet_proto::v1::{
    ConfirmTotpRequest, ConfirmTotpResponse, EnrollTotpRequest, EnrollTotpResponse, StepUp,
};
use sha2::{Digest, Sha256};

use super::policy::Kind;
use crate::auth::Principal;
use crate::auth::mfa;
use crate::service::{AppError, AppResult};
use crate::state::AppState;
use crate::storage::{UserMfaRecord, now_millis};

/// Response metadata on a refused start: the methods the user can prove
/// ("totp"), so a client knows to ask and try again.
pub const STEP_UP_HEADER: &str = "x-schoolfleet-step-up";
/// Recorded method of a start proven by a code.
pub const METHOD_TOTP: &str = "totp";
/// Recorded method of a start within the grace window of a code.
pub const METHOD_TOTP_GRACE: &str = "totp-grace";

/// The associated data that binds a sealed secret to its user.
fn secret_context(user_id: &str) -> Vec<u8> {
    format!("totp-secret:{user_id}").into_bytes()
}

fn reason_digest(reason: &str) -> String {
    hex::encode(Sha256::digest(reason.as_bytes()))
}

fn unix_seconds(millis: i64) -> u64 {
    (millis.max(0) / 1000) as u64
}

/// PERMISSION_DENIED that tells the client to ask for a code.
fn ask_for_code(message: String) -> AppError {
    AppError::denied(message).with_hint(STEP_UP_HEADER, METHOD_TOTP)
}

/// The sealed secret opened, or UNAVAILABLE (the key file is wrong; the
/// details go to the log, not to the caller).
fn open_secret(state: &AppState, record: &UserMfaRecord) -> AppResult<Vec<u8>> {
    state
        .keys
        .open(&secret_context(&record.user_id), &record.secret)
        .map_err(|err| {
            tracing::error!(user = %record.user_id, error = %err, "cannot open a TOTP secret");
            AppError::unavailable("the second factor cannot be checked; see the server log")
        })
}

fn totp_code(step_up: Option<&StepUp>) -> Option<&str> {
    match step_up.and_then(|s| s.method.as_ref()) {
        Some(Method::Totp(totp)) => Some(totp.code.as_str()),
        None => None,
    }
}

/// Checks the step-up of a session start. Returns the method to record:
/// empty when the capability needs none, else "totp" or "totp-grace".
pub async fn check(
    state: &AppState,
    principal: &Principal,
    kind: Kind,
    reason: &str,
    step_up: Option<&StepUp>,
) -> AppResult<String> {
    let config = &state.config.sessions;
    if !config.require_mfa.iter().any(|k| k == kind.as_str()) {
        return Ok(String::new());
    }
    let record = state
        .store
        .get_user_mfa(&principal.user_id)
        .await
        .map_err(AppError::from)?;
    let Some(record) = record.filter(|r| r.confirmed) else {
        return Err(AppError::denied(format!(
            "{} sessions need a second factor on this server, and {} has none: \
             enrol with `schoolfleet mfa enroll` first",
            kind.as_str(),
            principal.name
        )));
    };
    let now = now_millis();
    let digest = reason_digest(reason);
    let in_grace = |r: &UserMfaRecord| {
        r.grace_until > now && r.grace_kind == kind.as_str() && r.grace_reason == digest
    };
    let Some(code) = totp_code(step_up) else {
        if in_grace(&record) {
            return Ok(METHOD_TOTP_GRACE.into());
        }
        return Err(ask_for_code(format!(
            "{} sessions need a second factor: send the code from your authenticator app \
             (--otp or SCHOOLFLEET_OTP)",
            kind.as_str()
        )));
    };
    let secret = open_secret(state, &record)?;
    let Some(step) = mfa::verify(&secret, code, unix_seconds(now)) else {
        return Err(ask_for_code(
            "the code is wrong or expired: check the clock of the phone".into(),
        ));
    };
    let grace_until = now.saturating_add(config.mfa_grace.as_millis() as i64);
    if state
        .store
        .use_mfa_step(
            &principal.user_id,
            step as i64,
            grace_until,
            kind.as_str(),
            &digest,
        )
        .await
        .map_err(AppError::from)?
    {
        return Ok(METHOD_TOTP.into());
    }
    // The step was used already. A fan-out sends one code with every
    // start: the starts after the first are within its grace.
    let again = state
        .store
        .get_user_mfa(&principal.user_id)
        .await
        .map_err(AppError::from)?;
    if let Some(again) = again
        && again.last_step >= step as i64
        && in_grace(&again)
    {
        return Ok(METHOD_TOTP_GRACE.into());
    }
    Err(ask_for_code(
        "this code was used already: wait for the next one".into(),
    ))
}

/// Whether the user has an active (confirmed) second factor: the web
/// login then asks for a code after the password.
pub async fn is_active(state: &AppState, user_id: &str) -> AppResult<bool> {
    Ok(state
        .store
        .get_user_mfa(user_id)
        .await
        .map_err(AppError::from)?
        .is_some_and(|r| r.confirmed))
}

/// A code given at a login (the web portal's second step): true when it
/// matches the user's active secret and its time step was not used before,
/// on any replica (the same single-use rule as a session start, through
/// `use_mfa_login_step`). A login neither opens nor closes the grace
/// window of session starts.
pub async fn use_login_code(state: &AppState, user_id: &str, code: &str) -> AppResult<bool> {
    let Some(record) = state
        .store
        .get_user_mfa(user_id)
        .await
        .map_err(AppError::from)?
        .filter(|r| r.confirmed)
    else {
        return Ok(false);
    };
    let secret = open_secret(state, &record)?;
    let Some(step) = mfa::verify(&secret, code, unix_seconds(now_millis())) else {
        return Ok(false);
    };
    state
        .store
        .use_mfa_login_step(user_id, step as i64)
        .await
        .map_err(AppError::from)
}

/// `EnrollTotp`: a new secret for the caller, unconfirmed until
/// `ConfirmTotp`. Replacing an active one needs a current code from it, so
/// a stolen API token alone cannot move the second factor to a new phone.
pub async fn enroll(
    state: &AppState,
    principal: &Principal,
    req: &EnrollTotpRequest,
) -> AppResult<EnrollTotpResponse> {
    let now = now_millis();
    let existing = state
        .store
        .get_user_mfa(&principal.user_id)
        .await
        .map_err(AppError::from)?;
    if let Some(existing) = existing.filter(|r| r.confirmed) {
        let proven = match totp_code(req.step_up.as_ref()) {
            Some(code) => {
                let secret = open_secret(state, &existing)?;
                match mfa::verify(&secret, code, unix_seconds(now)) {
                    Some(step) => state
                        .store
                        .use_mfa_step(&principal.user_id, step as i64, 0, "", "")
                        .await
                        .map_err(AppError::from)?,
                    None => false,
                }
            }
            None => false,
        };
        if !proven {
            state
                .audit(
                    &principal.actor(),
                    "mfa.enroll",
                    &format!("user:{}", principal.user_id),
                    None,
                    "denied",
                    "an active TOTP exists; no valid current code".into(),
                )
                .await;
            return Err(ask_for_code(format!(
                "{} has an active second factor: replacing it needs a current code from it",
                principal.name
            )));
        }
    }
    let secret = mfa::new_secret();
    let record = UserMfaRecord {
        user_id: principal.user_id.clone(),
        method: METHOD_TOTP.into(),
        secret: state
            .keys
            .seal(&secret_context(&principal.user_id), &secret),
        confirmed: false,
        last_step: 0,
        grace_until: 0,
        grace_kind: String::new(),
        grace_reason: String::new(),
        created_at: now,
    };
    state
        .store
        .put_user_mfa(&record)
        .await
        .map_err(AppError::from)?;
    state
        .audit(
            &principal.actor(),
            "mfa.enroll",
            &format!("user:{}", principal.user_id),
            None,
            "ok",
            format!("method=totp key={}", state.keys.current_id()),
        )
        .await;
    Ok(EnrollTotpResponse {
        secret: mfa::secret_base32(&secret),
        otpauth_uri: mfa::otpauth_uri("schoolfleet", &principal.name, &secret),
    })
}

/// `ConfirmTotp`: the first code from the new secret activates it.
pub async fn confirm(
    state: &AppState,
    principal: &Principal,
    req: &ConfirmTotpRequest,
) -> AppResult<ConfirmTotpResponse> {
    let pending = state
        .store
        .get_user_mfa(&principal.user_id)
        .await
        .map_err(AppError::from)?
        .filter(|r| !r.confirmed)
        .ok_or_else(|| {
            AppError::failed_precondition(
                "no second factor waits for confirmation: run `schoolfleet mfa enroll`",
            )
        })?;
    let secret = open_secret(state, &pending)?;
    let step = mfa::verify(&secret, &req.code, unix_seconds(now_millis()))
        .ok_or_else(|| AppError::invalid("the code does not match the new secret"))?;
    if !state
        .store
        .confirm_user_mfa(&principal.user_id, step as i64)
        .await
        .map_err(AppError::from)?
    {
        return Err(AppError::failed_precondition(
            "the enrolment changed meanwhile: run `schoolfleet mfa enroll` again",
        ));
    }
    state
        .audit(
            &principal.actor(),
            "mfa.confirm",
            &format!("user:{}", principal.user_id),
            None,
            "ok",
            "method=totp".into(),
        )
        .await;
    Ok(ConfirmTotpResponse {})
}
