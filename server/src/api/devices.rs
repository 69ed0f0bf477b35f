//! Devices, their inventory and the software search.

use crate::service::access;
use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use schoolfleet_proto::v1::device_service_server::DeviceService;
use schoolfleet_proto::v1::inventory_service_server::InventoryService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert, storage_status};
use crate::auth::{Permission, Principal};
use crate::storage::{self, DeviceQuery, DeviceStatus, now_millis};

const DEFAULT_PAGE: u32 = 500;
/// Most installations one software search may read.
const MAX_SEARCH_ROWS: i64 = 200_000;
const MAX_PAGE: u32 = 2000;

#[derive(Debug, Clone)]
pub struct DeviceApi(pub AppState);

#[derive(Debug, Clone)]
pub struct InventoryApi(pub AppState);

fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Page tokens are the (host name, id) of the last row, hex-encoded so that
/// they are opaque and safe in any transport.
fn encode_page_token(hostname: &str, id: &str) -> String {
    hex::encode(format!("{hostname}\u{0}{id}"))
}

fn decode_page_token(token: &str) -> Result<Option<(String, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Status::invalid_argument("invalid page token");
    let bytes = hex::decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (host, id) = text.split_once('\u{0}').ok_or_else(invalid)?;
    Ok(Some((host.to_owned(), id.to_owned())))
}

fn seconds_ago(now: i64, seconds: u64) -> Option<i64> {
    (seconds > 0).then(|| now.saturating_sub((seconds.min(i64::MAX as u64 / 1000) as i64) * 1000))
}

impl DeviceApi {
    fn online_window_ms(&self) -> i64 {
        self.0.config.agents.online_window.as_millis() as i64
    }

    async fn change_status(
        &self,
        principal: &Principal,
        device: &str,
        status: DeviceStatus,
    ) -> Result<Device, Status> {
        let state = &self.0;
        let permission = match status {
            DeviceStatus::Revoked => Permission::DeviceRevoke,
            _ => Permission::DeviceManage,
        };
        let record = access::visible_device(state, principal, device, permission).await?;
        state
            .store
            .set_device_status(&record.id, status)
            .await
            .map_err(storage_status)?;
        // Cut the live stream now rather than at the next heartbeat.
        state.agents.disconnect(
            &record.id,
            Status::permission_denied(format!("device {}", status.as_str())),
        );
        state
            .audit(
                &principal.actor(),
                &format!("device.{}", status.as_str()),
                &format!("device:{}", record.id),
                Some(&record.county_id),
                "ok",
                format!("hostname={}", record.hostname),
            )
            .await;
        let record = state
            .store
            .get_device(&record.id)
            .await
            .map_err(storage_status)?
            .ok_or_else(|| Status::not_found("device vanished"))?;
        Ok(convert::device(
            &record,
            now_millis(),
            self.online_window_ms(),
        ))
    }
}

#[tonic::async_trait]
impl DeviceService for DeviceApi {
    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let now = now_millis();
        let page_size = match req.page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let online = match Tristate::try_from(req.online).unwrap_or(Tristate::Unknown) {
            Tristate::Yes => Some(true),
            Tristate::No => Some(false),
            Tristate::Unknown => None,
        };
        let query = DeviceQuery {
            filter: principal.filter(Permission::DeviceRead),
            county_id: optional(&req.county_id),
            school_id: optional(&req.school_id),
            device_class: optional(&req.device_class),
            hostname_contains: optional(&req.hostname_contains),
            online,
            online_window_ms: self.online_window_ms(),
            now,
            seen_after: seconds_ago(now, req.seen_within_seconds),
            not_seen_since: seconds_ago(now, req.not_seen_for_seconds),
            include_retired: req.include_retired,
            after: decode_page_token(&req.page_token)?,
            limit: i64::from(page_size),
        };
        let records = state
            .store
            .list_devices(&query)
            .await
            .map_err(storage_status)?;
        let next_page_token = match records.last() {
            Some(last) if records.len() == page_size as usize => {
                encode_page_token(&last.hostname, &last.id)
            }
            _ => String::new(),
        };
        let devices = records
            .iter()
            .map(|d| convert::device(d, now, self.online_window_ms()))
            .collect();
        Ok(Response::new(ListDevicesResponse {
            devices,
            next_page_token,
        }))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<DeviceDetail>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let record =
            access::visible_device(state, &principal, &req.device, Permission::DeviceRead).await?;
        let stored = state
            .store
            .get_inventory(&record.id)
            .await
            .map_err(storage_status)?;
        let (inventory, inventory_hash) = match stored {
            Some(stored) => {
                let inventory = Inventory::decode(stored.inventory.as_slice()).map_err(|e| {
                    tracing::error!(device = %record.id, error = %e, "stored inventory does not decode");
                    Status::internal("stored inventory is corrupt")
                })?;
                (Some(inventory), stored.content_hash)
            }
            None => (None, String::new()),
        };
        Ok(Response::new(DeviceDetail {
            device: Some(convert::device(
                &record,
                now_millis(),
                self.online_window_ms(),
            )),
            inventory,
            inventory_hash,
        }))
    }

    async fn retire_device(&self, request: Request<DeviceRef>) -> Result<Response<Device>, Status> {
        let principal = self.0.principal(&request).await?;
        let device = request.into_inner().device;
        Ok(Response::new(
            self.change_status(&principal, &device, DeviceStatus::Retired)
                .await?,
        ))
    }

    async fn revoke_device(&self, request: Request<DeviceRef>) -> Result<Response<Device>, Status> {
        let principal = self.0.principal(&request).await?;
        let device = request.into_inner().device;
        Ok(Response::new(
            self.change_status(&principal, &device, DeviceStatus::Revoked)
                .await?,
        ))
    }

    async fn adopt_device(
        &self,
        request: Request<AdoptDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let new = access::visible_device(state, &principal, &req.device, Permission::DeviceManage)
            .await?;
        let old =
            access::visible_device(state, &principal, &req.replaces, Permission::DeviceManage)
                .await?;
        if new.id == old.id {
            return Err(Status::invalid_argument("a device cannot adopt itself"));
        }
        if new.county_id != old.county_id {
            return Err(Status::failed_precondition(
                "the devices are in different counties; a device changes county by a new enrolment",
            ));
        }
        if new.status() != DeviceStatus::Active {
            return Err(Status::failed_precondition(format!(
                "device {} is {}: only an active, newly enrolled device can be adopted",
                new.id,
                new.status().as_str()
            )));
        }
        if old.status() == DeviceStatus::Revoked {
            return Err(Status::failed_precondition(format!(
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
            .await
            .map_err(storage_status)?;
        // Both streams reconnect: the agent's certificate now maps to the
        // old id, and an old installation's certificate is gone.
        for id in [&new.id, &old.id] {
            state.agents.disconnect(
                id,
                Status::unauthenticated("this device was merged by an admin; reconnect"),
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
        let record = state
            .store
            .get_device(&old.id)
            .await
            .map_err(storage_status)?
            .ok_or_else(|| Status::not_found("device vanished"))?;
        Ok(Response::new(convert::device(
            &record,
            now,
            self.online_window_ms(),
        )))
    }

    async fn list_inventory_changes(
        &self,
        request: Request<ListInventoryChangesRequest>,
    ) -> Result<Response<ListInventoryChangesResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let record =
            access::visible_device(state, &principal, &req.device, Permission::DeviceRead).await?;
        let limit = if req.limit == 0 {
            200
        } else {
            req.limit.min(10_000)
        };
        let changes = state
            .store
            .list_inventory_changes(&record.id, i64::from(limit))
            .await
            .map_err(storage_status)?
            .into_iter()
            .map(|c| InventoryChange {
                at: convert::ts(c.at),
                report_id: c.report_id,
                kind: c.kind,
                subject: c.subject,
                old_value: c.old_value,
                new_value: c.new_value,
            })
            .collect();
        Ok(Response::new(ListInventoryChangesResponse { changes }))
    }

    async fn list_inventory_reports(
        &self,
        request: Request<ListInventoryReportsRequest>,
    ) -> Result<Response<ListInventoryReportsResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let record =
            access::visible_device(state, &principal, &req.device, Permission::DeviceRead).await?;
        let limit = if req.limit == 0 {
            100
        } else {
            req.limit.min(10_000)
        };
        let reports = state
            .store
            .list_inventory_reports(&record.id, i64::from(limit))
            .await
            .map_err(storage_status)?
            .into_iter()
            .map(|r| InventoryReportSummary {
                report_id: r.report_id,
                collected_at: convert::ts(r.collected_at),
                received_at: convert::ts(r.received_at),
                content_hash: r.content_hash,
                reason: r.reason,
            })
            .collect();
        Ok(Response::new(ListInventoryReportsResponse { reports }))
    }

    async fn request_inventory(
        &self,
        request: Request<DeviceRef>,
    ) -> Result<Response<RequestInventoryResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let device = request.into_inner().device;
        let record =
            access::visible_device(state, &principal, &device, Permission::DeviceManage).await?;
        let delivered = state.agents.send(
            &record.id,
            ServerMessage {
                body: Some(server_message::Body::CollectInventory(CollectInventory {
                    reason: format!("requested by {}", principal.name),
                })),
            },
        );
        Ok(Response::new(RequestInventoryResponse { delivered }))
    }
}

#[tonic::async_trait]
impl InventoryService for InventoryApi {
    async fn search_software(
        &self,
        request: Request<SearchSoftwareRequest>,
    ) -> Result<Response<SearchSoftwareResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let name = req.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(Status::invalid_argument(
                "software name must be 1-200 characters",
            ));
        }
        let limit = if req.limit == 0 {
            5000
        } else {
            req.limit.min(100_000)
        } as usize;
        let found = state
            .store
            .search_software(
                name,
                &principal.filter(Permission::DeviceRead),
                optional(&req.county_id).as_deref(),
                optional(&req.school_id).as_deref(),
                MAX_SEARCH_ROWS + 1,
            )
            .await
            .map_err(storage_status)?;
        // A search for "lib" across the fleet would be millions of rows:
        // refuse it rather than hold them all in memory.
        if found.len() as i64 > MAX_SEARCH_ROWS {
            return Err(Status::failed_precondition(format!(
                "more than {MAX_SEARCH_ROWS} installations match {name:?}; narrow the name or add --county/--school"
            )));
        }
        let hits: Vec<storage::SoftwareHitRecord> = found
            .into_iter()
            .filter(|hit| {
                req.version_below.is_empty()
                    || crate::version::compare(&hit.version, &req.version_below)
                        == std::cmp::Ordering::Less
            })
            .collect();
        let mut devices_per_version: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        for hit in &hits {
            devices_per_version
                .entry(hit.version.clone())
                .or_default()
                .insert(&hit.device_id);
        }
        let devices_per_version = devices_per_version
            .into_iter()
            .map(|(v, d)| (v, d.len() as u32))
            .collect();
        let hits = hits
            .iter()
            .take(limit)
            .map(|h| SoftwareHit {
                device_id: h.device_id.clone(),
                hostname: h.hostname.clone(),
                school_id: h.school_id.clone(),
                package_name: h.name.clone(),
                version: h.version.clone(),
                source: h.source.clone(),
            })
            .collect();
        Ok(Response::new(SearchSoftwareResponse {
            hits,
            devices_per_version,
        }))
    }
}
