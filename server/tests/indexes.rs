//! Lookups on every agent call must use an index, not scan a table
//! (issue #11): checked through each backend's query plan.

mod common;

use std::sync::Arc;

use common::RawDb;
use schoolfleet_server::storage::Store;
use sqlx::Row;

const CERT_LOOKUP: &str = "SELECT id FROM devices \
     WHERE cert_fingerprint = 'ab' OR cert_fingerprint_previous = 'ab'";

async fn certificate_lookup_uses_indexes(_store: Arc<dyn Store>, raw: RawDb) {
    let plan: Vec<String> = match &raw {
        RawDb::Sqlite(pool) => sqlx::query(&format!("EXPLAIN QUERY PLAN {CERT_LOOKUP}"))
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect(),
        RawDb::Postgres(pool) => {
            let mut conn = pool.acquire().await.unwrap();
            // On a tiny table the planner prefers a scan anyway; forbid it
            // where an index exists, so that only a missing index scans.
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
            sqlx::query(&format!("EXPLAIN {CERT_LOOKUP}"))
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect()
        }
    };
    let text = plan.join("\n");
    assert!(
        !text.contains("SCAN devices") && !text.contains("Seq Scan"),
        "the certificate lookup scans the devices table:\n{text}"
    );
    assert!(
        text.contains("devices_cert_fingerprint_previous"),
        "index on cert_fingerprint_previous unused:\n{text}"
    );
}

on_both_backends_raw!(certificate_lookup_uses_indexes);
