//! Users and their API tokens.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_user_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, StorageError, sql};

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn count_users(&self) -> Result<i64>;

    async fn create_user(&self, user: &User) -> Result<()>;

    /// Creates a user and its first API token in one transaction (the
    /// bootstrap admin: never a user without a token).
    async fn create_user_with_token(&self, user: &User, token: Option<&ApiToken>) -> Result<()>;

    async fn get_user(&self, id_or_name: &str) -> Result<Option<User>>;

    async fn list_users(&self) -> Result<Vec<User>>;

    async fn create_api_token(&self, token: &ApiToken) -> Result<()>;

    async fn get_api_token(&self, id: &str) -> Result<Option<ApiToken>>;

    async fn revoke_api_token(&self, id: &str, at: Millis) -> Result<()>;
}

macro_rules! impl_user_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::UserStore for $store {
            async fn count_users(&self) -> Result<i64> {
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count)
            }

            async fn create_user(&self, user: &User) -> Result<()> {
                self.create_user_with_token(user, None).await
            }

            async fn create_user_with_token(&self, user: &User, token: Option<&ApiToken>) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query("INSERT INTO users (id, name, county_id, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&user.id)
                    .bind(&user.name)
                    .bind(&user.county_id)
                    .bind(user.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| sql::conflict_or(e, format!("user {}", user.name)))?;
                for b in &user.bindings {
                    sqlx::query(
                        "INSERT INTO role_bindings (user_id, role, scope, remote) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&user.id)
                    .bind(&b.role)
                    .bind(&b.scope)
                    .bind(&b.remote)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| sql::conflict_or(e, format!("role {} at {}", b.role, b.scope)))?;
                }
                if let Some(token) = token {
                    sqlx::query(
                        "INSERT INTO api_tokens (id, user_id, secret_hash, description, created_at, \
                         expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&token.id)
                    .bind(&token.user_id)
                    .bind(&token.secret_hash)
                    .bind(&token.description)
                    .bind(token.created_at)
                    .bind(token.expires_at)
                    .bind(token.revoked_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| sql::conflict_or(e, format!("API token {}", token.id)))?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn get_user(&self, id_or_name: &str) -> Result<Option<User>> {
                // A name may equal another user's id: the id match wins, so
                // that a token (which names its user by id) never resolves
                // to someone else.
                let row: Option<(String, String, Option<String>, i64)> = sqlx::query_as(
                    "SELECT id, name, county_id, created_at FROM users WHERE id = $1 OR name = $1 \
                     ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1",
                )
                .bind(id_or_name)
                .fetch_optional(&self.pool)
                .await?;
                let Some((id, name, county_id, created_at)) = row else { return Ok(None) };
                let bindings: Vec<RoleBindingRecord> = sqlx::query_as(
                    "SELECT role, scope, remote FROM role_bindings WHERE user_id = $1 ORDER BY role, scope",
                )
                .bind(&id)
                .fetch_all(&self.pool)
                .await?;
                Ok(Some(User { id, name, county_id, created_at, bindings }))
            }

            async fn list_users(&self) -> Result<Vec<User>> {
                let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
                    "SELECT id, name, county_id, created_at FROM users ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await?;
                let bindings: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT user_id, role, scope, remote FROM role_bindings ORDER BY role, scope",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, name, county_id, created_at)| {
                        let bindings = bindings
                            .iter()
                            .filter(|(user_id, _, _, _)| *user_id == id)
                            .map(|(_, role, scope, remote)| RoleBindingRecord {
                                role: role.clone(),
                                scope: scope.clone(),
                                remote: remote.clone(),
                            })
                            .collect();
                        User { id, name, county_id, created_at, bindings }
                    })
                    .collect())
            }

            async fn create_api_token(&self, token: &ApiToken) -> Result<()> {
                sqlx::query(
                    "INSERT INTO api_tokens (id, user_id, secret_hash, description, created_at, \
                     expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&token.id)
                .bind(&token.user_id)
                .bind(&token.secret_hash)
                .bind(&token.description)
                .bind(token.created_at)
                .bind(token.expires_at)
                .bind(token.revoked_at)
                .execute(&self.writer)
                .await
                .map_err(|e| sql::conflict_or(e, format!("API token {}", token.id)))?;
                Ok(())
            }

            async fn get_api_token(&self, id: &str) -> Result<Option<ApiToken>> {
                Ok(sqlx::query_as(
                    "SELECT id, user_id, secret_hash, description, created_at, expires_at, \
                     revoked_at FROM api_tokens WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn revoke_api_token(&self, id: &str, at: Millis) -> Result<()> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(&self.writer)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("API token {id}")));
                }
                Ok(())
            }
        }
    };
}

impl_user_store!(SqliteStore, sqlx::Sqlite);
impl_user_store!(PgStore, sqlx::Postgres);
