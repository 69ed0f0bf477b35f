//! Service desk: the knowledge base.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_kb_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, StorageError, sql};

#[async_trait]
pub trait KbStore: Send + Sync {
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
}

macro_rules! impl_kb_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::KbStore for $store {
            async fn create_article(
                &self,
                a: &KbArticle,
                first: &KbVersion,
                outbox: Option<&OutboxEvent>,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO kb_articles (id, title, body, tags, category, county_id, \
                     visibility, version, published_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&a.id)
                .bind(&a.title)
                .bind(&a.body)
                .bind(&a.tags)
                .bind(&a.category)
                .bind(&a.county_id)
                .bind(&a.visibility)
                .bind(a.version)
                .bind(a.published_at)
                .bind(a.created_at)
                .bind(a.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| sql::conflict_or(e, format!("article {}", a.id)))?;
                sql::insert_kb_version!(first, &mut *tx);
                if let Some(event) = outbox {
                    sql::insert_outbox!(event, &mut *tx);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn update_article(
                &self,
                a: &KbArticle,
                v: &KbVersion,
                outbox: Option<&OutboxEvent>,
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE kb_articles SET title = $2, body = $3, tags = $4, category = $5, \
                     visibility = $6, version = $7, published_at = $8, updated_at = $9 \
                     WHERE id = $1 AND version = $7 - 1",
                )
                .bind(&a.id)
                .bind(&a.title)
                .bind(&a.body)
                .bind(&a.tags)
                .bind(&a.category)
                .bind(&a.visibility)
                .bind(a.version)
                .bind(a.published_at)
                .bind(a.updated_at)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::Conflict(format!(
                        "version {} of article {}",
                        a.version, a.id
                    )));
                }
                sql::insert_kb_version!(v, &mut *tx);
                if let Some(event) = outbox {
                    sql::insert_outbox!(event, &mut *tx);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn get_article(&self, id: &str) -> Result<Option<KbArticle>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM kb_articles WHERE id = $1",
                    sql::KB_COLUMNS
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_article_versions(&self, id: &str) -> Result<Vec<KbVersion>> {
                Ok(sqlx::query_as(
                    "SELECT article_id, version, title, body, author, at FROM kb_versions \
                     WHERE article_id = $1 ORDER BY version",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_articles_changed(
                &self,
                since: Millis,
                limit: i64,
            ) -> Result<Vec<KbArticle>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM kb_articles WHERE updated_at >= $1 \
                     ORDER BY updated_at DESC, id LIMIT $2",
                    sql::KB_COLUMNS
                ))
                .bind(since)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn link_article_ticket(&self, article_id: &str, ticket_id: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO kb_article_tickets (article_id, ticket_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(article_id)
                .bind(ticket_id)
                .execute(&self.writer)
                .await?;
                Ok(())
            }
        }
    };
}

impl_kb_store!(SqliteStore, sqlx::Sqlite);
impl_kb_store!(PgStore, sqlx::Postgres);
