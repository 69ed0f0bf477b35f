//! The webhook outbox.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_outbox_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, sql};

#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn enqueue_outbox(&self, event: &OutboxEvent) -> Result<()>;

    /// Undelivered events due at `now`, oldest first.
    async fn due_outbox(&self, now: Millis, limit: i64) -> Result<Vec<OutboxEvent>>;

    /// Claims an event for one delivery attempt (moves its next attempt to
    /// `lease_until`); false when another replica claimed it first.
    async fn claim_outbox(
        &self,
        id: i64,
        expected_next: Millis,
        lease_until: Millis,
    ) -> Result<bool>;

    async fn mark_outbox_delivered(&self, id: i64, at: Millis) -> Result<()>;

    async fn mark_outbox_failed(&self, id: i64, next_attempt_at: Millis, error: &str)
    -> Result<()>;
}

macro_rules! impl_outbox_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::OutboxStore for $store {
            async fn enqueue_outbox(&self, event: &OutboxEvent) -> Result<()> {
                sql::insert_outbox!(event, &self.writer);
                Ok(())
            }

            async fn due_outbox(&self, now: Millis, limit: i64) -> Result<Vec<OutboxEvent>> {
                Ok(sqlx::query_as(
                    "SELECT id, event_id, kind, payload, created_at, attempts, next_attempt_at, \
                     delivered_at, last_error FROM webhook_outbox \
                     WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
                     ORDER BY id LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_outbox(
                &self,
                id: i64,
                expected_next: Millis,
                lease_until: Millis,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE webhook_outbox SET next_attempt_at = $3 \
                     WHERE id = $1 AND next_attempt_at = $2 AND delivered_at IS NULL",
                )
                .bind(id)
                .bind(expected_next)
                .bind(lease_until)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn mark_outbox_delivered(&self, id: i64, at: Millis) -> Result<()> {
                sqlx::query(
                    "UPDATE webhook_outbox SET delivered_at = $2, attempts = attempts + 1 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn mark_outbox_failed(
                &self,
                id: i64,
                next_attempt_at: Millis,
                error: &str,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $2, \
                     last_error = $3 WHERE id = $1 AND delivered_at IS NULL",
                )
                .bind(id)
                .bind(next_attempt_at)
                .bind(error)
                .execute(&self.writer)
                .await?;
                Ok(())
            }
        }
    };
}

impl_outbox_store!(SqliteStore, sqlx::Sqlite);
impl_outbox_store!(PgStore, sqlx::Postgres);
