//! Service desk: tickets, their devices and timeline.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_ticket_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, StorageError, sql};

#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Creates the ticket with the next number of the installation's
    /// sequence (in the same transaction, so replicas never collide), its
    /// devices, its `created` timeline entry and its webhook event.
    async fn create_ticket(&self, new: &NewTicket) -> Result<TicketRecord>;

    async fn get_ticket(&self, number: i64) -> Result<Option<TicketRecord>>;

    async fn list_tickets(&self, query: &TicketQuery) -> Result<Vec<TicketRecord>>;

    /// Device ids linked to the ticket.
    async fn ticket_devices(&self, ticket_id: &str) -> Result<Vec<String>>;

    /// Device ids of many tickets in one query (the queue), in the order
    /// of `ticket_devices`. Tickets without devices are absent.
    async fn devices_of_tickets(
        &self,
        ticket_ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<String>>>;

    /// Applies one change (status, assignee, device link or just a comment)
    /// with its timeline entry and webhook event, atomically.
    async fn apply_ticket_change(&self, change: &TicketChange) -> Result<()>;

    /// The timeline in order: ticket events plus inventory changes of its
    /// devices between its creation and its closing (or now).
    async fn ticket_timeline(&self, ticket_id: &str) -> Result<Vec<TimelineEntry>>;

    /// Per county and category over `[start, end)`: tickets opened, tickets
    /// resolved (closed) and tickets still open at `end`, counted in SQL
    /// (only tickets the filter reads, created before `end`).
    async fn ticket_period_counts(
        &self,
        filter: &TenantFilter,
        county_id: Option<&str>,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<TicketPeriodCount>>;

    /// How long each ticket closed in `[start, end)` took (for the median
    /// time to resolve): only that period's resolved rows.
    async fn ticket_resolutions(
        &self,
        filter: &TenantFilter,
        county_id: Option<&str>,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<TicketResolution>>;

    /// Tickets of this device that are not resolved or closed.
    async fn open_tickets_for_device(&self, device_id: &str) -> Result<Vec<TicketRecord>>;
}

macro_rules! impl_ticket_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::TicketStore for $store {
            async fn create_ticket(&self, new: &NewTicket) -> Result<TicketRecord> {
                let mut tx = self.begin_write().await?;
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

            async fn ticket_period_counts(
                &self,
                filter: &TenantFilter,
                county_id: Option<&str>,
                start: Millis,
                end: Millis,
            ) -> Result<Vec<TicketPeriodCount>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT t.county_id, t.category, \
                     CAST(COALESCE(SUM(CASE WHEN t.created_at >= ",
                );
                qb.push_bind(start);
                qb.push(
                    " THEN 1 ELSE 0 END), 0) AS BIGINT) AS opened, \
                     CAST(COALESCE(SUM(CASE WHEN t.closed_at >= ",
                );
                qb.push_bind(start);
                qb.push(" AND t.closed_at < ");
                qb.push_bind(end);
                qb.push(
                    " THEN 1 ELSE 0 END), 0) AS BIGINT) AS resolved, \
                     CAST(COALESCE(SUM(CASE WHEN t.closed_at IS NULL OR t.closed_at >= ",
                );
                qb.push_bind(end);
                qb.push(
                    " THEN 1 ELSE 0 END), 0) AS BIGINT) AS backlog \
                     FROM tickets t WHERE t.created_at < ",
                );
                qb.push_bind(end);
                sql::push_tenant_filter!(qb, filter, "t");
                if let Some(county) = county_id {
                    qb.push(" AND t.county_id = ").push_bind(county.to_owned());
                }
                qb.push(" GROUP BY t.county_id, t.category ORDER BY t.county_id, t.category");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn ticket_resolutions(
                &self,
                filter: &TenantFilter,
                county_id: Option<&str>,
                start: Millis,
                end: Millis,
            ) -> Result<Vec<TicketResolution>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT t.county_id, t.category, t.closed_at - t.created_at AS millis \
                     FROM tickets t WHERE t.closed_at >= ",
                );
                qb.push_bind(start);
                qb.push(" AND t.closed_at < ");
                qb.push_bind(end);
                sql::push_tenant_filter!(qb, filter, "t");
                if let Some(county) = county_id {
                    qb.push(" AND t.county_id = ").push_bind(county.to_owned());
                }
                qb.push(" ORDER BY t.county_id, t.category, millis");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
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
                qb.push(" ORDER BY t.number DESC LIMIT ")
                    .push_bind(q.limit.max(1));
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
                let mut tx = self.begin_write().await?;
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
        }
    };
}

impl_ticket_store!(SqliteStore, sqlx::Sqlite);
impl_ticket_store!(PgStore, sqlx::Postgres);
