//! Enrolment tokens: created by admins and technicians for one school and
//! one device class, with an expiry and a maximum number of uses, or for
//! the reinstall of one device.

use schoolfleet_proto::tokens::format_enrollment_token;

use super::access::{self, require};
use super::input::{display_text, tenant_id};
use super::{AppError, AppResult};
use crate::auth::{Permission, Principal, TenantRef, secrets};
use crate::state::AppState;
use crate::storage::{DeviceStatus, EnrollmentToken, now_millis};

/// Longest validity of an enrolment token: a leaked token must not stay
/// useful for long.
pub const MAX_VALIDITY_SECONDS: u64 = 90 * 24 * 3600;
pub const MAX_USES: u32 = 10_000;

/// What a new token is for.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    pub school_id: String,
    pub device_class: String,
    pub description: String,
    pub expires_in_seconds: u64,
    pub max_uses: u32,
    /// A device id or host name: the token re-enrols exactly this device
    /// (in its school and class, once). Empty: a token for new devices.
    pub reinstall_device: String,
}

/// A created token with its secret text (`sfe_...`), shown once.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub token: EnrollmentToken,
    pub secret: String,
}

/// Creates a token; needs EnrollmentManage on the school (and
/// DeviceManage on the device for a reinstall token).
pub async fn create(
    state: &AppState,
    principal: &Principal,
    mut req: NewToken,
) -> AppResult<CreatedToken> {
    // A reinstall token belongs to one device: it re-enrols exactly that
    // device, in its school and class, once.
    let reinstall = if req.reinstall_device.trim().is_empty() {
        None
    } else {
        let device = access::visible_device(
            state,
            principal,
            &req.reinstall_device,
            Permission::DeviceManage,
        )
        .await?;
        if device.status() == DeviceStatus::Revoked {
            return Err(AppError::failed_precondition(
                "this device was revoked and cannot be reinstalled",
            ));
        }
        if (!req.school_id.is_empty() && req.school_id != device.school_id)
            || (!req.device_class.is_empty() && req.device_class != device.device_class)
        {
            return Err(AppError::invalid(
                "a reinstall token keeps the device's school and class; leave them out",
            ));
        }
        if req.max_uses > 1 {
            return Err(AppError::invalid(
                "a reinstall token is for one device: uses must be 1",
            ));
        }
        req.school_id = device.school_id.clone();
        req.device_class = device.device_class.clone();
        req.max_uses = 1;
        Some(device.id)
    };
    let school_id = tenant_id("school", &req.school_id)?;
    let school = state
        .store
        .get_school(&school_id)
        .await?
        .filter(|s| {
            principal.can(
                Permission::TenantRead,
                &TenantRef::school(&s.county_id, &s.id),
            )
        })
        .ok_or_else(|| AppError::not_found(format!("school {school_id:?} not found")))?;
    require(
        principal,
        Permission::EnrollmentManage,
        &TenantRef::school(&school.county_id, &school.id),
    )?;
    let class = tenant_id("device class", &req.device_class)?;
    if state.store.get_device_class(&class).await?.is_none() {
        return Err(AppError::invalid(format!(
            "unknown device class {class:?}; see `schoolfleet class list`"
        )));
    }
    if req.expires_in_seconds == 0 || req.expires_in_seconds > MAX_VALIDITY_SECONDS {
        return Err(AppError::invalid(
            "expiry must be between 1 second and 90 days",
        ));
    }
    if req.max_uses == 0 || req.max_uses > MAX_USES {
        return Err(AppError::invalid(format!(
            "uses must be between 1 and {MAX_USES}"
        )));
    }
    let (id, secret) = secrets::generate();
    let now = now_millis();
    let token = EnrollmentToken {
        id: id.clone(),
        secret_hash: secrets::hash_secret(&secret),
        county_id: school.county_id.clone(),
        school_id: school.id.clone(),
        device_class: class,
        description: display_text("description", &req.description, 500)?,
        max_uses: i64::from(req.max_uses),
        uses: 0,
        expires_at: now + (req.expires_in_seconds as i64) * 1000,
        created_by: principal.name.clone(),
        created_at: now,
        revoked_at: None,
        reinstall_device_id: reinstall,
    };
    state.store.create_enrollment_token(&token).await?;
    state
        .audit(
            &principal.actor(),
            "enrollment_token.create",
            &format!("enrollment_token:{id}"),
            Some(&token.county_id),
            "ok",
            match &token.reinstall_device_id {
                Some(device) => format!(
                    "school={} class={} uses={} reinstall of device:{device}",
                    token.school_id, token.device_class, token.max_uses
                ),
                None => format!(
                    "school={} class={} uses={}",
                    token.school_id, token.device_class, token.max_uses
                ),
            },
        )
        .await;
    let secret = format_enrollment_token(&id, &secret, &state.ca.fingerprint());
    Ok(CreatedToken { token, secret })
}

/// The tokens the caller may manage, of one county or school or all;
/// used up, expired and revoked ones only with `include_inactive`.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    county_id: Option<&str>,
    school_id: Option<&str>,
    include_inactive: bool,
) -> AppResult<Vec<EnrollmentToken>> {
    let filter = principal.filter(Permission::EnrollmentManage);
    if filter.is_empty() {
        return Err(AppError::denied(format!(
            "{} may not manage enrolment tokens",
            principal.name
        )));
    }
    let now = now_millis();
    Ok(state
        .store
        .list_enrollment_tokens(&filter, county_id, school_id)
        .await?
        .into_iter()
        .filter(|t| include_inactive || t.unusable_reason(now).is_none())
        .collect())
}

/// Revokes a token; tokens the caller may not manage are NOT_FOUND.
/// Returns the token as stored afterwards.
pub async fn revoke(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> AppResult<EnrollmentToken> {
    let not_found = || AppError::not_found(format!("enrolment token {id:?} not found"));
    let token = state
        .store
        .get_enrollment_token(id.trim())
        .await?
        .ok_or_else(not_found)?;
    let target = TenantRef::school(&token.county_id, &token.school_id);
    if !principal.can(Permission::EnrollmentManage, &target) {
        return Err(not_found());
    }
    state
        .store
        .revoke_enrollment_token(&token.id, now_millis())
        .await?;
    state
        .audit(
            &principal.actor(),
            "enrollment_token.revoke",
            &format!("enrollment_token:{}", token.id),
            Some(&token.county_id),
            "ok",
            String::new(),
        )
        .await;
    state
        .store
        .get_enrollment_token(&token.id)
        .await?
        .ok_or_else(not_found)
}
