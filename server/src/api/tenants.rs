//! Counties, schools and device classes: the adapter of `TenantService`
//! over `service::tenants`.

use schoolfleet_proto::v1::tenant_service_server::TenantService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert};
use crate::service::tenants;

#[derive(Debug, Clone)]
pub struct TenantApi(pub AppState);

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_county(
        &self,
        request: Request<CreateCountyRequest>,
    ) -> Result<Response<County>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let county = tenants::create_county(&self.0, &principal, &req.id, &req.name).await?;
        Ok(Response::new(convert::county(&county)))
    }

    async fn list_counties(
        &self,
        request: Request<ListCountiesRequest>,
    ) -> Result<Response<ListCountiesResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let counties = tenants::list_counties(&self.0, &principal)
            .await?
            .iter()
            .map(convert::county)
            .collect();
        Ok(Response::new(ListCountiesResponse { counties }))
    }

    async fn create_school(
        &self,
        request: Request<CreateSchoolRequest>,
    ) -> Result<Response<School>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let school =
            tenants::create_school(&self.0, &principal, &req.county_id, &req.id, &req.name).await?;
        Ok(Response::new(convert::school(&school)))
    }

    async fn list_schools(
        &self,
        request: Request<ListSchoolsRequest>,
    ) -> Result<Response<ListSchoolsResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let county = (!req.county_id.is_empty()).then_some(req.county_id.as_str());
        let schools = tenants::list_schools(&self.0, &principal, county)
            .await?
            .iter()
            .map(convert::school)
            .collect();
        Ok(Response::new(ListSchoolsResponse { schools }))
    }

    async fn create_device_class(
        &self,
        request: Request<CreateDeviceClassRequest>,
    ) -> Result<Response<DeviceClass>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let class = tenants::create_device_class(&self.0, &principal, &req.id, &req.label).await?;
        Ok(Response::new(DeviceClass {
            id: class.id,
            label: class.label,
        }))
    }

    async fn list_device_classes(
        &self,
        request: Request<ListDeviceClassesRequest>,
    ) -> Result<Response<ListDeviceClassesResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let device_classes = tenants::list_device_classes(&self.0, &principal)
            .await?
            .into_iter()
            .map(|c| DeviceClass {
                id: c.id,
                label: c.label,
            })
            .collect();
        Ok(Response::new(ListDeviceClassesResponse { device_classes }))
    }
}
