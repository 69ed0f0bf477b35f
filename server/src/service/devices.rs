//! Devices: the list, one device with its inventory, history and
//! reports, retire/revoke/adopt, and the software search.
//!
//! Devices are found through [`access::visible_device`]; lists go through
//! `Principal::filter(DeviceRead)`.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use schoolfleet_proto::v1::{CollectInventory, Inventory, ServerMessage, server_message};

use super::access;
use super::input::optional;
use super::{AppError, AppResult};
use crate::auth::{Permission, Principal};
use crate::state::AppState;
use crate::storage::{
    self, DeviceQuery, DeviceRecord, DeviceStatus, InventoryChangeRecord, Millis, ReportSummary,
    SoftwareHitRecord, now_millis,
};

const DEFAULT_PAGE: u32 = 500;
const MAX_PAGE: u32 = 2000;
/// Most installations one software search may read.
const MAX_SEARCH_ROWS: i64 = 200_000;

/// How long after its last contact a device still counts as online.
pub fn online_window_ms(state: &AppState) -> Millis {
    state.config.agents.online_window.as_millis() as Millis
}

/// The filters of the device list. Empty fields and zeros do not filter.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub county_id: String,
    pub school_id: String,
    pub device_class: String,
    pub hostname_contains: String,
    /// Some(true): online now; Some(false): offline.
    pub online: Option<bool>,
    pub seen_within_seconds: u64,
    pub not_seen_for_seconds: u64,
    pub include_retired: bool,
    /// From the previous page's `next_page_token`; empty for the first.
    pub page_token: String,
    /// 0: 500; capped at 2,000.
    pub page_size: u32,
}

/// One page of devices, ordered by host name and id.
#[derive(Debug, Clone)]
pub struct DevicePage {
    pub devices: Vec<DeviceRecord>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// A device with its current inventory (as last reported).
#[derive(Debug, Clone)]
pub struct DeviceDetail {
    pub device: DeviceRecord,
    pub inventory: Option<Inventory>,
    pub inventory_hash: String,
}

/// Page tokens are the (host name, id) of the last row, hex-encoded so that
/// they are opaque and safe in any transport.
fn encode_page_token(hostname: &str, id: &str) -> String {
    hex::encode(format!("{hostname}\u{0}{id}"))
}

fn decode_page_token(token: &str) -> AppResult<Option<(String, String)>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || AppError::invalid("invalid page token");
    let bytes = hex::decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (host, id) = text.split_once('\u{0}').ok_or_else(invalid)?;
    Ok(Some((host.to_owned(), id.to_owned())))
}

fn seconds_ago(now: i64, seconds: u64) -> Option<i64> {
    (seconds > 0).then(|| now.saturating_sub((seconds.min(i64::MAX as u64 / 1000) as i64) * 1000))
}

/// The caller's visible devices matching `filter`, one page at a time.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    filter: &DeviceFilter,
) -> AppResult<DevicePage> {
    let now = now_millis();
    let page_size = match filter.page_size {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let query = DeviceQuery {
        filter: principal.filter(Permission::DeviceRead),
        county_id: optional(&filter.county_id),
        school_id: optional(&filter.school_id),
        device_class: optional(&filter.device_class),
        hostname_contains: optional(&filter.hostname_contains),
        online: filter.online,
        online_window_ms: online_window_ms(state),
        now,
        seen_after: seconds_ago(now, filter.seen_within_seconds),
        not_seen_since: seconds_ago(now, filter.not_seen_for_seconds),
        include_retired: filter.include_retired,
        after: decode_page_token(&filter.page_token)?,
        limit: i64::from(page_size),
    };
    let devices = state.store.list_devices(&query).await?;
    let next_page_token = match devices.last() {
        Some(last) if devices.len() == page_size as usize => {
            encode_page_token(&last.hostname, &last.id)
        }
        _ => String::new(),
    };
    Ok(DevicePage {
        devices,
        next_page_token,
    })
}

/// One device (by id, host name or short id) with its inventory.
pub async fn show(
    state: &AppState,
    principal: &Principal,
    device: &str,
) -> AppResult<DeviceDetail> {
    let device = access::visible_device(state, principal, device, Permission::DeviceRead).await?;
    let (inventory, inventory_hash) = match state.store.get_inventory(&device.id).await? {
        Some(stored) => {
            let inventory = Inventory::decode(stored.inventory.as_slice()).map_err(|e| {
                tracing::error!(device = %device.id, error = %e, "stored inventory does not decode");
                AppError::internal("stored inventory is corrupt")
            })?;
            (Some(inventory), stored.content_hash)
        }
        None => (None, String::new()),
    };
    Ok(DeviceDetail {
        device,
        inventory,
        inventory_hash,
    })
}

/// Retires (DeviceManage) or revokes (DeviceRevoke) a device, cuts its
/// live stream, audits, and returns the record as it is now.
pub async fn change_status(
    state: &AppState,
    principal: &Principal,
    device: &str,
    status: DeviceStatus,
) -> AppResult<DeviceRecord> {
    let permission = match status {
        DeviceStatus::Revoked => Permission::DeviceRevoke,
        _ => Permission::DeviceManage,
    };
    let record = access::visible_device(state, principal, device, permission).await?;
    state.store.set_device_status(&record.id, status).await?;
    // Cut the live stream now rather than at the next heartbeat.
    state.agents.disconnect(
        &record.id,
        tonic::Status::permission_denied(format!("device {}", status.as_str())),
    );
    state
        .audit_school(
            &principal.actor(),
            &format!("device.{}", status.as_str()),
            &format!("device:{}", record.id),
            &record.county_id,
            &record.school_id,
            "ok",
            format!("hostname={}", record.hostname),
        )
        .await;
    state
        .store
        .get_device(&record.id)
        .await?
        .ok_or_else(|| AppError::not_found("device vanished"))
}

/// Deletes a retired or revoked device with everything stored about it
/// (inventory, software, history, reports, compliance results, ticket
/// links), then compacts the store so it is gone from the files. Needs
/// `DeviceRevoke` (admins). Sessions and audit entries keep the device id,
/// which names nothing once the device is gone; the audit entry of the
/// deletion carries no host name. Returns the device id.
pub async fn delete(state: &AppState, principal: &Principal, device: &str) -> AppResult<String> {
    let record = access::visible_device(state, principal, device, Permission::DeviceRevoke).await?;
    if record.status == DeviceStatus::Active.as_str() {
        return Err(AppError::failed_precondition(format!(
            "device {} is active: retire or revoke it first",
            record.hostname
        )));
    }
    state.agents.disconnect(
        &record.id,
        tonic::Status::permission_denied("device deleted"),
    );
    if !state.store.delete_device(&record.id).await? {
        return Err(AppError::not_found("device vanished"));
    }
    state
        .audit_school(
            &principal.actor(),
            "device.delete",
            &format!("device:{}", record.id),
            &record.county_id,
            &record.school_id,
            "ok",
            String::new(),
        )
        .await;
    if let Err(err) = state.store.compact().await {
        tracing::warn!(error = %err, "compaction after a device deletion failed; the next sweep retries");
    }
    Ok(record.id)
}

/// `device adopt NEW OLD`: the old device takes over the new enrolment
/// (certificate, host name, school) and keeps its id and history.
pub async fn adopt(
    state: &AppState,
    principal: &Principal,
    device: &str,
    replaces: &str,
) -> AppResult<DeviceRecord> {
    let new = access::visible_device(state, principal, device, Permission::DeviceManage).await?;
    let old = access::visible_device(state, principal, replaces, Permission::DeviceManage).await?;
    if new.id == old.id {
        return Err(AppError::invalid("a device cannot adopt itself"));
    }
    if new.county_id != old.county_id {
        return Err(AppError::failed_precondition(
            "the devices are in different counties; a device changes county by a new enrolment",
        ));
    }
    if new.status() != DeviceStatus::Active {
        return Err(AppError::failed_precondition(format!(
            "device {} is {}: only an active, newly enrolled device can be adopted",
            new.id,
            new.status().as_str()
        )));
    }
    if old.status() == DeviceStatus::Revoked {
        return Err(AppError::failed_precondition(format!(
            "device {} was revoked; a revoked device is never taken over",
            old.id
        )));
    }
    let now = now_millis();
    let note = |new_value: String| storage::InventoryChangeRecord {
        report_id: String::new(),
        at: now,
        kind: "adopted".into(),
        subject: "identity".into(),
        old_value: String::new(),
        new_value,
    };
    let actor = principal.actor();
    let on_old = note(format!(
        "took over the enrolment of {} ({}), confirmed by {actor}",
        new.id, new.hostname
    ));
    let on_new = note(format!(
        "merged into {} ({}), confirmed by {actor}",
        old.id, old.hostname
    ));
    state
        .store
        .adopt_device(&new.id, &old.id, (&on_old, &on_new))
        .await?;
    // Both streams reconnect: the agent's certificate now maps to the
    // old id, and an old installation's certificate is gone.
    for id in [&new.id, &old.id] {
        state.agents.disconnect(
            id,
            tonic::Status::unauthenticated("this device was merged by an admin; reconnect"),
        );
    }
    state
        .audit(
            &actor,
            "device.adopt",
            &format!("device:{}", old.id),
            Some(&old.county_id),
            "ok",
            format!(
                "adopted device:{} hostname={} school={}",
                new.id, new.hostname, new.school_id
            ),
        )
        .await;
    state
        .store
        .get_device(&old.id)
        .await?
        .ok_or_else(|| AppError::not_found("device vanished"))
}

/// A device's history (inventory changes, newest first). `limit` 0: 200.
pub async fn changes(
    state: &AppState,
    principal: &Principal,
    device: &str,
    limit: u32,
) -> AppResult<Vec<InventoryChangeRecord>> {
    let record = access::visible_device(state, principal, device, Permission::DeviceRead).await?;
    let limit = if limit == 0 { 200 } else { limit.min(10_000) };
    Ok(state
        .store
        .list_inventory_changes(&record.id, i64::from(limit))
        .await?)
}

/// A device's inventory reports. `limit` 0: 100.
pub async fn reports(
    state: &AppState,
    principal: &Principal,
    device: &str,
    limit: u32,
) -> AppResult<Vec<ReportSummary>> {
    let record = access::visible_device(state, principal, device, Permission::DeviceRead).await?;
    let limit = if limit == 0 { 100 } else { limit.min(10_000) };
    Ok(state
        .store
        .list_inventory_reports(&record.id, i64::from(limit))
        .await?)
}

/// Asks a connected device for a fresh inventory; false when it is not
/// connected to this replica.
pub async fn request_inventory(
    state: &AppState,
    principal: &Principal,
    device: &str,
) -> AppResult<bool> {
    let record = access::visible_device(state, principal, device, Permission::DeviceManage).await?;
    Ok(state.agents.send(
        &record.id,
        ServerMessage {
            body: Some(server_message::Body::CollectInventory(CollectInventory {
                reason: format!("requested by {}", principal.name),
            })),
        },
    ))
}

/// What to search installed software for.
#[derive(Debug, Clone, Default)]
pub struct SoftwareQuery {
    /// 1-200 characters.
    pub name: String,
    /// Only versions below this one; empty: all.
    pub version_below: String,
    pub county_id: String,
    pub school_id: String,
    /// Hits returned (0: 5,000); the per-version counts cover all.
    pub limit: u32,
}

/// Installations found, and how many devices have each version.
#[derive(Debug, Clone, Default)]
pub struct SoftwareSearch {
    pub hits: Vec<SoftwareHitRecord>,
    pub devices_per_version: BTreeMap<String, u32>,
}

/// Installations of a package on the caller's visible devices.
pub async fn search_software(
    state: &AppState,
    principal: &Principal,
    q: &SoftwareQuery,
) -> AppResult<SoftwareSearch> {
    let name = q.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AppError::invalid("software name must be 1-200 characters"));
    }
    let limit = if q.limit == 0 {
        5000
    } else {
        q.limit.min(100_000)
    } as usize;
    let found = state
        .store
        .search_software(
            name,
            &principal.filter(Permission::DeviceRead),
            optional(&q.county_id).as_deref(),
            optional(&q.school_id).as_deref(),
            MAX_SEARCH_ROWS + 1,
        )
        .await?;
    // A search for "lib" across the fleet would be millions of rows:
    // refuse it rather than hold them all in memory.
    if found.len() as i64 > MAX_SEARCH_ROWS {
        return Err(AppError::failed_precondition(format!(
            "more than {MAX_SEARCH_ROWS} installations match {name:?}; narrow the name or add --county/--school"
        )));
    }
    let hits: Vec<SoftwareHitRecord> = found
        .into_iter()
        .filter(|hit| {
            q.version_below.is_empty()
                || crate::version::compare(&hit.version, &q.version_below)
                    == std::cmp::Ordering::Less
        })
        .collect();
    let mut per_version: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for hit in &hits {
        per_version
            .entry(hit.version.clone())
            .or_default()
            .insert(&hit.device_id);
    }
    let devices_per_version = per_version
        .into_iter()
        .map(|(v, d)| (v, d.len() as u32))
        .collect();
    Ok(SoftwareSearch {
        hits: hits.into_iter().take(limit).collect(),
        devices_per_version,
    })
}
