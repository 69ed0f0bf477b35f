//! Consent policies of schools (and their device classes): who may set
//! them, the school lead's floor, the audit. The one implementation behind
//! `SessionService.SetConsentPolicy`/`ListConsentPolicies` and the portal's
//! school page.

use super::input::tenant_id;
use super::{AppError, AppResult, access};
use crate::auth::{Permission, Principal, TenantRef};
use crate::sessions::policy::CONSENT_MODES;
use crate::state::AppState;
use crate::storage::{ConsentPolicyRecord, now_millis};

/// Sets the consent mode of a school (`device_class` empty) or of one
/// device class there. Needs `ConsentManage`; a school lead's setting is
/// also the floor, anyone else's must not be below it
/// (`sessions::consent_floor::check_set`). A school the caller cannot see
/// is NOT_FOUND.
pub async fn set_policy(
    state: &AppState,
    principal: &Principal,
    school_id: &str,
    device_class: &str,
    consent: &str,
) -> AppResult<ConsentPolicyRecord> {
    let school_id = tenant_id("school", school_id)?;
    let not_found = || {
        AppError::not_found(format!("school {school_id:?} not found")).with_german(format!(
            "Die Schule „{school_id}“ gibt es nicht, oder Sie dürfen sie nicht sehen."
        ))
    };
    let school = state
        .store
        .get_school(&school_id)
        .await?
        .ok_or_else(not_found)?;
    let tenant = TenantRef::school(&school.county_id, &school.id);
    if !principal.can(Permission::TenantRead, &tenant) {
        return Err(not_found());
    }
    access::require(principal, Permission::ConsentManage, &tenant)?;
    let device_class = if device_class.trim().is_empty() {
        String::new()
    } else {
        let class = tenant_id("device class", device_class)?;
        state.store.get_device_class(&class).await?.ok_or_else(|| {
            AppError::not_found(format!("device class {class:?} not found"))
                .with_german(format!("Die Geräteklasse „{class}“ gibt es nicht."))
        })?;
        class
    };
    let consent = consent.trim().to_owned();
    if !CONSENT_MODES.contains(&consent.as_str()) {
        return Err(AppError::invalid(format!(
            "consent {consent:?} is invalid: use none, notify or prompt"
        ))
        .with_german("Bitte eine der angebotenen Einstellungen wählen."));
    }
    crate::sessions::consent_floor::check_set(
        state,
        principal,
        &tenant,
        &school.county_id,
        &school.id,
        &device_class,
        &consent,
    )
    .await?;
    let policy = ConsentPolicyRecord {
        school_id: school.id.clone(),
        device_class,
        consent,
        updated_by: principal.actor(),
        updated_at: now_millis(),
    };
    state.store.set_consent_policy(&policy).await?;
    state
        .audit_school(
            &principal.actor(),
            "consent.set",
            &format!("school:{}", policy.school_id),
            &school.county_id,
            &policy.school_id,
            "ok",
            format!("class={:?} consent={}", policy.device_class, policy.consent),
        )
        .await;
    Ok(policy)
}

/// The consent policies of the schools the caller may see (`TenantRead`),
/// or of one of them; an unseen school is NOT_FOUND.
pub async fn policies(
    state: &AppState,
    principal: &Principal,
    school_id: Option<&str>,
) -> AppResult<Vec<ConsentPolicyRecord>> {
    let visible: Vec<String> = state
        .store
        .list_schools(None)
        .await?
        .into_iter()
        .filter(|s| {
            principal.can(
                Permission::TenantRead,
                &TenantRef::school(&s.county_id, &s.id),
            )
        })
        .map(|s| s.id)
        .collect();
    let wanted = match school_id.map(str::trim).filter(|s| !s.is_empty()) {
        None => visible,
        Some(id) => {
            let id = tenant_id("school", id)?;
            if !visible.contains(&id) {
                return Err(AppError::not_found(format!("school {id:?} not found")));
            }
            vec![id]
        }
    };
    Ok(state.store.list_consent_policies(Some(&wanted)).await?)
}
