//! Storage of the web portal: web passwords and web sessions.
//!
//! Its own trait (a supertrait of `Store`, like every domain); both
//! backends share the query text through one small macro.

use async_trait::async_trait;

use super::{Millis, Result};

/// One web session. The id itself lives only in the browser's cookie.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebSessionRecord {
    /// Hex SHA-256 of the session id.
    pub id_hash: String,
    pub user_id: String,
    pub created_at: Millis,
    pub last_seen_at: Millis,
}

#[async_trait]
pub trait WebStore: Send + Sync {
    /// Sets (or replaces) the argon2id hash of the user's web password and
    /// ends the user's web sessions, in one transaction.
    async fn set_web_password(&self, user_id: &str, hash: &str, at: Millis) -> Result<()>;
    async fn web_password(&self, user_id: &str) -> Result<Option<String>>;
    async fn create_web_session(&self, session: &WebSessionRecord) -> Result<()>;
    async fn web_session(&self, id_hash: &str) -> Result<Option<WebSessionRecord>>;
    async fn touch_web_session(&self, id_hash: &str, at: Millis) -> Result<()>;
    async fn delete_web_session(&self, id_hash: &str) -> Result<()>;
    /// Deletes sessions idle since before `before`; returns how many.
    async fn delete_idle_web_sessions(&self, before: Millis) -> Result<u64>;
}

macro_rules! impl_web_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::WebStore for $store {
            async fn set_web_password(
                &self,
                user_id: &str,
                hash: &str,
                at: $crate::storage::Millis,
            ) -> $crate::storage::Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO web_credentials (user_id, password_hash, updated_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE \
                     SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
                )
                .bind(user_id)
                .bind(hash)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn web_password(&self, user_id: &str) -> $crate::storage::Result<Option<String>> {
                // A disabled user (offboarding) has no password to log in with.
                Ok(sqlx::query_scalar(
                    "SELECT c.password_hash FROM web_credentials c JOIN users u ON u.id = c.user_id \
                     WHERE c.user_id = $1 AND u.disabled_at IS NULL",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn create_web_session(
                &self,
                s: &$crate::storage::WebSessionRecord,
            ) -> $crate::storage::Result<()> {
                sqlx::query(
                    "INSERT INTO web_sessions (id_hash, user_id, created_at, last_seen_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&s.id_hash)
                .bind(&s.user_id)
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn web_session(
                &self,
                id_hash: &str,
            ) -> $crate::storage::Result<Option<$crate::storage::WebSessionRecord>> {
                // A disabled user's sessions end at once (offboarding).
                Ok(sqlx::query_as(
                    "SELECT s.id_hash, s.user_id, s.created_at, s.last_seen_at FROM web_sessions s \
                     JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1 AND u.disabled_at IS NULL",
                )
                .bind(id_hash)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn touch_web_session(
                &self,
                id_hash: &str,
                at: $crate::storage::Millis,
            ) -> $crate::storage::Result<()> {
                sqlx::query("UPDATE web_sessions SET last_seen_at = $2 WHERE id_hash = $1")
                    .bind(id_hash)
                    .bind(at)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn delete_web_session(&self, id_hash: &str) -> $crate::storage::Result<()> {
                sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn delete_idle_web_sessions(
                &self,
                before: $crate::storage::Millis,
            ) -> $crate::storage::Result<u64> {
                Ok(sqlx::query("DELETE FROM web_sessions WHERE last_seen_at < $1")
                    .bind(before)
                    .execute(&self.writer)
                    .await?
                    .rows_affected())
            }
        }
    };
}

impl_web_store!(super::SqliteStore);
impl_web_store!(super::PgStore);
