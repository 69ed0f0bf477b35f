//! Records as the store keeps them. Times are Unix milliseconds (`Millis`).

use std::fmt;
use std::str::FromStr;

/// Unix time in milliseconds.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

pub fn millis_to_datetime(ms: Millis) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct County {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct School {
    pub id: String,
    pub county_id: String,
    pub name: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceClass {
    pub id: String,
    pub label: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    /// Home county (employer); `None` for the cooperation's own staff.
    pub county_id: Option<String>,
    pub created_at: Millis,
    pub bindings: Vec<RoleBindingRecord>,
}

/// One role binding as stored text: `technician` at `county:kus`, with the
/// remote-session capabilities it is limited to (`""` = all the role grants).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, sqlx::FromRow)]
pub struct RoleBindingRecord {
    pub role: String,
    pub scope: String,
    pub remote: String,
}

impl RoleBindingRecord {
    pub fn new(role: &str, scope: &str) -> Self {
        RoleBindingRecord {
            role: role.into(),
            scope: scope.into(),
            remote: String::new(),
        }
    }
}

/// An admin API token. Only the SHA-256 of its secret is stored.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiToken {
    pub id: String,
    pub user_id: String,
    pub secret_hash: String,
    pub description: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("secret_hash", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A one-time enrolment token, scoped to one school and one device class.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EnrollmentToken {
    pub id: String,
    pub secret_hash: String,
    pub county_id: String,
    pub school_id: String,
    pub device_class: String,
    pub description: String,
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: Millis,
    pub created_by: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    /// Set for a token that re-enrols exactly this device (a reinstall).
    pub reinstall_device_id: Option<String>,
}

impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentToken")
            .field("id", &self.id)
            .field("school_id", &self.school_id)
            .field("device_class", &self.device_class)
            .field("uses", &self.uses)
            .field("max_uses", &self.max_uses)
            .field("expires_at", &self.expires_at)
            .field("secret_hash", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl EnrollmentToken {
    /// Why this token cannot be used at `now`, if it cannot.
    pub fn unusable_reason(&self, now: Millis) -> Option<String> {
        if let Some(at) = self.revoked_at {
            return Some(format!("token was revoked at {}", millis_to_datetime(at)));
        }
        if self.expires_at <= now {
            return Some(format!(
                "token expired at {}",
                millis_to_datetime(self.expires_at)
            ));
        }
        if self.uses >= self.max_uses {
            return Some(format!(
                "token is used up ({} of {} uses)",
                self.uses, self.max_uses
            ));
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Active,
    Retired,
    Revoked,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Retired => "retired",
            DeviceStatus::Revoked => "revoked",
        }
    }
}

impl FromStr for DeviceStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(DeviceStatus::Active),
            "retired" => Ok(DeviceStatus::Retired),
            "revoked" => Ok(DeviceStatus::Revoked),
            other => Err(format!("unknown device status {other:?}")),
        }
    }
}

/// A device row without its (large) inventory blob.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceRecord {
    pub id: String,
    pub county_id: String,
    pub school_id: String,
    pub device_class: String,
    pub status: String,
    pub hostname: String,
    pub system_uuid: String,
    pub serial_number: String,
    /// Hashed OS machine id, the fallback identity (see agent.proto).
    pub machine_id: String,
    pub cert_fingerprint: Option<String>,
    pub cert_serial: Option<String>,
    pub cert_not_after: Option<Millis>,
    pub enrolled_at: Millis,
    pub last_seen: Option<Millis>,
    pub connected: bool,
    pub agent_version: String,
    /// The consent floor the agent reported at its last connect
    /// (`--consent-min`), checked to be a known mode; `None` when unknown.
    pub agent_consent_min: Option<String>,
    pub inventory_at: Option<Millis>,
    pub inventory_hash: Option<String>,
    pub os_name: String,
    pub os_version: String,
    pub vendor: String,
    pub model: String,
    pub memory_total_bytes: i64,
    pub ip_addresses: String,
}

impl DeviceRecord {
    pub fn status(&self) -> DeviceStatus {
        // Unknown text fails closed: treated as revoked.
        self.status.parse().unwrap_or(DeviceStatus::Revoked)
    }

    /// Online: connected, and seen within the window (a crashed replica
    /// cannot leave a device "online" forever).
    pub fn is_online(&self, now: Millis, online_window_ms: Millis) -> bool {
        self.connected
            && self
                .last_seen
                .is_some_and(|seen| now - seen <= online_window_ms)
    }
}

/// One agent stream, as the store records it: its id (unique across
/// replicas) and the replica that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentStream<'a> {
    pub id: &'a str,
    pub replica: &'a str,
}

/// What an agent says about itself when its stream opens (its Hello),
/// cleaned and checked by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentHello<'a> {
    pub version: &'a str,
    /// The consent floor it enforces; `None` when unknown.
    pub consent_min: Option<&'a str>,
}

/// That an agent's stream is alive: written for every stream open and
/// heartbeat, in groups (see `crate::heartbeats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSeen {
    pub device_id: String,
    pub at: Millis,
    pub stream_id: String,
    pub replica: String,
    /// From the agent's Hello: its version and consent floor. `None` (a
    /// heartbeat) keeps the stored ones.
    pub hello: Option<(String, Option<String>)>,
    /// From a heartbeat: the hash of the inventory the agent holds. When it
    /// is the stored inventory's, that inventory is confirmed current.
    pub inventory_hash: Option<String>,
}

impl AgentSeen {
    pub fn new(
        device_id: &str,
        at: Millis,
        stream: &AgentStream<'_>,
        hello: Option<&AgentHello<'_>>,
    ) -> Self {
        AgentSeen {
            device_id: device_id.to_owned(),
            at,
            stream_id: stream.id.to_owned(),
            replica: stream.replica.to_owned(),
            hello: hello.map(|h| (h.version.to_owned(), h.consent_min.map(str::to_owned))),
            inventory_hash: None,
        }
    }

    /// The agent says its inventory still has `content_hash`.
    pub fn confirming(mut self, content_hash: String) -> Self {
        self.inventory_hash = Some(content_hash);
        self
    }

    pub fn hello(&self) -> Option<AgentHello<'_>> {
        self.hello
            .as_ref()
            .map(|(version, consent_min)| AgentHello {
                version,
                consent_min: consent_min.as_deref(),
            })
    }
}

/// How an enrolling agent identifies its hardware. A system UUID that is
/// empty is not usable (placeholders are emptied by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardwareIdentity {
    pub system_uuid: String,
    pub serial_number: String,
    pub machine_id: String,
}

/// A device certificate as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub fingerprint: String,
    pub serial: String,
    pub not_after: Millis,
}

/// What the enrolment writes, in one transaction.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub token_id: String,
    pub now: Millis,
    pub device: DeviceRecord,
    /// True when `device.id` already exists (re-enrolment).
    pub existing: bool,
}

/// Which tenants a caller may see for one permission. Produced by the
/// authorisation layer; the store turns it into a WHERE clause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantFilter {
    pub all: bool,
    pub counties: Vec<String>,
    pub schools: Vec<String>,
}

impl TenantFilter {
    pub fn everything() -> Self {
        TenantFilter {
            all: true,
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.counties.is_empty() && self.schools.is_empty()
    }

    pub fn allows(&self, county_id: &str, school_id: Option<&str>) -> bool {
        self.all
            || self.counties.iter().any(|c| c == county_id)
            || school_id.is_some_and(|s| self.schools.iter().any(|x| x == s))
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeviceQuery {
    pub filter: TenantFilter,
    pub county_id: Option<String>,
    pub school_id: Option<String>,
    pub device_class: Option<String>,
    pub hostname_contains: Option<String>,
    /// `Some(true)`: only online; `Some(false)`: only offline.
    pub online: Option<bool>,
    pub online_window_ms: Millis,
    pub now: Millis,
    pub seen_after: Option<Millis>,
    pub not_seen_since: Option<Millis>,
    pub include_retired: bool,
    /// Keyset paging: rows strictly after (hostname, id).
    pub after: Option<(String, String)>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInventory {
    pub device_id: String,
    pub collected_at: Millis,
    pub content_hash: String,
    /// An encoded `schoolfleet.v1.Inventory`, already validated and cleaned.
    pub inventory: Vec<u8>,
}

/// Which inventory a device has now, without the inventory itself: what an
/// offered report is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryVersion {
    pub collected_at: Millis,
    pub content_hash: String,
}

/// One program, as a test or a caller without an inventory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareRow {
    pub source: String,
    pub name: String,
    pub architecture: String,
    pub version: String,
}

/// A device's programs as stored in `device_software.packages`: a JSON
/// array of `[source, name, architecture, version]`, sorted by that key,
/// each once (a report may list a package twice). The same programs give
/// the same text whatever order the agent listed them in, so the store can
/// skip rewriting an unchanged list by comparing texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareList(String);

/// No programs: an empty array, not an empty text.
impl Default for SoftwareList {
    fn default() -> Self {
        Self::new(&crate::inventory::Programs::default())
    }
}

impl SoftwareList {
    pub fn new(programs: &crate::inventory::Programs<'_>) -> Self {
        Self(super::sql::json_rows(programs.as_slice()))
    }

    /// From rows in any order, listed twice or not.
    pub fn from_rows(rows: &[SoftwareRow]) -> Self {
        Self::new(&crate::inventory::Programs::new(
            rows.iter()
                .map(|r| [&*r.source, &*r.name, &*r.architecture, &*r.version])
                .collect(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Summary columns of the device row, derived from the inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSummary {
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub vendor: String,
    pub model: String,
    pub memory_total_bytes: i64,
    pub ip_addresses: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub device_id: String,
    pub report_id: String,
    pub collected_at: Millis,
    pub received_at: Millis,
    pub content_hash: String,
    pub reason: String,
    pub inventory: Vec<u8>,
    pub summary: DeviceSummary,
    pub software: SoftwareList,
    pub changes: Vec<InventoryChangeRecord>,
}

/// A report whose content hash equals the stored inventory's: only the
/// report row and the inventory's collection time are written (a reboot
/// sends its unchanged inventory again; a school morning sends thousands).
#[derive(Debug, Clone)]
pub struct UnchangedReport {
    pub device_id: String,
    pub report_id: String,
    pub collected_at: Millis,
    pub received_at: Millis,
    pub content_hash: String,
    pub reason: String,
}

/// A device's results under one standard revision, judged on the report
/// they are stored with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluatedResults {
    pub revision: i64,
    pub results: Vec<ComplianceResultRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored, and it became the current inventory.
    Stored,
    /// Stored in the history, but an inventory collected later is current.
    StoredOlder,
    /// This report id was already stored; nothing changed.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReportSummary {
    pub report_id: String,
    pub collected_at: Millis,
    pub received_at: Millis,
    pub content_hash: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InventoryChangeRecord {
    pub report_id: String,
    pub at: Millis,
    pub kind: String,
    pub subject: String,
    pub old_value: String,
    pub new_value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SoftwareHitRecord {
    pub device_id: String,
    pub hostname: String,
    pub school_id: String,
    pub name: String,
    pub version: String,
    pub source: String,
}

/// One applied version of the common IT standard.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StandardVersionRecord {
    /// Assigned by the store, increasing.
    pub revision: i64,
    pub standard_id: String,
    pub version: String,
    pub content: String,
    pub rules: i64,
    pub waivers: i64,
    pub applied_by: String,
    pub applied_at: Millis,
}

/// The result of one rule for one device under one standard revision.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ComplianceResultRecord {
    pub rule_id: String,
    /// pass, fail, waived, not_applicable, unknown.
    pub status: String,
    /// Counts towards compliance (mode `pflicht`).
    pub counted: bool,
    pub expected: String,
    pub actual: String,
    pub reason: String,
    pub waiver_id: String,
    pub waiver_expires_at: Option<Millis>,
    pub evaluated_at: Millis,
}

/// One school's figures of one daily snapshot.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DailySchoolCompliance {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub county_id: String,
    pub school_id: String,
    pub devices: i64,
    pub compliant: i64,
}

/// Failing devices of one rule with one reason text (the quarterly
/// report's reasons, for all rules in one query).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RuleReasonCount {
    pub rule_id: String,
    pub reason: String,
    pub devices: i64,
}

/// Tickets of one county and category over a period `[start, end)`:
/// opened in it, resolved (closed) in it, and still open at its end.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TicketPeriodCount {
    pub county_id: String,
    pub category: String,
    pub opened: i64,
    pub resolved: i64,
    pub backlog: i64,
}

/// A ticket resolved in a period: how long (ms) it took from creation.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TicketResolution {
    pub county_id: String,
    pub category: String,
    pub millis: i64,
}

/// Remote sessions of one county started in a period, and their minutes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionPeriodCount {
    pub county_id: String,
    pub sessions: i64,
    pub minutes: i64,
}

/// Devices with one result of one rule in one school.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SchoolRuleStatusCount {
    pub county_id: String,
    pub school_id: String,
    pub rule_id: String,
    pub status: String,
    pub devices: i64,
}

/// Compliant devices of one school under one revision.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SchoolCompliance {
    pub county_id: String,
    pub school_id: String,
    pub devices: i64,
    pub compliant: i64,
}

/// How many devices have each status for one rule.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RuleStatusCount {
    pub rule_id: String,
    pub status: String,
    pub devices: i64,
}

/// A device failing a rule, with what it had.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FailingDeviceRecord {
    pub device_id: String,
    pub hostname: String,
    pub county_id: String,
    pub school_id: String,
    pub expected: String,
    pub actual: String,
    pub reason: String,
}

/// A device with its current inventory, for fleet-wide evaluation.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceInventoryRow {
    pub id: String,
    pub hostname: String,
    pub county_id: String,
    pub school_id: String,
    pub device_class: String,
    pub inventory_at: Option<Millis>,
    pub inventory_confirmed_at: Option<Millis>,
    pub inventory: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    pub at: Millis,
    /// `user:<name>` or `device:<id>`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub county_id: Option<String>,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    pub details: String,
    /// The school the event concerns (a session, a device, a consent
    /// setting), so that the school lead reads it; `None` for county- or
    /// cooperation-wide events. Hashed only when set.
    pub school_id: Option<String>,
}

// --- service desk ---

/// Ticket statuses, in their usual order.
pub const TICKET_STATUSES: [&str; 5] = ["new", "open", "waiting", "resolved", "closed"];
pub const TICKET_PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

/// True for statuses that end the ticket's open window.
pub fn ticket_status_is_closed(status: &str) -> bool {
    matches!(status, "resolved" | "closed")
}

/// A service-desk ticket. `number` is the per-installation sequence shown
/// as `SUP-<number>`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TicketRecord {
    pub id: String,
    pub number: i64,
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: String,
    pub category: String,
    pub county_id: String,
    pub school_id: Option<String>,
    pub assignee_id: Option<String>,
    /// `user:<name>` or `device:<id>`.
    pub reporter: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub closed_at: Option<Millis>,
}

impl TicketRecord {
    pub fn key(&self) -> String {
        format!("SUP-{}", self.number)
    }
}

/// Parses `SUP-1042`, `sup-1042` or `1042`.
pub fn parse_ticket_key(key: &str) -> Option<i64> {
    let key = key.trim();
    let digits = match key.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("SUP-") => &key[4..],
        _ => key,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An event for the webhook outbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxEvent {
    pub id: i64,
    pub event_id: String,
    pub kind: String,
    /// The JSON body sent as is (and signed).
    pub payload: String,
    pub created_at: Millis,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub delivered_at: Option<Millis>,
    pub last_error: String,
}

impl OutboxEvent {
    pub fn new(kind: &str, payload: String, at: Millis) -> Self {
        OutboxEvent {
            id: 0,
            event_id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_owned(),
            payload,
            created_at: at,
            attempts: 0,
            next_attempt_at: at,
            delivered_at: None,
            last_error: String::new(),
        }
    }
}

/// A new ticket; `ticket.number` is assigned by the store.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub ticket: TicketRecord,
    pub device_ids: Vec<String>,
    /// Body of the `created` timeline entry (e.g. an agent's snapshot).
    pub created_note: String,
    /// Makes the `ticket.created` webhook event from the stored ticket, in
    /// the same transaction, once its number is known; `None` when webhooks
    /// are off.
    pub announce: Option<TicketAnnouncer>,
}

/// Builds the outbox event for a newly numbered ticket.
pub type TicketAnnouncer = fn(&TicketRecord) -> OutboxEvent;

/// One change to a ticket, applied atomically with its timeline entry
/// (and its webhook event, if any).
#[derive(Debug, Clone, Default)]
pub struct TicketChange {
    pub ticket_id: String,
    pub at: Millis,
    pub actor: String,
    /// Timeline kind: comment, status, assignee, device.
    pub kind: String,
    pub body: String,
    pub old_value: String,
    pub new_value: String,
    pub set_status: Option<String>,
    /// `Some(None)` unassigns.
    pub set_assignee: Option<Option<String>>,
    pub link_device: Option<String>,
    pub outbox: Option<OutboxEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TicketEventRecord {
    pub id: i64,
    pub ticket_id: String,
    pub at: Millis,
    pub actor: String,
    pub kind: String,
    pub body: String,
    pub old_value: String,
    pub new_value: String,
}

/// One entry of a ticket's timeline: its own events, plus inventory changes
/// of its devices while it was open (read from `inventory_changes`, not
/// copied), and compliance changes of its devices. Sessions will be a
/// further variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimelineEntry {
    Event(TicketEventRecord),
    Inventory {
        device_id: String,
        change: InventoryChangeRecord,
    },
    /// A device's result for a rule of the standard changed.
    Compliance(ComplianceChangeRecord),
    /// A remote session started with this ticket as its reference.
    Session(Box<SessionRecord>),
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ComplianceChangeRecord {
    pub device_id: String,
    pub revision: i64,
    pub rule_id: String,
    pub at: Millis,
    pub old_status: String,
    pub new_status: String,
    pub actual: String,
}

impl TimelineEntry {
    pub fn at(&self) -> Millis {
        match self {
            TimelineEntry::Event(e) => e.at,
            TimelineEntry::Inventory { change, .. } => change.at,
            TimelineEntry::Compliance(change) => change.at,
            TimelineEntry::Session(session) => session.started_at,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    pub filter: TenantFilter,
    pub statuses: Vec<String>,
    pub county_id: Option<String>,
    pub school_id: Option<String>,
    pub device_id: Option<String>,
    pub assignee_id: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KbArticle {
    pub id: String,
    pub title: String,
    pub body: String,
    /// Comma-separated, lower case.
    pub tags: String,
    pub category: String,
    pub county_id: String,
    /// `team` or `teachers`.
    pub visibility: String,
    pub version: i64,
    pub published_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KbVersion {
    pub article_id: String,
    pub version: i64,
    pub title: String,
    pub body: String,
    pub author: String,
    pub at: Millis,
}

/// A search hit: `kind` is `ticket` or `article`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SearchHit {
    pub kind: String,
    pub ref_id: String,
    pub title: String,
    pub county_id: String,
    pub school_id: Option<String>,
    /// The ticket number, for tickets.
    pub number: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    /// Tickets are limited to these tenants.
    pub ticket_filter: TenantFilter,
    /// Articles are searched only when true.
    pub include_articles: bool,
    pub limit: i64,
}

/// Turns user text into search terms: words of letters and digits, each
/// matched as a prefix, all of them required. Everything else (operators,
/// quotes) is dropped, so no query syntax reaches either backend. Case is
/// left to the backend, which folds the query as it folded the documents.
pub fn search_terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(str::to_owned)
        .collect()
}

// --- audit chain ---

/// One chained audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntryRecord {
    pub seq: i64,
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// Filters for listing audit entries, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// `None`: every county and cooperation-wide entries; otherwise only
    /// entries of these counties or of the schools in `schools`.
    pub counties: Option<Vec<String>>,
    /// With `counties`: entries about these schools as well (the school
    /// lead's and other school-scoped readers').
    pub schools: Vec<String>,
    pub action_prefix: Option<String>,
    /// Entries about any of these targets; empty: any target.
    pub targets: Vec<String>,
    pub since: Option<Millis>,
    pub limit: i64,
}

// --- remote sessions ---

/// Session states as stored.
pub const SESSION_PENDING: &str = "pending";
pub const SESSION_ACTIVE: &str = "active";
pub const SESSION_ENDED: &str = "ended";
pub const SESSION_DENIED: &str = "denied";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: String,
    /// `shell`, `exec`, `forward` or `cp`.
    pub kind: String,
    pub state: String,
    pub device_id: String,
    pub county_id: String,
    pub school_id: String,
    pub user_id: String,
    pub actor: String,
    pub reason: String,
    pub ticket: String,
    pub summary: String,
    /// The SessionSpec as JSON text.
    pub spec: String,
    pub consent: String,
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
    pub end_reason: String,
    pub bytes_to_device: i64,
    pub bytes_from_device: i64,
    pub exit_code: Option<i64>,
    pub has_recording: bool,
    pub channels: i64,
    pub end_requested_at: Option<Millis>,
    pub end_requested_reason: String,
    /// The second factor proven at the start ("totp", "totp-grace"), or
    /// empty when none was required.
    pub step_up: String,
}

/// A user's second factor. `secret` is sealed (keyring.rs); never logged.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserMfaRecord {
    pub user_id: String,
    /// "totp".
    pub method: String,
    pub secret: Vec<u8>,
    pub confirmed: bool,
    /// The last time step whose code was accepted: codes are single-use.
    pub last_step: i64,
    /// Until when (Unix ms) further starts of `grace_kind` with the reason
    /// whose SHA-256 is `grace_reason` need no new code.
    pub grace_until: Millis,
    pub grace_kind: String,
    pub grace_reason: String,
    pub created_at: Millis,
}

impl std::fmt::Debug for UserMfaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserMfaRecord")
            .field("user_id", &self.user_id)
            .field("method", &self.method)
            .field("secret", &"<sealed>")
            .field("confirmed", &self.confirmed)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

/// The least consent a school's lead set for a school or class.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsentFloorRecord {
    pub school_id: String,
    /// `""`: the whole school.
    pub device_class: String,
    pub floor: String,
    pub set_by: String,
    pub set_at: Millis,
}

/// What is stored when a session ends or is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// `ended` or `denied`.
    pub state: String,
    pub ended_at: Millis,
    pub end_reason: String,
    pub bytes_to_device: i64,
    pub bytes_from_device: i64,
    pub exit_code: Option<i64>,
    pub has_recording: bool,
    pub channels: i64,
}

#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub filter: TenantFilter,
    pub device_id: Option<String>,
    /// Only pending and active sessions.
    pub live_only: bool,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsentPolicyRecord {
    pub school_id: String,
    /// `""`: every class of the school without its own policy.
    pub device_class: String,
    pub consent: String,
    pub updated_by: String,
    pub updated_at: Millis,
}
