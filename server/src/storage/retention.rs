//! Data protection in the store: retention deletes, offboarding (users and
//! devices), and making deleted rows gone from the files.
//!
//! A trait of its own (a supertrait of `Store`, like every domain); the
//! query text is shared by both backends through one macro, the file-level
//! compaction is the backend-specific part.

use async_trait::async_trait;

use super::models::{ApiToken, Millis, RoleBindingRecord};
use super::{PgStore, Result, SqliteStore};

/// One retention pass: rows older than these times go. `None`: that table
/// is not swept in this pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionCutoffs {
    /// Session rows (with reason, command line and their recording) that
    /// ended before this. Live sessions are never touched.
    pub sessions_ended_before: Option<Millis>,
    /// Device history (`inventory_changes`) recorded before this.
    pub inventory_history_before: Option<Millis>,
    /// Network history (`network_changed` rows): those of the opted-in
    /// device classes before this, those of every other class at once.
    pub network_history_before: Option<Millis>,
    /// Device classes whose network history is kept (opt-in).
    pub network_history_classes: Vec<String>,
    /// The report log (`inventory_reports`) received before this.
    pub report_log_before: Option<Millis>,
    /// Tickets resolved or closed before this, with their timeline.
    pub tickets_closed_before: Option<Millis>,
    /// Compliance results of superseded standard revisions evaluated
    /// before this (the latest revision's results stay while the device
    /// exists).
    pub compliance_results_before: Option<Millis>,
    /// Compliance changes (`compliance_changes`) before this.
    pub compliance_history_before: Option<Millis>,
    /// Daily compliance snapshots of days before this (`YYYY-MM-DD`).
    pub compliance_snapshots_before: Option<String>,
    /// Webhook events (delivered or not) created before this.
    pub webhook_outbox_before: Option<Millis>,
    /// Enrolment tokens expired or revoked before this.
    pub enrollment_tokens_before: Option<Millis>,
    /// API tokens expired or revoked before this.
    pub api_tokens_before: Option<Millis>,
}

/// Rows deleted by one pass, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionCounts {
    pub sessions: u64,
    pub inventory_history: u64,
    pub network_history: u64,
    pub report_log: u64,
    pub tickets: u64,
    pub compliance_results: u64,
    pub compliance_history: u64,
    pub compliance_snapshots: u64,
    pub webhook_outbox: u64,
    pub enrollment_tokens: u64,
    pub api_tokens: u64,
}

impl RetentionCounts {
    pub fn total(&self) -> u64 {
        self.sessions
            + self.inventory_history
            + self.network_history
            + self.report_log
            + self.tickets
            + self.compliance_results
            + self.compliance_history
            + self.compliance_snapshots
            + self.webhook_outbox
            + self.enrollment_tokens
            + self.api_tokens
    }
}

/// The storage side of data protection. Every delete here is followed by
/// [`DataProtection::compact`] in the callers, so deleted rows also leave
/// the database files.
#[async_trait]
pub trait DataProtection: Send + Sync {
    /// Deletes what is past its retention, each table in its own
    /// transaction (a failure in one leaves the others done).
    async fn delete_expired(&self, cutoffs: &RetentionCutoffs) -> Result<RetentionCounts>;
    /// Makes deleted rows unreadable in the files: SQLite frees the pages
    /// (`incremental_vacuum`; `secure_delete` has zeroed them), rebuilds
    /// the full-text index and truncates the WAL; PostgreSQL vacuums the
    /// swept tables (see docs/datenschutz.md for what it cannot do).
    async fn compact(&self) -> Result<()>;

    // --- offboarding: users ---
    /// `Some(at)`: disabled since `at`; `None`: enabled. False when the
    /// user does not exist.
    async fn set_user_disabled(&self, user_id: &str, disabled_at: Option<Millis>) -> Result<bool>;
    async fn user_disabled_at(&self, user_id: &str) -> Result<Option<Millis>>;
    /// Deletes the user with its bindings and tokens. Sessions keep the
    /// user id (a pseudonym once the user is gone) with `actor` replaced by
    /// `pseudonym`; tickets lose the assignee. False when not found.
    async fn delete_user(&self, user_id: &str, pseudonym: &str) -> Result<bool>;
    /// Removes `remove` and adds `add` in one transaction; a user left
    /// without any binding is refused (`Conflict`).
    async fn change_role_bindings(
        &self,
        user_id: &str,
        remove: &[RoleBindingRecord],
        add: &[RoleBindingRecord],
    ) -> Result<()>;
    /// The user's API tokens (hashes included; callers must not show
    /// them), newest first.
    async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiToken>>;
    /// When each of the user's tokens last authenticated (token id, time).
    async fn api_tokens_last_used(&self, user_id: &str) -> Result<Vec<(String, Option<Millis>)>>;
    /// Records that the token authenticated at `at`.
    async fn touch_api_token(&self, token_id: &str, at: Millis) -> Result<()>;
    /// Removes the user's second factor (secret, used steps, grace window);
    /// false when there was none.
    async fn delete_user_mfa(&self, user_id: &str) -> Result<bool>;

    // --- four-eyes rule for recordings ---
    /// Records (or renews) an approval for `requester_id` to play the
    /// recording of `session_id` until `expires_at`.
    async fn approve_playback(
        &self,
        session_id: &str,
        requester_id: &str,
        approver_id: &str,
        reason: &str,
        approved_at: Millis,
        expires_at: Millis,
    ) -> Result<()>;
    /// The approver of a playback by `requester_id` valid at `now`.
    async fn playback_approver(
        &self,
        session_id: &str,
        requester_id: &str,
        now: Millis,
    ) -> Result<Option<String>>;

    // --- offboarding: devices ---
    /// Deletes the device with its inventory, software, history, reports,
    /// compliance results and changes and ticket links. Sessions keep the
    /// device id as a pseudonymous reference. False when not found.
    async fn delete_device(&self, device_id: &str) -> Result<bool>;
}

macro_rules! impl_data_protection {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl DataProtection for $store {
            async fn delete_expired(&self, c: &RetentionCutoffs) -> Result<RetentionCounts> {
                let pool = &self.writer;
                let mut n = RetentionCounts::default();
                if let Some(before) = c.sessions_ended_before {
                    // Recordings go with their session (ON DELETE CASCADE).
                    n.sessions = sqlx::query(
                        "DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < $1",
                    )
                    .bind(before)
                    .execute(pool)
                    .await?
                    .rows_affected();
                }
                if let Some(before) = c.network_history_before {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM inventory_changes WHERE kind = 'network_changed' AND (at < ",
                    );
                    qb.push_bind(before);
                    qb.push(" OR device_id NOT IN (SELECT id FROM devices WHERE device_class IN (''");
                    for class in &c.network_history_classes {
                        qb.push(", ").push_bind(class.clone());
                    }
                    qb.push(")))");
                    n.network_history = qb.build().execute(pool).await?.rows_affected();
                }
                if let Some(before) = c.inventory_history_before {
                    n.inventory_history =
                        sqlx::query("DELETE FROM inventory_changes WHERE at < $1")
                            .bind(before)
                            .execute(pool)
                            .await?
                            .rows_affected();
                }
                if let Some(before) = c.report_log_before {
                    n.report_log =
                        sqlx::query("DELETE FROM inventory_reports WHERE received_at < $1")
                            .bind(before)
                            .execute(pool)
                            .await?
                            .rows_affected();
                }
                if let Some(before) = c.tickets_closed_before {
                    // Events, device and article links and the auto-ticket
                    // record go with the ticket (ON DELETE CASCADE); the
                    // SQLite full-text rows by trigger.
                    n.tickets = sqlx::query(
                        "DELETE FROM tickets WHERE closed_at IS NOT NULL AND closed_at < $1 \
                         AND status IN ('resolved', 'closed')",
                    )
                    .bind(before)
                    .execute(pool)
                    .await?
                    .rows_affected();
                }
                if let Some(before) = c.compliance_results_before {
                    n.compliance_results = sqlx::query(
                        "DELETE FROM compliance_results WHERE evaluated_at < $1 \
                         AND revision < (SELECT MAX(revision) FROM standard_versions)",
                    )
                    .bind(before)
                    .execute(pool)
                    .await?
                    .rows_affected();
                }
                if let Some(before) = c.compliance_history_before {
                    n.compliance_history =
                        sqlx::query("DELETE FROM compliance_changes WHERE at < $1")
                            .bind(before)
                            .execute(pool)
                            .await?
                            .rows_affected();
                }
                if let Some(day) = &c.compliance_snapshots_before {
                    n.compliance_snapshots =
                        sqlx::query("DELETE FROM compliance_snapshots WHERE day < $1")
                            .bind(day)
                            .execute(pool)
                            .await?
                            .rows_affected();
                }
                if let Some(before) = c.webhook_outbox_before {
                    n.webhook_outbox =
                        sqlx::query("DELETE FROM webhook_outbox WHERE created_at < $1")
                            .bind(before)
                            .execute(pool)
                            .await?
                            .rows_affected();
                }
                if let Some(before) = c.enrollment_tokens_before {
                    n.enrollment_tokens = sqlx::query(
                        "DELETE FROM enrollment_tokens WHERE expires_at < $1 \
                         OR (revoked_at IS NOT NULL AND revoked_at < $1)",
                    )
                    .bind(before)
                    .execute(pool)
                    .await?
                    .rows_affected();
                }
                if let Some(before) = c.api_tokens_before {
                    n.api_tokens = sqlx::query(
                        "DELETE FROM api_tokens WHERE (expires_at IS NOT NULL AND expires_at < $1) \
                         OR (revoked_at IS NOT NULL AND revoked_at < $1)",
                    )
                    .bind(before)
                    .execute(pool)
                    .await?
                    .rows_affected();
                }
                Ok(n)
            }

            async fn compact(&self) -> Result<()> {
                self.compact_files().await
            }

            async fn set_user_disabled(
                &self,
                user_id: &str,
                disabled_at: Option<Millis>,
            ) -> Result<bool> {
                Ok(sqlx::query("UPDATE users SET disabled_at = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(disabled_at)
                    .execute(&self.writer)
                    .await?
                    .rows_affected()
                    > 0)
            }

            async fn user_disabled_at(&self, user_id: &str) -> Result<Option<Millis>> {
                let row: Option<(Option<Millis>,)> =
                    sqlx::query_as("SELECT disabled_at FROM users WHERE id = $1")
                        .bind(user_id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.and_then(|(at,)| at))
            }

            async fn delete_user(&self, user_id: &str, pseudonym: &str) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE tickets SET assignee_id = NULL WHERE assignee_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE sessions SET actor = $2 WHERE user_id = $1")
                    .bind(user_id)
                    .bind(pseudonym)
                    .execute(&mut *tx)
                    .await?;
                // The name as it appears elsewhere: `user:<name>` as the
                // actor of ticket events, article versions and consent
                // settings, the bare name as an enrolment token's creator
                // and in a ticket's assignee changes. (Free text such as a
                // comment that mentions the person is not searched.)
                let name: Option<(String,)> =
                    sqlx::query_as("SELECT name FROM users WHERE id = $1")
                        .bind(user_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some((name,)) = name {
                    let actor = format!("user:{name}");
                    let bare = pseudonym.strip_prefix("user:").unwrap_or(pseudonym);
                    for (query, from, to) in [
                        ("UPDATE ticket_events SET actor = $2 WHERE actor = $1", &actor, pseudonym),
                        ("UPDATE ticket_events SET old_value = $2 WHERE kind = 'assignee' AND old_value = $1", &name, bare),
                        ("UPDATE ticket_events SET new_value = $2 WHERE kind = 'assignee' AND new_value = $1", &name, bare),
                        ("UPDATE kb_versions SET author = $2 WHERE author = $1", &actor, pseudonym),
                        ("UPDATE consent_policies SET updated_by = $2 WHERE updated_by = $1", &actor, pseudonym),
                        ("UPDATE consent_floors SET set_by = $2 WHERE set_by = $1", &actor, pseudonym),
                        ("UPDATE enrollment_tokens SET created_by = $2 WHERE created_by = $1", &name, bare),
                    ] {
                        sqlx::query(query)
                            .bind(from)
                            .bind(to)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                // Bindings and tokens go by ON DELETE CASCADE.
                let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(deleted > 0)
            }

            async fn change_role_bindings(
                &self,
                user_id: &str,
                remove: &[RoleBindingRecord],
                add: &[RoleBindingRecord],
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                for b in remove {
                    let gone = sqlx::query(
                        "DELETE FROM role_bindings WHERE user_id = $1 AND role = $2 AND scope = $3",
                    )
                    .bind(user_id)
                    .bind(&b.role)
                    .bind(&b.scope)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if gone == 0 {
                        return Err(super::StorageError::NotFound(format!(
                            "role binding {}@{}",
                            b.role, b.scope
                        )));
                    }
                }
                for b in add {
                    sqlx::query(
                        "INSERT INTO role_bindings (user_id, role, scope, remote) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(user_id)
                    .bind(&b.role)
                    .bind(&b.scope)
                    .bind(&b.remote)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        super::sql::conflict_or(e, format!("role binding {}@{}", b.role, b.scope))
                    })?;
                }
                let (left,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM role_bindings WHERE user_id = $1")
                        .bind(user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                if left == 0 {
                    return Err(super::StorageError::Conflict(
                        "a user without any role binding (delete or disable the user instead)"
                            .into(),
                    ));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiToken>> {
                Ok(sqlx::query_as(
                    "SELECT id, user_id, secret_hash, description, created_at, expires_at, \
                     revoked_at FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn api_tokens_last_used(
                &self,
                user_id: &str,
            ) -> Result<Vec<(String, Option<Millis>)>> {
                Ok(sqlx::query_as(
                    "SELECT id, last_used_at FROM api_tokens WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn touch_api_token(&self, token_id: &str, at: Millis) -> Result<()> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(token_id)
                    .bind(at)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn delete_user_mfa(&self, user_id: &str) -> Result<bool> {
                Ok(sqlx::query("DELETE FROM user_mfa WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.writer)
                    .await?
                    .rows_affected()
                    > 0)
            }

            async fn approve_playback(
                &self,
                session_id: &str,
                requester_id: &str,
                approver_id: &str,
                reason: &str,
                approved_at: Millis,
                expires_at: Millis,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO playback_approvals (session_id, requester_id, approver_id, reason, \
                     approved_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (session_id, requester_id) DO UPDATE SET approver_id = $3, \
                     reason = $4, approved_at = $5, expires_at = $6",
                )
                .bind(session_id)
                .bind(requester_id)
                .bind(approver_id)
                .bind(reason)
                .bind(approved_at)
                .bind(expires_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn playback_approver(
                &self,
                session_id: &str,
                requester_id: &str,
                now: Millis,
            ) -> Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT approver_id FROM playback_approvals WHERE session_id = $1 \
                     AND requester_id = $2 AND expires_at > $3",
                )
                .bind(session_id)
                .bind(requester_id)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn delete_device(&self, device_id: &str) -> Result<bool> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE enrollment_tokens SET reinstall_device_id = NULL \
                     WHERE reinstall_device_id = $1",
                )
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
                // Everything else about the device goes by ON DELETE CASCADE.
                let deleted = sqlx::query("DELETE FROM devices WHERE id = $1")
                    .bind(device_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(deleted > 0)
            }
        }
    };
}

impl_data_protection!(SqliteStore, sqlx::Sqlite);
impl_data_protection!(PgStore, sqlx::Postgres);

/// Tables that hold personal data and lose rows to retention or
/// offboarding: what PostgreSQL vacuums after a pass.
const SWEPT_TABLES: &[&str] = &[
    "sessions",
    "session_recordings",
    "inventory_changes",
    "inventory_reports",
    "tickets",
    "ticket_events",
    "compliance_results",
    "compliance_changes",
    "compliance_snapshots",
    "webhook_outbox",
    "enrollment_tokens",
    "api_tokens",
    "users",
    "devices",
    "device_inventories",
    "device_software",
    "audit_events",
];

/// A database created before `auto_vacuum=INCREMENTAL` keeps its old mode
/// until a VACUUM rewrites it: done once here, at open, on a connection of
/// its own before the pool exists (a migration cannot: VACUUM does not run
/// inside its transaction; and connections opened before the VACUUM keep
/// reporting the old mode). It rewrites the whole file, which also drops
/// every page deleted before `secure_delete` was on.
pub(super) async fn enable_incremental_vacuum(
    options: &sqlx::sqlite::SqliteConnectOptions,
) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    const INCREMENTAL: i64 = 2;
    let mut conn = options.connect().await?;
    let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
        .fetch_one(&mut conn)
        .await?;
    if mode != INCREMENTAL {
        tracing::info!(
            mode,
            "switching the database to incremental vacuum (a one-time VACUUM)"
        );
        sqlx::raw_sql("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

impl SqliteStore {
    async fn compact_files(&self) -> Result<()> {
        let pool = &self.writer;
        // FTS5 keeps deleted terms in its index segments until they are
        // merged: 'optimize' merges all of them into one, so a deleted
        // ticket's words leave the index (and, by secure_delete, the file).
        sqlx::query("INSERT INTO search_fts(search_fts) VALUES ('optimize')")
            .execute(pool)
            .await?;
        // Free pages go back to the file system; secure_delete has already
        // overwritten them with zeros. (raw: the pragma returns no rows but
        // must be stepped to the end.)
        sqlx::raw_sql("PRAGMA incremental_vacuum")
            .execute(pool)
            .await?;
        // The WAL still holds the pages as they were before the delete:
        // copy everything into the main file and truncate the WAL to zero.
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(pool)
            .await?;
        if busy != 0 {
            // A reader held an old snapshot; the next pass tries again.
            tracing::warn!("WAL checkpoint could not finish; retried at the next sweep");
        }
        Ok(())
    }
}

impl PgStore {
    async fn compact_files(&self) -> Result<()> {
        // Plain VACUUM (no exclusive lock) makes dead rows' space reusable;
        // the bytes of deleted rows stay in the page until overwritten and
        // in the WAL archive until it expires (docs/datenschutz.md).
        for table in SWEPT_TABLES {
            sqlx::raw_sql(&format!("VACUUM {table}"))
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }
}
