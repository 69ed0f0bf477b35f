//! The gRPC adapter of `UserService` over `service::users`: users, their
//! role bindings and API tokens, and offboarding.

use schoolfleet_proto::v1::user_service_server::UserService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert};
use crate::service::users::{self as svc, BindingInput, UserView};

#[derive(Debug, Clone)]
pub struct UserApi(pub AppState);

fn wire(v: &UserView) -> User {
    User {
        disabled_at: convert::opt_ts(v.disabled_at),
        ..convert::user(&v.user)
    }
}

fn inputs(bindings: &[RoleBinding]) -> Vec<BindingInput> {
    bindings
        .iter()
        .map(|b| BindingInput {
            role: b.role.clone(),
            scope: b.scope.clone(),
            remote: b.remote.clone(),
        })
        .collect()
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn who_am_i(&self, request: Request<WhoAmIRequest>) -> Result<Response<User>, Status> {
        let principal = self.0.principal(&request).await?;
        Ok(Response::new(wire(
            &svc::who_am_i(&self.0, &principal).await?,
        )))
    }

    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let user = svc::create(
            &self.0,
            &principal,
            &req.name,
            &req.county_id,
            &inputs(&req.roles),
        )
        .await?;
        Ok(Response::new(wire(&user)))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let users = svc::list(&self.0, &principal).await?;
        Ok(Response::new(ListUsersResponse {
            users: users.iter().map(wire).collect(),
        }))
    }

    async fn create_api_token(
        &self,
        request: Request<CreateApiTokenRequest>,
    ) -> Result<Response<CreateApiTokenResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let token = svc::create_token(
            &self.0,
            &principal,
            &req.user,
            req.expires_in_seconds,
            &req.description,
        )
        .await?;
        Ok(Response::new(CreateApiTokenResponse {
            token_id: token.id,
            secret: token.secret,
            expires_at: convert::opt_ts(token.expires_at),
        }))
    }

    async fn revoke_api_token(
        &self,
        request: Request<RevokeApiTokenRequest>,
    ) -> Result<Response<RevokeApiTokenResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        svc::revoke_token(&self.0, &principal, &request.get_ref().token_id).await?;
        Ok(Response::new(RevokeApiTokenResponse {}))
    }

    async fn set_web_password(
        &self,
        request: Request<SetWebPasswordRequest>,
    ) -> Result<Response<SetWebPasswordResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        svc::set_web_password(&self.0, &principal, &req.user, req.password).await?;
        Ok(Response::new(SetWebPasswordResponse {}))
    }

    async fn disable_user(&self, request: Request<UserRef>) -> Result<Response<User>, Status> {
        let principal = self.0.principal(&request).await?;
        let user = svc::set_disabled(&self.0, &principal, &request.get_ref().user, true).await?;
        Ok(Response::new(wire(&user)))
    }

    async fn enable_user(&self, request: Request<UserRef>) -> Result<Response<User>, Status> {
        let principal = self.0.principal(&request).await?;
        let user = svc::set_disabled(&self.0, &principal, &request.get_ref().user, false).await?;
        Ok(Response::new(wire(&user)))
    }

    async fn delete_user(
        &self,
        request: Request<UserRef>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let pseudonym = svc::delete(&self.0, &principal, &request.get_ref().user).await?;
        Ok(Response::new(DeleteUserResponse { pseudonym }))
    }

    async fn change_role_bindings(
        &self,
        request: Request<ChangeRoleBindingsRequest>,
    ) -> Result<Response<User>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let user = svc::change_roles(
            &self.0,
            &principal,
            &req.user,
            &inputs(&req.add),
            &inputs(&req.remove),
        )
        .await?;
        Ok(Response::new(wire(&user)))
    }

    async fn list_api_tokens(
        &self,
        request: Request<UserRef>,
    ) -> Result<Response<ListApiTokensResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let tokens = svc::list_tokens(&self.0, &principal, &request.get_ref().user).await?;
        Ok(Response::new(ListApiTokensResponse {
            tokens: tokens
                .into_iter()
                .map(|t| ApiTokenInfo {
                    id: t.id,
                    description: t.description,
                    created_at: convert::ts(t.created_at),
                    expires_at: convert::opt_ts(t.expires_at),
                    last_used_at: convert::opt_ts(t.last_used_at),
                    revoked_at: convert::opt_ts(t.revoked_at),
                })
                .collect(),
        }))
    }

    async fn reset_mfa(
        &self,
        request: Request<UserRef>,
    ) -> Result<Response<ResetMfaResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let had_mfa = svc::reset_mfa(&self.0, &principal, &request.get_ref().user).await?;
        Ok(Response::new(ResetMfaResponse { had_mfa }))
    }
}
