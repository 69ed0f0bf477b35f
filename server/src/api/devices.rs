//! The gRPC adapters of devices and the software search
//! (`DeviceService`, `InventoryService`) over `service::devices`.

use schoolfleet_proto::v1::device_service_server::DeviceService;
use schoolfleet_proto::v1::inventory_service_server::InventoryService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert};
use crate::service::devices::{self as svc, online_window_ms};
use crate::storage::{DeviceRecord, DeviceStatus, now_millis};

#[derive(Debug, Clone)]
pub struct DeviceApi(pub AppState);

#[derive(Debug, Clone)]
pub struct InventoryApi(pub AppState);

impl DeviceApi {
    fn wire(&self, d: &DeviceRecord) -> Device {
        convert::device(d, now_millis(), online_window_ms(&self.0))
    }
}

#[tonic::async_trait]
impl DeviceService for DeviceApi {
    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let online = match Tristate::try_from(req.online).unwrap_or(Tristate::Unknown) {
            Tristate::Yes => Some(true),
            Tristate::No => Some(false),
            Tristate::Unknown => None,
        };
        let filter = svc::DeviceFilter {
            county_id: req.county_id,
            school_id: req.school_id,
            device_class: req.device_class,
            hostname_contains: req.hostname_contains,
            online,
            seen_within_seconds: req.seen_within_seconds,
            not_seen_for_seconds: req.not_seen_for_seconds,
            include_retired: req.include_retired,
            page_token: req.page_token,
            page_size: req.page_size,
        };
        let page = svc::list(&self.0, &principal, &filter).await?;
        let now = now_millis();
        let window = online_window_ms(&self.0);
        Ok(Response::new(ListDevicesResponse {
            devices: page
                .devices
                .iter()
                .map(|d| convert::device(d, now, window))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<DeviceDetail>, Status> {
        let principal = self.0.principal(&request).await?;
        let detail = svc::show(&self.0, &principal, &request.get_ref().device).await?;
        Ok(Response::new(DeviceDetail {
            device: Some(self.wire(&detail.device)),
            inventory: detail.inventory,
            inventory_hash: detail.inventory_hash,
        }))
    }

    async fn retire_device(&self, request: Request<DeviceRef>) -> Result<Response<Device>, Status> {
        let principal = self.0.principal(&request).await?;
        let device = request.into_inner().device;
        let record =
            svc::change_status(&self.0, &principal, &device, DeviceStatus::Retired).await?;
        Ok(Response::new(self.wire(&record)))
    }

    async fn revoke_device(&self, request: Request<DeviceRef>) -> Result<Response<Device>, Status> {
        let principal = self.0.principal(&request).await?;
        let device = request.into_inner().device;
        let record =
            svc::change_status(&self.0, &principal, &device, DeviceStatus::Revoked).await?;
        Ok(Response::new(self.wire(&record)))
    }

    async fn adopt_device(
        &self,
        request: Request<AdoptDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let record = svc::adopt(&self.0, &principal, &req.device, &req.replaces).await?;
        Ok(Response::new(self.wire(&record)))
    }

    async fn delete_device(
        &self,
        request: Request<DeviceRef>,
    ) -> Result<Response<DeleteDeviceResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let device_id = svc::delete(&self.0, &principal, &request.get_ref().device).await?;
        Ok(Response::new(DeleteDeviceResponse { device_id }))
    }

    async fn list_inventory_changes(
        &self,
        request: Request<ListInventoryChangesRequest>,
    ) -> Result<Response<ListInventoryChangesResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let changes = svc::changes(&self.0, &principal, &req.device, req.limit)
            .await?
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
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let reports = svc::reports(&self.0, &principal, &req.device, req.limit)
            .await?
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
        let principal = self.0.principal(&request).await?;
        let device = request.into_inner().device;
        let delivered = svc::request_inventory(&self.0, &principal, &device).await?;
        Ok(Response::new(RequestInventoryResponse { delivered }))
    }
}

#[tonic::async_trait]
impl InventoryService for InventoryApi {
    async fn search_software(
        &self,
        request: Request<SearchSoftwareRequest>,
    ) -> Result<Response<SearchSoftwareResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let query = svc::SoftwareQuery {
            name: req.name,
            version_below: req.version_below,
            county_id: req.county_id,
            school_id: req.school_id,
            limit: req.limit,
        };
        let found = svc::search_software(&self.0, &principal, &query).await?;
        let hits = found
            .hits
            .into_iter()
            .map(|h| SoftwareHit {
                device_id: h.device_id,
                hostname: h.hostname,
                school_id: h.school_id,
                package_name: h.name,
                version: h.version,
                source: h.source,
            })
            .collect();
        Ok(Response::new(SearchSoftwareResponse {
            hits,
            devices_per_version: found.devices_per_version.into_iter().collect(),
        }))
    }
}
