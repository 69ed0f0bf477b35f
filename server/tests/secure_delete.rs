//! Deleted means gone from the file (issue 12, part 2): a marker stored in
//! a session's reason and command line, in a recording and in a ticket's
//! text and comment is found in the SQLite file or its WAL before, and in
//! neither after the retention sweep of a running server. The files are
//! read as bytes, like `grep -a` would.

mod common;

use std::path::{Path, PathBuf};

use common::server::InProcessServer;
use schoolfleet_proto::v1::{CommentTicketRequest, CreateTicketRequest, SetTicketStatusRequest};
use schoolfleet_server::storage::{SESSION_ACTIVE, SessionEnd, SessionRecord, now_millis};

const DAY: i64 = 86_400_000;

/// Markers that appear nowhere else. Searched case-insensitively (the
/// full-text index keeps words lowercased), and also without their first
/// three letters: FTS5 stores a term after the prefix it shares with the
/// term before it.
const MARKERS: [&str; 5] = [
    "qxreasonzulu4711",
    "qxcommandyankee4711",
    "qxrecordingxray4711",
    "qxticketwhiskey4711",
    "qxcommentvictor4711",
];

fn db_path(server: &InProcessServer) -> PathBuf {
    let url = &server.state.config.server.database_url;
    PathBuf::from(url.strip_prefix("sqlite://").unwrap())
}

/// Which markers appear in the database file and its WAL, as bytes.
fn found(db: &Path) -> Vec<(&'static str, &'static str)> {
    let mut hits = Vec::new();
    for (suffix, what) in [("", "db"), ("-wal", "wal")] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        let bytes = std::fs::read(&file)
            .unwrap_or_default()
            .to_ascii_lowercase();
        for marker in MARKERS {
            let whole = bytes.windows(marker.len()).any(|w| w == marker.as_bytes());
            let tail = &marker.as_bytes()[3..];
            let partial = bytes.windows(tail.len()).any(|w| w == tail);
            if whole || partial {
                hits.push((marker, what));
            }
        }
    }
    hits
}

#[tokio::test]
async fn markers_are_gone_from_the_sqlite_file_and_wal_after_the_sweep() {
    let server = InProcessServer::start().await;
    server.create_school("kus", "kus012").await;
    let store = server.store();
    let now = now_millis();

    // A finished exec session of long ago, with a recording.
    let session = SessionRecord {
        id: "s-old".into(),
        kind: "exec".into(),
        state: SESSION_ACTIVE.into(),
        device_id: "d1".into(),
        county_id: "kus".into(),
        school_id: "kus012".into(),
        user_id: "u1".into(),
        actor: "user:anna".into(),
        reason: format!("Passwort {}", MARKERS[0].to_uppercase()),
        ticket: String::new(),
        summary: format!("chpasswd {}", MARKERS[1]),
        spec: "{}".into(),
        consent: "prompt".into(),
        started_at: now - 400 * DAY,
        ended_at: None,
        end_reason: String::new(),
        bytes_to_device: 0,
        bytes_from_device: 0,
        exit_code: None,
        has_recording: true,
        channels: 0,
        end_requested_at: None,
        end_requested_reason: String::new(),
        step_up: String::new(),
    };
    store.insert_session(&session).await.unwrap();
    store
        .append_recording_chunk(
            "s-old",
            0,
            format!("[0.1, \"o\", \"{}\"]", MARKERS[2]).as_bytes(),
        )
        .await
        .unwrap();
    store
        .finish_session(
            "s-old",
            &SessionEnd {
                state: "ended".into(),
                ended_at: now - 399 * DAY,
                end_reason: "done".into(),
                bytes_to_device: 0,
                bytes_from_device: 0,
                exit_code: Some(0),
                has_recording: true,
                channels: 1,
            },
        )
        .await
        .unwrap();

    // A resolved ticket with a comment, through the API.
    let mut admin = server.client(&server.bootstrap_token).await;
    let ticket = admin
        .tickets
        .create_ticket(CreateTicketRequest {
            title: "Drucker".into(),
            description: format!("Frau Müller {}", MARKERS[3]),
            county_id: "kus".into(),
            school_id: "kus012".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let number = ticket.key.clone();
    admin
        .tickets
        .comment_ticket(CommentTicketRequest {
            ticket: number.clone(),
            body: format!("Rückruf {}", MARKERS[4]),
        })
        .await
        .unwrap();
    admin
        .tickets
        .set_ticket_status(SetTicketStatusRequest {
            ticket: number.clone(),
            status: "closed".into(),
            note: String::new(),
        })
        .await
        .unwrap();

    let db = db_path(&server);
    let before = found(&db);
    for marker in MARKERS {
        assert!(
            before.iter().any(|(m, _)| *m == marker),
            "{marker} must be in the files before deletion (the test would prove nothing): {before:?}"
        );
    }

    // Time passes for the ticket: its resolution lies 800 days back.
    {
        let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE tickets SET closed_at = closed_at - $1")
            .bind(800 * DAY)
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;
    }

    schoolfleet_server::server::sweep_retention(&server.state).await;

    assert!(store.get_session("s-old").await.unwrap().is_none());
    let n: i64 = number.trim_start_matches("SUP-").parse().unwrap();
    assert!(store.get_ticket(n).await.unwrap().is_none());
    let after = found(&db);
    assert!(after.is_empty(), "still in the files: {after:?}");
    let wal_len = std::fs::metadata(format!("{}-wal", db.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL is truncated after the sweep");
}

#[tokio::test]
async fn an_existing_database_is_switched_to_incremental_vacuum_at_open() {
    use sqlx::ConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // A database as an older build left it: auto_vacuum NONE.
    {
        let store = schoolfleet_server::storage::SqliteStore::open(&path)
            .await
            .unwrap();
        store.close().await;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql("PRAGMA auto_vacuum = NONE; VACUUM")
            .execute(&mut conn)
            .await
            .unwrap();
        let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, 0);
    }
    let store = schoolfleet_server::storage::SqliteStore::open(&path)
        .await
        .unwrap();
    let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
        .fetch_one(store.writer())
        .await
        .unwrap();
    assert_eq!(mode, 2, "incremental");
    let (secure,): (i64,) = sqlx::query_as("PRAGMA secure_delete")
        .fetch_one(store.writer())
        .await
        .unwrap();
    assert_eq!(secure, 1);
}
