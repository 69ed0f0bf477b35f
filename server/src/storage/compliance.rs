//! The common IT standard and compliance: versions, results, summaries, snapshots.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_compliance_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, TenantFilter, sql};

#[async_trait]
pub trait ComplianceStore: Send + Sync {
    /// Stores a new version; returns it with its revision.
    async fn insert_standard_version(
        &self,
        version: &StandardVersionRecord,
    ) -> Result<StandardVersionRecord>;

    /// `None`: the latest revision.
    async fn get_standard_version(
        &self,
        revision: Option<i64>,
    ) -> Result<Option<StandardVersionRecord>>;

    async fn list_standard_versions(&self) -> Result<Vec<StandardVersionRecord>>;

    /// The latest revision number, without the file.
    async fn latest_standard_revision(&self) -> Result<Option<i64>>;

    /// Active devices (id order, after `after_id`) with their inventories,
    /// a page at a time: fleet evaluation reads in batches, not per device.
    async fn list_device_inventories(
        &self,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<DeviceInventoryRow>>;

    /// One active device with its inventory.
    async fn get_device_inventory(&self, device_id: &str) -> Result<Option<DeviceInventoryRow>>;

    /// Replaces the results of many devices under one revision, in one
    /// transaction.
    async fn replace_compliance_results(
        &self,
        revision: i64,
        results: &[(String, Vec<ComplianceResultRecord>)],
    ) -> Result<()>;

    async fn list_compliance_results(
        &self,
        device_id: &str,
        revision: i64,
    ) -> Result<Vec<ComplianceResultRecord>>;

    async fn school_compliance(
        &self,
        revision: i64,
        filter: &TenantFilter,
    ) -> Result<Vec<SchoolCompliance>>;

    async fn rule_status_counts(
        &self,
        revision: i64,
        filter: &TenantFilter,
        county_id: Option<&str>,
        school_id: Option<&str>,
    ) -> Result<Vec<RuleStatusCount>>;

    /// Devices per rule and result in each school (one query for a
    /// report over many schools), only tenants the filter admits.
    async fn rule_status_counts_by_school(
        &self,
        revision: i64,
        filter: &TenantFilter,
        county_id: Option<&str>,
    ) -> Result<Vec<SchoolRuleStatusCount>>;

    async fn failing_devices(
        &self,
        revision: i64,
        rule_id: &str,
        filter: &TenantFilter,
        county_id: Option<&str>,
        school_id: Option<&str>,
    ) -> Result<Vec<FailingDeviceRecord>>;

    /// Failing devices per rule and reason text under one revision, for
    /// every rule in one query (only devices the filter reads).
    async fn failure_reason_counts(
        &self,
        revision: i64,
        filter: &TenantFilter,
        county_id: Option<&str>,
    ) -> Result<Vec<RuleReasonCount>>;

    /// Devices with a waived result whose waiver has expired by `now`.
    async fn devices_with_expired_waivers(&self, revision: i64, now: Millis)
    -> Result<Vec<String>>;

    async fn upsert_compliance_snapshot(
        &self,
        day: &str,
        revision: i64,
        rows: &[SchoolCompliance],
    ) -> Result<()>;

    async fn compliance_snapshot(&self, day: &str) -> Result<Vec<SchoolCompliance>>;

    /// The daily snapshots of the days `from..=to` (`YYYY-MM-DD`) in one
    /// query, by day, county and school (trend charts, quarterly reports).
    async fn compliance_snapshots_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<DailySchoolCompliance>>;

    /// The ticket an `auto_ticket` rule opened for this device, if any.
    async fn compliance_ticket(&self, device_id: &str, rule_id: &str) -> Result<Option<String>>;

    /// Records that ticket; false when one was recorded meanwhile.
    async fn insert_compliance_ticket(
        &self,
        device_id: &str,
        rule_id: &str,
        ticket_id: &str,
    ) -> Result<bool>;
}

macro_rules! impl_compliance_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::ComplianceStore for $store {
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
                .fetch_one(&self.writer)
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
                    "SELECT d.id, d.hostname, d.county_id, d.school_id, d.device_class, \
                     d.inventory_at, d.inventory_confirmed_at, i.inventory FROM devices d \
                     LEFT JOIN device_inventories i ON i.device_id = d.id \
                     WHERE d.status = 'active' AND d.id > $1 ORDER BY d.id LIMIT $2",
                )
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn get_device_inventory(&self, device_id: &str) -> Result<Option<DeviceInventoryRow>> {
                Ok(sqlx::query_as(
                    "SELECT d.id, d.hostname, d.county_id, d.school_id, d.device_class, \
                     d.inventory_at, d.inventory_confirmed_at, i.inventory FROM devices d \
                     LEFT JOIN device_inventories i ON i.device_id = d.id \
                     WHERE d.status = 'active' AND d.id = $1",
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
                let mut tx = self.begin_write().await?;
                for (device_id, rows) in results {
                    sql::write_device_results!(tx, device_id, revision, rows);
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

            async fn rule_status_counts_by_school(
                &self,
                revision: i64,
                filter: &TenantFilter,
                county_id: Option<&str>,
            ) -> Result<Vec<SchoolRuleStatusCount>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT d.county_id, d.school_id, r.rule_id, r.status, COUNT(*) AS devices \
                     FROM compliance_results r JOIN devices d ON d.id = r.device_id \
                     WHERE d.status = 'active' AND r.revision = ",
                );
                qb.push_bind(revision);
                sql::push_tenant_filter!(qb, filter, "d");
                if let Some(county) = county_id {
                    qb.push(" AND d.county_id = ").push_bind(county.to_owned());
                }
                qb.push(
                    " GROUP BY d.county_id, d.school_id, r.rule_id, r.status \
                     ORDER BY d.county_id, d.school_id, r.rule_id, r.status",
                );
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

            async fn failure_reason_counts(
                &self,
                revision: i64,
                filter: &TenantFilter,
                county_id: Option<&str>,
            ) -> Result<Vec<RuleReasonCount>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT r.rule_id, r.reason, COUNT(*) AS devices \
                     FROM compliance_results r JOIN devices d ON d.id = r.device_id \
                     WHERE d.status = 'active' AND r.status = 'fail' AND r.revision = ",
                );
                qb.push_bind(revision);
                sql::push_tenant_filter!(qb, filter, "d");
                if let Some(county) = county_id {
                    qb.push(" AND d.county_id = ").push_bind(county.to_owned());
                }
                qb.push(" GROUP BY r.rule_id, r.reason ORDER BY r.rule_id, r.reason");
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
                let mut tx = self.begin_write().await?;
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
                .execute(&self.writer)
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

            async fn compliance_snapshots_between(
                &self,
                from: &str,
                to: &str,
            ) -> Result<Vec<DailySchoolCompliance>> {
                Ok(sqlx::query_as(
                    "SELECT day, county_id, school_id, devices, compliant FROM compliance_snapshots \
                     WHERE day >= $1 AND day <= $2 ORDER BY day, county_id, school_id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

impl_compliance_store!(SqliteStore, sqlx::Sqlite);
impl_compliance_store!(PgStore, sqlx::Postgres);
