//! Counties, schools and device classes.

use schoolfleet_proto::v1::tenant_service_server::TenantService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert, display_text, require, storage_status, tenant_id};
use crate::auth::{Permission, TenantRef};
use crate::storage::{self, now_millis};

#[derive(Debug, Clone)]
pub struct TenantApi(pub AppState);

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_county(
        &self,
        request: Request<CreateCountyRequest>,
    ) -> Result<Response<County>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        require(
            &principal,
            Permission::TenantManage,
            &TenantRef::Cooperation,
        )?;
        let county = storage::County {
            id: tenant_id("county id", &req.id)?,
            name: display_text("name", &req.name, 200)?,
            created_at: now_millis(),
        };
        state
            .store
            .create_county(&county)
            .await
            .map_err(storage_status)?;
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
        Ok(Response::new(convert::county(&county)))
    }

    async fn list_counties(
        &self,
        request: Request<ListCountiesRequest>,
    ) -> Result<Response<ListCountiesResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let filter = principal.filter(Permission::TenantRead);
        let schools = state
            .store
            .list_schools(None)
            .await
            .map_err(storage_status)?;
        let counties = state
            .store
            .list_counties()
            .await
            .map_err(storage_status)?
            .into_iter()
            .filter(|c| {
                filter.allows(&c.id, None)
                    || schools
                        .iter()
                        .any(|s| s.county_id == c.id && filter.allows(&c.id, Some(&s.id)))
            })
            .map(|c| convert::county(&c))
            .collect();
        Ok(Response::new(ListCountiesResponse { counties }))
    }

    async fn create_school(
        &self,
        request: Request<CreateSchoolRequest>,
    ) -> Result<Response<School>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let county_id = tenant_id("county id", &req.county_id)?;
        let county = TenantRef::County(county_id.clone());
        let county_exists = state
            .store
            .get_county(&county_id)
            .await
            .map_err(storage_status)?
            .is_some();
        if !county_exists || !principal.can(Permission::TenantRead, &county) {
            return Err(Status::not_found(format!("county {county_id:?} not found")));
        }
        require(&principal, Permission::TenantManage, &county)?;
        let school = storage::School {
            id: tenant_id("school id", &req.id)?,
            county_id,
            name: display_text("name", &req.name, 200)?,
            created_at: now_millis(),
        };
        state
            .store
            .create_school(&school)
            .await
            .map_err(storage_status)?;
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
        Ok(Response::new(convert::school(&school)))
    }

    async fn list_schools(
        &self,
        request: Request<ListSchoolsRequest>,
    ) -> Result<Response<ListSchoolsResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let filter = principal.filter(Permission::TenantRead);
        let county = (!req.county_id.is_empty()).then_some(req.county_id.as_str());
        let schools = state
            .store
            .list_schools(county)
            .await
            .map_err(storage_status)?
            .into_iter()
            .filter(|s| filter.allows(&s.county_id, Some(&s.id)))
            .map(|s| convert::school(&s))
            .collect();
        Ok(Response::new(ListSchoolsResponse { schools }))
    }

    async fn create_device_class(
        &self,
        request: Request<CreateDeviceClassRequest>,
    ) -> Result<Response<DeviceClass>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        require(
            &principal,
            Permission::TenantManage,
            &TenantRef::Cooperation,
        )?;
        let class = storage::DeviceClass {
            id: tenant_id("device class", &req.id)?,
            label: display_text("label", &req.label, 200)?,
            created_at: now_millis(),
        };
        state
            .store
            .create_device_class(&class)
            .await
            .map_err(storage_status)?;
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
        Ok(Response::new(DeviceClass {
            id: class.id,
            label: class.label,
        }))
    }

    async fn list_device_classes(
        &self,
        request: Request<ListDeviceClassesRequest>,
    ) -> Result<Response<ListDeviceClassesResponse>, Status> {
        let state = &self.0;
        state.principal(&request).await?;
        let device_classes = state
            .store
            .list_device_classes()
            .await
            .map_err(storage_status)?
            .into_iter()
            .map(|c| DeviceClass {
                id: c.id,
                label: c.label,
            })
            .collect();
        Ok(Response::new(ListDeviceClassesResponse { device_classes }))
    }
}
