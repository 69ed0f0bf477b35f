//! Evaluating devices against the common IT standard.
//!
//! A device is evaluated when its inventory changes (after ingest), when a
//! new standard version is applied (the whole fleet, in batches), and when a
//! waiver expires (the sweeper). Results are stored per standard revision.
//! The compiled standard is cached per replica and keyed by revision, so a
//! replica notices a version applied elsewhere at its next evaluation.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prost::Message;
use schoolfleet_proto::v1::Inventory;
use schoolfleet_standard::{CompiledStandard, DeviceFacts, Standard, Status, parallel};

use crate::storage::{
    ComplianceResultRecord, DeviceInventoryRow, Millis, NewTicket, StorageError, Store,
    TicketChange, TicketRecord, millis_to_datetime,
};

/// Devices read and written per batch during fleet evaluation.
const BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored standard revision {0} no longer compiles: {1}")]
    Corrupt(i64, String),
    /// The evaluation task was cancelled (the runtime is shutting down).
    #[error("evaluation interrupted")]
    Interrupted,
}

/// The compiled standard of one revision.
#[derive(Debug, Clone)]
pub struct Current {
    pub revision: i64,
    pub standard: Arc<CompiledStandard>,
}

#[derive(Debug, Default)]
pub struct ComplianceEngine {
    cache: Mutex<Vec<Current>>,
}

impl ComplianceEngine {
    /// The compiled standard of `revision` (`None`: the latest), or `None`
    /// when no standard was applied yet.
    pub async fn standard(
        &self,
        store: &Arc<dyn Store>,
        revision: Option<i64>,
    ) -> Result<Option<Current>, ComplianceError> {
        // Every changed inventory asks for the latest standard: look up the
        // revision number only, and read and compile the file on a miss.
        let wanted = match revision {
            Some(r) => r,
            None => match store.latest_standard_revision().await? {
                Some(r) => r,
                None => return Ok(None),
            },
        };
        if let Some(hit) = self.lock().iter().find(|c| c.revision == wanted) {
            return Ok(Some(hit.clone()));
        }
        let Some(record) = store.get_standard_version(Some(wanted)).await? else {
            return Ok(None);
        };
        let compiled = Standard::compile(&record.content).map_err(|errors| {
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            ComplianceError::Corrupt(record.revision, first)
        })?;
        let current = Current {
            revision: record.revision,
            standard: Arc::new(compiled),
        };
        let mut cache = self.lock();
        // Keep the few most recent revisions: reports of older ones are rare.
        cache.retain(|c| c.revision != current.revision);
        cache.push(current.clone());
        if cache.len() > 4 {
            cache.remove(0);
        }
        Ok(Some(current))
    }

    /// Evaluates one device against the latest standard and stores the
    /// results. Nothing happens before a standard was applied.
    pub async fn evaluate_device(
        &self,
        store: &Arc<dyn Store>,
        device_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ComplianceError> {
        let Some(current) = self.standard(store, None).await? else {
            return Ok(());
        };
        let Some(row) = store.get_device_inventory(device_id).await? else {
            return Ok(());
        };
        let results = evaluate_row(&current.standard, &row, now);
        sync_tickets(store, &current.standard, &row, &results, now).await?;
        store
            .replace_compliance_results(current.revision, &[(row.id.clone(), results)])
            .await?;
        Ok(())
    }

    /// Evaluates every active device against `current`, a batch at a time.
    /// Returns how many devices were evaluated.
    pub async fn evaluate_fleet(
        &self,
        store: &Arc<dyn Store>,
        current: &Current,
        now: DateTime<Utc>,
    ) -> Result<usize, ComplianceError> {
        let mut after = String::new();
        let mut evaluated = 0;
        loop {
            let rows = store.list_device_inventories(&after, BATCH).await?;
            let Some(last) = rows.last() else { break };
            after = last.id.clone();
            // Decoding and evaluation are CPU work: on the blocking pool,
            // spread over the cores, off the threads serving requests.
            let standard = current.standard.clone();
            let (rows, evaluated_rows) = tokio::task::spawn_blocking(move || {
                let results = evaluate_rows(&standard, &rows, now);
                (rows, results)
            })
            .await
            .map_err(|e| match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => ComplianceError::Interrupted,
            })?;
            let results: Vec<(String, Vec<ComplianceResultRecord>)> = rows
                .iter()
                .map(|row| row.id.clone())
                .zip(evaluated_rows)
                .collect();
            for (row, (_, device_results)) in rows.iter().zip(&results) {
                sync_tickets(store, &current.standard, row, device_results, now).await?;
            }
            store
                .replace_compliance_results(current.revision, &results)
                .await?;
            evaluated += rows.len();
        }
        Ok(evaluated)
    }

    /// Re-evaluates the devices whose waivers have expired by `now`, so an
    /// expired waiver stops applying by itself. Returns how many.
    pub async fn expire_waivers(
        &self,
        store: &Arc<dyn Store>,
        now: DateTime<Utc>,
    ) -> Result<usize, ComplianceError> {
        let Some(current) = self.standard(store, None).await? else {
            return Ok(0);
        };
        let devices = store
            .devices_with_expired_waivers(current.revision, now.timestamp_millis())
            .await?;
        for device_id in &devices {
            if let Some(row) = store.get_device_inventory(device_id).await? {
                let results = evaluate_row(&current.standard, &row, now);
                sync_tickets(store, &current.standard, &row, &results, now).await?;
                store
                    .replace_compliance_results(current.revision, &[(row.id.clone(), results)])
                    .await?;
            }
        }
        Ok(devices.len())
    }

    /// Once a day: re-evaluate the fleet (inventory ages move with time)
    /// and record the per-school counts for the trend.
    pub async fn daily_snapshot(
        &self,
        store: &Arc<dyn Store>,
        now: DateTime<Utc>,
    ) -> Result<bool, ComplianceError> {
        let day = now.format("%Y-%m-%d").to_string();
        if !store.compliance_snapshot(&day).await?.is_empty() {
            return Ok(false);
        }
        let Some(current) = self.standard(store, None).await? else {
            return Ok(false);
        };
        self.evaluate_fleet(store, &current, now).await?;
        let rows = store
            .school_compliance(
                current.revision,
                &crate::storage::TenantFilter::everything(),
            )
            .await?;
        store
            .upsert_compliance_snapshot(&day, current.revision, &rows)
            .await?;
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Current>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Devices per chunk a worker thread takes in [`evaluate_rows`].
const CHUNK: usize = 64;

/// Evaluates many device rows on all cores; results in the order of `rows`.
pub fn evaluate_rows(
    standard: &CompiledStandard,
    rows: &[DeviceInventoryRow],
    now: DateTime<Utc>,
) -> Vec<Vec<ComplianceResultRecord>> {
    parallel::map_chunks(rows, CHUNK, parallel::threads(), |chunk| {
        chunk
            .iter()
            .map(|row| evaluate_row(standard, row, now))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Evaluates one device row. A stored inventory that does not decode is
/// treated as missing (every rule then reports `unknown`, never `pass`).
pub fn evaluate_row(
    standard: &CompiledStandard,
    row: &DeviceInventoryRow,
    now: DateTime<Utc>,
) -> Vec<ComplianceResultRecord> {
    let inventory = row
        .inventory
        .as_deref()
        .and_then(|bytes| Inventory::decode(bytes).ok());
    evaluate_inventory(standard, row, inventory.as_ref(), now)
}

/// Evaluates one device with its inventory already decoded (ingest has it
/// in hand); `row.inventory` is not read.
pub fn evaluate_inventory(
    standard: &CompiledStandard,
    row: &DeviceInventoryRow,
    inventory: Option<&Inventory>,
    now: DateTime<Utc>,
) -> Vec<ComplianceResultRecord> {
    let seen: Option<Millis> = match (row.inventory_at, row.inventory_confirmed_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let facts = DeviceFacts {
        device_id: &row.id,
        hostname: &row.hostname,
        county_id: &row.county_id,
        school_id: &row.school_id,
        device_class: &row.device_class,
        inventory,
        inventory_at: seen.map(millis_to_datetime),
        now,
    };
    let evaluated_at = now.timestamp_millis();
    standard
        .evaluate(&facts)
        .into_iter()
        .map(|r| ComplianceResultRecord {
            rule_id: r.rule_id.to_owned(),
            status: r.status.as_str().to_owned(),
            counted: r.counted,
            expected: r.expected.to_owned(),
            actual: r.actual.into_owned(),
            reason: r.reason.into_owned(),
            waiver_expires_at: r
                .waiver_id
                .filter(|_| r.status == Status::Waived)
                .and_then(|id| standard.waiver_expires(id))
                .map(|t| t.timestamp_millis()),
            waiver_id: r.waiver_id.unwrap_or_default().to_owned(),
            evaluated_at,
        })
        .collect()
}

/// Opens, reopens or resolves the service-desk tickets of `auto_ticket`
/// rules for one device: one ticket per device and rule, never duplicated.
/// These tickets fire no webhooks: applying a standard may open hundreds.
pub(crate) async fn sync_tickets(
    store: &Arc<dyn Store>,
    standard: &CompiledStandard,
    row: &DeviceInventoryRow,
    results: &[ComplianceResultRecord],
    now: DateTime<Utc>,
) -> Result<(), ComplianceError> {
    let auto: Vec<_> = standard.rules().iter().filter(|r| r.auto_ticket).collect();
    if auto.is_empty() {
        return Ok(());
    }
    let at = now.timestamp_millis();
    let open = store.open_tickets_for_device(&row.id).await?;
    let is_open = |id: &str| open.iter().any(|t| t.id == id);
    let change = |ticket_id: &str, status: &str, old: &str, body: String| TicketChange {
        ticket_id: ticket_id.to_owned(),
        at,
        actor: "compliance".into(),
        kind: "status".into(),
        body,
        old_value: old.into(),
        new_value: status.into(),
        set_status: Some(status.into()),
        ..Default::default()
    };
    for rule in auto {
        let Some(result) = results.iter().find(|r| r.rule_id == rule.id) else {
            continue;
        };
        let existing = store.compliance_ticket(&row.id, &rule.id).await?;
        match (result.status.as_str(), existing) {
            ("fail", None) => {
                let ticket = TicketRecord {
                    id: uuid::Uuid::now_v7().to_string(),
                    number: 0,
                    title: format!("{}: {} ({})", rule.id, rule.title, row.hostname),
                    description: format!(
                        "{}\n\n{}",
                        result.reason,
                        rule.remediation.clone().unwrap_or_default()
                    ),
                    status: "new".into(),
                    priority: "normal".into(),
                    category: "compliance".into(),
                    county_id: row.county_id.clone(),
                    school_id: Some(row.school_id.clone()),
                    assignee_id: None,
                    reporter: "compliance".into(),
                    created_at: at,
                    updated_at: at,
                    closed_at: None,
                };
                let created = store
                    .create_ticket(&NewTicket {
                        ticket,
                        device_ids: vec![row.id.clone()],
                        created_note: result.reason.clone(),
                        announce: None,
                    })
                    .await?;
                if !store
                    .insert_compliance_ticket(&row.id, &rule.id, &created.id)
                    .await?
                {
                    // Another replica opened one at the same moment: keep
                    // theirs, close ours.
                    let note = "duplicate of the ticket opened for this rule".to_owned();
                    store
                        .apply_ticket_change(&change(&created.id, "closed", "new", note))
                        .await?;
                }
            }
            ("fail", Some(id)) if !is_open(&id) => {
                let note = format!("{} fails again: {}", rule.id, result.reason);
                store
                    .apply_ticket_change(&change(&id, "open", "resolved", note))
                    .await?;
            }
            ("pass" | "waived" | "not_applicable", Some(id)) if is_open(&id) => {
                let note = format!("{} is {} now", rule.id, result.status);
                store
                    .apply_ticket_change(&change(&id, "resolved", "open", note))
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::{Hardware, OperatingSystem, SoftwarePackage};

    const STANDARD: &str = r#"
schema = "schoolfleet-standard/v1"
[standard]
id = "t"
version = "1"
[[rule]]
id = "RAM"
title = "RAM"
check = { type = "hardware_min", ram_gib = 8 }
[[rule]]
id = "SW"
title = "Kein uTorrent"
check = { type = "software_forbidden", name = "^(µ|u)Torrent" }
"#;

    fn row(i: usize) -> DeviceInventoryRow {
        let inventory = Inventory {
            os: Some(OperatingSystem {
                family: "windows".into(),
                ..Default::default()
            }),
            hardware: Some(Hardware {
                memory_total_bytes: (i as u64 % 16 + 1) << 30,
                ..Default::default()
            }),
            software: vec![SoftwarePackage {
                name: if i.is_multiple_of(3) {
                    "uTorrent"
                } else {
                    "LibreOffice"
                }
                .into(),
                version: format!("1.{i}"),
                ..Default::default()
            }],
            ..Default::default()
        };
        DeviceInventoryRow {
            id: format!("d{i:04}"),
            hostname: format!("host{i}"),
            county_id: "kus".into(),
            school_id: "kus012".into(),
            device_class: "schueler-pc".into(),
            inventory_at: Some(1_000),
            inventory_confirmed_at: None,
            inventory: Some(inventory.encode_to_vec()),
        }
    }

    #[test]
    fn parallel_fleet_evaluation_equals_one_device_at_a_time() {
        let standard = Standard::compile(STANDARD).unwrap();
        let rows: Vec<DeviceInventoryRow> = (0..301).map(row).collect();
        let now = millis_to_datetime(2_000);
        let serial: Vec<_> = rows
            .iter()
            .map(|r| evaluate_row(&standard, r, now))
            .collect();
        assert_eq!(evaluate_rows(&standard, &rows, now), serial);
        // The devices differ, so an order mix-up would show.
        assert_eq!(serial[3][1].status, "fail");
        assert_eq!(serial[3][1].actual, "uTorrent 1.3");
        assert_eq!(serial[4][1].status, "pass");
        assert_ne!(serial[1][0].actual, serial[2][0].actual);
    }
}
