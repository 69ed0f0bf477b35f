//! Service desk: full-text search over tickets, comments and articles (the backend-specific part is `full_text_search` in `sqlite.rs` and `postgres.rs`).
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_search_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore};

#[async_trait]
pub trait SearchStore: Send + Sync {
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>>;
}

macro_rules! impl_search_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::SearchStore for $store {
            async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
                // The one place where the backends differ: see
                // `full_text_search` in sqlite.rs and postgres.rs.
                self.full_text_search(query).await
            }
        }
    };
}

impl_search_store!(SqliteStore, sqlx::Sqlite);
impl_search_store!(PgStore, sqlx::Postgres);
