//! Admin users, their role bindings and API tokens.

use crate::service::access;
use schoolfleet_proto::scope::Scope;
use schoolfleet_proto::tokens::format_api_token;
use schoolfleet_proto::v1::user_service_server::UserService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert, storage_status, tenant_id};
use crate::auth::{Permission, Principal, RemoteLimit, Role, TenantRef, secrets};
use crate::storage::{self, now_millis};

const DEFAULT_TOKEN_SECONDS: u64 = 90 * 24 * 3600;
const MAX_TOKEN_SECONDS: u64 = 366 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct UserApi(pub AppState);

impl UserApi {
    /// The tenant a scope names, with the county of a school looked up.
    /// Unknown counties and schools are NOT_FOUND.
    async fn scope_target(&self, scope: &Scope) -> Result<TenantRef, Status> {
        let store = &self.0.store;
        Ok(match scope {
            Scope::Cooperation => TenantRef::Cooperation,
            Scope::County(c) => {
                store
                    .get_county(c)
                    .await
                    .map_err(storage_status)?
                    .ok_or_else(|| Status::not_found(format!("county {c:?} not found")))?;
                TenantRef::County(c.clone())
            }
            Scope::School(s) => {
                let school = store
                    .get_school(s)
                    .await
                    .map_err(storage_status)?
                    .ok_or_else(|| Status::not_found(format!("school {s:?} not found")))?;
                TenantRef::school(&school.county_id, &school.id)
            }
        })
    }

    /// May `principal` manage a user with these bindings? Only where the
    /// principal itself holds UserManage: a county admin cannot mint
    /// tokens for, or create, a cooperation-wide admin.
    async fn may_manage(
        &self,
        principal: &Principal,
        user: &storage::User,
    ) -> Result<bool, Status> {
        if let Some(county) = &user.county_id
            && !principal.can(Permission::UserManage, &TenantRef::County(county.clone()))
        {
            return Ok(false);
        }
        for binding in &user.bindings {
            let Ok(scope) = binding.scope.parse::<Scope>() else {
                continue;
            };
            let target = match self.scope_target(&scope).await {
                Ok(target) => target,
                // A binding at a county or school that does not exist (any
                // more) cannot be placed in the tree: only a
                // cooperation-wide user manager may touch such a user.
                Err(status) if status.code() == tonic::Code::NotFound => TenantRef::Cooperation,
                // Fail closed: a storage error must not skip the check.
                Err(status) => return Err(status),
            };
            if !principal.can(Permission::UserManage, &target) {
                return Ok(false);
            }
        }
        Ok(user.county_id.is_some()
            || !user.bindings.is_empty()
            || principal.can(Permission::UserManage, &TenantRef::Cooperation))
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn who_am_i(&self, request: Request<WhoAmIRequest>) -> Result<Response<User>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let user = state
            .store
            .get_user(&principal.user_id)
            .await
            .map_err(storage_status)?
            .ok_or_else(|| Status::unauthenticated("user no longer exists"))?;
        Ok(Response::new(convert::user(&user)))
    }

    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let name = req.name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
        {
            return Err(Status::invalid_argument(
                "user name must be 1-64 characters of letters, digits, '.', '-', '_' or '@'",
            ));
        }
        // Users are looked up by id or name: a name shaped like an id could
        // stand for another user.
        if uuid::Uuid::parse_str(name).is_ok() {
            return Err(Status::invalid_argument(
                "user name must not look like a user id (a UUID)",
            ));
        }
        let county_id = if req.county_id.is_empty() {
            None
        } else {
            let county = tenant_id("county", &req.county_id)?;
            let target = self.scope_target(&Scope::County(county.clone())).await?;
            if !access::tenant_known(state, &principal, &target).await? {
                return Err(Status::not_found(format!("county {county:?} not found")));
            }
            Some(county)
        };
        if req.roles.is_empty() {
            return Err(Status::invalid_argument("a user needs at least one role"));
        }
        let mut bindings = Vec::new();
        for binding in &req.roles {
            let role: Role = binding.role.parse().map_err(Status::invalid_argument)?;
            let scope: Scope = binding
                .scope
                .parse()
                .map_err(|e| Status::invalid_argument(format!("{e}")))?;
            if role == Role::SchoolLead && !matches!(scope, Scope::School(_)) {
                return Err(Status::invalid_argument(
                    "schulleitung is bound to one school: use schulleitung@school:<id>",
                ));
            }
            let target = self.scope_target(&scope).await?;
            if !access::tenant_known(state, &principal, &target).await? {
                // The same answer as for a tenant that does not exist.
                return Err(Status::not_found(match &scope {
                    Scope::School(s) => format!("school {s:?} not found"),
                    Scope::County(c) => format!("county {c:?} not found"),
                    Scope::Cooperation => "scope not found".to_owned(),
                }));
            }
            if !principal.can(Permission::UserManage, &target) {
                return Err(Status::permission_denied(format!(
                    "{} may not grant roles at {scope}",
                    principal.name
                )));
            }
            let remote: RemoteLimit = binding
                .remote
                .parse()
                .map_err(|e: String| Status::invalid_argument(e))?;
            bindings.push(storage::RoleBindingRecord {
                role: role.as_str().to_owned(),
                scope: scope.to_string(),
                remote: remote.as_text(),
            });
        }
        let user = storage::User {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            county_id,
            created_at: now_millis(),
            bindings,
        };
        if !self.may_manage(&principal, &user).await? {
            return Err(Status::permission_denied(format!(
                "{} may not create this user",
                principal.name
            )));
        }
        state
            .store
            .create_user(&user)
            .await
            .map_err(storage_status)?;
        let roles: Vec<String> = user
            .bindings
            .iter()
            .map(|b| {
                if b.remote.is_empty() {
                    format!("{}@{}", b.role, b.scope)
                } else {
                    format!("{}@{} remote={}", b.role, b.scope, b.remote)
                }
            })
            .collect();
        state
            .audit(
                &principal.actor(),
                "user.create",
                &format!("user:{}", user.name),
                user.county_id.as_deref(),
                "ok",
                roles.join(","),
            )
            .await;
        Ok(Response::new(convert::user(&user)))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        if principal.filter(Permission::UserManage).is_empty() {
            return Err(Status::permission_denied(format!(
                "{} may not manage users",
                principal.name
            )));
        }
        let mut users = Vec::new();
        for user in state.store.list_users().await.map_err(storage_status)? {
            if user.id == principal.user_id || self.may_manage(&principal, &user).await? {
                users.push(convert::user(&user));
            }
        }
        Ok(Response::new(ListUsersResponse { users }))
    }

    async fn create_api_token(
        &self,
        request: Request<CreateApiTokenRequest>,
    ) -> Result<Response<CreateApiTokenResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let not_found = || Status::not_found(format!("user {:?} not found", req.user));
        let user =
            if req.user.is_empty() || req.user == principal.name || req.user == principal.user_id {
                state
                    .store
                    .get_user(&principal.user_id)
                    .await
                    .map_err(storage_status)?
                    .ok_or_else(not_found)?
            } else {
                let user = state
                    .store
                    .get_user(req.user.trim())
                    .await
                    .map_err(storage_status)?
                    .ok_or_else(not_found)?;
                if !self.may_manage(&principal, &user).await? {
                    return Err(not_found());
                }
                user
            };
        let seconds = match req.expires_in_seconds {
            0 => DEFAULT_TOKEN_SECONDS,
            s if s > MAX_TOKEN_SECONDS => {
                return Err(Status::invalid_argument(
                    "API tokens expire after at most 366 days",
                ));
            }
            s => s,
        };
        let (id, secret) = secrets::generate();
        let now = now_millis();
        let token = storage::ApiToken {
            id: id.clone(),
            user_id: user.id.clone(),
            secret_hash: secrets::hash_secret(&secret),
            description: super::display_text("description", &req.description, 500)?,
            created_at: now,
            expires_at: Some(now + seconds as i64 * 1000),
            revoked_at: None,
        };
        state
            .store
            .create_api_token(&token)
            .await
            .map_err(storage_status)?;
        state
            .audit(
                &principal.actor(),
                "api_token.create",
                &format!("user:{}", user.name),
                user.county_id.as_deref(),
                "ok",
                format!("token={id}"),
            )
            .await;
        Ok(Response::new(CreateApiTokenResponse {
            token_id: id.clone(),
            secret: format_api_token(&id, &secret),
            expires_at: convert::opt_ts(token.expires_at),
        }))
    }

    async fn revoke_api_token(
        &self,
        request: Request<RevokeApiTokenRequest>,
    ) -> Result<Response<RevokeApiTokenResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let not_found = || Status::not_found(format!("API token {:?} not found", req.token_id));
        let token = state
            .store
            .get_api_token(req.token_id.trim())
            .await
            .map_err(storage_status)?
            .ok_or_else(not_found)?;
        if token.user_id != principal.user_id {
            let owner = state
                .store
                .get_user(&token.user_id)
                .await
                .map_err(storage_status)?
                .ok_or_else(not_found)?;
            if !self.may_manage(&principal, &owner).await? {
                return Err(not_found());
            }
        }
        state
            .store
            .revoke_api_token(&token.id, now_millis())
            .await
            .map_err(storage_status)?;
        state
            .audit(
                &principal.actor(),
                "api_token.revoke",
                &format!("api_token:{}", token.id),
                None,
                "ok",
                String::new(),
            )
            .await;
        Ok(Response::new(RevokeApiTokenResponse {}))
    }
}
