//! Devices: lookups, status, certificates, their agent streams and the replicas holding them.
//!
//! One domain of the store (`Store` is the union of these traits); both
//! backends share the query text through `impl_device_store!`, see `sql.rs`.

use async_trait::async_trait;

use super::models::*;
use super::{PgStore, Result, SqliteStore, StorageError, sql};

#[async_trait]
pub trait DeviceStore: Send + Sync {
    async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>>;

    /// The devices of these ids in one query, in the order of `ids`;
    /// unknown ids are absent.
    async fn get_devices(&self, ids: &[String]) -> Result<Vec<DeviceRecord>>;

    async fn find_devices_by_hostname(&self, hostname: &str) -> Result<Vec<DeviceRecord>>;

    /// Devices whose id ends with `suffix` (lowercase hex, the short id the
    /// CLI shows).
    async fn find_devices_by_id_suffix(&self, suffix: &str) -> Result<Vec<DeviceRecord>>;

    async fn get_device_by_cert(&self, fingerprint_hex: &str) -> Result<Option<DeviceRecord>>;

    async fn list_devices(&self, query: &DeviceQuery) -> Result<Vec<DeviceRecord>>;

    async fn set_device_status(&self, id: &str, status: DeviceStatus) -> Result<()>;

    /// Adds one entry to a device's history (`device history`) outside an
    /// inventory report: identity events such as a re-enrolment.
    async fn record_device_change(
        &self,
        device_id: &str,
        change: &InventoryChangeRecord,
    ) -> Result<()>;

    /// Merges `new_id` (a fresh enrolment) into `old_id`, in one
    /// transaction: the old device takes over the new one's certificate,
    /// host name, hardware hints, school and class and becomes active; the
    /// new record is retired without a certificate. `notes` go into the
    /// history of (old, new). A revoked old device is refused.
    async fn adopt_device(
        &self,
        new_id: &str,
        old_id: &str,
        notes: (&InventoryChangeRecord, &InventoryChangeRecord),
    ) -> Result<()>;

    /// Replaces the certificate of an active device that presented
    /// `current_fingerprint` (its current or previous certificate, the
    /// latter after a renewal the device did not save); the presented one
    /// stays accepted until [`DeviceStore::confirm_device_cert`]. False if
    /// nothing matched.
    async fn renew_device_cert(
        &self,
        id: &str,
        current_fingerprint: &str,
        renewed: &CertificateRecord,
    ) -> Result<bool>;

    /// The device used its current certificate: forget the previous one.
    async fn confirm_device_cert(&self, id: &str, fingerprint: &str) -> Result<()>;

    /// The device's stream `stream` opened, or the agent spoke on it (a
    /// heartbeat): connected, seen at `at`, and this stream is the one that
    /// speaks for the device from now on. Returns false when the device is
    /// no longer active, so that its stream must end. With a `hello` (the
    /// stream's first message) the agent's version and consent floor are
    /// replaced by what it said.
    async fn record_agent_seen(
        &self,
        id: &str,
        at: Millis,
        stream: &AgentStream<'_>,
        hello: Option<&AgentHello<'_>>,
    ) -> Result<bool> {
        // One write path: a group of one.
        let seen = AgentSeen::new(id, at, stream, hello);
        let active = self.record_agents_seen(std::slice::from_ref(&seen)).await?;
        Ok(active.first().copied().unwrap_or(false))
    }

    /// Many [`DeviceStore::record_agent_seen`] in one transaction (the
    /// heartbeats' group commit, `crate::heartbeats`): one answer per
    /// write, in order.
    async fn record_agents_seen(&self, batch: &[AgentSeen]) -> Result<Vec<bool>>;

    /// The stream `stream_id` ended: the device is disconnected, unless a
    /// newer stream (on any replica) has taken over meanwhile. Returns
    /// whether this stream still spoke for the device.
    async fn record_agent_gone(&self, id: &str, at: Millis, stream_id: &str) -> Result<bool>;

    /// This replica is reachable at `url` (renewed while it runs).
    async fn announce_replica(&self, replica_id: &str, url: &str, at: Millis) -> Result<()>;

    /// This replica stops: no session is relayed to it any more.
    async fn withdraw_replica(&self, replica_id: &str) -> Result<()>;

    /// Where the stream of a connected device is held: the replica's id and
    /// URL, if that replica announced itself at or after `seen_since`.
    async fn agent_stream_holder(
        &self,
        device_id: &str,
        seen_since: Millis,
    ) -> Result<Option<(String, String)>>;
}

/// Marks a device alive on a stream; matches only an active device. A
/// Hello ($6) also sets the agent's version and consent floor; a heartbeat
/// whose inventory hash ($8) is the stored inventory's confirms that
/// inventory current (the compliance check of its age counts from then).
const RECORD_AGENT_SEEN: &str = "UPDATE devices SET last_seen = $2, connected = TRUE, \
     connection_id = $3, connection_replica = $4, \
     agent_version = COALESCE($5, agent_version), \
     agent_consent_min = CASE WHEN $6 THEN $7 ELSE agent_consent_min END, \
     inventory_confirmed_at = CASE WHEN inventory_hash = $8 THEN $2 \
     ELSE inventory_confirmed_at END \
     WHERE id = $1 AND status = 'active'";

macro_rules! impl_device_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::storage::DeviceStore for $store {
            async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>> {
                Ok(sqlx::query_as(&format!("{} WHERE id = $1", sql::device_select()))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn get_devices(&self, ids: &[String]) -> Result<Vec<DeviceRecord>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "{} WHERE id IN (",
                    sql::device_select()
                ));
                let mut sep = qb.separated(", ");
                for id in ids {
                    sep.push_bind(id.clone());
                }
                qb.push(")");
                let found: Vec<DeviceRecord> = qb.build_query_as().fetch_all(&self.pool).await?;
                let mut by_id: std::collections::HashMap<String, DeviceRecord> =
                    found.into_iter().map(|d| (d.id.clone(), d)).collect();
                Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
            }

            async fn find_devices_by_hostname(&self, hostname: &str) -> Result<Vec<DeviceRecord>> {
                Ok(sqlx::query_as(&format!(
                    "{} WHERE lower(hostname) = lower($1) ORDER BY enrolled_at DESC",
                    sql::device_select()
                ))
                .bind(hostname)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn find_devices_by_id_suffix(&self, suffix: &str) -> Result<Vec<DeviceRecord>> {
                // Hex only, so nothing in it is a LIKE wildcard.
                if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(Vec::new());
                }
                Ok(sqlx::query_as(&format!(
                    "{} WHERE id LIKE $1 ORDER BY enrolled_at DESC LIMIT 10",
                    sql::device_select()
                ))
                .bind(format!("%{}", suffix.to_ascii_lowercase()))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn get_device_by_cert(&self, fingerprint_hex: &str) -> Result<Option<DeviceRecord>> {
                Ok(sqlx::query_as(&format!(
                    "{} WHERE cert_fingerprint = $1 OR cert_fingerprint_previous = $1",
                    sql::device_select()
                ))
                .bind(fingerprint_hex)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_devices(&self, q: &DeviceQuery) -> Result<Vec<DeviceRecord>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(sql::device_select());
                qb.push(" d WHERE TRUE");
                sql::push_tenant_filter!(qb, &q.filter, "d");
                if let Some(county) = &q.county_id {
                    qb.push(" AND d.county_id = ").push_bind(county.clone());
                }
                if let Some(school) = &q.school_id {
                    qb.push(" AND d.school_id = ").push_bind(school.clone());
                }
                if let Some(class) = &q.device_class {
                    qb.push(" AND d.device_class = ").push_bind(class.clone());
                }
                if let Some(host) = &q.hostname_contains {
                    qb.push(" AND lower(d.hostname) LIKE ")
                        .push_bind(sql::like_pattern(host))
                        .push(" ESCAPE '\\'");
                }
                if !q.include_retired {
                    qb.push(" AND d.status = 'active'");
                }
                let online_since = q.now - q.online_window_ms;
                match q.online {
                    Some(true) => {
                        qb.push(" AND d.connected AND d.last_seen >= ").push_bind(online_since);
                    }
                    Some(false) => {
                        qb.push(" AND NOT (d.connected AND COALESCE(d.last_seen, 0) >= ")
                            .push_bind(online_since)
                            .push(")");
                    }
                    None => {}
                }
                if let Some(after) = q.seen_after {
                    qb.push(" AND d.last_seen >= ").push_bind(after);
                }
                if let Some(before) = q.not_seen_since {
                    qb.push(" AND COALESCE(d.last_seen, 0) < ").push_bind(before);
                }
                if let Some((host, id)) = &q.after {
                    qb.push(" AND (d.hostname > ")
                        .push_bind(host.clone())
                        .push(" OR (d.hostname = ")
                        .push_bind(host.clone())
                        .push(" AND d.id > ")
                        .push_bind(id.clone())
                        .push("))");
                }
                qb.push(" ORDER BY d.hostname, d.id LIMIT ").push_bind(q.limit);
                Ok(qb.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn set_device_status(&self, id: &str, status: DeviceStatus) -> Result<()> {
                let done = sqlx::query("UPDATE devices SET status = $2, connected = FALSE WHERE id = $1")
                    .bind(id)
                    .bind(status.as_str())
                    .execute(&self.writer)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("device {id}")));
                }
                Ok(())
            }

            async fn record_device_change(
                &self,
                device_id: &str,
                change: &InventoryChangeRecord,
            ) -> Result<()> {
                sql::insert_inventory_change!(device_id, change, &self.writer);
                Ok(())
            }

            async fn adopt_device(
                &self,
                new_id: &str,
                old_id: &str,
                notes: (&InventoryChangeRecord, &InventoryChangeRecord),
            ) -> Result<()> {
                let mut tx = self.begin_write().await?;
                // Read inside the transaction: a renewal in between must not
                // leave the old device with a certificate already replaced.
                let new: Option<DeviceRecord> =
                    sqlx::query_as(&format!("{} WHERE id = $1", sql::device_select()))
                        .bind(new_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(new) = new.filter(|d| d.status == "active") else {
                    return Err(StorageError::NotFound(format!("active device {new_id}")));
                };
                // The certificate column is unique: free it before moving it.
                sqlx::query(
                    "UPDATE devices SET status = 'retired', connected = FALSE, \
                     cert_fingerprint = NULL, cert_fingerprint_previous = NULL WHERE id = $1",
                )
                .bind(new_id)
                .execute(&mut *tx)
                .await?;
                let updated = sqlx::query(
                    "UPDATE devices SET school_id = $2, county_id = $3, device_class = $4, \
                     status = 'active', hostname = $5, system_uuid = $6, serial_number = $7, \
                     machine_id = $8, cert_fingerprint = $9, cert_serial = $10, \
                     cert_not_after = $11, enrolled_at = $12, agent_version = $13, \
                     connected = FALSE, cert_fingerprint_previous = NULL \
                     WHERE id = $1 AND status <> 'revoked'",
                )
                .bind(old_id)
                .bind(&new.school_id)
                .bind(&new.county_id)
                .bind(&new.device_class)
                .bind(&new.hostname)
                .bind(&new.system_uuid)
                .bind(&new.serial_number)
                .bind(&new.machine_id)
                .bind(&new.cert_fingerprint)
                .bind(&new.cert_serial)
                .bind(new.cert_not_after)
                .bind(new.enrolled_at)
                .bind(&new.agent_version)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StorageError::NotFound(format!("device {old_id} (or it is revoked)")));
                }
                for (device_id, change) in [(old_id, notes.0), (new_id, notes.1)] {
                    sql::insert_inventory_change!(device_id, &change, &mut *tx);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn renew_device_cert(
                &self,
                id: &str,
                current_fingerprint: &str,
                renewed: &CertificateRecord,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE devices SET cert_fingerprint_previous = $2, \
                     cert_fingerprint = $3, cert_serial = $4, cert_not_after = $5 \
                     WHERE id = $1 AND status = 'active' \
                     AND (cert_fingerprint = $2 OR cert_fingerprint_previous = $2)",
                )
                .bind(id)
                .bind(current_fingerprint)
                .bind(&renewed.fingerprint)
                .bind(&renewed.serial)
                .bind(renewed.not_after)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn confirm_device_cert(&self, id: &str, fingerprint: &str) -> Result<()> {
                sqlx::query(
                    "UPDATE devices SET cert_fingerprint_previous = NULL \
                     WHERE id = $1 AND cert_fingerprint = $2 AND cert_fingerprint_previous IS NOT NULL",
                )
                .bind(id)
                .bind(fingerprint)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn record_agents_seen(&self, batch: &[AgentSeen]) -> Result<Vec<bool>> {
                // One transaction, one commit (fsync) for the whole group.
                let mut tx = self.begin_write().await?;
                let mut active = Vec::with_capacity(batch.len());
                for seen in batch {
                    let hello = seen.hello();
                    let done = sqlx::query(RECORD_AGENT_SEEN)
                        .bind(&seen.device_id)
                        .bind(seen.at)
                        .bind(&seen.stream_id)
                        .bind(&seen.replica)
                        .bind(hello.map(|h| h.version))
                        .bind(hello.is_some())
                        .bind(hello.and_then(|h| h.consent_min))
                        .bind(&seen.inventory_hash)
                        .execute(&mut *tx)
                        .await?;
                    active.push(done.rows_affected() == 1);
                }
                tx.commit().await?;
                Ok(active)
            }

            async fn record_agent_gone(&self, id: &str, at: Millis, stream_id: &str) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE devices SET last_seen = $2, connected = FALSE, \
                     connection_id = NULL, connection_replica = NULL \
                     WHERE id = $1 AND connection_id = $3",
                )
                .bind(id)
                .bind(at)
                .bind(stream_id)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn announce_replica(&self, replica_id: &str, url: &str, at: Millis) -> Result<()> {
                sqlx::query(
                    "INSERT INTO replicas (id, url, seen_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET url = excluded.url, seen_at = excluded.seen_at",
                )
                .bind(replica_id)
                .bind(url)
                .bind(at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn withdraw_replica(&self, replica_id: &str) -> Result<()> {
                sqlx::query("DELETE FROM replicas WHERE id = $1")
                    .bind(replica_id)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn agent_stream_holder(
                &self,
                device_id: &str,
                seen_since: Millis,
            ) -> Result<Option<(String, String)>> {
                Ok(sqlx::query_as(
                    "SELECT r.id, r.url FROM devices d JOIN replicas r ON r.id = d.connection_replica \
                     WHERE d.id = $1 AND d.connected AND r.seen_at >= $2",
                )
                .bind(device_id)
                .bind(seen_since)
                .fetch_optional(&self.pool)
                .await?)
            }
        }
    };
}

impl_device_store!(SqliteStore, sqlx::Sqlite);
impl_device_store!(PgStore, sqlx::Postgres);
