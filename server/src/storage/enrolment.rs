//! Enrolment: one-time tokens and enrolling (or re-enrolling) a device.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_enrolment_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, StorageError, TenantFilter, sql};

#[async_trait]
pub trait EnrolmentStore: Send + Sync {
    async fn create_enrollment_token(&self, token: &EnrollmentToken) -> Result<()>;

    async fn get_enrollment_token(&self, id: &str) -> Result<Option<EnrollmentToken>>;

    async fn list_enrollment_tokens(
        &self,
        filter: &TenantFilter,
        county_id: Option<&str>,
        school_id: Option<&str>,
    ) -> Result<Vec<EnrollmentToken>>;

    async fn revoke_enrollment_token(&self, id: &str, at: Millis) -> Result<()>;

    /// An existing device of this county with the same hardware, for
    /// re-enrolment after a reinstall (no duplicate devices).
    async fn find_device_by_hardware(
        &self,
        county_id: &str,
        identity: &HardwareIdentity,
    ) -> Result<Option<DeviceRecord>>;

    /// Atomically uses one use of the token and creates (or re-enrols) the
    /// device with its new certificate. Fails with `TokenUnusable` when the
    /// token was used up, revoked or expired in the meantime.
    async fn enroll_device(&self, enrolment: &Enrolment) -> Result<()>;
}

macro_rules! impl_enrolment_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::EnrolmentStore for $store {
            async fn create_enrollment_token(&self, token: &EnrollmentToken) -> Result<()> {
                sqlx::query(
                    "INSERT INTO enrollment_tokens (id, secret_hash, county_id, school_id, \
                     device_class, description, max_uses, uses, expires_at, created_by, \
                     created_at, revoked_at, reinstall_device_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&token.id)
                .bind(&token.secret_hash)
                .bind(&token.county_id)
                .bind(&token.school_id)
                .bind(&token.device_class)
                .bind(&token.description)
                .bind(token.max_uses)
                .bind(token.uses)
                .bind(token.expires_at)
                .bind(&token.created_by)
                .bind(token.created_at)
                .bind(token.revoked_at)
                .bind(&token.reinstall_device_id)
                .execute(&self.writer)
                .await
                .map_err(|e| sql::conflict_or(e, format!("enrolment token {}", token.id)))?;
                Ok(())
            }

            async fn get_enrollment_token(&self, id: &str) -> Result<Option<EnrollmentToken>> {
                Ok(sqlx::query_as(
                    "SELECT id, secret_hash, county_id, school_id, device_class, description, \
                     max_uses, uses, expires_at, created_by, created_at, revoked_at, reinstall_device_id \
                     FROM enrollment_tokens WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_enrollment_tokens(
                &self,
                filter: &TenantFilter,
                county_id: Option<&str>,
                school_id: Option<&str>,
            ) -> Result<Vec<EnrollmentToken>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, secret_hash, county_id, school_id, device_class, description, \
                     max_uses, uses, expires_at, created_by, created_at, revoked_at, reinstall_device_id \
                     FROM enrollment_tokens t WHERE TRUE",
                );
                sql::push_tenant_filter!(qb, filter, "t");
                if let Some(county) = county_id {
                    qb.push(" AND t.county_id = ").push_bind(county.to_owned());
                }
                if let Some(school) = school_id {
                    qb.push(" AND t.school_id = ").push_bind(school.to_owned());
                }
                qb.push(" ORDER BY t.created_at DESC, t.id");
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn revoke_enrollment_token(&self, id: &str, at: Millis) -> Result<()> {
                let done = sqlx::query(
                    "UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(&self.writer)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("enrolment token {id}")));
                }
                Ok(())
            }

            async fn find_device_by_hardware(
                &self,
                county_id: &str,
                identity: &HardwareIdentity,
            ) -> Result<Option<DeviceRecord>> {
                // The firmware UUID wins; the machine id is the fallback for
                // hardware without one. Empty values never match.
                Ok(sqlx::query_as(&format!(
                    "{} WHERE county_id = $1 AND ((system_uuid = $2 AND serial_number = $3 AND $2 <> '') \
                     OR ($2 = '' AND machine_id = $4 AND $4 <> '')) \
                     ORDER BY enrolled_at DESC LIMIT 1",
                    sql::device_select()
                ))
                .bind(county_id)
                .bind(&identity.system_uuid)
                .bind(&identity.serial_number)
                .bind(&identity.machine_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn enroll_device(&self, enrolment: &Enrolment) -> Result<()> {
                let device = &enrolment.device;
                let mut tx = self.begin_write().await?;
                // The conditional update is the race-free use counter: two
                // agents enrolling with the last use cannot both succeed.
                let used = sqlx::query(
                    "UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1 \
                     AND revoked_at IS NULL AND expires_at > $2 AND uses < max_uses",
                )
                .bind(&enrolment.token_id)
                .bind(enrolment.now)
                .execute(&mut *tx)
                .await?;
                if used.rows_affected() == 0 {
                    return Err(StorageError::TokenUnusable(
                        "token expired, revoked or used up".into(),
                    ));
                }
                if enrolment.existing {
                    let updated = sqlx::query(
                        "UPDATE devices SET school_id = $2, county_id = $3, device_class = $4, \
                         status = $5, hostname = $6, cert_fingerprint = $7, cert_serial = $8, \
                         cert_not_after = $9, enrolled_at = $10, connected = FALSE, machine_id = $11, \
                         cert_fingerprint_previous = NULL \
                         WHERE id = $1 AND status <> 'revoked'",
                    )
                    .bind(&device.id)
                    .bind(&device.school_id)
                    .bind(&device.county_id)
                    .bind(&device.device_class)
                    .bind(&device.status)
                    .bind(&device.hostname)
                    .bind(&device.cert_fingerprint)
                    .bind(&device.cert_serial)
                    .bind(device.cert_not_after)
                    .bind(device.enrolled_at)
                    .bind(&device.machine_id)
                    .execute(&mut *tx)
                    .await?;
                    if updated.rows_affected() == 0 {
                        return Err(StorageError::NotFound(format!("device {}", device.id)));
                    }
                } else {
                    sqlx::query(
                        "INSERT INTO devices (id, county_id, school_id, device_class, status, \
                         hostname, system_uuid, serial_number, cert_fingerprint, cert_serial, \
                         cert_not_after, enrolled_at, agent_version, machine_id) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    )
                    .bind(&device.id)
                    .bind(&device.county_id)
                    .bind(&device.school_id)
                    .bind(&device.device_class)
                    .bind(&device.status)
                    .bind(&device.hostname)
                    .bind(&device.system_uuid)
                    .bind(&device.serial_number)
                    .bind(&device.cert_fingerprint)
                    .bind(&device.cert_serial)
                    .bind(device.cert_not_after)
                    .bind(device.enrolled_at)
                    .bind(&device.agent_version)
                    .bind(&device.machine_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| sql::conflict_or(e, format!("device {}", device.id)))?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

impl_enrolment_store!(SqliteStore, sqlx::Sqlite);
impl_enrolment_store!(PgStore, sqlx::Postgres);
