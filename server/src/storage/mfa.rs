//! The second factor (TOTP) of users.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_mfa_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore};

#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn get_user_mfa(&self, user_id: &str) -> Result<Option<UserMfaRecord>>;

    /// Stores a new, unconfirmed secret, replacing any earlier one.
    async fn put_user_mfa(&self, record: &UserMfaRecord) -> Result<()>;

    /// Activates the unconfirmed secret with the step its first code
    /// matched; false when there is none to confirm.
    async fn confirm_user_mfa(&self, user_id: &str, step: i64) -> Result<bool>;

    /// Uses a code's time step: only when it is later than the last used
    /// one (one statement, so two replicas cannot both accept a code), and
    /// opens the grace window. False: the step was used already.
    async fn use_mfa_step(
        &self,
        user_id: &str,
        step: i64,
        grace_until: Millis,
        grace_kind: &str,
        grace_reason: &str,
    ) -> Result<bool>;

    /// Uses a code's time step like `use_mfa_step`, but leaves the grace
    /// window of session starts as it is: a web login's code proves
    /// presence for the login only, and must neither open nor close it.
    async fn use_mfa_login_step(&self, user_id: &str, step: i64) -> Result<bool>;
}

macro_rules! impl_mfa_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::MfaStore for $store {
            async fn get_user_mfa(&self, user_id: &str) -> Result<Option<UserMfaRecord>> {
                Ok(sqlx::query_as(
                    "SELECT user_id, method, secret, confirmed, last_step, grace_until, grace_kind, \
                     grace_reason, created_at FROM user_mfa WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn put_user_mfa(&self, r: &UserMfaRecord) -> Result<()> {
                sqlx::query(
                    "INSERT INTO user_mfa (user_id, method, secret, confirmed, last_step, grace_until, \
                     grace_kind, grace_reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (user_id) DO UPDATE SET method = excluded.method, \
                     secret = excluded.secret, confirmed = excluded.confirmed, \
                     last_step = excluded.last_step, grace_until = excluded.grace_until, \
                     grace_kind = excluded.grace_kind, grace_reason = excluded.grace_reason, \
                     created_at = excluded.created_at",
                )
                .bind(&r.user_id)
                .bind(&r.method)
                .bind(&r.secret)
                .bind(r.confirmed)
                .bind(r.last_step)
                .bind(r.grace_until)
                .bind(&r.grace_kind)
                .bind(&r.grace_reason)
                .bind(r.created_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn confirm_user_mfa(&self, user_id: &str, step: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE user_mfa SET confirmed = TRUE, last_step = $2 \
                     WHERE user_id = $1 AND confirmed = FALSE",
                )
                .bind(user_id)
                .bind(step)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(done > 0)
            }

            async fn use_mfa_step(
                &self,
                user_id: &str,
                step: i64,
                grace_until: Millis,
                grace_kind: &str,
                grace_reason: &str,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE user_mfa SET last_step = $2, grace_until = $3, grace_kind = $4, \
                     grace_reason = $5 WHERE user_id = $1 AND confirmed = TRUE AND last_step < $2",
                )
                .bind(user_id)
                .bind(step)
                .bind(grace_until)
                .bind(grace_kind)
                .bind(grace_reason)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(done > 0)
            }

            async fn use_mfa_login_step(&self, user_id: &str, step: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE user_mfa SET last_step = $2 \
                     WHERE user_id = $1 AND confirmed = TRUE AND last_step < $2",
                )
                .bind(user_id)
                .bind(step)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(done > 0)
            }
        }
    };
}

impl_mfa_store!(SqliteStore, sqlx::Sqlite);
impl_mfa_store!(PgStore, sqlx::Postgres);
