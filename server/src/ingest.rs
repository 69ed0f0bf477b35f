//! Ingesting one inventory report from an agent.
//!
//! Every field is hostile until proven otherwise: the report is decoded on
//! its own (a malformed one fails alone, not the stream), checked against
//! the limits, cleaned of control characters, compared with the current
//! inventory, and stored once per report id.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prost::Message;
use schoolfleet_proto::v1::{Inventory, InventoryReport, ReportAck};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::api::AppState;
use crate::inventory::{Programs, diff, stored, validate};
use crate::limits::Limited;
use crate::storage::{
    DeviceInventoryRow, DeviceRecord, DeviceSummary, EvaluatedResults, IngestOutcome, IngestReport,
    InventoryChangeRecord, Millis, SoftwareList, StorageError, StoredInventory, UnchangedReport,
    now_millis,
};

/// Reports claiming to be from further in the future than this are
/// refused; nearer future times are clamped to the receiving time.
const MAX_CLOCK_SKEW_MS: i64 = 24 * 3600 * 1000;

/// How many reports are decoded, stored and evaluated at once, and how
/// many may wait for their turn.
///
/// At a school morning thousands of agents send their boot report
/// together. A report waiting here holds its encoded bytes; beyond
/// `limits.ingest_queue_bytes` of them the report is not kept but answered
/// with `retry` and a time to send it again, spread over how long the
/// backlog takes to drain. The agent keeps it in its spool, so the
/// server's memory stays bounded however many arrive at once.
#[derive(Debug, Default)]
pub struct IngestGate {
    permits: OnceLock<Semaphore>,
    /// Encoded bytes of the reports waiting for a turn, and of those
    /// promised room (an offer answered "send it").
    waiting_bytes: AtomicUsize,
    pace: Mutex<Pace>,
    /// Room promised to offered reports, by device (one each).
    promises: Mutex<Promises>,
}

/// Offered reports answered "send it", until they arrive or lapse.
#[derive(Debug, Default)]
struct Promises {
    by_device: std::collections::HashMap<String, Promise>,
    swept: Option<Instant>,
}

#[derive(Debug)]
struct Promise {
    report_id: String,
    bytes: usize,
    until: Instant,
}

/// How long room promised to an offered report is kept.
const PROMISE_KEPT: Duration = Duration::from_secs(120);

/// The answer of the gate.
pub enum Turn<'a> {
    /// Decode and store now; the turn ends when this is dropped.
    Go(Admitted<'a>),
    /// The backlog is full: send the report again after this time.
    Later(Duration),
}

/// A report's turn at the gate. How long turns take tells the gate how
/// fast it drains (turns at once ÷ time per turn, Little's law), which
/// spreads deferred reports over the time the backlog really needs.
pub struct Admitted<'a> {
    _permit: SemaphorePermit<'a>,
    gate: &'a IngestGate,
    started: Instant,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        let mut pace = self.gate.pace();
        pace.turn_seconds = if pace.turn_seconds > 0.0 {
            0.9 * pace.turn_seconds + 0.1 * took
        } else {
            took
        };
    }
}

/// Deferrals in the current and the last minute, and how long a turn
/// takes (moving average).
#[derive(Debug, Default)]
struct Pace {
    started: Option<Instant>,
    deferred: u64,
    last_deferred: u64,
    turn_seconds: f64,
}

impl Pace {
    const WINDOW: Duration = Duration::from_secs(60);

    fn roll(&mut self, now: Instant) {
        match self.started {
            Some(started) if now.duration_since(started) < Self::WINDOW => {}
            Some(started) if now.duration_since(started) < 2 * Self::WINDOW => {
                self.last_deferred = std::mem::take(&mut self.deferred);
                self.started = Some(started + Self::WINDOW);
            }
            _ => {
                self.started = Some(now);
                self.deferred = 0;
                self.last_deferred = 0;
            }
        }
    }

    /// The window a deferred report is sent again in: how long the
    /// reports deferred lately take to go through `turns` at a time, but
    /// no longer than a minute unless their offers would then come back
    /// faster than [`RESEND_OFFERS_PER_SECOND`].
    ///
    /// A report that comes back too early costs one offer (a hash compared,
    /// no inventory sent); one that comes back too late leaves the gate
    /// idle. The time per turn may date from before the storm, and the
    /// deferrals of the last minutes count a report deferred twice twice,
    /// so the backlog's time can come out far too long: at 10,000 agents
    /// the server stood partly idle from the first minute of a storm on
    /// while most reports waited (BENCHMARKS.md).
    fn spread(&self, turns: usize) -> Duration {
        let per_second = turns.max(1) as f64 / self.turn_seconds.max(0.001);
        let deferred = (self.deferred + self.last_deferred) as f64;
        let backlog = deferred / per_second;
        let offers_budget = (deferred / RESEND_OFFERS_PER_SECOND).max(SPREAD_WITHIN_BUDGET);
        Duration::from_secs_f64(
            backlog
                .min(offers_budget)
                .min(RETRY_AFTER_MAX.as_secs_f64()),
        )
    }
}

/// Deferred reports come back within this many seconds of their shortest
/// wait while their offers stay within [`RESEND_OFFERS_PER_SECOND`].
const SPREAD_WITHIN_BUDGET: f64 = 60.0;
/// Offers of deferred reports coming back, per second, that the spread
/// allows for (each is a hash compared and one small message each way).
const RESEND_OFFERS_PER_SECOND: f64 = 200.0;

/// Shortest and longest time a deferred report is told to wait.
const RETRY_AFTER_MIN: Duration = Duration::from_secs(5);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(15 * 60);

impl IngestGate {
    /// Waits for a turn for a report of `report_bytes`, or answers
    /// [`Turn::Later`] when the waiting reports already hold `queue_bytes`.
    /// `None`: bytes already counted (a promised report, an offer), so it
    /// waits for its turn whatever the backlog. `configured` is
    /// `limits.ingest_concurrency` (0: twice the cores); it is read once, on
    /// first use. The first report in line always waits, whatever its size.
    pub async fn enter(
        &self,
        configured: usize,
        queue_bytes: usize,
        report_bytes: Option<usize>,
    ) -> Turn<'_> {
        let permits = self
            .permits
            .get_or_init(|| Semaphore::new(Self::size(configured)));
        let admitted = |permit| {
            Turn::Go(Admitted {
                _permit: permit,
                gate: self,
                started: Instant::now(),
            })
        };
        if let Ok(permit) = permits.try_acquire() {
            return admitted(permit);
        }
        let counted = report_bytes.unwrap_or(0);
        let before = self.waiting_bytes.fetch_add(counted, Ordering::AcqRel);
        let waiting = Waiting {
            bytes: &self.waiting_bytes,
            report_bytes: counted,
        };
        if report_bytes.is_some() && before > 0 && before.saturating_add(counted) > queue_bytes {
            drop(waiting);
            return Turn::Later(self.defer(Self::size(configured)));
        }
        let permit = permits.acquire().await;
        drop(waiting);
        match permit {
            Ok(permit) => admitted(permit),
            // Never closed; a closed gate would let nothing through.
            Err(_) => Turn::Later(RETRY_AFTER_MIN),
        }
    }

    /// Promises room for the inventory of an offered report when the
    /// backlog has it; false when it is full (the offer is deferred). A
    /// device's newer offer replaces its older promise; lapsed promises give
    /// their room back.
    pub fn promise(
        &self,
        device_id: &str,
        report_id: &str,
        bytes: usize,
        queue_bytes: usize,
    ) -> bool {
        let now = Instant::now();
        let mut promises = self.promises.lock().unwrap_or_else(|e| e.into_inner());
        if promises
            .swept
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            promises.swept = Some(now);
            promises.by_device.retain(|_, p| {
                let keep = p.until > now;
                if !keep {
                    self.waiting_bytes.fetch_sub(p.bytes, Ordering::AcqRel);
                }
                keep
            });
        }
        if let Some(old) = promises.by_device.remove(device_id) {
            self.waiting_bytes.fetch_sub(old.bytes, Ordering::AcqRel);
        }
        let before = self.waiting_bytes.load(Ordering::Acquire);
        if before > 0 && before.saturating_add(bytes) > queue_bytes {
            return false;
        }
        self.waiting_bytes.fetch_add(bytes, Ordering::AcqRel);
        promises.by_device.insert(
            device_id.to_owned(),
            Promise {
                report_id: report_id.to_owned(),
                bytes,
                until: now + PROMISE_KEPT,
            },
        );
        true
    }

    /// Whether room was promised to this report of this device.
    pub fn is_promised(&self, device_id: &str, report_id: &str) -> bool {
        let promises = self.promises.lock().unwrap_or_else(|e| e.into_inner());
        promises
            .by_device
            .get(device_id)
            .is_some_and(|p| p.report_id == report_id)
    }

    /// Takes the promise of this report: its room stays counted until the
    /// returned guard is dropped (the report is stored or refused).
    fn redeem(&self, device_id: &str, report_id: &str) -> Option<Waiting<'_>> {
        let mut promises = self.promises.lock().unwrap_or_else(|e| e.into_inner());
        if promises
            .by_device
            .get(device_id)
            .is_none_or(|p| p.report_id != report_id)
        {
            return None;
        }
        let promise = promises.by_device.remove(device_id)?;
        Some(Waiting {
            bytes: &self.waiting_bytes,
            report_bytes: promise.bytes,
        })
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.pace.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn defer(&self, turns: usize) -> Duration {
        let spread = {
            let mut pace = self.pace();
            pace.roll(Instant::now());
            pace.deferred += 1;
            pace.spread(turns)
        };
        let spread = spread.min(RETRY_AFTER_MAX - RETRY_AFTER_MIN);
        RETRY_AFTER_MIN + spread.mul_f64(rand::random::<f64>())
    }

    /// The number of reports let through at once.
    pub fn size(configured: usize) -> usize {
        if configured > 0 {
            configured
        } else {
            2 * std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Turns free right now (for tests and metrics); `None` before first use.
    pub fn available(&self) -> Option<usize> {
        self.permits.get().map(Semaphore::available_permits)
    }

    /// Encoded bytes of the reports waiting right now.
    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes.load(Ordering::Acquire)
    }
}

/// A report's bytes counted as waiting until it has its turn, gives up, or
/// its stream ends.
struct Waiting<'a> {
    bytes: &'a AtomicUsize,
    report_bytes: usize,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.bytes.fetch_sub(self.report_bytes, Ordering::AcqRel);
    }
}

/// The backlog is full: the agent keeps the report and sends it again
/// after the time given.
fn deferred(report_id: String, after: Duration) -> ReportAck {
    let seconds = after.as_secs().max(1);
    ReportAck {
        report_id,
        duplicate: false,
        error: format!("server busy with other inventory reports; send again in {seconds} s"),
        warnings: Vec::new(),
        retry: true,
        retry_after_seconds: u32::try_from(seconds).unwrap_or(u32::MAX),
        send_inventory: false,
    }
}

/// The report is refused for good: resending it cannot help.
fn rejected(report_id: String, error: String) -> ReportAck {
    ReportAck {
        report_id,
        duplicate: false,
        error,
        warnings: Vec::new(),
        retry: false,
        retry_after_seconds: 0,
        send_inventory: false,
    }
}

/// The server could not store the report now; the agent keeps it.
fn retry_later(report_id: String) -> ReportAck {
    ReportAck {
        report_id,
        duplicate: false,
        error: "server storage unavailable; will retry".into(),
        warnings: Vec::new(),
        retry: true,
        retry_after_seconds: 0,
        send_inventory: false,
    }
}

/// The device sent more reports than its share: the agent keeps the
/// report and sends it again later (`retry`), after the time given.
pub fn rate_limited(report_id: String, per_hour: u32, limited: Limited) -> ReportAck {
    ReportAck {
        report_id: schoolfleet_proto::text::clean(&report_id, 64).value,
        duplicate: false,
        error: format!(
            "RESOURCE_EXHAUSTED: at most {per_hour} inventory reports per hour from one device; \
             try again in {} s",
            limited.seconds()
        ),
        warnings: Vec::new(),
        retry: true,
        retry_after_seconds: limited.seconds().try_into().unwrap_or(u32::MAX),
        send_inventory: false,
    }
}

/// The changes as the store keeps them: the first `max - 1` and, when there
/// are more, one row that says how many were left out, so one report
/// cannot write without bound. Records are made for the kept ones only (a
/// report that updates every program finds thousands).
fn change_records(
    changes: Vec<diff::Change>,
    max: usize,
    report_id: &str,
    at: Millis,
) -> Vec<InventoryChangeRecord> {
    let total = changes.len();
    let kept = if total <= max || max == 0 {
        total
    } else {
        max - 1
    };
    let record = |kind: &str, subject, old_value, new_value| InventoryChangeRecord {
        report_id: report_id.to_owned(),
        at,
        kind: kind.to_owned(),
        subject,
        old_value,
        new_value,
    };
    let mut records: Vec<_> = changes
        .into_iter()
        .take(kept)
        .map(|c| record(c.kind.as_str(), c.subject, c.old_value, c.new_value))
        .collect();
    if kept < total {
        records.push(record(
            CHANGES_TRUNCATED,
            String::new(),
            String::new(),
            format!(
                "{} further changes in this report were not stored",
                total - kept
            ),
        ));
    }
    records
}

/// `kind` of the summary row that stands for changes left out.
pub const CHANGES_TRUNCATED: &str = "changes_truncated";

/// A report as it arrives from a device, on its stream or by
/// `SubmitInventory`: counted against the device's share first (a refused
/// report costs nothing), then ingested.
pub async fn receive(
    state: &AppState,
    device: &DeviceRecord,
    report: InventoryReport,
) -> ReportAck {
    // A report whose offer was answered "send it" was counted at its offer.
    let promised = state.ingest.is_promised(&device.id, &report.report_id);
    let counted = if promised {
        Ok(())
    } else {
        state.device_limits.reports.check(&device.id)
    };
    match counted {
        Ok(()) if report.inventory.is_empty() && report.inventory_size > 0 => {
            offer(state, device, report).await
        }
        Ok(()) => ingest_report(state, device, report).await,
        Err(limited) => {
            tracing::warn!(device = %device.id, "inventory reports over the rate limit");
            rate_limited(
                report.report_id,
                state.config.limits.device_reports_per_hour,
                limited,
            )
        }
    }
}

/// What every report carries besides its inventory, checked: the content
/// hash (lower case) and the collection time; or the refusal.
struct Header {
    content_hash: String,
    collected_at: Millis,
    now: Millis,
}

fn header(report_id: &str, report: &InventoryReport) -> Result<Header, ReportAck> {
    let refuse = |why: &str| Err(rejected(report_id.to_owned(), why.to_owned()));
    if uuid::Uuid::parse_str(report_id).is_err() {
        return refuse("report id must be a UUID");
    }
    let content_hash = report.content_hash.to_ascii_lowercase();
    if content_hash.len() != 64 || !content_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return refuse("content hash must be 64 hex digits (SHA-256)");
    }
    let now = now_millis();
    let collected_at =
        match schoolfleet_proto::time::opt_from_timestamp(report.collected_at.as_ref()) {
            // A clock slightly ahead is clamped to now, so a future date
            // cannot freeze the current inventory; far ahead is refused.
            Some(t) if t.timestamp_millis() <= now + MAX_CLOCK_SKEW_MS => {
                t.timestamp_millis().min(now)
            }
            Some(_) => return refuse("collection time lies in the future"),
            None => return refuse("collection time missing or invalid"),
        };
    Ok(Header {
        content_hash,
        collected_at,
        now,
    })
}

/// An offered report (no inventory yet, only its size): stored at once
/// when the device's current inventory has its content, else answered
/// "send it" when the backlog has room for its inventory, else "later".
async fn offer(state: &AppState, device: &DeviceRecord, report: InventoryReport) -> ReportAck {
    let report_id = schoolfleet_proto::text::clean(&report.report_id, 64).value;
    let limits = &state.config.limits;
    let header = match header(&report_id, &report) {
        Ok(header) => header,
        Err(refused) => return refused,
    };
    let size = usize::try_from(report.inventory_size).unwrap_or(usize::MAX);
    if size > limits.max_message_bytes {
        return rejected(
            report_id,
            format!(
                "inventory of {} bytes offered; at most {} are taken",
                report.inventory_size, limits.max_message_bytes
            ),
        );
    }
    // Compared by hash and time only: a changed report's offer takes no
    // turn at the gate (the turns are the full reports'), and nothing of
    // the stored inventory is read for it.
    let version = match state.store.inventory_version(&device.id).await {
        Ok(version) => version,
        Err(err) => {
            tracing::error!(device = %device.id, error = %err, "cannot load current inventory");
            return retry_later(report_id);
        }
    };
    let unchanged = version.is_some_and(|current| {
        current.content_hash == header.content_hash && current.collected_at <= header.collected_at
    });
    if unchanged {
        // Stored from the offer alone: it holds no inventory, so it waits
        // for a turn whatever the backlog.
        let Turn::Go(_turn) = state
            .ingest
            .enter(limits.ingest_concurrency, limits.ingest_queue_bytes, None)
            .await
        else {
            return retry_later(report_id);
        };
        let unchanged = UnchangedReport {
            device_id: device.id.clone(),
            report_id: report_id.clone(),
            collected_at: header.collected_at,
            received_at: header.now,
            content_hash: header.content_hash.clone(),
            reason: schoolfleet_proto::text::clean(&report.reason, 32).value,
        };
        // `ingest_unchanged_report` checks hash and time again as it
        // writes; the inventory is read only to judge the device again.
        if let Some(ack) = store_unchanged(state, device, &unchanged, None).await {
            return ack;
        }
    }
    if state
        .ingest
        .promise(&device.id, &report_id, size, limits.ingest_queue_bytes)
    {
        ReportAck {
            report_id,
            send_inventory: true,
            ..Default::default()
        }
    } else {
        let after = state
            .ingest
            .defer(IngestGate::size(limits.ingest_concurrency));
        deferred(report_id, after)
    }
}

pub async fn ingest_report(
    state: &AppState,
    device: &DeviceRecord,
    report: InventoryReport,
) -> ReportAck {
    let report_id = schoolfleet_proto::text::clean(&report.report_id, 64).value;
    let limits = &state.config.limits;
    // A report whose offer was answered "send it" has its room counted
    // (until `_promised` drops); any other counts its bytes now.
    let _promised = state.ingest.redeem(&device.id, &report_id);
    let counted = _promised.is_none().then(|| report.encoded_len());
    // Held until the report is stored and evaluated.
    let _turn = match state
        .ingest
        .enter(
            limits.ingest_concurrency,
            limits.ingest_queue_bytes,
            counted,
        )
        .await
    {
        Turn::Go(turn) => turn,
        Turn::Later(after) => {
            tracing::debug!(device = %device.id, report = %report_id, retry_after = ?after, "inventory backlog full; report deferred");
            return deferred(report_id, after);
        }
    };
    let Header {
        content_hash,
        collected_at,
        now,
    } = match header(&report_id, &report) {
        Ok(header) => header,
        Err(refused) => return refused,
    };
    let stored = match state.store.get_inventory(&device.id).await {
        Ok(stored) => stored,
        Err(err) => {
            tracing::error!(device = %device.id, error = %err, "cannot load current inventory");
            return retry_later(report_id);
        }
    };
    let reason = schoolfleet_proto::text::clean(&report.reason, 32).value;
    // A reboot sends the same inventory again: with the same content hash
    // there is nothing to decode, compare or rewrite (the hash is the
    // agent's, like every other field; a device lying about it only keeps
    // its own inventory from moving).
    if let Some(current) = &stored
        && current.content_hash == content_hash
        && current.collected_at <= collected_at
    {
        let unchanged = UnchangedReport {
            device_id: device.id.clone(),
            report_id: report_id.clone(),
            collected_at,
            received_at: now,
            content_hash: content_hash.clone(),
            reason: reason.clone(),
        };
        if let Some(ack) = store_unchanged(state, device, &unchanged, Some(current)).await {
            return ack;
        }
    }
    let limits = validate::InventoryLimits {
        max_software: state.config.limits.max_software_packages,
        max_string_bytes: state.config.limits.max_string_bytes,
        ..Default::default()
    };
    let mut inventory = match validate::decode(&report.inventory) {
        Ok(inventory) => inventory,
        Err(err) => return rejected(report_id, err.to_string()),
    };
    let warnings = match validate::sanitize(&mut inventory, &limits) {
        Ok(warnings) => warnings,
        Err(err) => return rejected(report_id, err.to_string()),
    };
    if !warnings.is_empty() {
        tracing::warn!(device = %device.id, report = %report_id, count = warnings.len(), "inventory values neutralised");
    }

    // Only a report newer than the current inventory is compared: an old
    // spooled report must not produce "changes" backwards in time. The
    // stored inventory's programs are compared where they lie, uncopied.
    let (previous, newest) = match &stored {
        None => (None, true),
        Some(s) if s.collected_at <= collected_at => (stored::read(&s.inventory).ok(), true),
        Some(_) => (None, false),
    };
    let programs = Programs::of(&inventory.software);
    let changes = if newest {
        let old = previous.as_ref().map(|p| diff::Side {
            inventory: &p.inventory,
            programs: &p.programs,
        });
        let new = diff::Side {
            inventory: &inventory,
            programs: &programs,
        };
        let mut found = diff::diff_sides(old, new);
        found.retain(|c| crate::retention::keep_change(&state.config, device, c.kind));
        change_records(
            found,
            state.config.limits.max_changes_per_report,
            &report_id,
            collected_at,
        )
    } else {
        Vec::new()
    };
    let software = SoftwareList::new(&programs);
    // The stored inventory is not needed past the comparison: its memory
    // is given back before the report waits for the writer.
    drop(previous);
    drop(stored);

    let ingest = IngestReport {
        device_id: device.id.clone(),
        report_id: report_id.clone(),
        collected_at,
        received_at: now,
        content_hash,
        reason,
        summary: summary(&inventory),
        software,
        inventory: inventory.encode_to_vec(),
        changes,
    };
    // A report that becomes the current inventory is judged against the
    // standard now, on the inventory in hand, and its results are stored
    // in the report's own transaction.
    let standard = if newest {
        applied_standard(state, device).await
    } else {
        None
    };
    let judged = standard.map(|standard| {
        judge(
            standard,
            device,
            &ingest.summary.hostname,
            collected_at,
            &inventory,
        )
    });
    let results = judged.as_ref().map(|(_, _, results)| results);
    let stored = state.store.ingest_evaluated_report(&ingest, results).await;
    acknowledge(state, device, report_id, stored, judged, warnings).await
}

/// Stores a report whose content the device's current inventory already
/// has, judged again at the report's time. `None` when the current
/// inventory changed meanwhile: the report is then stored in full.
/// `current` is the device's current inventory where the caller has read
/// it; it is read here only when a standard is applied (without one there
/// is nothing to judge, and a morning brings thousands of these reports).
async fn store_unchanged(
    state: &AppState,
    device: &DeviceRecord,
    report: &UnchangedReport,
    current: Option<&StoredInventory>,
) -> Option<ReportAck> {
    let judged = match applied_standard(state, device).await {
        None => None,
        Some(standard) => {
            let loaded;
            let current = match current {
                Some(current) => current,
                None => {
                    loaded = match state.store.get_inventory(&device.id).await {
                        Ok(loaded) => loaded?,
                        Err(err) => {
                            tracing::error!(device = %device.id, error = %err, "cannot load current inventory");
                            return Some(retry_later(report.report_id.clone()));
                        }
                    };
                    &loaded
                }
            };
            let inventory = Inventory::decode(current.inventory.as_slice()).ok()?;
            let hostname = inventory
                .system
                .as_ref()
                .map_or("", |s| s.hostname.as_str());
            Some(judge(
                standard,
                device,
                hostname,
                report.collected_at,
                &inventory,
            ))
        }
    };
    let results = judged.as_ref().map(|(_, _, results)| results);
    let stored = match state.store.ingest_unchanged_report(report, results).await {
        Ok(None) => return None,
        Ok(Some(outcome)) => Ok(outcome),
        Err(err) => Err(err),
    };
    Some(
        acknowledge(
            state,
            device,
            report.report_id.clone(),
            stored,
            judged,
            Vec::new(),
        )
        .await,
    )
}

/// The answer to a report once the store has taken it (or failed to);
/// tickets of `auto_ticket` rules follow the stored results.
async fn acknowledge(
    state: &AppState,
    device: &DeviceRecord,
    report_id: String,
    stored: Result<IngestOutcome, StorageError>,
    judged: Option<Judged>,
    warnings: Vec<String>,
) -> ReportAck {
    match stored {
        Ok(outcome) => {
            tracing::debug!(device = %device.id, report = %report_id, ?outcome, "inventory report stored");
            if outcome == IngestOutcome::Stored
                && let Some((current, row, results)) = &judged
            {
                // A failure here must not fail the report, which is stored.
                if let Err(err) = crate::compliance::sync_tickets(
                    &state.store,
                    &current.standard,
                    row,
                    &results.results,
                    chrono::Utc::now(),
                )
                .await
                {
                    tracing::error!(device = %device.id, error = %err, "compliance tickets not updated");
                }
            }
            ReportAck {
                report_id,
                duplicate: outcome == IngestOutcome::Duplicate,
                error: String::new(),
                warnings,
                retry: false,
                retry_after_seconds: 0,
                send_inventory: false,
            }
        }
        Err(err) => {
            tracing::error!(device = %device.id, error = %err, "cannot store inventory report");
            retry_later(report_id)
        }
    }
}

/// A device judged against the latest standard: the standard, the device
/// row it was judged as, and its results.
type Judged = (
    crate::compliance::Current,
    DeviceInventoryRow,
    EvaluatedResults,
);

/// The latest standard, or `None` before one was applied (or when it
/// cannot be read: the next fleet evaluation catches up).
async fn applied_standard(
    state: &AppState,
    device: &DeviceRecord,
) -> Option<crate::compliance::Current> {
    match state.compliance.standard(&state.store, None).await {
        Ok(current) => current,
        Err(err) => {
            tracing::error!(device = %device.id, error = %err, "compliance evaluation failed");
            None
        }
    }
}

/// The device judged on an inventory against `current`.
fn judge(
    current: crate::compliance::Current,
    device: &DeviceRecord,
    hostname: &str,
    collected_at: Millis,
    inventory: &Inventory,
) -> Judged {
    // The device as the store holds it once this report is stored.
    let row = DeviceInventoryRow {
        id: device.id.clone(),
        hostname: hostname.to_owned(),
        county_id: device.county_id.clone(),
        school_id: device.school_id.clone(),
        device_class: device.device_class.clone(),
        inventory_at: Some(collected_at),
        inventory_confirmed_at: None,
        inventory: None,
    };
    let results = crate::compliance::evaluate_inventory(
        &current.standard,
        &row,
        Some(inventory),
        chrono::Utc::now(),
    );
    let results = EvaluatedResults {
        revision: current.revision,
        results,
    };
    (current, row, results)
}

fn summary(inventory: &Inventory) -> DeviceSummary {
    let system = inventory.system.clone().unwrap_or_default();
    let os = inventory.os.clone().unwrap_or_default();
    let hardware = inventory.hardware.clone().unwrap_or_default();
    let ips: Vec<&str> = inventory
        .network_interfaces
        .iter()
        .flat_map(|i| i.ip_addresses.iter().map(String::as_str))
        .filter(|ip| !ip.starts_with("fe80") && !ip.contains(' '))
        .collect();
    DeviceSummary {
        hostname: system.hostname,
        os_name: os.name,
        os_version: os.version,
        vendor: hardware.vendor,
        model: hardware.model,
        memory_total_bytes: i64::try_from(hardware.memory_total_bytes).unwrap_or(i64::MAX),
        ip_addresses: ips.join(" "),
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;

    /// Deferred reports are spread over the time the gate needs for them:
    /// 4 turns of 20 ms each drain 200 reports a second, so 1,000 deferred
    /// take 5 s. A slower gate would need 50 s for them at 20 per second,
    /// or 500 s for 10,000, but the spread stays within a minute unless
    /// the offers coming back would exceed 200 a second (10,000 in 50 s:
    /// a minute; 100,000: 500 s); never longer than the longest wait.
    #[test]
    fn deferred_reports_are_spread_over_the_time_the_gate_needs() {
        let pace = Pace {
            started: Some(Instant::now()),
            deferred: 600,
            last_deferred: 400,
            turn_seconds: 0.020,
        };
        let spread = pace.spread(4).as_secs_f64();
        assert!((spread - 5.0).abs() < 1e-6, "{spread}");
        let flood = Pace {
            deferred: 10_000_000,
            ..pace
        };
        assert_eq!(flood.spread(4), RETRY_AFTER_MAX);
        let slow = Pace {
            turn_seconds: 0.2,
            ..pace
        };
        assert!((slow.spread(4).as_secs_f64() - 50.0).abs() < 1e-6);
        let backlog = |deferred| Pace {
            deferred,
            last_deferred: 0,
            ..slow
        };
        assert_eq!(backlog(10_000).spread(4), Duration::from_secs(60));
        assert_eq!(backlog(100_000).spread(4), Duration::from_secs(500));
    }
}
