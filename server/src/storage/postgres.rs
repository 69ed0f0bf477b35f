//! The PostgreSQL backend, for larger deployments and several replicas.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use super::models::*;
use super::{Result, StorageError, TenantFilter, sql};

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: sqlx::PgPool,
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
        Ok(PgStore { pool })
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}

sql::impl_sql_store!(PgStore, sqlx::Postgres);
