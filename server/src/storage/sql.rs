//! The query text shared by both backends.
//!
//! SQLite and PostgreSQL both understand `$1` placeholders, `ON CONFLICT`,
//! `RETURNING` and the column types used here (TEXT, 64-bit integers, BLOB
//! or BYTEA, BOOLEAN). `sqlx::Any` cannot carry everything we need, and
//! generic code over `sqlx::Database` drowns in trait bounds, so one macro
//! expands the same method bodies for each concrete pool type.

use super::StorageError;

/// Turns a unique-constraint violation into `Conflict(what)`.
pub(super) fn conflict_or(err: sqlx::Error, what: impl Into<String>) -> StorageError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StorageError::Conflict(what.into())
        }
        _ => StorageError::Database(err),
    }
}

/// The times between a ticket's resolution (or closing) and its reopening,
/// from its status events in order: `(closed_at, reopened_at)`. A ticket
/// that is closed now has no interval for that: the query already ends its
/// window at `closed_at`.
pub(super) fn closed_intervals(
    events: &[crate::storage::TicketEventRecord],
) -> Vec<(crate::storage::Millis, crate::storage::Millis)> {
    let mut intervals = Vec::new();
    let mut closed_since = None;
    for e in events.iter().filter(|e| e.kind == "status") {
        let closing = crate::storage::ticket_status_is_closed(&e.new_value);
        match (closed_since, closing) {
            (None, true) => closed_since = Some(e.at),
            (Some(from), false) => {
                intervals.push((from, e.at));
                closed_since = None;
            }
            _ => {}
        }
    }
    intervals
}

/// A stored `device_software` row: source, name, architecture, version.
pub(super) type StoredSoftware = (String, String, String, String);

/// What turns the stored software rows of a device into `new`: the rows to
/// insert (each once, though a report may list a package twice) and the
/// stored rows to delete. Both empty when nothing changed.
pub(super) fn software_diff<'a>(
    stored: &'a [StoredSoftware],
    new: &'a [crate::storage::SoftwareRow],
) -> (
    Vec<&'a crate::storage::SoftwareRow>,
    Vec<&'a StoredSoftware>,
) {
    use std::collections::HashSet;
    type Key<'k> = (&'k str, &'k str, &'k str, &'k str);
    let old: HashSet<Key<'_>> = stored
        .iter()
        .map(|s| (s.0.as_str(), s.1.as_str(), s.2.as_str(), s.3.as_str()))
        .collect();
    let mut wanted: HashSet<Key<'_>> = HashSet::with_capacity(new.len());
    let mut insert = Vec::new();
    for sw in new {
        let key = (
            sw.source.as_str(),
            sw.name.as_str(),
            sw.architecture.as_str(),
            sw.version.as_str(),
        );
        if wanted.insert(key) && !old.contains(&key) {
            insert.push(sw);
        }
    }
    let delete = stored
        .iter()
        .filter(|s| !wanted.contains(&(s.0.as_str(), s.1.as_str(), s.2.as_str(), s.3.as_str())))
        .collect();
    (insert, delete)
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
pub(super) fn like_pattern(contains: &str) -> String {
    let mut out = String::with_capacity(contains.len() + 2);
    out.push('%');
    for c in contains.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Appends `AND (<tenant filter>)` for tables with `county_id`/`school_id`
/// columns (prefixed by `table.`). An empty filter matches nothing: the
/// store fails closed.
macro_rules! push_tenant_filter {
    ($qb:expr, $filter:expr, $table:literal) => {{
        let filter: &$crate::storage::TenantFilter = $filter;
        if !filter.all {
            $qb.push(" AND (FALSE");
            if !filter.counties.is_empty() {
                $qb.push(concat!(" OR ", $table, ".county_id IN ("));
                let mut sep = $qb.separated(", ");
                for county in &filter.counties {
                    sep.push_bind(county.clone());
                }
                $qb.push(")");
            }
            if !filter.schools.is_empty() {
                $qb.push(concat!(" OR ", $table, ".school_id IN ("));
                let mut sep = $qb.separated(", ");
                for school in &filter.schools {
                    sep.push_bind(school.clone());
                }
                $qb.push(")");
            }
            $qb.push(")");
        }
    }};
}

const DEVICE_COLUMNS: &str = "id, county_id, school_id, device_class, status, hostname, system_uuid, \
     serial_number, machine_id, cert_fingerprint, cert_serial, cert_not_after, enrolled_at, last_seen, \
     connected, agent_version, inventory_at, inventory_hash, os_name, os_version, vendor, model, \
     memory_total_bytes, ip_addresses";

pub(super) fn device_select() -> String {
    format!("SELECT {DEVICE_COLUMNS} FROM devices")
}

pub(super) const TICKET_COLUMNS: &str = "t.id, t.number, t.title, t.description, t.status, \
     t.priority, t.category, t.county_id, t.school_id, t.assignee_id, t.reporter, t.created_at, \
     t.updated_at, t.closed_at";

pub(super) const KB_COLUMNS: &str = "id, title, body, tags, category, county_id, visibility, \
     version, published_at, created_at, updated_at";

/// Inserts one webhook outbox event on `$exec` (a pool or a transaction).
macro_rules! insert_outbox {
    ($event:expr, $exec:expr) => {{
        let event: &$crate::storage::OutboxEvent = $event;
        sqlx::query(
            "INSERT INTO webhook_outbox (event_id, kind, payload, created_at, attempts, \
             next_attempt_at, last_error) VALUES ($1, $2, $3, $4, 0, $5, '')",
        )
        .bind(&event.event_id)
        .bind(&event.kind)
        .bind(&event.payload)
        .bind(event.created_at)
        .bind(event.next_attempt_at)
        .execute($exec)
        .await?;
    }};
}

/// Inserts one inventory change of a device on `$exec`.
macro_rules! insert_inventory_change {
    ($device_id:expr, $change:expr, $exec:expr) => {{
        let change: &$crate::storage::InventoryChangeRecord = $change;
        sqlx::query(
            "INSERT INTO inventory_changes (device_id, report_id, at, kind, subject, \
             old_value, new_value) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind($device_id)
        .bind(&change.report_id)
        .bind(change.at)
        .bind(&change.kind)
        .bind(&change.subject)
        .bind(&change.old_value)
        .bind(&change.new_value)
        .execute($exec)
        .await?;
    }};
}

/// Inserts one article version on `$exec`.
macro_rules! insert_kb_version {
    ($version:expr, $exec:expr) => {{
        let v: &$crate::storage::KbVersion = $version;
        sqlx::query(
            "INSERT INTO kb_versions (article_id, version, title, body, author, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&v.article_id)
        .bind(v.version)
        .bind(&v.title)
        .bind(&v.body)
        .bind(&v.author)
        .bind(v.at)
        .execute($exec)
        .await
        .map_err(|e| {
            sql::conflict_or(
                e,
                format!("version {} of article {}", v.version, v.article_id),
            )
        })?;
    }};
}

/// Columns of a chained audit entry, in `AuditRow` order.
pub(super) const AUDIT_ENTRY_COLUMNS: &str =
    "seq, at, actor, action, target, county_id, outcome, details, prev_hash, hash, school_id";

pub(super) type AuditRow = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
);

pub(super) fn audit_entry(row: AuditRow) -> crate::storage::AuditEntryRecord {
    let (seq, at, actor, action, target, county_id, outcome, details, prev_hash, hash, school_id) =
        row;
    crate::storage::AuditEntryRecord {
        seq,
        event: crate::storage::AuditEvent {
            at,
            actor,
            action,
            target,
            county_id,
            outcome,
            details,
            school_id,
        },
        prev_hash,
        hash,
    }
}

pub(super) const SESSION_COLUMNS: &str = "id, kind, state, device_id, county_id, school_id, \
     user_id, actor, reason, ticket, summary, spec, consent, started_at, ended_at, end_reason, \
     bytes_to_device, bytes_from_device, exit_code, has_recording, channels, end_requested_at, \
     end_requested_reason, step_up";

/// Appends one event to the audit chain inside the transaction `$tx`;
/// evaluates to its seq. The first statement is the UPDATE of the chain
/// row, so the transaction holds the row lock (PostgreSQL) or the write
/// lock (SQLite) from the start: concurrent appenders queue, never fork.
/// Sets the chain's head to `hash` (entry `seq`) with its MAC, in `tx`.
macro_rules! set_head {
    ($tx:expr, $key:expr, $seq:expr, $hash:expr) => {{
        let (pruned_before, anchor): (i64, String) = sqlx::query_as(
            "SELECT pruned_before_seq, pruned_anchor_hash FROM audit_chain WHERE id = 1",
        )
        .fetch_one(&mut *$tx)
        .await?;
        let mac = $key
            .map(|k: &[u8]| $crate::audit::head_mac(k, $seq, $hash, pruned_before, &anchor))
            .unwrap_or_default();
        sqlx::query("UPDATE audit_chain SET head_hash = $1, head_mac = $2 WHERE id = 1")
            .bind($hash)
            .bind(mac)
            .execute(&mut *$tx)
            .await?;
    }};
}

macro_rules! append_chained {
    ($event:expr, $tx:expr, $key:expr) => {{
        let event: &$crate::storage::AuditEvent = $event;
        let (seq, prev): (i64, String) = sqlx::query_as(
            "UPDATE audit_chain SET seq = seq + 1 WHERE id = 1 RETURNING seq, head_hash",
        )
        .fetch_one(&mut *$tx)
        .await?;
        let hash = $crate::audit::entry_hash(&prev, seq, event);
        sqlx::query(
            "INSERT INTO audit_events (at, actor, action, target, county_id, outcome, details, \
             seq, prev_hash, hash, school_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(event.at)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.target)
        .bind(&event.county_id)
        .bind(&event.outcome)
        .bind(&event.details)
        .bind(seq)
        .bind(&prev)
        .bind(&hash)
        .bind(&event.school_id)
        .execute(&mut *$tx)
        .await?;
        $crate::storage::sql::set_head!($tx, $key, seq, &hash);
        seq
    }};
}

macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::Store for $store {
            // --- tenants ---

            async fn create_county(&self, county: &County) -> Result<()> {
                sqlx::query("INSERT INTO counties (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&county.id)
                    .bind(&county.name)
                    .bind(county.created_at)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| sql::conflict_or(e, format!("county {}", county.id)))?;
                Ok(())
            }

            async fn get_county(&self, id: &str) -> Result<Option<County>> {
                Ok(sqlx::query_as("SELECT id, name, created_at FROM counties WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_counties(&self) -> Result<Vec<County>> {
                Ok(sqlx::query_as("SELECT id, name, created_at FROM counties ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn create_school(&self, school: &School) -> Result<()> {
                sqlx::query(
                    "INSERT INTO schools (id, county_id, name, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&school.id)
                .bind(&school.county_id)
                .bind(&school.name)
                .bind(school.created_at)
                .execute(&self.pool)
                .await
                .map_err(|e| sql::conflict_or(e, format!("school {}", school.id)))?;
                Ok(())
            }

            async fn get_school(&self, id: &str) -> Result<Option<School>> {
                Ok(sqlx::query_as(
                    "SELECT id, county_id, name, created_at FROM schools WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_schools(&self, county_id: Option<&str>) -> Result<Vec<School>> {
                Ok(sqlx::query_as(
                    "SELECT id, county_id, name, created_at FROM schools \
                     WHERE ($1 IS NULL OR county_id = $1) ORDER BY id",
                )
                .bind(county_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn create_device_class(&self, class: &DeviceClass) -> Result<()> {
                sqlx::query("INSERT INTO device_classes (id, label, created_at) VALUES ($1, $2, $3)")
                    .bind(&class.id)
                    .bind(&class.label)
                    .bind(class.created_at)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| sql::conflict_or(e, format!("device class {}", class.id)))?;
                Ok(())
            }

            async fn get_device_class(&self, id: &str) -> Result<Option<DeviceClass>> {
                Ok(sqlx::query_as("SELECT id, label, created_at FROM device_classes WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_device_classes(&self) -> Result<Vec<DeviceClass>> {
                Ok(sqlx::query_as("SELECT id, label, created_at FROM device_classes ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            // --- users and API tokens ---

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
                let mut tx = self.pool.begin().await?;
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
                .execute(&self.pool)
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
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("API token {id}")));
                }
                Ok(())
            }

            // --- enrolment ---

            async fn create_enrollment_token(&self, token: &EnrollmentToken) -> Result<()> {
                sqlx::query(
                    "INSERT INTO enrollment_tokens (id, secret_hash, county_id, school_id, \
                     device_class, description, max_uses, uses, expires_at, created_by, \
                     created_at, revoked_at, reinstall_device_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&token.id)
                .bind(&token.secret_hash)
                .bind(&token.county_id)
                .bind(&token.school_id)
                .bind(&token.device_class)
                .bind(&token.description)
                .bind(token.max_uses)
                .bind(token.uses)
                .bind(token.expires_at)
                .bind(&token.created_by)
                .bind(token.created_at)
                .bind(token.revoked_at)
                .bind(&token.reinstall_device_id)
                .execute(&self.pool)
                .await
                .map_err(|e| sql::conflict_or(e, format!("enrolment token {}", token.id)))?;
                Ok(())
            }

            async fn get_enrollment_token(&self, id: &str) -> Result<Option<EnrollmentToken>> {
                Ok(sqlx::query_as(
                    "SELECT id, secret_hash, county_id, school_id, device_class, description, \
                     max_uses, uses, expires_at, created_by, created_at, revoked_at, reinstall_device_id \
                     FROM enrollment_tokens WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_enrollment_tokens(
                &self,
                filter: &TenantFilter,
                county_id: Option<&str>,
                school_id: Option<&str>,
            ) -> Result<Vec<EnrollmentToken>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, secret_hash, county_id, school_id, device_class, description, \
                     max_uses, uses, expires_at, created_by, created_at, revoked_at, reinstall_device_id \
                     FROM enrollment_tokens t WHERE TRUE",
                );
                sql::push_tenant_filter!(qb, filter, "t");
                if let Some(county) = county_id {
                    qb.push(" AND t.county_id = ").push_bind(county.to_owned());
                }
                if let Some(school) = school_id {
                    qb.push(" AND t.school_id = ").push_bind(school.to_owned());
                }
                qb.push(" ORDER BY t.created_at DESC, t.id");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn revoke_enrollment_token(&self, id: &str, at: Millis) -> Result<()> {
                let done = sqlx::query(
                    "UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("enrolment token {id}")));
                }
                Ok(())
            }

            async fn find_device_by_hardware(
                &self,
                county_id: &str,
                identity: &HardwareIdentity,
            ) -> Result<Option<DeviceRecord>> {
                // The firmware UUID wins; the machine id is the fallback for
                // hardware without one. Empty values never match.
                Ok(sqlx::query_as(&format!(
                    "{} WHERE county_id = $1 AND ((system_uuid = $2 AND serial_number = $3 AND $2 <> '') \
                     OR ($2 = '' AND machine_id = $4 AND $4 <> '')) \
                     ORDER BY enrolled_at DESC LIMIT 1",
                    sql::device_select()
                ))
                .bind(county_id)
                .bind(&identity.system_uuid)
                .bind(&identity.serial_number)
                .bind(&identity.machine_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn enroll_device(&self, enrolment: &Enrolment) -> Result<()> {
                let device = &enrolment.device;
                let mut tx = self.pool.begin().await?;
                // The conditional update is the race-free use counter: two
                // agents enrolling with the last use cannot both succeed.
                let used = sqlx::query(
                    "UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1 \
                     AND revoked_at IS NULL AND expires_at > $2 AND uses < max_uses",
                )
                .bind(&enrolment.token_id)
                .bind(enrolment.now)
                .execute(&mut *tx)
                .await?;
                if used.rows_affected() == 0 {
                    return Err(StorageError::TokenUnusable(
                        "token expired, revoked or used up".into(),
                    ));
                }
                if enrolment.existing {
                    let updated = sqlx::query(
                        "UPDATE devices SET school_id = $2, county_id = $3, device_class = $4, \
                         status = $5, hostname = $6, cert_fingerprint = $7, cert_serial = $8, \
                         cert_not_after = $9, enrolled_at = $10, connected = FALSE, machine_id = $11, \
                         cert_fingerprint_previous = NULL \
                         WHERE id = $1 AND status <> 'revoked'",
                    )
                    .bind(&device.id)
                    .bind(&device.school_id)
                    .bind(&device.county_id)
                    .bind(&device.device_class)
                    .bind(&device.status)
                    .bind(&device.hostname)
                    .bind(&device.cert_fingerprint)
                    .bind(&device.cert_serial)
                    .bind(device.cert_not_after)
                    .bind(device.enrolled_at)
                    .bind(&device.machine_id)
                    .execute(&mut *tx)
                    .await?;
                    if updated.rows_affected() == 0 {
                        return Err(StorageError::NotFound(format!("device {}", device.id)));
                    }
                } else {
                    sqlx::query(
                        "INSERT INTO devices (id, county_id, school_id, device_class, status, \
                         hostname, system_uuid, serial_number, cert_fingerprint, cert_serial, \
                         cert_not_after, enrolled_at, agent_version, machine_id) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    )
                    .bind(&device.id)
                    .bind(&device.county_id)
                    .bind(&device.school_id)
                    .bind(&device.device_class)
                    .bind(&device.status)
                    .bind(&device.hostname)
                    .bind(&device.system_uuid)
                    .bind(&device.serial_number)
                    .bind(&device.cert_fingerprint)
                    .bind(&device.cert_serial)
                    .bind(device.cert_not_after)
                    .bind(device.enrolled_at)
                    .bind(&device.agent_version)
                    .bind(&device.machine_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| sql::conflict_or(e, format!("device {}", device.id)))?;
                }
                tx.commit().await?;
                Ok(())
            }

            // --- devices ---

            async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>> {
                Ok(sqlx::query_as(&format!("{} WHERE id = $1", sql::device_select()))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn find_devices_by_hostname(&self, hostname: &str) -> Result<Vec<DeviceRecord>> {
                Ok(sqlx::query_as(&format!(
                    "{} WHERE lower(hostname) = lower($1) ORDER BY enrolled_at DESC",
                    sql::device_select()
                ))
                .bind(hostname)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn find_devices_by_id_suffix(&self, suffix: &str) -> Result<Vec<DeviceRecord>> {
                // Hex only, so nothing in it is a LIKE wildcard.
                if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(Vec::new());
                }
                Ok(sqlx::query_as(&format!(
                    "{} WHERE id LIKE $1 ORDER BY enrolled_at DESC LIMIT 10",
                    sql::device_select()
                ))
                .bind(format!("%{}", suffix.to_ascii_lowercase()))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn get_device_by_cert(&self, fingerprint_hex: &str) -> Result<Option<DeviceRecord>> {
                Ok(sqlx::query_as(&format!(
                    "{} WHERE cert_fingerprint = $1 OR cert_fingerprint_previous = $1",
                    sql::device_select()
                ))
                .bind(fingerprint_hex)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_devices(&self, q: &DeviceQuery) -> Result<Vec<DeviceRecord>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(sql::device_select());
                qb.push(" d WHERE TRUE");
                sql::push_tenant_filter!(qb, &q.filter, "d");
                if let Some(county) = &q.county_id {
                    qb.push(" AND d.county_id = ").push_bind(county.clone());
                }
                if let Some(school) = &q.school_id {
                    qb.push(" AND d.school_id = ").push_bind(school.clone());
                }
                if let Some(class) = &q.device_class {
                    qb.push(" AND d.device_class = ").push_bind(class.clone());
                }
                if let Some(host) = &q.hostname_contains {
                    qb.push(" AND lower(d.hostname) LIKE ")
                        .push_bind(sql::like_pattern(host))
                        .push(" ESCAPE '\\'");
                }
                if !q.include_retired {
                    qb.push(" AND d.status = 'active'");
                }
                let online_since = q.now - q.online_window_ms;
                match q.online {
                    Some(true) => {
                        qb.push(" AND d.connected AND d.last_seen >= ").push_bind(online_since);
                    }
                    Some(false) => {
                        qb.push(" AND NOT (d.connected AND COALESCE(d.last_seen, 0) >= ")
                            .push_bind(online_since)
                            .push(")");
                    }
                    None => {}
                }
                if let Some(after) = q.seen_after {
                    qb.push(" AND d.last_seen >= ").push_bind(after);
                }
                if let Some(before) = q.not_seen_since {
                    qb.push(" AND COALESCE(d.last_seen, 0) < ").push_bind(before);
                }
                if let Some((host, id)) = &q.after {
                    qb.push(" AND (d.hostname > ")
                        .push_bind(host.clone())
                        .push(" OR (d.hostname = ")
                        .push_bind(host.clone())
                        .push(" AND d.id > ")
                        .push_bind(id.clone())
                        .push("))");
                }
                qb.push(" ORDER BY d.hostname, d.id LIMIT ").push_bind(q.limit);
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn set_device_status(&self, id: &str, status: DeviceStatus) -> Result<()> {
                let done = sqlx::query("UPDATE devices SET status = $2, connected = FALSE WHERE id = $1")
                    .bind(id)
                    .bind(status.as_str())
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("device {id}")));
                }
                Ok(())
            }

            async fn record_device_change(
                &self,
                device_id: &str,
                change: &InventoryChangeRecord,
            ) -> Result<()> {
                sql::insert_inventory_change!(device_id, change, &self.pool);
                Ok(())
            }

            async fn adopt_device(
                &self,
                new_id: &str,
                old_id: &str,
                notes: (&InventoryChangeRecord, &InventoryChangeRecord),
            ) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                // Read inside the transaction: a renewal in between must not
                // leave the old device with a certificate already replaced.
                let new: Option<DeviceRecord> =
                    sqlx::query_as(&format!("{} WHERE id = $1", sql::device_select()))
                        .bind(new_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(new) = new.filter(|d| d.status == "active") else {
                    return Err(StorageError::NotFound(format!("active device {new_id}")));
                };
                // The certificate column is unique: free it before moving it.
                sqlx::query(
                    "UPDATE devices SET status = 'retired', connected = FALSE, \
                     cert_fingerprint = NULL, cert_fingerprint_previous = NULL WHERE id = $1",
                )
                .bind(new_id)
                .execute(&mut *tx)
                .await?;
                let updated = sqlx::query(
                    "UPDATE devices SET school_id = $2, county_id = $3, device_class = $4, \
                     status = 'active', hostname = $5, system_uuid = $6, serial_number = $7, \
                     machine_id = $8, cert_fingerprint = $9, cert_serial = $10, \
                     cert_not_after = $11, enrolled_at = $12, agent_version = $13, \
                     connected = FALSE, cert_fingerprint_previous = NULL \
                     WHERE id = $1 AND status <> 'revoked'",
                )
                .bind(old_id)
                .bind(&new.school_id)
                .bind(&new.county_id)
                .bind(&new.device_class)
                .bind(&new.hostname)
                .bind(&new.system_uuid)
                .bind(&new.serial_number)
                .bind(&new.machine_id)
                .bind(&new.cert_fingerprint)
                .bind(&new.cert_serial)
                .bind(new.cert_not_after)
                .bind(new.enrolled_at)
                .bind(&new.agent_version)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("device {old_id} (or it is revoked)")));
                }
                for (device_id, change) in [(old_id, notes.0), (new_id, notes.1)] {
                    sql::insert_inventory_change!(device_id, &change, &mut *tx);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn renew_device_cert(
                &self,
                id: &str,
                current_fingerprint: &str,
                renewed: &CertificateRecord,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE devices SET cert_fingerprint_previous = $2, \
                     cert_fingerprint = $3, cert_serial = $4, cert_not_after = $5 \
                     WHERE id = $1 AND status = 'active' \
                     AND (cert_fingerprint = $2 OR cert_fingerprint_previous = $2)",
                )
                .bind(id)
                .bind(current_fingerprint)
                .bind(&renewed.fingerprint)
                .bind(&renewed.serial)
                .bind(renewed.not_after)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn confirm_device_cert(&self, id: &str, fingerprint: &str) -> Result<()> {
                sqlx::query(
                    "UPDATE devices SET cert_fingerprint_previous = NULL \
                     WHERE id = $1 AND cert_fingerprint = $2 AND cert_fingerprint_previous IS NOT NULL",
                )
                .bind(id)
                .bind(fingerprint)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn record_agent_seen(
                &self,
                id: &str,
                at: Millis,
                stream: &AgentStream<'_>,
                agent_version: Option<&str>,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE devices SET last_seen = $2, connected = TRUE, \
                     connection_id = $3, connection_replica = $4, \
                     agent_version = COALESCE($5, agent_version) \
                     WHERE id = $1 AND status = 'active'",
                )
                .bind(id)
                .bind(at)
                .bind(stream.id)
                .bind(stream.replica)
                .bind(agent_version)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_agent_gone(&self, id: &str, at: Millis, stream_id: &str) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE devices SET last_seen = $2, connected = FALSE, \
                     connection_id = NULL, connection_replica = NULL \
                     WHERE id = $1 AND connection_id = $3",
                )
                .bind(id)
                .bind(at)
                .bind(stream_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn announce_replica(&self, replica_id: &str, url: &str, at: Millis) -> Result<()> {
                sqlx::query(
                    "INSERT INTO replicas (id, url, seen_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET url = excluded.url, seen_at = excluded.seen_at",
                )
                .bind(replica_id)
                .bind(url)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn withdraw_replica(&self, replica_id: &str) -> Result<()> {
                sqlx::query("DELETE FROM replicas WHERE id = $1")
                    .bind(replica_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn agent_stream_holder(
                &self,
                device_id: &str,
                seen_since: Millis,
            ) -> Result<Option<(String, String)>> {
                Ok(sqlx::query_as(
                    "SELECT r.id, r.url FROM devices d JOIN replicas r ON r.id = d.connection_replica \
                     WHERE d.id = $1 AND d.connected AND r.seen_at >= $2",
                )
                .bind(device_id)
                .bind(seen_since)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn confirm_inventory(&self, device_id: &str, content_hash: &str, at: Millis) -> Result<()> {
                sqlx::query(
                    "UPDATE devices SET inventory_confirmed_at = $3 WHERE id = $1 \
                     AND inventory_hash = $2 AND COALESCE(inventory_confirmed_at, 0) < $3 - 3600000",
                )
                .bind(device_id)
                .bind(content_hash)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            // --- inventory ---

            async fn get_inventory(&self, device_id: &str) -> Result<Option<StoredInventory>> {
                let row: Option<(Option<i64>, Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
                    "SELECT inventory_at, inventory_hash, inventory FROM devices WHERE id = $1",
                )
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some((Some(collected_at), Some(content_hash), Some(inventory))) => {
                        Some(StoredInventory {
                            device_id: device_id.to_owned(),
                            collected_at,
                            content_hash,
                            inventory,
                        })
                    }
                    _ => None,
                })
            }

            async fn ingest_report(&self, r: &IngestReport) -> Result<IngestOutcome> {
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO inventory_reports (device_id, report_id, collected_at, \
                     received_at, content_hash, reason) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (device_id, report_id) DO NOTHING",
                )
                .bind(&r.device_id)
                .bind(&r.report_id)
                .bind(r.collected_at)
                .bind(r.received_at)
                .bind(&r.content_hash)
                .bind(&r.reason)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    return Ok(IngestOutcome::Duplicate);
                }
                // Spooled reports may arrive out of order: only a newer one
                // replaces the current inventory.
                let current = sqlx::query(
                    "UPDATE devices SET inventory_at = $2, inventory_hash = $3, inventory = $4, \
                     hostname = $5, os_name = $6, os_version = $7, vendor = $8, model = $9, \
                     memory_total_bytes = $10, ip_addresses = $11 \
                     WHERE id = $1 AND (inventory_at IS NULL OR inventory_at <= $2)",
                )
                .bind(&r.device_id)
                .bind(r.collected_at)
                .bind(&r.content_hash)
                .bind(&r.inventory)
                .bind(&r.summary.hostname)
                .bind(&r.summary.os_name)
                .bind(&r.summary.os_version)
                .bind(&r.summary.vendor)
                .bind(&r.summary.model)
                .bind(r.summary.memory_total_bytes)
                .bind(&r.summary.ip_addresses)
                .execute(&mut *tx)
                .await?;
                if current.rows_affected() == 0 {
                    tx.commit().await?;
                    return Ok(IngestOutcome::StoredOlder);
                }
                // Only the difference is written: a boot report with the
                // same ~800 programs then writes no software row at all.
                // Read after the device row is locked by the UPDATE above.
                let stored: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT source, name, architecture, version FROM device_software \
                     WHERE device_id = $1",
                )
                .bind(&r.device_id)
                .fetch_all(&mut *tx)
                .await?;
                let (insert, mut delete) = sql::software_diff(&stored, &r.software);
                if !delete.is_empty() && delete.len() == stored.len() {
                    // Everything goes (every version moved): one range
                    // delete is cheaper than matching row by row.
                    sqlx::query("DELETE FROM device_software WHERE device_id = $1")
                        .bind(&r.device_id)
                        .execute(&mut *tx)
                        .await?;
                    delete.clear();
                }
                // Multi-row statements in chunks: one statement per package
                // would make a 3,000-package change take seconds on SQLite.
                for chunk in delete.chunks(200) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM device_software WHERE device_id = ",
                    );
                    qb.push_bind(r.device_id.clone());
                    qb.push(" AND (source, name, architecture, version) IN (");
                    qb.push_values(chunk, |mut row, sw| {
                        row.push_bind(sw.0.clone())
                            .push_bind(sw.1.clone())
                            .push_bind(sw.2.clone())
                            .push_bind(sw.3.clone());
                    });
                    qb.push(")");
                    qb.build().execute(&mut *tx).await?;
                }
                for chunk in insert.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO device_software (device_id, source, name, architecture, version) ",
                    );
                    qb.push_values(chunk, |mut row, sw| {
                        row.push_bind(r.device_id.clone())
                            .push_bind(sw.source.clone())
                            .push_bind(sw.name.clone())
                            .push_bind(sw.architecture.clone())
                            .push_bind(sw.version.clone());
                    });
                    qb.push(" ON CONFLICT DO NOTHING");
                    qb.build().execute(&mut *tx).await?;
                }
                for chunk in r.changes.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO inventory_changes (device_id, report_id, at, kind, subject, \
                         old_value, new_value) ",
                    );
                    qb.push_values(chunk, |mut row, c| {
                        row.push_bind(r.device_id.clone())
                            .push_bind(c.report_id.clone())
                            .push_bind(c.at)
                            .push_bind(c.kind.clone())
                            .push_bind(c.subject.clone())
                            .push_bind(c.old_value.clone())
                            .push_bind(c.new_value.clone());
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(IngestOutcome::Stored)
            }

            async fn list_inventory_reports(
                &self,
                device_id: &str,
                limit: i64,
            ) -> Result<Vec<ReportSummary>> {
                Ok(sqlx::query_as(
                    "SELECT report_id, collected_at, received_at, content_hash, reason \
                     FROM inventory_reports WHERE device_id = $1 \
                     ORDER BY received_at DESC, report_id LIMIT $2",
                )
                .bind(device_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_inventory_changes(
                &self,
                device_id: &str,
                limit: i64,
            ) -> Result<Vec<InventoryChangeRecord>> {
                Ok(sqlx::query_as(
                    "SELECT report_id, at, kind, subject, old_value, new_value \
                     FROM inventory_changes WHERE device_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
                )
                .bind(device_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn search_software(
                &self,
                name_contains: &str,
                filter: &TenantFilter,
                county_id: Option<&str>,
                school_id: Option<&str>,
                max_rows: i64,
            ) -> Result<Vec<SoftwareHitRecord>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT d.id AS device_id, d.hostname, d.school_id, s.name, s.version, s.source \
                     FROM device_software s JOIN devices d ON d.id = s.device_id \
                     WHERE d.status = 'active' AND lower(s.name) LIKE ",
                );
                qb.push_bind(sql::like_pattern(name_contains)).push(" ESCAPE '\\'");
                sql::push_tenant_filter!(qb, filter, "d");
                if let Some(county) = county_id {
                    qb.push(" AND d.county_id = ").push_bind(county.to_owned());
                }
                if let Some(school) = school_id {
                    qb.push(" AND d.school_id = ").push_bind(school.to_owned());
                }
                qb.push(" ORDER BY s.name, d.hostname, d.id LIMIT ").push_bind(max_rows);
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            // --- the common IT standard and compliance ---

            async fn insert_standard_version(
                &self,
                v: &StandardVersionRecord,
            ) -> Result<StandardVersionRecord> {
                let (revision,): (i64,) = sqlx::query_as(
                    "INSERT INTO standard_versions (standard_id, version, content, rules, waivers, \
                     applied_by, applied_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING revision",
                )
                .bind(&v.standard_id)
                .bind(&v.version)
                .bind(&v.content)
                .bind(v.rules)
                .bind(v.waivers)
                .bind(&v.applied_by)
                .bind(v.applied_at)
                .fetch_one(&self.pool)
                .await?;
                Ok(StandardVersionRecord { revision, ..v.clone() })
            }

            async fn get_standard_version(
                &self,
                revision: Option<i64>,
            ) -> Result<Option<StandardVersionRecord>> {
                Ok(sqlx::query_as(
                    "SELECT revision, standard_id, version, content, rules, waivers, applied_by, \
                     applied_at FROM standard_versions WHERE ($1 IS NULL OR revision = $1) \
                     ORDER BY revision DESC LIMIT 1",
                )
                .bind(revision)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn latest_standard_revision(&self) -> Result<Option<i64>> {
                let (latest,): (Option<i64>,) =
                    sqlx::query_as("SELECT MAX(revision) FROM standard_versions")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(latest)
            }

            async fn list_standard_versions(&self) -> Result<Vec<StandardVersionRecord>> {
                Ok(sqlx::query_as(
                    "SELECT revision, standard_id, version, '' AS content, rules, waivers, \
                     applied_by, applied_at FROM standard_versions ORDER BY revision",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_device_inventories(
                &self,
                after_id: &str,
                limit: i64,
            ) -> Result<Vec<DeviceInventoryRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, hostname, county_id, school_id, device_class, inventory_at, \
                     inventory_confirmed_at, inventory \
                     FROM devices WHERE status = 'active' AND id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn get_device_inventory(&self, device_id: &str) -> Result<Option<DeviceInventoryRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, hostname, county_id, school_id, device_class, inventory_at, \
                     inventory_confirmed_at, inventory FROM devices WHERE status = 'active' AND id = $1",
                )
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn replace_compliance_results(
                &self,
                revision: i64,
                results: &[(String, Vec<ComplianceResultRecord>)],
            ) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for (device_id, rows) in results {
                    // Results that changed since the last evaluation under
                    // this revision become compliance changes (a new
                    // revision starts without history: nothing "changed").
                    let before: Vec<(String, String)> = sqlx::query_as(
                        "SELECT rule_id, status FROM compliance_results \
                         WHERE device_id = $1 AND revision = $2",
                    )
                    .bind(device_id)
                    .bind(revision)
                    .fetch_all(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM compliance_results WHERE device_id = $1 AND revision = $2")
                        .bind(device_id)
                        .bind(revision)
                        .execute(&mut *tx)
                        .await?;
                    for chunk in rows.chunks(200) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO compliance_results (device_id, revision, rule_id, status, \
                             counted, expected, actual, reason, waiver_id, waiver_expires_at, \
                             evaluated_at) ",
                        );
                        qb.push_values(chunk, |mut row, r| {
                            row.push_bind(device_id.clone())
                                .push_bind(revision)
                                .push_bind(r.rule_id.clone())
                                .push_bind(r.status.clone())
                                .push_bind(r.counted)
                                .push_bind(r.expected.clone())
                                .push_bind(r.actual.clone())
                                .push_bind(r.reason.clone())
                                .push_bind(r.waiver_id.clone())
                                .push_bind(r.waiver_expires_at)
                                .push_bind(r.evaluated_at);
                        });
                        qb.build().execute(&mut *tx).await?;
                    }
                    for r in rows {
                        let Some((_, old)) = before.iter().find(|(rule, _)| *rule == r.rule_id) else {
                            continue;
                        };
                        if *old == r.status {
                            continue;
                        }
                        sqlx::query(
                            "INSERT INTO compliance_changes (device_id, revision, rule_id, at, \
                             old_status, new_status, actual) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(device_id)
                        .bind(revision)
                        .bind(&r.rule_id)
                        .bind(r.evaluated_at)
                        .bind(old)
                        .bind(&r.status)
                        .bind(&r.actual)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_compliance_results(
                &self,
                device_id: &str,
                revision: i64,
            ) -> Result<Vec<ComplianceResultRecord>> {
                Ok(sqlx::query_as(
                    "SELECT rule_id, status, counted, expected, actual, reason, waiver_id, \
                     waiver_expires_at, evaluated_at FROM compliance_results \
                     WHERE device_id = $1 AND revision = $2 ORDER BY rule_id",
                )
                .bind(device_id)
                .bind(revision)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn school_compliance(
                &self,
                revision: i64,
                filter: &TenantFilter,
            ) -> Result<Vec<SchoolCompliance>> {
                // A device is compliant when no counted rule failed or is
                // unknown (unknown never counts as pass).
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT d.county_id, d.school_id, COUNT(*) AS devices, \
                     SUM(CASE WHEN x.bad = 0 THEN 1 ELSE 0 END) AS compliant FROM \
                     (SELECT device_id, SUM(CASE WHEN counted AND status IN ('fail', 'unknown') \
                      THEN 1 ELSE 0 END) AS bad FROM compliance_results WHERE revision = ",
                );
                qb.push_bind(revision);
                qb.push(
                    " GROUP BY device_id) x JOIN devices d ON d.id = x.device_id \
                     WHERE d.status = 'active'",
                );
                sql::push_tenant_filter!(qb, filter, "d");
                qb.push(" GROUP BY d.county_id, d.school_id ORDER BY d.county_id, d.school_id");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn rule_status_counts(
                &self,
                revision: i64,
                filter: &TenantFilter,
                county_id: Option<&str>,
                school_id: Option<&str>,
            ) -> Result<Vec<RuleStatusCount>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT r.rule_id, r.status, COUNT(*) AS devices FROM compliance_results r \
                     JOIN devices d ON d.id = r.device_id WHERE d.status = 'active' AND r.revision = ",
                );
                qb.push_bind(revision);
                sql::push_tenant_filter!(qb, filter, "d");
                if let Some(county) = county_id {
                    qb.push(" AND d.county_id = ").push_bind(county.to_owned());
                }
                if let Some(school) = school_id {
                    qb.push(" AND d.school_id = ").push_bind(school.to_owned());
                }
                qb.push(" GROUP BY r.rule_id, r.status ORDER BY r.rule_id, r.status");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn failing_devices(
                &self,
                revision: i64,
                rule_id: &str,
                filter: &TenantFilter,
                county_id: Option<&str>,
                school_id: Option<&str>,
            ) -> Result<Vec<FailingDeviceRecord>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT d.id AS device_id, d.hostname, d.county_id, d.school_id, r.expected, \
                     r.actual, r.reason FROM compliance_results r JOIN devices d ON d.id = r.device_id \
                     WHERE d.status = 'active' AND r.status = 'fail' AND r.revision = ",
                );
                qb.push_bind(revision);
                qb.push(" AND r.rule_id = ").push_bind(rule_id.to_owned());
                sql::push_tenant_filter!(qb, filter, "d");
                if let Some(county) = county_id {
                    qb.push(" AND d.county_id = ").push_bind(county.to_owned());
                }
                if let Some(school) = school_id {
                    qb.push(" AND d.school_id = ").push_bind(school.to_owned());
                }
                qb.push(" ORDER BY d.county_id, d.school_id, d.hostname");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn devices_with_expired_waivers(
                &self,
                revision: i64,
                now: Millis,
            ) -> Result<Vec<String>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT DISTINCT device_id FROM compliance_results WHERE revision = $1 \
                     AND status = 'waived' AND waiver_expires_at <= $2 ORDER BY device_id",
                )
                .bind(revision)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn upsert_compliance_snapshot(
                &self,
                day: &str,
                revision: i64,
                rows: &[SchoolCompliance],
            ) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for row in rows {
                    sqlx::query(
                        "INSERT INTO compliance_snapshots (day, revision, county_id, school_id, \
                         devices, compliant) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (day, school_id) DO UPDATE SET revision = excluded.revision, \
                         county_id = excluded.county_id, devices = excluded.devices, \
                         compliant = excluded.compliant",
                    )
                    .bind(day)
                    .bind(revision)
                    .bind(&row.county_id)
                    .bind(&row.school_id)
                    .bind(row.devices)
                    .bind(row.compliant)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn compliance_ticket(&self, device_id: &str, rule_id: &str) -> Result<Option<String>> {
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT ticket_id FROM compliance_tickets WHERE device_id = $1 AND rule_id = $2",
                )
                .bind(device_id)
                .bind(rule_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(id,)| id))
            }

            async fn insert_compliance_ticket(
                &self,
                device_id: &str,
                rule_id: &str,
                ticket_id: &str,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO compliance_tickets (device_id, rule_id, ticket_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (device_id, rule_id) DO NOTHING",
                )
                .bind(device_id)
                .bind(rule_id)
                .bind(ticket_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn compliance_snapshot(&self, day: &str) -> Result<Vec<SchoolCompliance>> {
                Ok(sqlx::query_as(
                    "SELECT county_id, school_id, devices, compliant FROM compliance_snapshots \
                     WHERE day = $1 ORDER BY county_id, school_id",
                )
                .bind(day)
                .fetch_all(&self.pool)
                .await?)
            }

            // --- service desk: tickets ---

            async fn create_ticket(&self, new: &NewTicket) -> Result<TicketRecord> {
                let mut tx = self.pool.begin().await?;
                // The row lock of this UPDATE serialises concurrent creators
                // on PostgreSQL; SQLite has one writer anyway.
                let (number,): (i64,) = sqlx::query_as(
                    "UPDATE ticket_sequence SET next_value = next_value + 1 \
                     WHERE name = 'ticket' RETURNING next_value",
                )
                .fetch_one(&mut *tx)
                .await?;
                let mut t = new.ticket.clone();
                t.number = number;
                sqlx::query(
                    "INSERT INTO tickets (id, number, title, description, status, priority, \
                     category, county_id, school_id, assignee_id, reporter, created_at, \
                     updated_at, closed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(&t.id)
                .bind(t.number)
                .bind(&t.title)
                .bind(&t.description)
                .bind(&t.status)
                .bind(&t.priority)
                .bind(&t.category)
                .bind(&t.county_id)
                .bind(&t.school_id)
                .bind(&t.assignee_id)
                .bind(&t.reporter)
                .bind(t.created_at)
                .bind(t.updated_at)
                .bind(t.closed_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| sql::conflict_or(e, format!("ticket {}", t.id)))?;
                for device in &new.device_ids {
                    sqlx::query(
                        "INSERT INTO ticket_devices (ticket_id, device_id, linked_at) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(&t.id)
                    .bind(device)
                    .bind(t.created_at)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO ticket_events (ticket_id, at, actor, kind, body, old_value, \
                     new_value) VALUES ($1, $2, $3, 'created', $4, '', $5)",
                )
                .bind(&t.id)
                .bind(t.created_at)
                .bind(&t.reporter)
                .bind(&new.created_note)
                .bind(&t.status)
                .execute(&mut *tx)
                .await?;
                if let Some(announce) = new.announce {
                    let event = announce(&t);
                    sql::insert_outbox!(&event, &mut *tx);
                }
                tx.commit().await?;
                Ok(t)
            }

            async fn get_ticket(&self, number: i64) -> Result<Option<TicketRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM tickets t WHERE t.number = $1",
                    sql::TICKET_COLUMNS
                ))
                .bind(number)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_tickets(&self, q: &TicketQuery) -> Result<Vec<TicketRecord>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM tickets t WHERE TRUE",
                    sql::TICKET_COLUMNS
                ));
                sql::push_tenant_filter!(qb, &q.filter, "t");
                if !q.statuses.is_empty() {
                    qb.push(" AND t.status IN (");
                    let mut sep = qb.separated(", ");
                    for status in &q.statuses {
                        sep.push_bind(status.clone());
                    }
                    qb.push(")");
                }
                if let Some(county) = &q.county_id {
                    qb.push(" AND t.county_id = ").push_bind(county.clone());
                }
                if let Some(school) = &q.school_id {
                    qb.push(" AND t.school_id = ").push_bind(school.clone());
                }
                if let Some(assignee) = &q.assignee_id {
                    qb.push(" AND t.assignee_id = ").push_bind(assignee.clone());
                }
                if let Some(device) = &q.device_id {
                    qb.push(
                        " AND EXISTS (SELECT 1 FROM ticket_devices td \
                         WHERE td.ticket_id = t.id AND td.device_id = ",
                    )
                    .push_bind(device.clone())
                    .push(")");
                }
                qb.push(" ORDER BY t.number DESC LIMIT ").push_bind(q.limit.max(1));
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn ticket_devices(&self, ticket_id: &str) -> Result<Vec<String>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT device_id FROM ticket_devices WHERE ticket_id = $1 \
                     ORDER BY linked_at, device_id",
                )
                .bind(ticket_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(d,)| d).collect())
            }

            async fn devices_of_tickets(
                &self,
                ticket_ids: &[String],
            ) -> Result<std::collections::HashMap<String, Vec<String>>> {
                let mut out: std::collections::HashMap<String, Vec<String>> =
                    std::collections::HashMap::new();
                // Chunks keep the bind count far below both backends' limits.
                for chunk in ticket_ids.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT ticket_id, device_id FROM ticket_devices WHERE ticket_id IN (",
                    );
                    let mut sep = qb.separated(", ");
                    for id in chunk {
                        sep.push_bind(id.clone());
                    }
                    qb.push(") ORDER BY ticket_id, linked_at, device_id");
                    let rows: Vec<(String, String)> =
                        qb.build_query_as().fetch_all(&self.pool).await?;
                    for (ticket, device) in rows {
                        out.entry(ticket).or_default().push(device);
                    }
                }
                Ok(out)
            }

            async fn apply_ticket_change(&self, c: &TicketChange) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query("UPDATE tickets SET updated_at = $2 WHERE id = $1")
                    .bind(&c.ticket_id)
                    .bind(c.at)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("ticket {}", c.ticket_id)));
                }
                if let Some(status) = &c.set_status {
                    let closed_at = ticket_status_is_closed(status).then_some(c.at);
                    sqlx::query(
                        "UPDATE tickets SET status = $2, \
                         closed_at = CASE WHEN $3 IS NULL THEN NULL \
                                          ELSE COALESCE(closed_at, $3) END \
                         WHERE id = $1",
                    )
                    .bind(&c.ticket_id)
                    .bind(status)
                    .bind(closed_at)
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(assignee) = &c.set_assignee {
                    sqlx::query("UPDATE tickets SET assignee_id = $2 WHERE id = $1")
                        .bind(&c.ticket_id)
                        .bind(assignee)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(device) = &c.link_device {
                    let linked = sqlx::query(
                        "INSERT INTO ticket_devices (ticket_id, device_id, linked_at) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(&c.ticket_id)
                    .bind(device)
                    .bind(c.at)
                    .execute(&mut *tx)
                    .await?;
                    if linked.rows_affected() == 0 {
                        return Err(StorageError::Conflict(format!(
                            "link of device {device} to this ticket"
                        )));
                    }
                }
                sqlx::query(
                    "INSERT INTO ticket_events (ticket_id, at, actor, kind, body, old_value, \
                     new_value) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&c.ticket_id)
                .bind(c.at)
                .bind(&c.actor)
                .bind(&c.kind)
                .bind(&c.body)
                .bind(&c.old_value)
                .bind(&c.new_value)
                .execute(&mut *tx)
                .await?;
                if let Some(event) = &c.outbox {
                    sql::insert_outbox!(event, &mut *tx);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn ticket_timeline(&self, ticket_id: &str) -> Result<Vec<TimelineEntry>> {
                let events: Vec<TicketEventRecord> = sqlx::query_as(
                    "SELECT id, ticket_id, at, actor, kind, body, old_value, new_value \
                     FROM ticket_events WHERE ticket_id = $1 ORDER BY at, id",
                )
                .bind(ticket_id)
                .fetch_all(&self.pool)
                .await?;
                // Joined at read time by device and the ticket's open window.
                let changes: Vec<(String, String, i64, String, String, String, String)> =
                    sqlx::query_as(
                        "SELECT c.device_id, c.report_id, c.at, c.kind, c.subject, c.old_value, \
                         c.new_value FROM inventory_changes c \
                         JOIN ticket_devices td ON td.device_id = c.device_id \
                         JOIN tickets t ON t.id = td.ticket_id \
                         WHERE t.id = $1 AND c.at >= t.created_at \
                         AND (t.closed_at IS NULL OR c.at <= t.closed_at) \
                         ORDER BY c.at, c.id LIMIT 5000",
                    )
                    .bind(ticket_id)
                    .fetch_all(&self.pool)
                    .await?;
                // Only changes while the ticket was open: not between a
                // resolution and a reopening.
                let closed = sql::closed_intervals(&events);
                let changes = changes
                    .into_iter()
                    .filter(|c| !closed.iter().any(|(from, to)| c.2 > *from && c.2 < *to));
                let compliance: Vec<ComplianceChangeRecord> = sqlx::query_as(
                    "SELECT c.device_id, c.revision, c.rule_id, c.at, c.old_status, c.new_status, \
                     c.actual FROM compliance_changes c \
                     JOIN ticket_devices td ON td.device_id = c.device_id \
                     JOIN tickets t ON t.id = td.ticket_id \
                     WHERE t.id = $1 AND c.at >= t.created_at \
                     AND (t.closed_at IS NULL OR c.at <= t.closed_at) \
                     ORDER BY c.at, c.id LIMIT 5000",
                )
                .bind(ticket_id)
                .fetch_all(&self.pool)
                .await?;
                // Sessions name their ticket by key (`SUP-1042`).
                let sessions: Vec<SessionRecord> = sqlx::query_as(&format!(
                    "SELECT {} FROM sessions WHERE ticket = \
                     (SELECT 'SUP-' || number FROM tickets WHERE id = $1) \
                     ORDER BY started_at, id LIMIT 1000",
                    sql::SESSION_COLUMNS
                ))
                .bind(ticket_id)
                .fetch_all(&self.pool)
                .await?;
                let mut timeline: Vec<TimelineEntry> =
                    events.into_iter().map(TimelineEntry::Event).collect();
                timeline.extend(
                    sessions
                        .into_iter()
                        .map(|s| TimelineEntry::Session(Box::new(s))),
                );
                timeline.extend(
                    compliance
                        .into_iter()
                        .filter(|c| !closed.iter().any(|(from, to)| c.at > *from && c.at < *to))
                        .map(TimelineEntry::Compliance),
                );
                timeline.extend(changes.map(
                    |(device_id, report_id, at, kind, subject, old_value, new_value)| {
                        TimelineEntry::Inventory {
                            device_id,
                            change: InventoryChangeRecord {
                                report_id,
                                at,
                                kind,
                                subject,
                                old_value,
                                new_value,
                            },
                        }
                    },
                ));
                // Stable: equal times keep events before inventory changes.
                timeline.sort_by_key(TimelineEntry::at);
                Ok(timeline)
            }

            async fn open_tickets_for_device(&self, device_id: &str) -> Result<Vec<TicketRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM tickets t JOIN ticket_devices td ON td.ticket_id = t.id \
                     WHERE td.device_id = $1 AND t.status NOT IN ('resolved', 'closed') \
                     ORDER BY t.number DESC",
                    sql::TICKET_COLUMNS
                ))
                .bind(device_id)
                .fetch_all(&self.pool)
                .await?)
            }

            // --- service desk: knowledge base ---

            async fn create_article(
                &self,
                a: &KbArticle,
                first: &KbVersion,
                outbox: Option<&OutboxEvent>,
            ) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO kb_articles (id, title, body, tags, category, county_id, \
                     visibility, version, published_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&a.id)
                .bind(&a.title)
                .bind(&a.body)
                .bind(&a.tags)
                .bind(&a.category)
                .bind(&a.county_id)
                .bind(&a.visibility)
                .bind(a.version)
                .bind(a.published_at)
                .bind(a.created_at)
                .bind(a.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| sql::conflict_or(e, format!("article {}", a.id)))?;
                sql::insert_kb_version!(first, &mut *tx);
                if let Some(event) = outbox {
                    sql::insert_outbox!(event, &mut *tx);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn update_article(
                &self,
                a: &KbArticle,
                v: &KbVersion,
                outbox: Option<&OutboxEvent>,
            ) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE kb_articles SET title = $2, body = $3, tags = $4, category = $5, \
                     visibility = $6, version = $7, published_at = $8, updated_at = $9 \
                     WHERE id = $1 AND version = $7 - 1",
                )
                .bind(&a.id)
                .bind(&a.title)
                .bind(&a.body)
                .bind(&a.tags)
                .bind(&a.category)
                .bind(&a.visibility)
                .bind(a.version)
                .bind(a.published_at)
                .bind(a.updated_at)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::Conflict(format!(
                        "version {} of article {}",
                        a.version, a.id
                    )));
                }
                sql::insert_kb_version!(v, &mut *tx);
                if let Some(event) = outbox {
                    sql::insert_outbox!(event, &mut *tx);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn get_article(&self, id: &str) -> Result<Option<KbArticle>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM kb_articles WHERE id = $1",
                    sql::KB_COLUMNS
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_article_versions(&self, id: &str) -> Result<Vec<KbVersion>> {
                Ok(sqlx::query_as(
                    "SELECT article_id, version, title, body, author, at FROM kb_versions \
                     WHERE article_id = $1 ORDER BY version",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_articles_changed(&self, since: Millis, limit: i64) -> Result<Vec<KbArticle>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM kb_articles WHERE updated_at >= $1 \
                     ORDER BY updated_at DESC, id LIMIT $2",
                    sql::KB_COLUMNS
                ))
                .bind(since)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn link_article_ticket(&self, article_id: &str, ticket_id: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO kb_article_tickets (article_id, ticket_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(article_id)
                .bind(ticket_id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
                // The one place where the backends differ: see
                // `full_text_search` in sqlite.rs and postgres.rs.
                self.full_text_search(query).await
            }

            // --- webhook outbox ---

            async fn enqueue_outbox(&self, event: &OutboxEvent) -> Result<()> {
                sql::insert_outbox!(event, &self.pool);
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

            async fn claim_outbox(&self, id: i64, expected_next: Millis, lease_until: Millis) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE webhook_outbox SET next_attempt_at = $3 \
                     WHERE id = $1 AND next_attempt_at = $2 AND delivered_at IS NULL",
                )
                .bind(id)
                .bind(expected_next)
                .bind(lease_until)
                .execute(&self.pool)
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
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn mark_outbox_failed(&self, id: i64, next_attempt_at: Millis, error: &str) -> Result<()> {
                sqlx::query(
                    "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $2, \
                     last_error = $3 WHERE id = $1 AND delivered_at IS NULL",
                )
                .bind(id)
                .bind(next_attempt_at)
                .bind(error)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            // --- audit ---

            async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
                let mut tx = self.pool.begin().await?;
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
                    let mut tx = self.pool.begin().await?;
                    #[allow(clippy::type_complexity)]
                    let rows: Vec<(i64, i64, String, String, String, Option<String>, String, String, Option<String>)> =
                        sqlx::query_as(
                            "SELECT id, at, actor, action, target, county_id, outcome, details, school_id \
                             FROM audit_events WHERE seq IS NULL ORDER BY id LIMIT 500",
                        )
                        .fetch_all(&mut *tx)
                        .await?;
                    if rows.is_empty() {
                        return Ok(chained);
                    }
                    for (id, at, actor, action, target, county_id, outcome, details, school_id) in rows {
                        let event = AuditEvent { at, actor, action, target, county_id, outcome, details, school_id };
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
                let mut tx = self.pool.begin().await?;
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

            // --- remote sessions ---

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
                .execute(&self.pool)
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
                .execute(&self.pool)
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
                .execute(&self.pool)
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
                .execute(&self.pool)
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
                .fetch_all(&self.pool)
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
                .execute(&self.pool)
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
                let mut tx = self.pool.begin().await?;
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

            // --- consent policy ---

            async fn set_consent_policy(&self, p: &ConsentPolicyRecord) -> Result<()> {
                sqlx::query(
                    "INSERT INTO consent_policies (school_id, device_class, consent, updated_by, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (school_id, device_class) DO UPDATE SET \
                     consent = excluded.consent, updated_by = excluded.updated_by, \
                     updated_at = excluded.updated_at",
                )
                .bind(&p.school_id)
                .bind(&p.device_class)
                .bind(&p.consent)
                .bind(&p.updated_by)
                .bind(p.updated_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_consent_policy(&self, school_id: &str, device_class: &str) -> Result<Option<ConsentPolicyRecord>> {
                Ok(sqlx::query_as(
                    "SELECT school_id, device_class, consent, updated_by, updated_at \
                     FROM consent_policies WHERE school_id = $1 AND device_class = $2",
                )
                .bind(school_id)
                .bind(device_class)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_consent_policies(&self, school_ids: Option<&[String]>) -> Result<Vec<ConsentPolicyRecord>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT school_id, device_class, consent, updated_by, updated_at \
                     FROM consent_policies WHERE TRUE",
                );
                if let Some(schools) = school_ids {
                    qb.push(" AND school_id IN (''");
                    for school in schools {
                        qb.push(", ").push_bind(school.clone());
                    }
                    qb.push(")");
                }
                qb.push(" ORDER BY school_id, device_class");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            // --- data protection: second factor, consent floors ---

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
                .execute(&self.pool)
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
                .execute(&self.pool)
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
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(done > 0)
            }

            async fn set_consent_floor(&self, f: &ConsentFloorRecord) -> Result<()> {
                sqlx::query(
                    "INSERT INTO consent_floors (school_id, device_class, floor, set_by, set_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (school_id, device_class) DO UPDATE SET \
                     floor = excluded.floor, set_by = excluded.set_by, set_at = excluded.set_at",
                )
                .bind(&f.school_id)
                .bind(&f.device_class)
                .bind(&f.floor)
                .bind(&f.set_by)
                .bind(f.set_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn consent_floors(&self, school_id: &str) -> Result<Vec<ConsentFloorRecord>> {
                Ok(sqlx::query_as(
                    "SELECT school_id, device_class, floor, set_by, set_at FROM consent_floors \
                     WHERE school_id = $1 ORDER BY device_class",
                )
                .bind(school_id)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

pub(super) use append_chained;
pub(super) use impl_sql_store;
pub(super) use insert_inventory_change;
pub(super) use insert_kb_version;
pub(super) use insert_outbox;
pub(super) use push_tenant_filter;
pub(super) use set_head;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_intervals_run_from_resolution_to_reopening() {
        let status = |at, value: &str| crate::storage::TicketEventRecord {
            id: at,
            ticket_id: "t".into(),
            at,
            actor: "a".into(),
            kind: "status".into(),
            body: String::new(),
            old_value: String::new(),
            new_value: value.into(),
        };
        let events = [
            status(10, "open"),
            status(20, "resolved"),
            status(25, "closed"),
            status(30, "open"),
            status(40, "resolved"),
        ];
        assert_eq!(closed_intervals(&events), [(20, 30)]);
    }

    #[test]
    fn software_diff_writes_only_what_changed() {
        let row = |name: &str, version: &str| crate::storage::SoftwareRow {
            source: "dpkg".into(),
            name: name.into(),
            architecture: "amd64".into(),
            version: version.into(),
        };
        let stored_row = |name: &str, version: &str| {
            ("dpkg".into(), name.into(), "amd64".into(), version.into())
        };
        let stored: Vec<StoredSoftware> = vec![
            stored_row("bash", "5.2"),
            stored_row("firefox-esr", "115.0"),
            stored_row("vim", "9.0"),
        ];
        let same = vec![
            row("vim", "9.0"),
            row("bash", "5.2"),
            row("firefox-esr", "115.0"),
        ];
        let (insert, delete) = software_diff(&stored, &same);
        assert!(insert.is_empty() && delete.is_empty());

        // Updated, removed, added, and one package listed twice.
        let changed = vec![
            row("bash", "5.2"),
            row("firefox-esr", "140.1"),
            row("git", "2.39"),
            row("git", "2.39"),
        ];
        let (insert, delete) = software_diff(&stored, &changed);
        let inserted: Vec<_> = insert
            .iter()
            .map(|r| (r.name.as_str(), r.version.as_str()))
            .collect();
        assert_eq!(inserted, [("firefox-esr", "140.1"), ("git", "2.39")]);
        let deleted: Vec<_> = delete
            .iter()
            .map(|r| (r.1.as_str(), r.3.as_str()))
            .collect();
        assert_eq!(deleted, [("firefox-esr", "115.0"), ("vim", "9.0")]);
    }

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("Fire_fox%"), "%fire\\_fox\\%%");
    }
}
