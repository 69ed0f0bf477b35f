//! Tenants: counties, schools and device classes.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_tenant_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, sql};

#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_county(&self, county: &County) -> Result<()>;

    async fn get_county(&self, id: &str) -> Result<Option<County>>;

    async fn list_counties(&self) -> Result<Vec<County>>;

    async fn create_school(&self, school: &School) -> Result<()>;

    async fn get_school(&self, id: &str) -> Result<Option<School>>;

    async fn list_schools(&self, county_id: Option<&str>) -> Result<Vec<School>>;

    async fn create_device_class(&self, class: &DeviceClass) -> Result<()>;

    async fn get_device_class(&self, id: &str) -> Result<Option<DeviceClass>>;

    async fn list_device_classes(&self) -> Result<Vec<DeviceClass>>;
}

macro_rules! impl_tenant_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::TenantStore for $store {
            async fn create_county(&self, county: &County) -> Result<()> {
                sqlx::query("INSERT INTO counties (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&county.id)
                    .bind(&county.name)
                    .bind(county.created_at)
                    .execute(&self.writer)
                    .await
                    .map_err(|e| sql::conflict_or(e, format!("county {}", county.id)))?;
                Ok(())
            }

            async fn get_county(&self, id: &str) -> Result<Option<County>> {
                Ok(
                    sqlx::query_as("SELECT id, name, created_at FROM counties WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn list_counties(&self) -> Result<Vec<County>> {
                Ok(
                    sqlx::query_as("SELECT id, name, created_at FROM counties ORDER BY id")
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn create_school(&self, school: &School) -> Result<()> {
                sqlx::query(
                    "INSERT INTO schools (id, county_id, name, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&school.id)
                .bind(&school.county_id)
                .bind(&school.name)
                .bind(school.created_at)
                .execute(&self.writer)
                .await
                .map_err(|e| sql::conflict_or(e, format!("school {}", school.id)))?;
                Ok(())
            }

            async fn get_school(&self, id: &str) -> Result<Option<School>> {
                Ok(sqlx::query_as(
                    "SELECT id, county_id, name, created_at FROM schools WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_schools(&self, county_id: Option<&str>) -> Result<Vec<School>> {
                Ok(sqlx::query_as(
                    "SELECT id, county_id, name, created_at FROM schools \
                     WHERE ($1 IS NULL OR county_id = $1) ORDER BY id",
                )
                .bind(county_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn create_device_class(&self, class: &DeviceClass) -> Result<()> {
                sqlx::query(
                    "INSERT INTO device_classes (id, label, created_at) VALUES ($1, $2, $3)",
                )
                .bind(&class.id)
                .bind(&class.label)
                .bind(class.created_at)
                .execute(&self.writer)
                .await
                .map_err(|e| sql::conflict_or(e, format!("device class {}", class.id)))?;
                Ok(())
            }

            async fn get_device_class(&self, id: &str) -> Result<Option<DeviceClass>> {
                Ok(
                    sqlx::query_as(
                        "SELECT id, label, created_at FROM device_classes WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?,
                )
            }

            async fn list_device_classes(&self) -> Result<Vec<DeviceClass>> {
                Ok(
                    sqlx::query_as("SELECT id, label, created_at FROM device_classes ORDER BY id")
                        .fetch_all(&self.pool)
                        .await?,
                )
            }
        }
    };
}

impl_tenant_store!(SqliteStore, sqlx::Sqlite);
impl_tenant_store!(PgStore, sqlx::Postgres);
