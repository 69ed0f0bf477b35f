//! Consent: the policy per school and device class, and the floors under it.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_consent_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore};

#[async_trait]
pub trait ConsentStore: Send + Sync {
    async fn set_consent_policy(&self, policy: &ConsentPolicyRecord) -> Result<()>;

    async fn get_consent_policy(
        &self,
        school_id: &str,
        device_class: &str,
    ) -> Result<Option<ConsentPolicyRecord>>;

    /// Policies of these schools (`None`: all), by school and class.
    async fn list_consent_policies(
        &self,
        school_ids: Option<&[String]>,
    ) -> Result<Vec<ConsentPolicyRecord>>;

    async fn set_consent_floor(&self, floor: &ConsentFloorRecord) -> Result<()>;

    /// The floors of one school: the school's own (class "") and its classes'.
    async fn consent_floors(&self, school_id: &str) -> Result<Vec<ConsentFloorRecord>>;
}

macro_rules! impl_consent_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::ConsentStore for $store {
            async fn set_consent_policy(&self, p: &ConsentPolicyRecord) -> Result<()> {
                sqlx::query(
                    "INSERT INTO consent_policies (school_id, device_class, consent, updated_by, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (school_id, device_class) DO UPDATE SET \
                     consent = excluded.consent, updated_by = excluded.updated_by, \
                     updated_at = excluded.updated_at",
                )
                .bind(&p.school_id)
                .bind(&p.device_class)
                .bind(&p.consent)
                .bind(&p.updated_by)
                .bind(p.updated_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_consent_policy(&self, school_id: &str, device_class: &str) -> Result<Option<ConsentPolicyRecord>> {
                Ok(sqlx::query_as(
                    "SELECT school_id, device_class, consent, updated_by, updated_at \
                     FROM consent_policies WHERE school_id = $1 AND device_class = $2",
                )
                .bind(school_id)
                .bind(device_class)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_consent_policies(&self, school_ids: Option<&[String]>) -> Result<Vec<ConsentPolicyRecord>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT school_id, device_class, consent, updated_by, updated_at \
                     FROM consent_policies WHERE TRUE",
                );
                if let Some(schools) = school_ids {
                    qb.push(" AND school_id IN (''");
                    for school in schools {
                        qb.push(", ").push_bind(school.clone());
                    }
                    qb.push(")");
                }
                qb.push(" ORDER BY school_id, device_class");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn set_consent_floor(&self, f: &ConsentFloorRecord) -> Result<()> {
                sqlx::query(
                    "INSERT INTO consent_floors (school_id, device_class, floor, set_by, set_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (school_id, device_class) DO UPDATE SET \
                     floor = excluded.floor, set_by = excluded.set_by, set_at = excluded.set_at",
                )
                .bind(&f.school_id)
                .bind(&f.device_class)
                .bind(&f.floor)
                .bind(&f.set_by)
                .bind(f.set_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn consent_floors(&self, school_id: &str) -> Result<Vec<ConsentFloorRecord>> {
                Ok(sqlx::query_as(
                    "SELECT school_id, device_class, floor, set_by, set_at FROM consent_floors \
                     WHERE school_id = $1 ORDER BY device_class",
                )
                .bind(school_id)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

impl_consent_store!(SqliteStore, sqlx::Sqlite);
impl_consent_store!(PgStore, sqlx::Postgres);
