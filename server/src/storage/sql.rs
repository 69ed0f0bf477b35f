//! What the domain files' query text shares: helper functions, column
//! lists and small statement macros (tenant filter, outbox insert, the
//! audit chain append).
//!
//! SQLite and PostgreSQL both understand `$1` placeholders, `ON CONFLICT`,
//! `RETURNING` and the column types used here (TEXT, 64-bit integers, BLOB
//! or BYTEA, BOOLEAN). `sqlx::Any` cannot carry everything we need, and
//! generic code over `sqlx::Database` drowns in trait bounds, so each
//! domain's macro (`impl_tenant_store!` in `tenants.rs`, ...) expands the
//! same method bodies for each concrete pool type.

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

/// Rows to write as one JSON array bound as a single value, which the
/// statement expands with `json_each` / `jsonb_array_elements`.
pub(super) fn json_rows<T: serde::Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("strings and numbers serialize")
}

/// Whether the search may drop the lists whose text does not contain
/// `needle` (`lower(packages) LIKE`) before expanding them. Not for text
/// that JSON writes escaped (`"`, `\`, control characters): a name holding
/// it does not appear in the text as it is. Not for letters beyond ASCII:
/// SQLite's `lower` and `LIKE` fold ASCII case only, so "über" would miss
/// "Übersetzer", which the expansion (Unicode lower case) finds.
pub(super) fn text_filter_is_exact(needle: &str) -> bool {
    needle.is_ascii()
        && !needle
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
}

/// One stored program, as `SoftwareList` wrote it; borrowed from the
/// list's text where no escape sequence forces a copy.
#[derive(serde::Deserialize)]
struct StoredPackage<'a>(
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
);

/// The software search's result, built device by device from the stored
/// lists: the programs whose name contains the needle (case-insensitive),
/// ordered by name, hostname and device, at most `max_rows` of them.
pub(super) struct SoftwareHits {
    needle: String,
    max_rows: usize,
    hits: Vec<crate::storage::SoftwareHitRecord>,
}

impl SoftwareHits {
    pub(super) fn new(name_contains: &str, max_rows: i64) -> Self {
        SoftwareHits {
            needle: name_contains.to_lowercase(),
            max_rows: usize::try_from(max_rows).unwrap_or(0),
            hits: Vec::new(),
        }
    }

    /// Adds the matching programs of one device's stored list.
    pub(super) fn add_device(
        &mut self,
        device_id: &str,
        hostname: &str,
        school_id: &str,
        packages: &str,
    ) -> Result<(), StorageError> {
        let packages: Vec<StoredPackage<'_>> = serde_json::from_str(packages).map_err(|e| {
            StorageError::Corrupt(format!("software list of device {device_id}: {e}"))
        })?;
        for StoredPackage(source, name, _architecture, version) in packages {
            if name_contains_lowercase(&name, &self.needle) {
                self.hits.push(crate::storage::SoftwareHitRecord {
                    device_id: device_id.to_owned(),
                    hostname: hostname.to_owned(),
                    school_id: school_id.to_owned(),
                    name: name.into_owned(),
                    version: version.into_owned(),
                    source: source.into_owned(),
                });
            }
        }
        // Bounded: beyond twice the rows asked for, only the first ones in
        // the result's order are kept.
        if self.hits.len() > self.max_rows.saturating_mul(2).max(1024) {
            self.keep_first();
        }
        Ok(())
    }

    pub(super) fn into_sorted(mut self) -> Vec<crate::storage::SoftwareHitRecord> {
        self.keep_first();
        self.hits
    }

    fn keep_first(&mut self) {
        self.hits.sort_unstable_by(|a, b| {
            (&a.name, &a.hostname, &a.device_id).cmp(&(&b.name, &b.hostname, &b.device_id))
        });
        self.hits.truncate(self.max_rows);
    }
}

/// Whether `name` contains `needle` (already lower case), ignoring case.
fn name_contains_lowercase(name: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.is_ascii() {
        // No allocation per program for the common case.
        name.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    } else {
        name.to_lowercase().contains(needle)
    }
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
     connected, agent_version, agent_consent_min, inventory_at, inventory_hash, os_name, os_version, vendor, model, \
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

/// Writes one device's results under one revision inside transaction
/// `$tx`, as a difference to what is stored: a result that did not change
/// only gets its new `evaluated_at` (one statement for all of them, which
/// touches no index), changed ones are updated, new ones inserted, results
/// of rules that are gone deleted. A changed status is also recorded in
/// `compliance_changes` (a new revision starts without history).
macro_rules! write_device_results {
    ($tx:expr, $device_id:expr, $revision:expr, $rows:expr) => {{
        let device_id: &str = $device_id;
        let revision: i64 = $revision;
        let rows: &[$crate::storage::ComplianceResultRecord] = $rows;
        let before: Vec<$crate::storage::ComplianceResultRecord> = sqlx::query_as(
            "SELECT rule_id, status, counted, expected, actual, reason, waiver_id, \
             waiver_expires_at, evaluated_at FROM compliance_results \
             WHERE device_id = $1 AND revision = $2",
        )
        .bind(device_id)
        .bind(revision)
        .fetch_all(&mut *$tx)
        .await?;
        let same = |a: &$crate::storage::ComplianceResultRecord,
                    b: &$crate::storage::ComplianceResultRecord| {
            $crate::storage::ComplianceResultRecord {
                evaluated_at: b.evaluated_at,
                ..a.clone()
            } == *b
        };
        if let Some(at) = rows.first().map(|r| r.evaluated_at)
            && !before.is_empty()
        {
            sqlx::query(
                "UPDATE compliance_results SET evaluated_at = $3 \
                 WHERE device_id = $1 AND revision = $2",
            )
            .bind(device_id)
            .bind(revision)
            .bind(at)
            .execute(&mut *$tx)
            .await?;
        }
        for old in &before {
            if !rows.iter().any(|r| r.rule_id == old.rule_id) {
                sqlx::query(
                    "DELETE FROM compliance_results \
                     WHERE device_id = $1 AND revision = $2 AND rule_id = $3",
                )
                .bind(device_id)
                .bind(revision)
                .bind(&old.rule_id)
                .execute(&mut *$tx)
                .await?;
            }
        }
        for r in rows {
            let old = before.iter().find(|o| o.rule_id == r.rule_id);
            if old.is_some_and(|o| same(o, r)) {
                continue;
            }
            sqlx::query(
                "INSERT INTO compliance_results (device_id, revision, rule_id, status, \
                 counted, expected, actual, reason, waiver_id, waiver_expires_at, \
                 evaluated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (device_id, revision, rule_id) DO UPDATE SET \
                 status = excluded.status, counted = excluded.counted, \
                 expected = excluded.expected, actual = excluded.actual, \
                 reason = excluded.reason, waiver_id = excluded.waiver_id, \
                 waiver_expires_at = excluded.waiver_expires_at, \
                 evaluated_at = excluded.evaluated_at",
            )
            .bind(device_id)
            .bind(revision)
            .bind(&r.rule_id)
            .bind(&r.status)
            .bind(r.counted)
            .bind(&r.expected)
            .bind(&r.actual)
            .bind(&r.reason)
            .bind(&r.waiver_id)
            .bind(r.waiver_expires_at)
            .bind(r.evaluated_at)
            .execute(&mut *$tx)
            .await?;
            let Some(old) = old else { continue };
            if old.status == r.status {
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
            .bind(&old.status)
            .bind(&r.status)
            .bind(&r.actual)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

pub(super) use append_chained;
pub(super) use insert_inventory_change;
pub(super) use insert_kb_version;
pub(super) use insert_outbox;
pub(super) use push_tenant_filter;
pub(super) use set_head;
pub(super) use write_device_results;

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

    fn software_list(rows: &[crate::storage::SoftwareRow]) -> String {
        crate::storage::SoftwareList::from_rows(rows)
            .as_str()
            .to_owned()
    }

    /// A program as a report lists it (dpkg, amd64).
    fn row(name: &str, version: &str) -> crate::storage::SoftwareRow {
        crate::storage::SoftwareRow {
            source: "dpkg".into(),
            name: name.into(),
            architecture: "amd64".into(),
            version: version.into(),
        }
    }

    #[test]
    fn software_list_is_sorted_and_unique_whatever_the_order() {
        let listed = software_list(&[
            row("vim", "9.0"),
            row("bash", "5.2"),
            row("vim", "9.0"),
            row("a \"quoted\" \\ name", "1.0"),
        ]);
        assert_eq!(
            listed,
            r#"[["dpkg","a \"quoted\" \\ name","amd64","1.0"],["dpkg","bash","amd64","5.2"],["dpkg","vim","amd64","9.0"]]"#
        );
        assert_eq!(
            software_list(&[row("bash", "5.2"), row("vim", "9.0")]),
            software_list(&[row("vim", "9.0"), row("bash", "5.2")])
        );
        assert_eq!(software_list(&[]), "[]");
        assert_eq!(crate::storage::SoftwareList::default().as_str(), "[]");
    }

    #[test]
    fn software_hits_match_names_ignoring_case_in_order_and_bounded() {
        let list = software_list(&[
            row("Mozilla Firefox", "140.1"),
            row("Firefox \"Nightly\"", "150"),
            row("LibreOffice", "firefox-like version"),
            row("Übersetzer", "1"),
        ]);
        let mut hits = SoftwareHits::new("FIREFOX", 10);
        hits.add_device("d2", "pc-b", "s1", &list).unwrap();
        hits.add_device("d1", "pc-a", "s1", &list).unwrap();
        let found: Vec<_> = hits
            .into_sorted()
            .into_iter()
            .map(|h| (h.name, h.hostname, h.version))
            .collect();
        let hit = |n: &str, h: &str, v: &str| (n.to_owned(), h.to_owned(), v.to_owned());
        assert_eq!(
            found,
            [
                hit("Firefox \"Nightly\"", "pc-a", "150"),
                hit("Firefox \"Nightly\"", "pc-b", "150"),
                hit("Mozilla Firefox", "pc-a", "140.1"),
                hit("Mozilla Firefox", "pc-b", "140.1"),
            ]
        );

        let mut umlaut = SoftwareHits::new("über", 10);
        umlaut.add_device("d1", "pc-a", "s1", &list).unwrap();
        assert_eq!(umlaut.into_sorted().len(), 1);

        // At most `max_rows`, the first in order, however many devices.
        let mut bounded = SoftwareHits::new("", 3);
        for i in (0..2000).rev() {
            bounded
                .add_device(&format!("d{i:04}"), &format!("pc{i:04}"), "s1", &list)
                .unwrap();
            assert!(bounded.hits.len() <= 1024 + 4);
        }
        let first: Vec<_> = bounded
            .into_sorted()
            .into_iter()
            .map(|h| (h.name, h.hostname))
            .collect();
        assert_eq!(
            first,
            [
                ("Firefox \"Nightly\"".to_owned(), "pc0000".to_owned()),
                ("Firefox \"Nightly\"".to_owned(), "pc0001".to_owned()),
                ("Firefox \"Nightly\"".to_owned(), "pc0002".to_owned()),
            ]
        );

        let mut corrupt = SoftwareHits::new("x", 3);
        assert!(matches!(
            corrupt.add_device("d1", "pc", "s1", "[[1]]"),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn only_plain_ascii_is_searched_in_the_json_text() {
        assert!(text_filter_is_exact("Firefox ESR 140 (x64)"));
        assert!(!text_filter_is_exact("Übersetzer"));
        assert!(!text_filter_is_exact("a\"b"));
        assert!(!text_filter_is_exact("a\\b"));
        assert!(!text_filter_is_exact("a\tb"));
    }

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("Fire_fox%"), "%fire\\_fox\\%%");
    }
}
