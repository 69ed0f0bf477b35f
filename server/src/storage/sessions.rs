//! Remote sessions and their recordings.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_session_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, sql};

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(&self, session: &SessionRecord) -> Result<()>;

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>>;

    async fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<SessionRecord>>;

    /// Sessions started in `[start, end)` and their minutes (ended ones),
    /// per county, counted in SQL (only sessions the filter reads).
    async fn session_period_counts(
        &self,
        filter: &TenantFilter,
        county_id: Option<&str>,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<SessionPeriodCount>>;

    /// Pending and active sessions of a user, and on a device.
    async fn count_live_sessions(&self, user_id: &str, device_id: &str) -> Result<(i64, i64)>;

    /// pending -> active (with the consent mode that applied).
    async fn activate_session(&self, id: &str, consent: &str) -> Result<()>;

    /// Stores the end (or denial) of a live session; false when it was
    /// already over (only the first end counts).
    async fn finish_session(&self, id: &str, end: &SessionEnd) -> Result<bool>;

    /// Asks the replica holding the session to end it; false when it is
    /// not live.
    async fn request_session_end(&self, id: &str, at: Millis, reason: &str) -> Result<bool>;

    /// Ends sessions still recorded as live that started before
    /// `started_before`: longer ago than the maximum duration, so no
    /// replica can still hold them (it crashed). Returns their ids.
    async fn end_stale_sessions(
        &self,
        started_before: Millis,
        at: Millis,
        reason: &str,
    ) -> Result<Vec<String>>;

    async fn append_recording_chunk(
        &self,
        session_id: &str,
        chunk_no: i64,
        data: &[u8],
    ) -> Result<()>;

    /// One chunk of a recording, `None` past the last.
    async fn recording_chunk(&self, session_id: &str, chunk_no: i64) -> Result<Option<Vec<u8>>>;

    /// Deletes the recordings of sessions that ended before `ended_before`.
    /// Returns how many sessions lost their recording.
    async fn delete_recordings_before(&self, ended_before: Millis) -> Result<u64>;
}

macro_rules! impl_session_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::SessionStore for $store {
            async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
                sqlx::query(&format!(
                    "INSERT INTO sessions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                     $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
                    sql::SESSION_COLUMNS
                ))
                .bind(&s.id)
                .bind(&s.kind)
                .bind(&s.state)
                .bind(&s.device_id)
                .bind(&s.county_id)
                .bind(&s.school_id)
                .bind(&s.user_id)
                .bind(&s.actor)
                .bind(&s.reason)
                .bind(&s.ticket)
                .bind(&s.summary)
                .bind(&s.spec)
                .bind(&s.consent)
                .bind(s.started_at)
                .bind(s.ended_at)
                .bind(&s.end_reason)
                .bind(s.bytes_to_device)
                .bind(s.bytes_from_device)
                .bind(s.exit_code)
                .bind(s.has_recording)
                .bind(s.channels)
                .bind(s.end_requested_at)
                .bind(&s.end_requested_reason)
                .bind(&s.step_up)
                .execute(&self.writer)
                .await
                .map_err(|e| sql::conflict_or(e, format!("session {}", s.id)))?;
                Ok(())
            }

            async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM sessions WHERE id = $1",
                    sql::SESSION_COLUMNS
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_sessions(&self, q: &SessionQuery) -> Result<Vec<SessionRecord>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM sessions s WHERE TRUE",
                    sql::SESSION_COLUMNS
                ));
                sql::push_tenant_filter!(qb, &q.filter, "s");
                if let Some(device) = &q.device_id {
                    qb.push(" AND s.device_id = ").push_bind(device.clone());
                }
                if q.live_only {
                    qb.push(" AND s.state IN ('pending', 'active')");
                }
                qb.push(" ORDER BY s.started_at DESC, s.id DESC LIMIT ")
                    .push_bind(q.limit.max(1));
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn session_period_counts(
                &self,
                filter: &TenantFilter,
                county_id: Option<&str>,
                start: Millis,
                end: Millis,
            ) -> Result<Vec<SessionPeriodCount>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT s.county_id, COUNT(*) AS sessions, \
                     CAST(COALESCE(SUM(CASE WHEN s.ended_at > s.started_at \
                     THEN (s.ended_at - s.started_at) / 60000 ELSE 0 END), 0) AS BIGINT) AS minutes \
                     FROM sessions s WHERE s.started_at >= ",
                );
                qb.push_bind(start);
                qb.push(" AND s.started_at < ");
                qb.push_bind(end);
                sql::push_tenant_filter!(qb, filter, "s");
                if let Some(county) = county_id {
                    qb.push(" AND s.county_id = ").push_bind(county.to_owned());
                }
                qb.push(" GROUP BY s.county_id ORDER BY s.county_id");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn count_live_sessions(&self, user_id: &str, device_id: &str) -> Result<(i64, i64)> {
                let (by_user, on_device): (Option<i64>, Option<i64>) = sqlx::query_as(
                    "SELECT SUM(CASE WHEN user_id = $1 THEN 1 ELSE 0 END), \
                     SUM(CASE WHEN device_id = $2 THEN 1 ELSE 0 END) FROM sessions \
                     WHERE state IN ('pending', 'active') AND (user_id = $1 OR device_id = $2)",
                )
                .bind(user_id)
                .bind(device_id)
                .fetch_one(&self.pool)
                .await?;
                Ok((by_user.unwrap_or(0), on_device.unwrap_or(0)))
            }

            async fn activate_session(&self, id: &str, consent: &str) -> Result<()> {
                sqlx::query(
                    "UPDATE sessions SET state = 'active', consent = $2 WHERE id = $1 AND state = 'pending'",
                )
                .bind(id)
                .bind(consent)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn finish_session(&self, id: &str, end: &SessionEnd) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE sessions SET state = $2, ended_at = $3, end_reason = $4, \
                     bytes_to_device = $5, bytes_from_device = $6, exit_code = $7, \
                     has_recording = $8, channels = $9 \
                     WHERE id = $1 AND state IN ('pending', 'active')",
                )
                .bind(id)
                .bind(&end.state)
                .bind(end.ended_at)
                .bind(&end.end_reason)
                .bind(end.bytes_to_device)
                .bind(end.bytes_from_device)
                .bind(end.exit_code)
                .bind(end.has_recording)
                .bind(end.channels)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(done > 0)
            }

            async fn request_session_end(&self, id: &str, at: Millis, reason: &str) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE sessions SET end_requested_at = $2, end_requested_reason = $3 \
                     WHERE id = $1 AND state IN ('pending', 'active') AND end_requested_at IS NULL",
                )
                .bind(id)
                .bind(at)
                .bind(reason)
                .execute(&self.writer)
                .await?
                .rows_affected();
                Ok(done > 0)
            }

            async fn end_stale_sessions(&self, started_before: Millis, at: Millis, reason: &str) -> Result<Vec<String>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "UPDATE sessions SET state = CASE WHEN state = 'pending' THEN 'denied' ELSE 'ended' END, \
                     ended_at = $2, end_reason = $3 \
                     WHERE state IN ('pending', 'active') AND started_at < $1 RETURNING id",
                )
                .bind(started_before)
                .bind(at)
                .bind(reason)
                .fetch_all(&self.writer)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn append_recording_chunk(&self, session_id: &str, chunk_no: i64, data: &[u8]) -> Result<()> {
                sqlx::query(
                    "INSERT INTO session_recordings (session_id, chunk_no, data) VALUES ($1, $2, $3)",
                )
                .bind(session_id)
                .bind(chunk_no)
                .bind(data)
                .execute(&self.writer)
                .await
                .map_err(|e| sql::conflict_or(e, format!("chunk {chunk_no} of session {session_id}")))?;
                Ok(())
            }

            async fn recording_chunk(&self, session_id: &str, chunk_no: i64) -> Result<Option<Vec<u8>>> {
                let row: Option<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT data FROM session_recordings WHERE session_id = $1 AND chunk_no = $2",
                )
                .bind(session_id)
                .bind(chunk_no)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(data,)| data))
            }

            async fn delete_recordings_before(&self, ended_before: Millis) -> Result<u64> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "DELETE FROM session_recordings WHERE session_id IN (SELECT id FROM sessions \
                     WHERE ended_at IS NOT NULL AND ended_at < $1)",
                )
                .bind(ended_before)
                .execute(&mut *tx)
                .await?;
                let sessions = sqlx::query(
                    "UPDATE sessions SET has_recording = FALSE \
                     WHERE has_recording AND ended_at IS NOT NULL AND ended_at < $1",
                )
                .bind(ended_before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(sessions)
            }
        }
    };
}

impl_session_store!(SqliteStore, sqlx::Sqlite);
impl_session_store!(PgStore, sqlx::Postgres);
