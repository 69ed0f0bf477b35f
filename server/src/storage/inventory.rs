//! Inventory: reports, the current inventory, history and software search.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_inventory_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, TenantFilter, sql};

#[async_trait]
pub trait InventoryStore: Send + Sync {
    async fn get_inventory(&self, device_id: &str) -> Result<Option<StoredInventory>>;

    /// The time and content hash of the device's current inventory, without
    /// reading the inventory (tens to hundreds of KB): an offer needs only
    /// these, and a morning brings thousands of offers.
    async fn inventory_version(&self, device_id: &str) -> Result<Option<InventoryVersion>>;

    /// Stores a report once per report id. The device's current inventory
    /// moves forward only if the report is newer than the one it has.
    async fn ingest_report(&self, report: &IngestReport) -> Result<IngestOutcome> {
        self.ingest_evaluated_report(report, None).await
    }

    /// [`InventoryStore::ingest_report`] plus, when the report becomes the
    /// current inventory, the device's compliance results judged on it, in
    /// the same transaction (one commit per report instead of two).
    async fn ingest_evaluated_report(
        &self,
        report: &IngestReport,
        results: Option<&EvaluatedResults>,
    ) -> Result<IngestOutcome>;

    /// A report with the same content as the device's current inventory:
    /// records the report and moves the inventory's collection time
    /// forward, with the results judged at that time, without rewriting
    /// the inventory or its software rows. `None` (nothing written) when
    /// the current inventory no longer has that hash or is newer: the
    /// caller stores the report in full.
    async fn ingest_unchanged_report(
        &self,
        report: &UnchangedReport,
        results: Option<&EvaluatedResults>,
    ) -> Result<Option<IngestOutcome>>;

    async fn list_inventory_reports(
        &self,
        device_id: &str,
        limit: i64,
    ) -> Result<Vec<ReportSummary>>;

    async fn list_inventory_changes(
        &self,
        device_id: &str,
        limit: i64,
    ) -> Result<Vec<InventoryChangeRecord>>;

    async fn search_software(
        &self,
        name_contains: &str,
        filter: &TenantFilter,
        county_id: Option<&str>,
        school_id: Option<&str>,
        max_rows: i64,
    ) -> Result<Vec<SoftwareHitRecord>>;
}

/// The report's own row, once per report id: true when it was new. Both
/// ingest paths (`IngestReport`, `UnchangedReport`) write it alike.
macro_rules! insert_report_row {
    ($tx:ident, $r:ident) => {
        sqlx::query(
            "INSERT INTO inventory_reports (device_id, report_id, collected_at, \
             received_at, content_hash, reason) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (device_id, report_id) DO NOTHING",
        )
        .bind(&$r.device_id)
        .bind(&$r.report_id)
        .bind($r.collected_at)
        .bind($r.received_at)
        .bind(&$r.content_hash)
        .bind(&$r.reason)
        .execute(&mut *$tx)
        .await?
    };
}

/// The device's results judged on the report, if any, then the commit:
/// how both ingest paths end their transaction.
macro_rules! commit_with_results {
    ($tx:ident, $device_id:expr, $results:expr) => {
        if let Some(evaluated) = $results {
            sql::write_device_results!($tx, $device_id, evaluated.revision, &evaluated.results);
        }
        $tx.commit().await?;
    };
}

macro_rules! impl_inventory_store {
    // `$json_rows`: the elements of the JSON array bound as `$2`, as rows
    // with the columns `value` (the element) and `key` (its position).
    ($store:ty, $db:ty, $json_rows:literal) => {
        #[async_trait::async_trait]
        impl $crate::storage::InventoryStore for $store {
            async fn get_inventory(&self, device_id: &str) -> Result<Option<StoredInventory>> {
                let row: Option<(Option<i64>, Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
                    "SELECT d.inventory_at, d.inventory_hash, i.inventory FROM devices d \
                     LEFT JOIN device_inventories i ON i.device_id = d.id WHERE d.id = $1",
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

            async fn inventory_version(&self, device_id: &str) -> Result<Option<InventoryVersion>> {
                let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
                    "SELECT d.inventory_at, d.inventory_hash FROM devices d \
                     WHERE d.id = $1 AND EXISTS \
                     (SELECT 1 FROM device_inventories i WHERE i.device_id = d.id)",
                )
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match row {
                    Some((Some(collected_at), Some(content_hash))) => Some(InventoryVersion {
                        collected_at,
                        content_hash,
                    }),
                    _ => None,
                })
            }

            async fn ingest_evaluated_report(
                &self,
                r: &IngestReport,
                results: Option<&EvaluatedResults>,
            ) -> Result<IngestOutcome> {
                // Everything the statements bind is made here, before the
                // write turn (the writer's time is the storm's limit), and
                // owned, so that the write can run where its backend drives
                // it (`drive_bulk`).
                let changes = (!r.changes.is_empty()).then(|| {
                    let rows: Vec<_> = r
                        .changes
                        .iter()
                        .map(|c| {
                            (
                                &*c.report_id,
                                c.at,
                                &*c.kind,
                                &*c.subject,
                                &*c.old_value,
                                &*c.new_value,
                            )
                        })
                        .collect();
                    sql::json_rows(&rows)
                });
                let r = IngestReport {
                    software: r.software.clone(),
                    changes: Vec::new(),
                    device_id: r.device_id.clone(),
                    report_id: r.report_id.clone(),
                    content_hash: r.content_hash.clone(),
                    reason: r.reason.clone(),
                    inventory: r.inventory.clone(),
                    summary: r.summary.clone(),
                    ..*r
                };
                let results = results.cloned();
                let store = self.clone();
                self.drive_bulk(async move {
                    let mut tx = store.begin_bulk_write().await?;
                    let inserted = insert_report_row!(tx, r);
                    if inserted.rows_affected() == 0 {
                        return Ok(IngestOutcome::Duplicate);
                    }
                    // Spooled reports may arrive out of order: only a newer
                    // one replaces the current inventory.
                    let current = sqlx::query(
                        "UPDATE devices SET inventory_at = $2, inventory_hash = $3, \
                         hostname = $4, os_name = $5, os_version = $6, vendor = $7, model = $8, \
                         memory_total_bytes = $9, ip_addresses = $10 \
                         WHERE id = $1 AND (inventory_at IS NULL OR inventory_at <= $2)",
                    )
                    .bind(&r.device_id)
                    .bind(r.collected_at)
                    .bind(&r.content_hash)
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
                    // The blob lives apart from the devices row, which every
                    // heartbeat rewrites (migration 0016).
                    sqlx::query(
                        "INSERT INTO device_inventories (device_id, inventory) VALUES ($1, $2) \
                         ON CONFLICT (device_id) DO UPDATE SET inventory = excluded.inventory",
                    )
                    .bind(&r.device_id)
                    .bind(&r.inventory)
                    .execute(&mut *tx)
                    .await?;
                    // One row per device: the programs as one sorted JSON
                    // text, rewritten only when the text changed (a report
                    // whose hardware changed keeps its programs' row as it
                    // was).
                    sqlx::query(
                        "INSERT INTO device_software (device_id, packages) VALUES ($1, $2) \
                         ON CONFLICT (device_id) DO UPDATE SET packages = excluded.packages \
                         WHERE device_software.packages <> excluded.packages",
                    )
                    .bind(&r.device_id)
                    .bind(r.software.as_str())
                    .execute(&mut *tx)
                    .await?;
                    if let Some(changes) = changes {
                        sqlx::query(concat!(
                            "INSERT INTO inventory_changes (device_id, report_id, at, kind, \
                             subject, old_value, new_value) \
                             SELECT $1, value->>0, CAST(value->>1 AS BIGINT), value->>2, \
                             value->>3, value->>4, value->>5 FROM ",
                            $json_rows,
                            " ORDER BY key"
                        ))
                        .bind(&r.device_id)
                        .bind(changes)
                        .execute(&mut *tx)
                        .await?;
                    }
                    commit_with_results!(tx, &r.device_id, &results);
                    Ok(IngestOutcome::Stored)
                })
                .await
            }

            async fn ingest_unchanged_report(
                &self,
                r: &UnchangedReport,
                results: Option<&EvaluatedResults>,
            ) -> Result<Option<IngestOutcome>> {
                let (r, results, store) = (r.clone(), results.cloned(), self.clone());
                self.drive_bulk(async move {
                    let mut tx = store.begin_bulk_write().await?;
                    let current = sqlx::query(
                        "UPDATE devices SET inventory_at = $2 \
                         WHERE id = $1 AND inventory_hash = $3 AND inventory_at <= $2 \
                         AND EXISTS (SELECT 1 FROM device_inventories i WHERE i.device_id = $1)",
                    )
                    .bind(&r.device_id)
                    .bind(r.collected_at)
                    .bind(&r.content_hash)
                    .execute(&mut *tx)
                    .await?;
                    if current.rows_affected() == 0 {
                        // Dropping the transaction rolls it back.
                        return Ok(None);
                    }
                    let inserted = insert_report_row!(tx, r);
                    if inserted.rows_affected() == 0 {
                        // Rolled back: a duplicate changes nothing, not even
                        // the time.
                        return Ok(Some(IngestOutcome::Duplicate));
                    }
                    commit_with_results!(tx, &r.device_id, &results);
                    Ok(Some(IngestOutcome::Stored))
                })
                .await
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
                use futures::TryStreamExt as _;
                let pattern = sql::like_pattern(name_contains);
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT d.id, d.hostname, d.school_id, s.packages \
                     FROM device_software s JOIN devices d ON d.id = s.device_id \
                     WHERE d.status = 'active'",
                );
                // The list's text first: only the devices that can hold a
                // match cross the driver, and they are expanded here.
                if sql::text_filter_is_exact(name_contains) {
                    qb.push(" AND lower(s.packages) LIKE ")
                        .push_bind(pattern)
                        .push(" ESCAPE '\\'");
                }
                sql::push_tenant_filter!(qb, filter, "d");
                if let Some(county) = county_id {
                    qb.push(" AND d.county_id = ").push_bind(county.to_owned());
                }
                if let Some(school) = school_id {
                    qb.push(" AND d.school_id = ").push_bind(school.to_owned());
                }
                let mut hits = sql::SoftwareHits::new(name_contains, max_rows);
                // Streamed: a program on every device must not hold every
                // device's list in memory at once.
                let mut rows = qb
                    .build_query_as::<(String, String, String, String)>()
                    .fetch(&self.pool);
                while let Some((device_id, hostname, school_id, packages)) = rows.try_next().await? {
                    hits.add_device(&device_id, &hostname, &school_id, &packages)?;
                }
                Ok(hits.into_sorted())
            }
        }
    };
}

impl_inventory_store!(SqliteStore, sqlx::Sqlite, "json_each($2)");
impl_inventory_store!(
    PgStore,
    sqlx::Postgres,
    "jsonb_array_elements($2::jsonb) WITH ORDINALITY AS j(value, key)"
);
