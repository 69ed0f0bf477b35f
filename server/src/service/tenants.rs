//! Counties, schools and device classes: creating them (TenantManage) and
//! listing what the caller may see (TenantRead).

use super::access::require;
use super::input::{display_text, tenant_id};
use super::{AppError, AppResult};
use crate::auth::{Permission, Principal, TenantRef};
use crate::state::AppState;
use crate::storage::{County, DeviceClass, School, now_millis};

/// Creates a county; only a cooperation-wide TenantManage may.
pub async fn create_county(
    state: &AppState,
    principal: &Principal,
    id: &str,
    name: &str,
) -> AppResult<County> {
    require(principal, Permission::TenantManage, &TenantRef::Cooperation)?;
    let county = County {
        id: tenant_id("county id", id)?,
        name: display_text("name", name, 200)?,
        created_at: now_millis(),
    };
    state.store.create_county(&county).await?;
    state
        .audit(
            &principal.actor(),
            "county.create",
            &county.id,
            Some(&county.id),
            "ok",
            county.name.clone(),
        )
        .await;
    Ok(county)
}

/// The counties the caller may read, as a whole or through one of their
/// schools.
pub async fn list_counties(state: &AppState, principal: &Principal) -> AppResult<Vec<County>> {
    let filter = principal.filter(Permission::TenantRead);
    let schools = state.store.list_schools(None).await?;
    Ok(state
        .store
        .list_counties()
        .await?
        .into_iter()
        .filter(|c| {
            filter.allows(&c.id, None)
                || schools
                    .iter()
                    .any(|s| s.county_id == c.id && filter.allows(&c.id, Some(&s.id)))
        })
        .collect())
}

/// Creates a school in a county the caller can see (otherwise NOT_FOUND)
/// and may manage.
pub async fn create_school(
    state: &AppState,
    principal: &Principal,
    county_id: &str,
    id: &str,
    name: &str,
) -> AppResult<School> {
    let county_id = tenant_id("county id", county_id)?;
    let county = TenantRef::County(county_id.clone());
    let county_exists = state.store.get_county(&county_id).await?.is_some();
    if !county_exists || !principal.can(Permission::TenantRead, &county) {
        return Err(AppError::not_found(format!(
            "county {county_id:?} not found"
        )));
    }
    require(principal, Permission::TenantManage, &county)?;
    let school = School {
        id: tenant_id("school id", id)?,
        county_id,
        name: display_text("name", name, 200)?,
        created_at: now_millis(),
    };
    state.store.create_school(&school).await?;
    state
        .audit(
            &principal.actor(),
            "school.create",
            &school.id,
            Some(&school.county_id),
            "ok",
            school.name.clone(),
        )
        .await;
    Ok(school)
}

/// The schools the caller may read, of one county or all.
pub async fn list_schools(
    state: &AppState,
    principal: &Principal,
    county_id: Option<&str>,
) -> AppResult<Vec<School>> {
    let filter = principal.filter(Permission::TenantRead);
    Ok(state
        .store
        .list_schools(county_id)
        .await?
        .into_iter()
        .filter(|s| filter.allows(&s.county_id, Some(&s.id)))
        .collect())
}

/// Creates a device class (common to the cooperation).
pub async fn create_device_class(
    state: &AppState,
    principal: &Principal,
    id: &str,
    label: &str,
) -> AppResult<DeviceClass> {
    require(principal, Permission::TenantManage, &TenantRef::Cooperation)?;
    let class = DeviceClass {
        id: tenant_id("device class", id)?,
        label: display_text("label", label, 200)?,
        created_at: now_millis(),
    };
    state.store.create_device_class(&class).await?;
    state
        .audit(
            &principal.actor(),
            "device_class.create",
            &class.id,
            None,
            "ok",
            class.label.clone(),
        )
        .await;
    Ok(class)
}

/// Every device class: they are common to the cooperation, so every
/// authenticated caller reads them.
pub async fn list_device_classes(
    state: &AppState,
    _principal: &Principal,
) -> AppResult<Vec<DeviceClass>> {
    Ok(state.store.list_device_classes().await?)
}
