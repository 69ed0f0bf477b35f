//! Storage: one trait per domain, two backends.
//!
//! SQLite is the embedded default (a file in the data directory, WAL);
//! PostgreSQL serves larger deployments and several server replicas. Each
//! domain (`tenants.rs`, `users.rs`, `enrolment.rs`, `devices.rs`,
//! `inventory.rs`, `compliance.rs`, `audit.rs`, `sessions.rs`, `consent.rs`,
//! `mfa.rs`, `tickets.rs`, `kb.rs`, `search.rs`, `outbox.rs`, `retention.rs`,
//! `web.rs`) is a trait with one macro that expands the same query text for
//! both backends; the helpers they share are in `sql.rs`. `Store` is the
//! union of these traits (see [`prelude`]). The backends keep their own
//! migrations, and one conformance suite (`tests/storage_conformance.rs`)
//! runs against both.
//!
//! The store holds all state. The server keeps nothing in memory that would
//! stop replicas from sharing one PostgreSQL, except the live agent streams.

mod audit;
mod compliance;
mod consent;
mod devices;
mod enrolment;
mod inventory;
mod kb;
mod mfa;
mod models;
mod outbox;
mod postgres;
mod retention;
mod search;
mod sessions;
mod sql;
mod sqlite;
mod tenants;
mod tickets;
mod users;
mod web;

pub use audit::AuditStore;
pub use compliance::ComplianceStore;
pub use consent::ConsentStore;
pub use devices::DeviceStore;
pub use enrolment::EnrolmentStore;
pub use inventory::InventoryStore;
pub use kb::KbStore;
pub use mfa::MfaStore;
pub use models::*;
pub use outbox::OutboxStore;
pub use postgres::PgStore;
pub use retention::{DataProtection, RetentionCounts, RetentionCutoffs};
pub use search::SearchStore;
pub use sessions::SessionStore;
pub use sqlite::SqliteStore;
pub use tenants::TenantStore;
pub use tickets::TicketStore;
pub use users::UserStore;
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
    /// A part in front of the database (the heartbeat writer) is gone or
    /// failed for a whole group of writes.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A write transaction of bulk work (`begin_bulk_write` of a backend). It
/// derefs to the connection like a `sqlx::Transaction`, so statements run on
/// `&mut *tx`, and holds the backend's bulk turn, if it has one, until it is
/// committed or dropped (rolled back).
pub(crate) struct BulkWrite<DB: sqlx::Database> {
    tx: sqlx::Transaction<'static, DB>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<DB: sqlx::Database> BulkWrite<DB> {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl<DB: sqlx::Database> std::ops::Deref for BulkWrite<DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for BulkWrite<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
}

/// Everything the server persists: the union of one trait per domain.
/// Implementations must be safe to share between tasks and, for PostgreSQL,
/// between server replicas. A new method goes into its domain's trait and
/// that file's macro; a new domain is a new file whose trait is added here
/// and to [`prelude`].
pub trait Store:
    TenantStore
    + UserStore
    + EnrolmentStore
    + DeviceStore
    + InventoryStore
    + ComplianceStore
    + AuditStore
    + SessionStore
    + ConsentStore
    + MfaStore
    + TicketStore
    + KbStore
    + SearchStore
    + OutboxStore
    + DataProtection
    + WebStore
    + Send
    + Sync
    + 'static
{
}

impl Store for SqliteStore {}
impl Store for PgStore {}

/// The store's traits, for `use crate::storage::prelude::*`. Through
/// `dyn Store` (what `AppState` holds) or a bound `S: Store` every domain's
/// methods are callable without it; on a concrete backend (`SqliteStore`,
/// `PgStore`, as tests use them) each domain's trait must be in scope.
pub mod prelude {
    pub use super::{
        AuditStore, ComplianceStore, ConsentStore, DataProtection, DeviceStore, EnrolmentStore,
        InventoryStore, KbStore, MfaStore, OutboxStore, SearchStore, SessionStore, Store,
        TenantStore, TicketStore, UserStore, WebStore,
    };
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
