//! The PostgreSQL backend, for larger deployments and several replicas.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use super::models::*;
use super::{Result, sql};

#[derive(Debug, Clone)]
pub struct PgStore {
    /// The key of the chain head's MAC, once the server has loaded it.
    pub(super) audit_key: std::sync::Arc<crate::audit::HeadKey>,
    pub(super) pool: sqlx::PgPool,
    /// The same pool: PostgreSQL locks rows, not the file, and its writers
    /// need no line of their own (see `SqliteStore::writer`).
    pub(super) writer: sqlx::PgPool,
}

impl PgStore {
    /// Connects and migrates. Several replicas may run this at once: sqlx
    /// serialises migrations with an advisory lock.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            writer: pool.clone(),
            pool,
            audit_key: Default::default(),
        })
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    /// A transaction that writes (see `SqliteStore::begin_write`; PostgreSQL
    /// locks rows as it goes and needs nothing special).
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Bulk writes need no turn on PostgreSQL: reports are written side by
    /// side, each locking its own device's rows.
    pub(super) async fn begin_bulk_write(
        &self,
    ) -> Result<super::BulkWrite<sqlx::Postgres>, sqlx::Error> {
        Ok(super::BulkWrite {
            tx: self.begin_write().await?,
            _turn: None,
        })
    }

    /// Bulk writes run side by side on PostgreSQL, each on its caller's
    /// task (the SQLite backend runs its one writer's on a thread of its
    /// own; `SqliteStore::drive_bulk`).
    pub(super) async fn drive_bulk<T: Send + 'static>(
        &self,
        write: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        write.await
    }
}

impl PgStore {
    /// Generated `tsvector` columns ('simple' configuration) with prefix
    /// queries; terms are letters and digits only, so user text cannot
    /// inject tsquery syntax.
    pub(super) async fn full_text_search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        let terms = search_terms(&q.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let expression = terms
            .iter()
            .map(|t| format!("{t}:*"))
            .collect::<Vec<_>>()
            .join(" & ");
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "SELECT kind, ref_id, title, county_id, school_id, number FROM (\
             SELECT 'ticket' AS kind, t.id AS ref_id, t.title AS title, t.county_id AS county_id, \
             t.school_id AS school_id, t.number AS number, ts_rank(t.search, to_tsquery('simple', ",
        );
        qb.push_bind(expression.clone());
        qb.push(")) AS score FROM tickets t WHERE (t.search @@ to_tsquery('simple', ");
        qb.push_bind(expression.clone());
        // Comments are searched too, as part of their ticket.
        qb.push(
            ") OR EXISTS (SELECT 1 FROM ticket_events e WHERE e.ticket_id = t.id \
             AND e.kind = 'comment' AND e.search @@ to_tsquery('simple', ",
        );
        qb.push_bind(expression.clone());
        qb.push(")))");
        sql::push_tenant_filter!(qb, &q.ticket_filter, "t");
        if q.include_articles {
            qb.push(
                " UNION ALL SELECT 'article', a.id, a.title, a.county_id, NULL, NULL, \
                 ts_rank(a.search, to_tsquery('simple', ",
            );
            qb.push_bind(expression.clone());
            qb.push(")) FROM kb_articles a WHERE a.search @@ to_tsquery('simple', ");
            qb.push_bind(expression);
            qb.push(")");
        }
        qb.push(") hits ORDER BY score DESC, ref_id LIMIT ")
            .push_bind(q.limit.max(1));
        Ok(qb.build_query_as().fetch_all(&self.pool).await?)
    }
}
