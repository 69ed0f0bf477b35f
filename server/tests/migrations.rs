//! Upgrading a database made by an older release: the migrations that move
//! data keep it. (Fresh databases are covered by every other test.)

use std::path::Path;
use std::str::FromStr;

use schoolfleet_server::storage::{InventoryStore, SqliteStore, TenantFilter};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

/// A SQLite file at `path` with the schema as the release with migrations
/// up to `version` left it, open for the test to fill.
async fn database_at_version(path: &Path, version: i64) -> SqliteConnection {
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
    let mut old = sqlx::migrate::Migrator::new(Path::new(migrations))
        .await
        .unwrap();
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let mut conn = SqliteConnectOptions::from_str("sqlite://")
        .unwrap()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(false)
        .connect()
        .await
        .unwrap();
    old.run(&mut conn).await.unwrap();
    conn
}

/// Migration 0016 moves the inventory blob out of the devices row: a
/// device stored before it keeps its inventory, byte for byte.
#[tokio::test]
async fn the_inventory_blob_survives_its_move_out_of_the_devices_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schoolfleet.db");
    let blob: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();

    // The schema as release 0015 left it, with one device and its blob.
    let mut conn = database_at_version(&path, 15).await;
    sqlx::query(
        "INSERT INTO devices (id, county_id, school_id, device_class, status, hostname, \
         system_uuid, serial_number, enrolled_at, inventory_at, inventory_hash, inventory) \
         VALUES ('d1', 'kus', 'kus012', 'schueler-pc', 'active', 'pc1', '', '', 1, 1000, \
         'abc', $1), ('d2', 'kus', 'kus012', 'schueler-pc', 'active', 'pc2', '', '', 1, \
         NULL, NULL, NULL)",
    )
    .bind(&blob)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    // Opening it with this release migrates it.
    let store = SqliteStore::open(&path).await.unwrap();
    let stored = store.get_inventory("d1").await.unwrap().unwrap();
    assert_eq!(stored.inventory, blob);
    assert_eq!(
        (stored.collected_at, stored.content_hash.as_str()),
        (1000, "abc")
    );
    assert!(store.get_inventory("d2").await.unwrap().is_none());
    let columns: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM pragma_table_info('devices') WHERE name = 'inventory'")
            .fetch_all(store.writer())
            .await
            .unwrap();
    assert!(columns.is_empty(), "the old column is still there");
}

/// Migrations 0017 and 0018 rebuild `device_software` (first WITHOUT
/// ROWID, then one sorted JSON list per device): the programs stored before
/// them stay, all of them, and the software search finds them.
#[tokio::test]
async fn software_rows_survive_as_one_sorted_list_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schoolfleet.db");

    let mut conn = database_at_version(&path, 16).await;
    sqlx::query(
        "INSERT INTO devices (id, county_id, school_id, device_class, status, hostname, \
         system_uuid, serial_number, enrolled_at) \
         VALUES ('d1', 'kus', 'kus012', 'schueler-pc', 'active', 'pc1', '', '', 1), \
         ('d2', 'kus', 'kus012', 'schueler-pc', 'active', 'pc2', '', '', 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO device_software (device_id, source, name, architecture, version) \
         VALUES ('d1', 'rpm', 'kernel', 'x86_64', '6.1'), \
         ('d1', 'dpkg', 'libreoffice', 'amd64', '7.4'), \
         ('d2', 'dpkg', 'vim \"quoted\"', 'amd64', '9.0'), \
         ('d1', 'dpkg', 'firefox-esr', 'amd64', '140.1')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::open(&path).await.unwrap();
    let lists: Vec<(String, String)> =
        sqlx::query_as("SELECT device_id, packages FROM device_software ORDER BY device_id")
            .fetch_all(store.writer())
            .await
            .unwrap();
    // The text the server itself writes for these programs (sorted by
    // source, name, architecture, version), so the first report after the
    // upgrade with the same programs rewrites nothing.
    assert_eq!(
        lists,
        [
            (
                "d1".to_owned(),
                r#"[["dpkg","firefox-esr","amd64","140.1"],["dpkg","libreoffice","amd64","7.4"],["rpm","kernel","x86_64","6.1"]]"#
                    .to_owned()
            ),
            (
                "d2".to_owned(),
                r#"[["dpkg","vim \"quoted\"","amd64","9.0"]]"#.to_owned()
            ),
        ]
    );
    let hits = store
        .search_software("", &TenantFilter::everything(), None, None, 100)
        .await
        .unwrap();
    let found: Vec<(&str, &str, &str)> = hits
        .iter()
        .map(|h| (h.device_id.as_str(), h.name.as_str(), h.version.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("d1", "firefox-esr", "140.1"),
            ("d1", "kernel", "6.1"),
            ("d1", "libreoffice", "7.4"),
            ("d2", "vim \"quoted\"", "9.0"),
        ]
    );
}
