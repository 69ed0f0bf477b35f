//! Enrolment tokens: created by admins and technicians for one school and
//! one device class, with an expiry and a maximum number of uses.

use crate::service::access;
use schoolfleet_proto::tokens::format_enrollment_token;
use schoolfleet_proto::v1::enrollment_service_server::EnrollmentService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert, display_text, require, storage_status, tenant_id};
use crate::auth::{Permission, TenantRef, secrets};
use crate::storage::{self, now_millis};

/// Longest validity of an enrolment token: a leaked token must not stay
/// useful for long.
const MAX_VALIDITY_SECONDS: u64 = 90 * 24 * 3600;
const MAX_USES: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct EnrollmentApi(pub AppState);

#[tonic::async_trait]
impl EnrollmentService for EnrollmentApi {
    async fn create_enrollment_token(
        &self,
        request: Request<CreateEnrollmentTokenRequest>,
    ) -> Result<Response<CreateEnrollmentTokenResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let mut req = request.into_inner();
        // A reinstall token belongs to one device: it re-enrols exactly that
        // device, in its school and class, once.
        let reinstall = if req.reinstall_device.trim().is_empty() {
            None
        } else {
            let device = access::visible_device(
                state,
                &principal,
                &req.reinstall_device,
                Permission::DeviceManage,
            )
            .await?;
            if device.status() == storage::DeviceStatus::Revoked {
                return Err(Status::failed_precondition(
                    "this device was revoked and cannot be reinstalled",
                ));
            }
            if (!req.school_id.is_empty() && req.school_id != device.school_id)
                || (!req.device_class.is_empty() && req.device_class != device.device_class)
            {
                return Err(Status::invalid_argument(
                    "a reinstall token keeps the device's school and class; leave them out",
                ));
            }
            if req.max_uses > 1 {
                return Err(Status::invalid_argument(
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
            .await
            .map_err(storage_status)?
            .filter(|s| {
                principal.can(
                    Permission::TenantRead,
                    &TenantRef::school(&s.county_id, &s.id),
                )
            })
            .ok_or_else(|| Status::not_found(format!("school {school_id:?} not found")))?;
        require(
            &principal,
            Permission::EnrollmentManage,
            &TenantRef::school(&school.county_id, &school.id),
        )?;
        let class = tenant_id("device class", &req.device_class)?;
        if state
            .store
            .get_device_class(&class)
            .await
            .map_err(storage_status)?
            .is_none()
        {
            return Err(Status::invalid_argument(format!(
                "unknown device class {class:?}; see `schoolfleet class list`"
            )));
        }
        if req.expires_in_seconds == 0 || req.expires_in_seconds > MAX_VALIDITY_SECONDS {
            return Err(Status::invalid_argument(
                "expiry must be between 1 second and 90 days",
            ));
        }
        if req.max_uses == 0 || req.max_uses > MAX_USES {
            return Err(Status::invalid_argument(format!(
                "uses must be between 1 and {MAX_USES}"
            )));
        }
        let (id, secret) = secrets::generate();
        let now = now_millis();
        let token = storage::EnrollmentToken {
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
        state
            .store
            .create_enrollment_token(&token)
            .await
            .map_err(storage_status)?;
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
        Ok(Response::new(CreateEnrollmentTokenResponse {
            token: Some(convert::enrollment_token(&token)),
            secret: format_enrollment_token(&id, &secret, &state.ca.fingerprint()),
        }))
    }

    async fn list_enrollment_tokens(
        &self,
        request: Request<ListEnrollmentTokensRequest>,
    ) -> Result<Response<ListEnrollmentTokensResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let filter = principal.filter(Permission::EnrollmentManage);
        if filter.is_empty() {
            return Err(Status::permission_denied(format!(
                "{} may not manage enrolment tokens",
                principal.name
            )));
        }
        let now = now_millis();
        let tokens = state
            .store
            .list_enrollment_tokens(
                &filter,
                (!req.county_id.is_empty()).then_some(req.county_id.as_str()),
                (!req.school_id.is_empty()).then_some(req.school_id.as_str()),
            )
            .await
            .map_err(storage_status)?
            .iter()
            .filter(|t| req.include_inactive || t.unusable_reason(now).is_none())
            .map(convert::enrollment_token)
            .collect();
        Ok(Response::new(ListEnrollmentTokensResponse { tokens }))
    }

    async fn revoke_enrollment_token(
        &self,
        request: Request<RevokeEnrollmentTokenRequest>,
    ) -> Result<Response<EnrollmentToken>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let not_found = || Status::not_found(format!("enrolment token {:?} not found", req.id));
        let token = state
            .store
            .get_enrollment_token(req.id.trim())
            .await
            .map_err(storage_status)?
            .ok_or_else(not_found)?;
        let target = TenantRef::school(&token.county_id, &token.school_id);
        if !principal.can(Permission::EnrollmentManage, &target) {
            return Err(not_found());
        }
        state
            .store
            .revoke_enrollment_token(&token.id, now_millis())
            .await
            .map_err(storage_status)?;
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
        let token = state
            .store
            .get_enrollment_token(&token.id)
            .await
            .map_err(storage_status)?
            .ok_or_else(not_found)?;
        Ok(Response::new(convert::enrollment_token(&token)))
    }
}
