//! Storage: one trait, two backends.
//!
//! SQLite is the embedded default (a file in the data directory, WAL);
//! PostgreSQL serves larger deployments and several server replicas. Both
//! share the query text (see `sql.rs`) but keep their own migrations, and one
//! conformance suite (`tests/storage_conformance.rs`) runs against both.
//!
//! The store holds all state. The server keeps nothing in memory that would
//! stop replicas from sharing one PostgreSQL, except the live agent streams.

mod models;
mod postgres;
mod retention;
mod sql;
mod sqlite;
mod web;

use async_trait::async_trait;

pub use models::*;
pub use postgres::PgStore;
pub use retention::{DataProtection, RetentionCounts, RetentionCutoffs};
pub use sqlite::SqliteStore;
pub use web::{WebSessionRecord, WebStore};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("enrolment token unusable: {0}")]
    TokenUnusable(String),
    #[error("invalid database URL {0:?}: expected sqlite://PATH or postgres://...")]
    InvalidUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything the server persists. Implementations must be safe to share
/// between tasks and, for PostgreSQL, between server replicas.
#[async_trait]
pub trait Store: DataProtection + WebStore + Send + Sync + 'static {
    // --- tenants ---
    async fn create_county(&self, county: &County) -> Result<()>;
    async fn get_county(&self, id: &str) -> Result<Option<County>>;
    async fn list_counties(&self) -> Result<Vec<County>>;
    async fn create_school(&self, school: &School) -> Result<()>;
    async fn get_school(&self, id: &str) -> Result<Option<School>>;
    async fn list_schools(&self, county_id: Option<&str>) -> Result<Vec<School>>;
    async fn create_device_class(&self, class: &DeviceClass) -> Result<()>;
    async fn get_device_class(&self, id: &str) -> Result<Option<DeviceClass>>;
    async fn list_device_classes(&self) -> Result<Vec<DeviceClass>>;

    // --- users and API tokens ---
    async fn count_users(&self) -> Result<i64>;
    async fn create_user(&self, user: &User) -> Result<()>;
    /// Creates a user and its first API token in one transaction (the
    /// bootstrap admin: never a user without a token).
    async fn create_user_with_token(&self, user: &User, token: Option<&ApiToken>) -> Result<()>;
    async fn get_user(&self, id_or_name: &str) -> Result<Option<User>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    async fn create_api_token(&self, token: &ApiToken) -> Result<()>;
    async fn get_api_token(&self, id: &str) -> Result<Option<ApiToken>>;
    async fn revoke_api_token(&self, id: &str, at: Millis) -> Result<()>;

    // --- enrolment ---
    async fn create_enrollment_token(&self, token: &EnrollmentToken) -> Result<()>;
    async fn get_enrollment_token(&self, id: &str) -> Result<Option<EnrollmentToken>>;
    async fn list_enrollment_tokens(
        &self,
        filter: &TenantFilter,
        county_id: Option<&str>,
        school_id: Option<&str>,
    ) -> Result<Vec<EnrollmentToken>>;
    async fn revoke_enrollment_token(&self, id: &str, at: Millis) -> Result<()>;
    /// An existing device of this county with the same hardware, for
    /// re-enrolment after a reinstall (no duplicate devices).
    async fn find_device_by_hardware(
        &self,
        county_id: &str,
        identity: &HardwareIdentity,
    ) -> Result<Option<DeviceRecord>>;
    /// Atomically uses one use of the token and creates (or re-enrols) the
    /// device with its new certificate. Fails with `TokenUnusable` when the
    /// token was used up, revoked or expired in the meantime.
    async fn enroll_device(&self, enrolment: &Enrolment) -> Result<()>;

    // --- devices ---
    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>>;
    async fn find_devices_by_hostname(&self, hostname: &str) -> Result<Vec<DeviceRecord>>;
    /// Devices whose id ends with `suffix` (lowercase hex, the short id the
    /// CLI shows).
    async fn find_devices_by_id_suffix(&self, suffix: &str) -> Result<Vec<DeviceRecord>>;
    async fn get_device_by_cert(&self, fingerprint_hex: &str) -> Result<Option<DeviceRecord>>;
    async fn list_devices(&self, query: &DeviceQuery) -> Result<Vec<DeviceRecord>>;
    async fn set_device_status(&self, id: &str, status: DeviceStatus) -> Result<()>;
    /// Adds one entry to a device's history (`device history`) outside an
    /// inventory report: identity events such as a re-enrolment.
    async fn record_device_change(
        &self,
        device_id: &str,
        change: &InventoryChangeRecord,
    ) -> Result<()>;
    /// Merges `new_id` (a fresh enrolment) into `old_id`, in one
    /// transaction: the old device takes over the new one's certificate,
    /// host name, hardware hints, school and class and becomes active; the
    /// new record is retired without a certificate. `notes` go into the
    /// history of (old, new). A revoked old device is refused.
    async fn adopt_device(
        &self,
        new_id: &str,
        old_id: &str,
        notes: (&InventoryChangeRecord, &InventoryChangeRecord),
    ) -> Result<()>;
    /// Replaces the certificate of an active device that presented
    /// `current_fingerprint` (its current or previous certificate, the
    /// latter after a renewal the device did not save); the presented one
    /// stays accepted until [`Store::confirm_device_cert`]. False if
    /// nothing matched.
    async fn renew_device_cert(
        &self,
        id: &str,
        current_fingerprint: &str,
        renewed: &CertificateRecord,
    ) -> Result<bool>;
    /// The device used its current certificate: forget the previous one.
    async fn confirm_device_cert(&self, id: &str, fingerprint: &str) -> Result<()>;
    /// The device's stream `stream` opened, or the agent spoke on it (a
    /// heartbeat): connected, seen at `at`, and this stream is the one that
    /// speaks for the device from now on. Returns false when the device is
    /// no longer active, so that its stream must end. With a `hello` (the
    /// stream's first message) the agent's version and consent floor are
    /// replaced by what it said.
    async fn record_agent_seen(
        &self,
        id: &str,
        at: Millis,
        stream: &AgentStream<'_>,
        hello: Option<&AgentHello<'_>>,
    ) -> Result<bool>;
    /// The stream `stream_id` ended: the device is disconnected, unless a
    /// newer stream (on any replica) has taken over meanwhile. Returns
    /// whether this stream still spoke for the device.
    async fn record_agent_gone(&self, id: &str, at: Millis, stream_id: &str) -> Result<bool>;
    /// This replica is reachable at `url` (renewed while it runs).
    async fn announce_replica(&self, replica_id: &str, url: &str, at: Millis) -> Result<()>;
    /// This replica stops: no session is relayed to it any more.
    async fn withdraw_replica(&self, replica_id: &str) -> Result<()>;
    /// Where the stream of a connected device is held: the replica's id and
    /// URL, if that replica announced itself at or after `seen_since`.
    async fn agent_stream_holder(
        &self,
        device_id: &str,
        seen_since: Millis,
    ) -> Result<Option<(String, String)>>;

    /// The agent says its inventory still has `content_hash`: record that
    /// the stored inventory is current at `at`. Writes at most hourly.
    async fn confirm_inventory(
        &self,
        device_id: &str,
        content_hash: &str,
        at: Millis,
    ) -> Result<()>;

    // --- inventory ---
    async fn get_inventory(&self, device_id: &str) -> Result<Option<StoredInventory>>;
    /// Stores a report once per report id. The device's current inventory
    /// moves forward only if the report is newer than the one it has.
    async fn ingest_report(&self, report: &IngestReport) -> Result<IngestOutcome>;
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

    // --- the common IT standard and compliance ---
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
    async fn failing_devices(
        &self,
        revision: i64,
        rule_id: &str,
        filter: &TenantFilter,
        county_id: Option<&str>,
        school_id: Option<&str>,
    ) -> Result<Vec<FailingDeviceRecord>>;
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
    /// The ticket an `auto_ticket` rule opened for this device, if any.
    async fn compliance_ticket(&self, device_id: &str, rule_id: &str) -> Result<Option<String>>;
    /// Records that ticket; false when one was recorded meanwhile.
    async fn insert_compliance_ticket(
        &self,
        device_id: &str,
        rule_id: &str,
        ticket_id: &str,
    ) -> Result<bool>;

    // --- audit (a hash chain, see `crate::audit`) ---
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

    // --- remote sessions ---
    async fn insert_session(&self, session: &SessionRecord) -> Result<()>;
    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>>;
    async fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<SessionRecord>>;
    /// Pending and active sessions of a user, and on a device.
    async fn count_live_sessions(&self, user_id: &str, device_id: &str) -> Result<(i64, i64)>;
    /// pending -> active (with the consent mode that applied).
    async fn activate_session(&self, id: &str, consent: &str) -> Result<()>;
    /// Stores the end (or denial) of a live session; false when it was
    /// already over (only the first end counts).
    async fn finish_session(&self, id: &str, end: &SessionEnd) -> Result<bool>;
    /// Asks the replica holding the session to end it; false when it is
    /// not live.
    async fn request_session_end(&self, id: &str, at: Millis, reason: &str) -> Result<bool>;
    /// Ends sessions still recorded as live that started before
    /// `started_before`: longer ago than the maximum duration, so no
    /// replica can still hold them (it crashed). Returns their ids.
    async fn end_stale_sessions(
        &self,
        started_before: Millis,
        at: Millis,
        reason: &str,
    ) -> Result<Vec<String>>;
    async fn append_recording_chunk(
        &self,
        session_id: &str,
        chunk_no: i64,
        data: &[u8],
    ) -> Result<()>;
    /// One chunk of a recording, `None` past the last.
    async fn recording_chunk(&self, session_id: &str, chunk_no: i64) -> Result<Option<Vec<u8>>>;
    /// Deletes the recordings of sessions that ended before `ended_before`.
    /// Returns how many sessions lost their recording.
    async fn delete_recordings_before(&self, ended_before: Millis) -> Result<u64>;

    // --- consent policy ---
    async fn set_consent_policy(&self, policy: &ConsentPolicyRecord) -> Result<()>;
    async fn get_consent_policy(
        &self,
        school_id: &str,
        device_class: &str,
    ) -> Result<Option<ConsentPolicyRecord>>;
    /// Policies of these schools (`None`: all), by school and class.
    async fn list_consent_policies(
        &self,
        school_ids: Option<&[String]>,
    ) -> Result<Vec<ConsentPolicyRecord>>;

    // --- data protection: second factor, consent floors ---
    async fn get_user_mfa(&self, user_id: &str) -> Result<Option<UserMfaRecord>>;
    /// Stores a new, unconfirmed secret, replacing any earlier one.
    async fn put_user_mfa(&self, record: &UserMfaRecord) -> Result<()>;
    /// Activates the unconfirmed secret with the step its first code
    /// matched; false when there is none to confirm.
    async fn confirm_user_mfa(&self, user_id: &str, step: i64) -> Result<bool>;
    /// Uses a code's time step: only when it is later than the last used
    /// one (one statement, so two replicas cannot both accept a code), and
    /// opens the grace window. False: the step was used already.
    async fn use_mfa_step(
        &self,
        user_id: &str,
        step: i64,
        grace_until: Millis,
        grace_kind: &str,
        grace_reason: &str,
    ) -> Result<bool>;
    async fn set_consent_floor(&self, floor: &ConsentFloorRecord) -> Result<()>;
    /// The floors of one school: the school's own (class "") and its classes'.
    async fn consent_floors(&self, school_id: &str) -> Result<Vec<ConsentFloorRecord>>;

    // --- service desk: tickets ---
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
    /// Tickets of this device that are not resolved or closed.
    async fn open_tickets_for_device(&self, device_id: &str) -> Result<Vec<TicketRecord>>;

    // --- service desk: knowledge base ---
    /// Creates the article with version 1 (and its webhook event, if any).
    async fn create_article(
        &self,
        article: &KbArticle,
        first: &KbVersion,
        outbox: Option<&OutboxEvent>,
    ) -> Result<()>;
    /// Stores a new version and makes it current. Fails with `Conflict` when
    /// someone else saved a version in the meantime.
    async fn update_article(
        &self,
        article: &KbArticle,
        version: &KbVersion,
        outbox: Option<&OutboxEvent>,
    ) -> Result<()>;
    async fn get_article(&self, id: &str) -> Result<Option<KbArticle>>;
    async fn list_article_versions(&self, id: &str) -> Result<Vec<KbVersion>>;
    /// Articles changed at or after `since`, newest first.
    async fn list_articles_changed(&self, since: Millis, limit: i64) -> Result<Vec<KbArticle>>;
    async fn link_article_ticket(&self, article_id: &str, ticket_id: &str) -> Result<()>;

    // --- service desk: full-text search (the backend-specific part) ---
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>>;

    // --- webhook outbox ---
    async fn enqueue_outbox(&self, event: &OutboxEvent) -> Result<()>;
    /// Undelivered events due at `now`, oldest first.
    async fn due_outbox(&self, now: Millis, limit: i64) -> Result<Vec<OutboxEvent>>;
    /// Claims an event for one delivery attempt (moves its next attempt to
    /// `lease_until`); false when another replica claimed it first.
    async fn claim_outbox(
        &self,
        id: i64,
        expected_next: Millis,
        lease_until: Millis,
    ) -> Result<bool>;
    async fn mark_outbox_delivered(&self, id: i64, at: Millis) -> Result<()>;
    async fn mark_outbox_failed(&self, id: i64, next_attempt_at: Millis, error: &str)
    -> Result<()>;
}

/// Opens the store named by `url`: `sqlite://PATH` or `postgres://...`, and
/// runs that backend's migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(std::sync::Arc::new(
            SqliteStore::open(std::path::Path::new(path)).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStore::connect(url).await?))
    } else {
        Err(StorageError::InvalidUrl(crate::config::redact_url(url)))
    }
}
