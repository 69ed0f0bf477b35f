//! Users: who am I, create and list, API tokens, web passwords, and
//! offboarding (disable, enable, delete, change role bindings, list a
//! user's tokens, reset the second factor).
//!
//! A user is managed only by someone who holds `UserManage` wherever the
//! user has a binding and in the user's home county (`may_manage`); other
//! users are NOT_FOUND. Nobody disables, deletes or changes the roles of
//! themselves, and the cooperation always keeps one enabled
//! cooperation-wide admin. Every change is audited.

use schoolfleet_proto::scope::Scope;
use schoolfleet_proto::text::echo;

use super::access;
use super::input::{display_text, tenant_id};
use super::{AppError, AppResult};
use crate::auth::{Permission, Principal, RemoteLimit, Role, TenantRef, secrets};
use crate::state::AppState;
use crate::storage::{ApiToken, Millis, RoleBindingRecord, User, now_millis};

const DEFAULT_TOKEN_SECONDS: u64 = 90 * 24 * 3600;
const MAX_TOKEN_SECONDS: u64 = 366 * 24 * 3600;

/// A user with its offboarding state.
#[derive(Debug, Clone)]
pub struct UserView {
    pub user: User,
    /// Set while the user is disabled.
    pub disabled_at: Option<Millis>,
}

/// A role binding as the caller wrote it (role, scope, remote list).
#[derive(Debug, Clone, Default)]
pub struct BindingInput {
    pub role: String,
    pub scope: String,
    pub remote: String,
}

/// One API token as shown to an admin: never its secret or hash.
#[derive(Debug, Clone)]
pub struct TokenView {
    pub id: String,
    pub description: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// A new API token: its secret is shown once.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub id: String,
    /// `sft_<id>_<secret>`.
    pub secret: String,
    pub expires_at: Option<Millis>,
}

/// The tenant a scope names, with the county of a school looked up.
/// Unknown counties and schools are NOT_FOUND.
async fn scope_target(state: &AppState, scope: &Scope) -> AppResult<TenantRef> {
    let store = &state.store;
    Ok(match scope {
        Scope::Cooperation => TenantRef::Cooperation,
        Scope::County(c) => {
            store
                .get_county(c)
                .await?
                .ok_or_else(|| AppError::not_found(format!("county {} not found", echo(c))))?;
            TenantRef::County(c.clone())
        }
        Scope::School(s) => {
            let school = store
                .get_school(s)
                .await?
                .ok_or_else(|| AppError::not_found(format!("school {} not found", echo(s))))?;
            TenantRef::school(&school.county_id, &school.id)
        }
    })
}

/// May `principal` manage a user with these bindings? Only where the
/// principal itself holds UserManage: a county admin cannot mint tokens
/// for, create, disable or delete a cooperation-wide admin.
async fn may_manage(state: &AppState, principal: &Principal, user: &User) -> AppResult<bool> {
    if let Some(county) = &user.county_id
        && !principal.can(Permission::UserManage, &TenantRef::County(county.clone()))
    {
        return Ok(false);
    }
    for binding in &user.bindings {
        let Ok(scope) = binding.scope.parse::<Scope>() else {
            continue;
        };
        let target = match scope_target(state, &scope).await {
            Ok(target) => target,
            // A binding at a county or school that does not exist (any
            // more) cannot be placed in the tree: only a cooperation-wide
            // user manager may touch such a user.
            Err(err) if err.kind() == super::ErrorKind::NotFound => TenantRef::Cooperation,
            // Fail closed: a storage error must not skip the check.
            Err(err) => return Err(err),
        };
        if !principal.can(Permission::UserManage, &target) {
            return Ok(false);
        }
    }
    Ok(user.county_id.is_some()
        || !user.bindings.is_empty()
        || principal.can(Permission::UserManage, &TenantRef::Cooperation))
}

/// The user named by `user` (name or id) if the caller may manage it;
/// NOT_FOUND otherwise, the same answer as for a user that does not exist.
pub async fn managed_user(state: &AppState, principal: &Principal, user: &str) -> AppResult<User> {
    let user = user.trim();
    let not_found = || AppError::not_found(format!("user {} not found", echo(user)));
    if user.is_empty() {
        return Err(AppError::invalid("user name or id required"));
    }
    let record = state.store.get_user(user).await?.ok_or_else(not_found)?;
    if !may_manage(state, principal, &record).await? {
        return Err(not_found());
    }
    Ok(record)
}

/// The caller's own user record, or the named user if the caller may
/// manage it (empty, own name or own id: the caller).
async fn self_or_managed(state: &AppState, principal: &Principal, user: &str) -> AppResult<User> {
    let user = user.trim();
    if user.is_empty() || user == principal.name || user == principal.user_id {
        return state
            .store
            .get_user(&principal.user_id)
            .await?
            .ok_or_else(|| AppError::unauthenticated("user no longer exists"));
    }
    managed_user(state, principal, user).await
}

async fn view(state: &AppState, user: User) -> AppResult<UserView> {
    let disabled_at = state.store.user_disabled_at(&user.id).await?;
    Ok(UserView { user, disabled_at })
}

fn roles_text(bindings: &[RoleBindingRecord]) -> String {
    bindings
        .iter()
        .map(|b| {
            if b.remote.is_empty() {
                format!("{}@{}", b.role, b.scope)
            } else {
                format!("{}@{} remote={}", b.role, b.scope, b.remote)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks one binding the caller wants to grant: a known role and scope,
/// a tenant the caller knows (NOT_FOUND otherwise) and UserManage there.
async fn checked_binding(
    state: &AppState,
    principal: &Principal,
    binding: &BindingInput,
) -> AppResult<RoleBindingRecord> {
    let role: Role = binding.role.trim().parse().map_err(AppError::invalid)?;
    let scope: Scope = binding
        .scope
        .trim()
        .parse()
        .map_err(|e| AppError::invalid(format!("{e}")))?;
    if role == Role::SchoolLead && !matches!(scope, Scope::School(_)) {
        return Err(AppError::invalid(
            "schulleitung is bound to one school: use schulleitung@school:<id>",
        ));
    }
    let target = scope_target(state, &scope).await?;
    if !access::tenant_known(state, principal, &target).await? {
        // The same answer as for a tenant that does not exist.
        return Err(AppError::not_found(match &scope {
            Scope::School(s) => format!("school {} not found", echo(s)),
            Scope::County(c) => format!("county {} not found", echo(c)),
            Scope::Cooperation => "scope not found".to_owned(),
        }));
    }
    if !principal.can(Permission::UserManage, &target) {
        return Err(AppError::denied(format!(
            "{} may not grant or remove roles at {scope}",
            principal.name
        )));
    }
    let remote: RemoteLimit = binding.remote.parse().map_err(AppError::invalid)?;
    Ok(RoleBindingRecord {
        role: role.as_str().to_owned(),
        scope: scope.to_string(),
        remote: remote.as_text(),
    })
}

pub async fn who_am_i(state: &AppState, principal: &Principal) -> AppResult<UserView> {
    let user = state
        .store
        .get_user(&principal.user_id)
        .await?
        .ok_or_else(|| AppError::unauthenticated("user no longer exists"))?;
    view(state, user).await
}

pub async fn create(
    state: &AppState,
    principal: &Principal,
    name: &str,
    county_id: &str,
    roles: &[BindingInput],
) -> AppResult<UserView> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
    {
        return Err(AppError::invalid(
            "user name must be 1-64 characters of letters, digits, '.', '-', '_' or '@'",
        ));
    }
    // Users are looked up by id or name: a name shaped like an id could
    // stand for another user.
    if uuid::Uuid::parse_str(name).is_ok() {
        return Err(AppError::invalid(
            "user name must not look like a user id (a UUID)",
        ));
    }
    let county_id = if county_id.is_empty() {
        None
    } else {
        let county = tenant_id("county", county_id)?;
        let target = scope_target(state, &Scope::County(county.clone())).await?;
        if !access::tenant_known(state, principal, &target).await? {
            return Err(AppError::not_found(format!(
                "county {} not found",
                echo(&county)
            )));
        }
        Some(county)
    };
    if roles.is_empty() {
        return Err(AppError::invalid("a user needs at least one role"));
    }
    let mut bindings = Vec::new();
    for binding in roles {
        bindings.push(checked_binding(state, principal, binding).await?);
    }
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        county_id,
        created_at: now_millis(),
        bindings,
    };
    if !may_manage(state, principal, &user).await? {
        return Err(AppError::denied(format!(
            "{} may not create this user",
            principal.name
        )));
    }
    state.store.create_user(&user).await?;
    state
        .audit(
            &principal.actor(),
            "user.create",
            &format!("user:{}", user.name),
            user.county_id.as_deref(),
            "ok",
            roles_text(&user.bindings),
        )
        .await;
    Ok(UserView {
        user,
        disabled_at: None,
    })
}

/// The users the caller may manage, and the caller itself.
pub async fn list(state: &AppState, principal: &Principal) -> AppResult<Vec<UserView>> {
    if principal.filter(Permission::UserManage).is_empty() {
        return Err(AppError::denied(format!(
            "{} may not manage users",
            principal.name
        )));
    }
    let mut users = Vec::new();
    for user in state.store.list_users().await? {
        if user.id == principal.user_id || may_manage(state, principal, &user).await? {
            users.push(view(state, user).await?);
        }
    }
    Ok(users)
}

pub async fn create_token(
    state: &AppState,
    principal: &Principal,
    user: &str,
    expires_in_seconds: u64,
    description: &str,
) -> AppResult<CreatedToken> {
    let user = self_or_managed(state, principal, user).await?;
    let seconds = match expires_in_seconds {
        0 => DEFAULT_TOKEN_SECONDS,
        s if s > MAX_TOKEN_SECONDS => {
            return Err(AppError::invalid(
                "API tokens expire after at most 366 days",
            ));
        }
        s => s,
    };
    let (id, secret) = secrets::generate();
    let now = now_millis();
    let token = ApiToken {
        id: id.clone(),
        user_id: user.id.clone(),
        secret_hash: secrets::hash_secret(&secret),
        description: display_text("description", description, 500)?,
        created_at: now,
        expires_at: Some(now + seconds as i64 * 1000),
        revoked_at: None,
    };
    state.store.create_api_token(&token).await?;
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
    Ok(CreatedToken {
        secret: schoolfleet_proto::tokens::format_api_token(&id, &secret),
        id,
        expires_at: token.expires_at,
    })
}

/// Revokes a token of the caller's own or of a user the caller manages.
pub async fn revoke_token(
    state: &AppState,
    principal: &Principal,
    token_id: &str,
) -> AppResult<()> {
    let token_id = token_id.trim();
    let not_found = || AppError::not_found(format!("API token {} not found", echo(token_id)));
    let token = state
        .store
        .get_api_token(token_id)
        .await?
        .ok_or_else(not_found)?;
    let owner = state
        .store
        .get_user(&token.user_id)
        .await?
        .ok_or_else(not_found)?;
    if token.user_id != principal.user_id && !may_manage(state, principal, &owner).await? {
        return Err(not_found());
    }
    state
        .store
        .revoke_api_token(&token.id, now_millis())
        .await?;
    state
        .audit(
            &principal.actor(),
            "api_token.revoke",
            &format!("api_token:{}", token.id),
            owner.county_id.as_deref(),
            "ok",
            format!("user={}", owner.id),
        )
        .await;
    Ok(())
}

pub async fn set_web_password(
    state: &AppState,
    principal: &Principal,
    user: &str,
    password: String,
) -> AppResult<()> {
    let user = self_or_managed(state, principal, user).await?;
    crate::auth::password::check_strength(&password).map_err(AppError::invalid)?;
    // argon2id takes tens of milliseconds of CPU: off the async threads.
    let hash = tokio::task::spawn_blocking(move || crate::auth::password::hash(&password))
        .await
        .map_err(|_| AppError::internal("password hashing failed"))?
        .map_err(|_| AppError::internal("password hashing failed"))?;
    state
        .store
        .set_web_password(&user.id, &hash, now_millis())
        .await?;
    state
        .audit(
            &principal.actor(),
            "user.web_password_set",
            &format!("user:{}", user.name),
            user.county_id.as_deref(),
            "ok",
            String::new(),
        )
        .await;
    Ok(())
}

// --- offboarding ---

fn is_cooperation_admin(bindings: &[RoleBindingRecord]) -> bool {
    bindings
        .iter()
        .any(|b| b.role == Role::Admin.as_str() && b.scope == Scope::Cooperation.to_string())
}

/// Refuses a change to oneself: offboarding is done by another person.
fn not_self(principal: &Principal, user: &User, what: &str) -> AppResult<()> {
    if user.id == principal.user_id {
        return Err(AppError::denied(format!(
            "nobody may {what} themselves; ask another admin"
        )));
    }
    Ok(())
}

/// Refuses to leave the cooperation without an enabled cooperation-wide
/// admin when `user` stops being one.
async fn keeps_a_cooperation_admin(state: &AppState, user: &User) -> AppResult<()> {
    for other in state.store.list_users().await? {
        if other.id != user.id
            && is_cooperation_admin(&other.bindings)
            && state.store.user_disabled_at(&other.id).await?.is_none()
        {
            return Ok(());
        }
    }
    Err(AppError::failed_precondition(format!(
        "{} is the last enabled cooperation admin; create another one first",
        user.name
    )))
}

/// Disables (`true`) or enables a user. A disabled user's API tokens and
/// web logins are refused at once; enabling restores them.
pub async fn set_disabled(
    state: &AppState,
    principal: &Principal,
    user: &str,
    disabled: bool,
) -> AppResult<UserView> {
    let user = managed_user(state, principal, user).await?;
    let action = if disabled { "disable" } else { "enable" };
    not_self(principal, &user, action)?;
    if disabled && is_cooperation_admin(&user.bindings) {
        keeps_a_cooperation_admin(state, &user).await?;
    }
    let at = disabled.then(now_millis);
    let current = state.store.user_disabled_at(&user.id).await?;
    // Disabling twice keeps the first time.
    let at = if disabled { current.or(at) } else { None };
    if !state.store.set_user_disabled(&user.id, at).await? {
        return Err(AppError::not_found(format!(
            "user {} not found",
            echo(&user.name)
        )));
    }
    state
        .audit(
            &principal.actor(),
            &format!("user.{action}"),
            &format!("user:{}", user.name),
            user.county_id.as_deref(),
            "ok",
            String::new(),
        )
        .await;
    Ok(UserView {
        user,
        disabled_at: at,
    })
}

/// Deletes a user with bindings, tokens, web login and second factor.
/// Returns the pseudonym that replaces the name where the user acted
/// (sessions, ticket events, articles, consent settings). The audit entry
/// names the user by id only, so the deletion adds no name to the log.
pub async fn delete(state: &AppState, principal: &Principal, user: &str) -> AppResult<String> {
    let user = managed_user(state, principal, user).await?;
    not_self(principal, &user, "delete")?;
    if is_cooperation_admin(&user.bindings) {
        keeps_a_cooperation_admin(state, &user).await?;
    }
    let pseudonym = format!("user:deleted-{}", user.id);
    if !state.store.delete_user(&user.id, &pseudonym).await? {
        return Err(AppError::not_found(format!(
            "user {} not found",
            echo(&user.name)
        )));
    }
    state
        .audit(
            &principal.actor(),
            "user.delete",
            &format!("user:{}", user.id),
            user.county_id.as_deref(),
            "ok",
            String::new(),
        )
        .await;
    // Deleted means gone from the files, not at the next hourly pass.
    if let Err(err) = state.store.compact().await {
        tracing::warn!(error = %err, "compaction after a user deletion failed; the next sweep retries");
    }
    Ok(pseudonym)
}

/// Adds and removes role bindings in one transaction. The caller needs
/// UserManage at every scope it adds or removes, as well as over the user.
pub async fn change_roles(
    state: &AppState,
    principal: &Principal,
    user: &str,
    add: &[BindingInput],
    remove: &[BindingInput],
) -> AppResult<UserView> {
    let user = managed_user(state, principal, user).await?;
    not_self(principal, &user, "change the roles of")?;
    if add.is_empty() && remove.is_empty() {
        return Err(AppError::invalid("nothing to add or remove"));
    }
    let mut adds = Vec::new();
    for binding in add {
        adds.push(checked_binding(state, principal, binding).await?);
    }
    let mut removes = Vec::new();
    for binding in remove {
        let mut record = checked_binding(state, principal, binding).await?;
        // Removal matches by role and scope; the stored remote list is kept
        // in the audit entry.
        let Some(stored) = user
            .bindings
            .iter()
            .find(|b| b.role == record.role && b.scope == record.scope)
        else {
            return Err(AppError::not_found(format!(
                "{} has no role binding {}@{}",
                user.name, record.role, record.scope
            )));
        };
        record.remote = stored.remote.clone();
        removes.push(record);
    }
    let mut after: Vec<RoleBindingRecord> = user
        .bindings
        .iter()
        .filter(|b| {
            !removes
                .iter()
                .any(|r| r.role == b.role && r.scope == b.scope)
        })
        .cloned()
        .collect();
    after.extend(adds.iter().cloned());
    if after.is_empty() {
        return Err(AppError::failed_precondition(format!(
            "{} would be left without a role: disable or delete the user instead",
            user.name
        )));
    }
    if is_cooperation_admin(&user.bindings) && !is_cooperation_admin(&after) {
        keeps_a_cooperation_admin(state, &user).await?;
    }
    state
        .store
        .change_role_bindings(&user.id, &removes, &adds)
        .await?;
    state
        .audit(
            &principal.actor(),
            "user.roles_change",
            &format!("user:{}", user.name),
            user.county_id.as_deref(),
            "ok",
            format!("add={};remove={}", roles_text(&adds), roles_text(&removes)),
        )
        .await;
    let user = state
        .store
        .get_user(&user.id)
        .await?
        .ok_or_else(|| AppError::not_found("user vanished"))?;
    view(state, user).await
}

/// A user's API tokens (the caller's own, or of a user it manages),
/// newest first, without secrets.
pub async fn list_tokens(
    state: &AppState,
    principal: &Principal,
    user: &str,
) -> AppResult<Vec<TokenView>> {
    let user = self_or_managed(state, principal, user).await?;
    let used: std::collections::HashMap<String, Option<Millis>> = state
        .store
        .api_tokens_last_used(&user.id)
        .await?
        .into_iter()
        .collect();
    Ok(state
        .store
        .list_api_tokens(&user.id)
        .await?
        .into_iter()
        .map(|t| TokenView {
            last_used_at: used.get(&t.id).copied().flatten(),
            id: t.id,
            description: t.description,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        })
        .collect())
}

/// Removes a user's second factor; the user enrols again before the next
/// session that needs it. Needs UserManage over the user (not oneself:
/// a lost authenticator is reset by another admin).
pub async fn reset_mfa(state: &AppState, principal: &Principal, user: &str) -> AppResult<bool> {
    let user = managed_user(state, principal, user).await?;
    not_self(principal, &user, "reset the second factor of")?;
    let had = state.store.delete_user_mfa(&user.id).await?;
    state
        .audit(
            &principal.actor(),
            "user.mfa_reset",
            &format!("user:{}", user.name),
            user.county_id.as_deref(),
            "ok",
            format!("had_mfa={had}"),
        )
        .await;
    Ok(had)
}

/// Records that `token_id` authenticated, at most every few minutes per
/// token and server. Awaited in the request, not spawned: a write in the
/// background would race the request's own transactions on SQLite.
pub async fn note_token_use(state: &AppState, token_id: &str) {
    use std::sync::{Mutex, OnceLock};
    const EVERY_MS: Millis = 5 * 60 * 1000;
    static LAST: OnceLock<Mutex<std::collections::HashMap<String, Millis>>> = OnceLock::new();
    let now = now_millis();
    {
        let mut last = LAST
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.get(token_id).is_some_and(|at| now - at < EVERY_MS) {
            return;
        }
        if last.len() > 100_000 {
            last.clear();
        }
        last.insert(token_id.to_owned(), now);
    }
    if let Err(err) = state.store.touch_api_token(token_id, now).await {
        tracing::debug!(error = %err, "cannot record a token's last use");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooperation_admin_is_recognised_by_role_and_scope() {
        let b = |role: &str, scope: &str| RoleBindingRecord {
            role: role.into(),
            scope: scope.into(),
            remote: String::new(),
        };
        assert!(is_cooperation_admin(&[b("admin", "cooperation")]));
        assert!(!is_cooperation_admin(&[b("admin", "county:kus")]));
        assert!(!is_cooperation_admin(&[b("technician", "cooperation")]));
    }
}
