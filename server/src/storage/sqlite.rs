//! The embedded SQLite backend: one file in the data directory, WAL.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use super::models::*;
use super::{Result, sql};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The key of the chain head's MAC, once the server has loaded it.
    pub(super) audit_key: std::sync::Arc<crate::audit::HeadKey>,
    /// Readers (`query_only`): in WAL mode they read while the writer writes.
    pub(super) pool: sqlx::SqlitePool,
    /// The one connection that writes. SQLite has one write lock per file;
    /// writers queued here wait in line (first come, first served) instead
    /// of sleeping in SQLite's busy handler and racing for the lock when it
    /// frees, and the writer's page cache stays valid between its
    /// transactions (a connection drops its cache when another one wrote).
    pub(super) writer: sqlx::SqlitePool,
    /// Bulk writes (inventory reports) take this turn before they queue for
    /// the writer, so at most one of them is ever in line ahead of a
    /// session, audit or heartbeat write.
    pub(super) bulk_turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The thread that runs the bulk writes (`drive_bulk`).
    bulk_lane: std::sync::Arc<BulkLane>,
}

/// A thread with a single-threaded async runtime of its own, on which the
/// bulk writes run from their first statement to their commit. It stops
/// when the store's last clone is dropped.
#[derive(Debug)]
struct BulkLane {
    runtime: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl BulkLane {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-bulk".into())
            .spawn(move || runtime.block_on(async move { _ = stopped.await }))?;
        Ok(BulkLane {
            runtime: handle,
            _stop: stop,
        })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An acknowledged inventory report or enrolment must survive a
            // power cut of the server.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // No memory map: mapped pages count in the server's RSS once per
            // connection that touched them (222 MiB of a report storm's
            // peak), where a pread lands in the kernel's page cache, which
            // is given back under pressure. The readers keep SQLite's
            // default 2 MiB cache; the writer's is larger (below).
            .pragma("mmap_size", "0")
            // Deleted means gone from the file: freed content is
            // overwritten with zeros, and free pages can be handed back
            // (`PRAGMA incremental_vacuum` after retention sweeps).
            .pragma("secure_delete", "ON")
            .auto_vacuum(SqliteAutoVacuum::Incremental);
        super::retention::enable_incremental_vacuum(&options).await?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // A storm of reports may keep the writer busy for a while; the
            // bulk turn keeps every other writer's wait short.
            .acquire_timeout(Duration::from_secs(60))
            // The writer's cache holds the B-tree pages a report touches
            // across reports (16 million software rows at 10,000 devices).
            .connect_with(options.clone().pragma("cache_size", "-65536"))
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A write through a reader would race the writer for the lock:
            // refused, so a write that misses the writer fails loudly.
            .connect_with(options.pragma("query_only", "ON"))
            .await?;
        Ok(SqliteStore {
            pool,
            writer,
            bulk_turn: Default::default(),
            bulk_lane: std::sync::Arc::new(BulkLane::start().map_err(|err| {
                super::StorageError::Unavailable(format!(
                    "cannot start the bulk writes' thread: {err}"
                ))
            })?),
            audit_key: Default::default(),
        })
    }

    /// The connection that writes (tests and tools that write directly must
    /// use it: the readers refuse writes).
    pub fn writer(&self) -> &sqlx::SqlitePool {
        &self.writer
    }

    /// Closes the readers and the writer: the file is free for others.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// A transaction that writes. `BEGIN IMMEDIATE` takes SQLite's write
    /// lock at the start: a deferred transaction that read first and then
    /// writes fails at once with SQLITE_BUSY when another connection wrote
    /// meanwhile (the busy timeout cannot help there), which surfaced as
    /// "storage unavailable" under concurrent writes.
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// A write transaction of bulk work (an inventory report): it waits for
    /// the bulk turn first, so interactive writes pass it in the queue.
    pub(super) async fn begin_bulk_write(
        &self,
    ) -> Result<super::BulkWrite<sqlx::Sqlite>, sqlx::Error> {
        let turn = self.bulk_turn.clone().lock_owned().await;
        Ok(super::BulkWrite {
            tx: self.begin_write().await?,
            _turn: Some(turn),
        })
    }

    /// Runs a bulk write (from `begin_bulk_write` to its commit) on the
    /// bulk lane, a thread that does nothing else.
    ///
    /// The transaction holds the file's one write lock from its first
    /// statement to its commit, and between two statements it waits until
    /// its task is polled again; the connection's release to the pool is a
    /// task of its own, too. In a storm of reports both async workers spend
    /// milliseconds at a time decoding, comparing and judging other reports
    /// and on TLS for thousands of streams, so each of those steps waited
    /// behind them while no other write could run. On the lane each step
    /// follows the last as soon as SQLite answers. The write runs to its end
    /// even when its caller is gone (a report is stored whole or not at
    /// all, as before).
    pub(super) async fn drive_bulk<T: Send + 'static>(
        &self,
        write: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.bulk_lane
            .runtime
            .spawn(write)
            .await
            .map_err(|err| super::StorageError::Unavailable(format!("bulk write: {err}")))?
    }
}

impl SqliteStore {
    /// FTS5 over `search_fts` (kept by triggers); every term is a quoted
    /// prefix query, so user text cannot inject FTS5 syntax.
    pub(super) async fn full_text_search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        let terms = search_terms(&q.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let expression = terms
            .iter()
            .map(|t| format!("\"{t}\"*"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT kind, ref_id, title, county_id, school_id, number FROM (\
             SELECT 'ticket' AS kind, t.id AS ref_id, t.title AS title, t.county_id AS county_id, \
             t.school_id AS school_id, t.number AS number, MIN(search_fts.rank) AS score \
             FROM search_fts JOIN tickets t ON t.id = search_fts.ref_id \
             WHERE search_fts.kind IN ('ticket', 'comment') AND search_fts MATCH ",
        );
        qb.push_bind(expression.clone());
        sql::push_tenant_filter!(qb, &q.ticket_filter, "t");
        // A ticket found in its text and in comments is one hit.
        qb.push(" GROUP BY t.id, t.title, t.county_id, t.school_id, t.number");
        if q.include_articles {
            qb.push(
                " UNION ALL SELECT 'article', a.id, a.title, a.county_id, NULL, NULL, search_fts.rank \
                 FROM search_fts JOIN kb_articles a ON a.id = search_fts.ref_id \
                 WHERE search_fts.kind = 'article' AND search_fts MATCH ",
            );
            qb.push_bind(expression);
        }
        qb.push(") ORDER BY score, ref_id LIMIT ")
            .push_bind(q.limit.max(1));
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn readers_refuse_writes_and_the_writer_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let insert = "INSERT INTO counties (id, name, created_at) VALUES ('kus', 'Kusel', 0)";
        let refused = sqlx::query(insert).execute(&store.pool).await;
        assert!(refused.is_err(), "a reader wrote: {refused:?}");
        sqlx::query(insert).execute(&store.writer).await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM counties")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    /// A write that is not bulk waits behind the report being written, not
    /// behind the reports queued after it.
    #[tokio::test]
    async fn other_writes_pass_queued_reports() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        // A write on its own task that notes its label once it has the writer.
        let write = |bulk: bool, label: &'static str| {
            let (store, order) = (store.clone(), order.clone());
            tokio::spawn(async move {
                // A bulk write keeps its turn until it has committed.
                let (tx, turn) = if bulk {
                    let bulk = store.begin_bulk_write().await.unwrap();
                    (bulk.tx, bulk._turn)
                } else {
                    (store.begin_write().await.unwrap(), None)
                };
                order.lock().unwrap().push(label);
                tx.commit().await.unwrap();
                drop(turn);
            })
        };
        let first = store.begin_bulk_write().await.unwrap();
        let queued_report = write(true, "report");
        // The queued report is waiting for the bulk turn before the other
        // write arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let other = write(false, "other");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(order.lock().unwrap().is_empty(), "the writer was shared");
        first.commit().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            queued_report.await.unwrap();
            other.await.unwrap();
        })
        .await
        .expect("a write never got the writer");
        assert_eq!(*order.lock().unwrap(), ["other", "report"]);
    }

    /// A bulk write runs to its commit on the bulk lane, without its caller
    /// being polled again: it does not wait for a free async worker between
    /// its statements.
    #[tokio::test]
    async fn a_bulk_write_runs_without_its_caller() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let writing = store.clone();
        let mut write = std::pin::pin!(store.drive_bulk(async move {
            let mut tx = writing.begin_bulk_write().await?;
            for (id, name) in [("kus", "Kusel"), ("kl", "Kaiserslautern")] {
                sqlx::query("INSERT INTO counties (id, name, created_at) VALUES ($1, $2, 0)")
                    .bind(id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }));
        // Polled once: the write is handed to the lane. This test's runtime
        // has one thread, blocked below until the rows are there.
        let _ = futures::poll!(&mut write);
        let readers = store.pool.clone();
        let committed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                for _ in 0..200 {
                    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM counties")
                        .fetch_one(&readers)
                        .await
                        .unwrap();
                    if n == 2 {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                false
            })
        })
        .join()
        .unwrap();
        assert!(committed, "the write waited for its caller to be polled");
        write.await.unwrap();
    }
}
