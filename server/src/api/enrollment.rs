//! Enrolment tokens: the adapter of `EnrollmentService` over
//! `service::enrolment`.

use schoolfleet_proto::v1::enrollment_service_server::EnrollmentService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert};
use crate::service::enrolment::{self, NewToken};

#[derive(Debug, Clone)]
pub struct EnrollmentApi(pub AppState);

#[tonic::async_trait]
impl EnrollmentService for EnrollmentApi {
    async fn create_enrollment_token(
        &self,
        request: Request<CreateEnrollmentTokenRequest>,
    ) -> Result<Response<CreateEnrollmentTokenResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let created = enrolment::create(
            &self.0,
            &principal,
            NewToken {
                school_id: req.school_id,
                device_class: req.device_class,
                description: req.description,
                expires_in_seconds: req.expires_in_seconds,
                max_uses: req.max_uses,
                reinstall_device: req.reinstall_device,
            },
        )
        .await?;
        Ok(Response::new(CreateEnrollmentTokenResponse {
            token: Some(convert::enrollment_token(&created.token)),
            secret: created.secret,
        }))
    }

    async fn list_enrollment_tokens(
        &self,
        request: Request<ListEnrollmentTokensRequest>,
    ) -> Result<Response<ListEnrollmentTokensResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let tokens = enrolment::list(
            &self.0,
            &principal,
            (!req.county_id.is_empty()).then_some(req.county_id.as_str()),
            (!req.school_id.is_empty()).then_some(req.school_id.as_str()),
            req.include_inactive,
        )
        .await?
        .iter()
        .map(convert::enrollment_token)
        .collect();
        Ok(Response::new(ListEnrollmentTokensResponse { tokens }))
    }

    async fn revoke_enrollment_token(
        &self,
        request: Request<RevokeEnrollmentTokenRequest>,
    ) -> Result<Response<EnrollmentToken>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let token = enrolment::revoke(&self.0, &principal, &req.id).await?;
        Ok(Response::new(convert::enrollment_token(&token)))
    }
}
