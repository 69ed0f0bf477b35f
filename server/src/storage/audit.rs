//! The audit log, a hash chain (see `crate::audit`).
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_audit_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, sql};

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends to the chain in one transaction: takes the next seq from
    /// `audit_chain` (its row lock serialises replicas), hashes, inserts,
    /// moves the head. Returns the entry's seq.
    async fn append_audit(&self, event: &AuditEvent) -> Result<i64>;

    async fn list_audit(&self, limit: i64) -> Result<Vec<AuditEvent>>;

    /// Chained entries matching `query`, newest first.
    async fn list_audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditEntryRecord>>;

    /// Entries with seq > `after_seq` in seq order, for verification.
    async fn audit_chain_page(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntryRecord>>;

    async fn audit_chain_head(&self) -> Result<crate::audit::ChainHead>;

    /// Sets the key of the chain head's MAC (from a file outside the
    /// database); every append from then on signs the new head.
    fn set_audit_key(&self, key: Vec<u8>);

    fn audit_key(&self) -> Option<Vec<u8>>;

    /// Chains entries written before the chain existed (seq NULL), in id
    /// order. Returns how many.
    async fn chain_unsequenced_audit(&self) -> Result<u64>;

    /// Deletes entries older than `before`, records the pruning anchor and
    /// appends `pruned` (its details get the count), in one transaction.
    /// Returns how many were deleted (0: nothing done).
    async fn prune_audit(&self, before: Millis, pruned: &AuditEvent) -> Result<u64>;
}

macro_rules! impl_audit_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::AuditStore for $store {
            async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
                let mut tx = self.begin_write().await?;
                let seq = sql::append_chained!(e, tx, self.audit_key.get());
                tx.commit().await?;
                Ok(seq)
            }

            async fn list_audit(&self, limit: i64) -> Result<Vec<AuditEvent>> {
                Ok(sqlx::query_as(
                    "SELECT at, actor, action, target, county_id, outcome, details, school_id \
                     FROM audit_events ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_audit_entries(&self, q: &AuditQuery) -> Result<Vec<AuditEntryRecord>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM audit_events WHERE seq IS NOT NULL",
                    sql::AUDIT_ENTRY_COLUMNS
                ));
                if let Some(counties) = &q.counties {
                    // Fail closed: no county and no school means no entries.
                    qb.push(" AND (county_id IN ('' ");
                    for county in counties {
                        qb.push(", ").push_bind(county.clone());
                    }
                    qb.push(") OR school_id IN ('' ");
                    for school in &q.schools {
                        qb.push(", ").push_bind(school.clone());
                    }
                    qb.push("))");
                }
                if let Some(prefix) = &q.action_prefix {
                    qb.push(" AND substr(action, 1, ")
                        .push_bind(prefix.len() as i32)
                        .push(") = ")
                        .push_bind(prefix.clone());
                }
                if !q.targets.is_empty() {
                    qb.push(" AND target IN (");
                    let mut sep = qb.separated(", ");
                    for target in &q.targets {
                        sep.push_bind(target.clone());
                    }
                    qb.push(")");
                }
                if let Some(since) = q.since {
                    qb.push(" AND at >= ").push_bind(since);
                }
                qb.push(" ORDER BY seq DESC LIMIT ").push_bind(q.limit.max(1));
                let rows: Vec<sql::AuditRow> = qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(sql::audit_entry).collect())
            }

            async fn audit_chain_page(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntryRecord>> {
                let rows: Vec<sql::AuditRow> = sqlx::query_as(&format!(
                    "SELECT {} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                    sql::AUDIT_ENTRY_COLUMNS
                ))
                .bind(after_seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(sql::audit_entry).collect())
            }

            async fn audit_chain_head(&self) -> Result<crate::audit::ChainHead> {
                let (seq, head_hash, pruned_before_seq, pruned_anchor_hash, head_mac): (
                    i64,
                    String,
                    i64,
                    String,
                    String,
                ) = sqlx::query_as(
                    "SELECT seq, head_hash, pruned_before_seq, pruned_anchor_hash, head_mac \
                     FROM audit_chain WHERE id = 1",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(crate::audit::ChainHead {
                    seq,
                    head_hash,
                    pruned_before_seq,
                    pruned_anchor_hash,
                    head_mac,
                })
            }

            fn set_audit_key(&self, key: Vec<u8>) {
                self.audit_key.set(key);
            }

            fn audit_key(&self) -> Option<Vec<u8>> {
                self.audit_key.get().map(<[u8]>::to_vec)
            }

            async fn chain_unsequenced_audit(&self) -> Result<u64> {
                let mut chained = 0u64;
                loop {
                    let mut tx = self.begin_write().await?;
                    let rows: Vec<(i64, i64, String, String, String, Option<String>, String, String)> =
                        sqlx::query_as(
                            "SELECT id, at, actor, action, target, county_id, outcome, details \
                             FROM audit_events WHERE seq IS NULL ORDER BY id LIMIT 500",
                        )
                        .fetch_all(&mut *tx)
                        .await?;
                    if rows.is_empty() {
                        return Ok(chained);
                    }
                    for (id, at, actor, action, target, county_id, outcome, details) in rows {
                        // Rows from before the chain predate 0013: no school.
                        let event = AuditEvent { at, actor, action, target, county_id, outcome, details, school_id: None };
                        let (seq, prev): (i64, String) = sqlx::query_as(
                            "UPDATE audit_chain SET seq = seq + 1 WHERE id = 1 RETURNING seq, head_hash",
                        )
                        .fetch_one(&mut *tx)
                        .await?;
                        let hash = crate::audit::entry_hash(&prev, seq, &event);
                        // Another replica may have chained it meanwhile:
                        // then this seq is rolled back with the transaction.
                        let done = sqlx::query(
                            "UPDATE audit_events SET seq = $1, prev_hash = $2, hash = $3 \
                             WHERE id = $4 AND seq IS NULL",
                        )
                        .bind(seq)
                        .bind(&prev)
                        .bind(&hash)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if done == 0 {
                            return Ok(chained);
                        }
                        sql::set_head!(tx, self.audit_key.get(), seq, &hash);
                        chained += 1;
                    }
                    tx.commit().await?;
                }
            }

            async fn prune_audit(&self, before: Millis, pruned: &AuditEvent) -> Result<u64> {
                let mut tx = self.begin_write().await?;
                // Lock the chain first, as every appender does.
                let (head_seq, head_hash): (i64, String) = sqlx::query_as(
                    "UPDATE audit_chain SET seq = seq WHERE id = 1 RETURNING seq, head_hash",
                )
                .fetch_one(&mut *tx)
                .await?;
                let first_kept: Option<(i64, String)> = sqlx::query_as(
                    "SELECT seq, prev_hash FROM audit_events WHERE seq IS NOT NULL AND at >= $1 \
                     ORDER BY seq LIMIT 1",
                )
                .bind(before)
                .fetch_optional(&mut *tx)
                .await?;
                // Nothing kept: the next entry (the `pruned` one) follows the head.
                let (keep_from, anchor) = first_kept.unwrap_or((head_seq + 1, head_hash));
                let deleted = sqlx::query("DELETE FROM audit_events WHERE seq < $1")
                    .bind(keep_from)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(0);
                }
                sqlx::query(
                    "UPDATE audit_chain SET pruned_before_seq = $1, pruned_anchor_hash = $2 WHERE id = 1",
                )
                .bind(keep_from)
                .bind(&anchor)
                .execute(&mut *tx)
                .await?;
                let mut event = pruned.clone();
                // `before` lets verification check the prune against the
                // retention setting.
                event.details = format!(
                    "{}; deleted={deleted} kept_from_seq={keep_from} before={before}",
                    event.details
                );
                sql::append_chained!(&event, tx, self.audit_key.get());
                tx.commit().await?;
                Ok(deleted)
            }
        }
    };
}

impl_audit_store!(SqliteStore, sqlx::Sqlite);
impl_audit_store!(PgStore, sqlx::Postgres);
