//! Test harness: every store test runs against SQLite (a temp file) and,
//! when `SCHOOLFLEET_TEST_DATABASE_URL` names a PostgreSQL server, against a
//! fresh PostgreSQL database that is dropped afterwards.

#![allow(dead_code)]

pub mod portal;
pub mod server;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use schoolfleet_server::storage::{DeviceRecord, PgStore, SqliteStore, Store};
use sqlx::Connection;

pub const PG_URL_VAR: &str = "SCHOOLFLEET_TEST_DATABASE_URL";

/// Waits until `condition` holds, for work that finishes in a task of its
/// own by design (webhook delivery, a stream's bookkeeping); panics after
/// `limit`. Never use it where a call promises read-your-writes.
pub async fn eventually<F, Fut>(limit: std::time::Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Runs `test` against a fresh SQLite store.
pub async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("test.db"))
        .await
        .unwrap();
    test(Arc::new(store)).await;
}

/// Runs `test` against a fresh PostgreSQL database, or skips when no server
/// is configured. In CI (`CI=true`) a missing server is a failure: the
/// PostgreSQL backend must never go untested there.
pub async fn with_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    with_postgres_raw(|store, _| test(store)).await;
}

/// Runs `test` with a fresh PostgreSQL store and raw access, or skips
/// (see `with_postgres`).
pub async fn with_postgres_raw<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>, RawDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(admin_url) = std::env::var(PG_URL_VAR) else {
        assert!(
            std::env::var("CI").is_err(),
            "{PG_URL_VAR} must be set in CI so that the PostgreSQL backend is tested"
        );
        eprintln!("skipping PostgreSQL: {PG_URL_VAR} not set");
        return;
    };
    let name = format!("sf_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = replace_database(&admin_url, &name);
    let outcome = AssertUnwindSafe(async {
        let store = PgStore::connect(&url).await.unwrap();
        let pool = store.pool().clone();
        test(Arc::new(store), RawDb::Postgres(pool.clone())).await;
        pool.close().await;
    })
    .catch_unwind()
    .await;
    // Leave no database behind, whatever the test did.
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `postgres://u@h:p/db?x` with the database replaced.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// Direct SQL on a test database, for tests that tamper with stored rows
/// the way an attacker with database access would.
pub enum RawDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawDb {
    pub async fn execute(&self, sql: &str) {
        match self {
            RawDb::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            RawDb::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .unwrap();
    }

    /// The first column of the first row of `sql`, as an integer.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self {
            RawDb::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            RawDb::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap()
    }
}

/// Runs `test` with a fresh SQLite store and raw access to its database.
pub async fn with_sqlite_raw<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>, RawDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("test.db"))
        .await
        .unwrap();
    let raw = RawDb::Sqlite(store.writer().clone());
    test(Arc::new(store), raw).await;
}

/// Declares each listed async fn(Arc<dyn Store>, RawDb) as a test on both
/// backends.
#[macro_export]
macro_rules! on_both_backends_raw {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::common::with_sqlite_raw(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::common::with_postgres_raw(super::$name).await;
                }
            )*
        }
    };
}

/// Declares each listed async fn(Arc<dyn Store>) as a test on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::common::with_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    $crate::common::with_postgres(super::$name).await;
                }
            )*
        }
    };
}

/// An active, enrolled device record with neutral defaults; tests override
/// what matters with struct update syntax.
pub fn device_record(id: &str, county: &str, school: &str, hostname: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        county_id: county.into(),
        school_id: school.into(),
        device_class: "schueler-pc".into(),
        status: "active".into(),
        hostname: hostname.into(),
        system_uuid: String::new(),
        serial_number: String::new(),
        machine_id: String::new(),
        cert_fingerprint: Some(format!("fp-{id}")),
        cert_serial: None,
        cert_not_after: None,
        enrolled_at: schoolfleet_server::storage::now_millis(),
        last_seen: None,
        connected: false,
        agent_version: String::new(),
        agent_consent_min: None,
        inventory_at: None,
        inventory_hash: None,
        os_name: String::new(),
        os_version: String::new(),
        vendor: String::new(),
        model: String::new(),
        memory_total_bytes: 0,
        ip_addresses: String::new(),
    }
}
