//! Records to wire messages.

use schoolfleet_proto::time::to_timestamp;
use schoolfleet_proto::v1;

use crate::storage::{self, DeviceRecord, DeviceStatus, Millis, millis_to_datetime};

pub fn ts(ms: Millis) -> Option<prost_types::Timestamp> {
    Some(to_timestamp(millis_to_datetime(ms)))
}

pub fn opt_ts(ms: Option<Millis>) -> Option<prost_types::Timestamp> {
    ms.and_then(ts)
}

pub fn county(c: &storage::County) -> v1::County {
    v1::County {
        id: c.id.clone(),
        name: c.name.clone(),
        created_at: ts(c.created_at),
    }
}

pub fn school(s: &storage::School) -> v1::School {
    v1::School {
        id: s.id.clone(),
        county_id: s.county_id.clone(),
        name: s.name.clone(),
        created_at: ts(s.created_at),
    }
}

pub fn device_status(status: DeviceStatus) -> v1::DeviceStatus {
    match status {
        DeviceStatus::Active => v1::DeviceStatus::Active,
        DeviceStatus::Retired => v1::DeviceStatus::Retired,
        DeviceStatus::Revoked => v1::DeviceStatus::Revoked,
    }
}

pub fn device(d: &DeviceRecord, now: Millis, online_window_ms: Millis) -> v1::Device {
    v1::Device {
        id: d.id.clone(),
        hostname: d.hostname.clone(),
        county_id: d.county_id.clone(),
        school_id: d.school_id.clone(),
        device_class: d.device_class.clone(),
        status: device_status(d.status()) as i32,
        online: d.is_online(now, online_window_ms),
        last_seen: opt_ts(d.last_seen),
        enrolled_at: ts(d.enrolled_at),
        inventory_at: opt_ts(d.inventory_at),
        os_name: d.os_name.clone(),
        os_version: d.os_version.clone(),
        vendor: d.vendor.clone(),
        model: d.model.clone(),
        serial_number: d.serial_number.clone(),
        memory_total_bytes: d.memory_total_bytes.max(0) as u64,
        ip_addresses: d
            .ip_addresses
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        agent_version: d.agent_version.clone(),
        agent_consent_min: d.agent_consent_min.clone().unwrap_or_default(),
    }
}

pub fn enrollment_token(t: &storage::EnrollmentToken) -> v1::EnrollmentToken {
    v1::EnrollmentToken {
        id: t.id.clone(),
        school_id: t.school_id.clone(),
        county_id: t.county_id.clone(),
        device_class: t.device_class.clone(),
        expires_at: ts(t.expires_at),
        max_uses: t.max_uses.clamp(0, u32::MAX as i64) as u32,
        uses: t.uses.clamp(0, u32::MAX as i64) as u32,
        revoked: t.revoked_at.is_some(),
        created_by: t.created_by.clone(),
        created_at: ts(t.created_at),
        description: t.description.clone(),
        reinstall_device_id: t.reinstall_device_id.clone().unwrap_or_default(),
    }
}

pub fn user(u: &storage::User) -> v1::User {
    v1::User {
        id: u.id.clone(),
        name: u.name.clone(),
        county_id: u.county_id.clone().unwrap_or_default(),
        roles: u
            .bindings
            .iter()
            .map(|b| v1::RoleBinding {
                role: b.role.clone(),
                scope: b.scope.clone(),
                remote: b.remote.clone(),
            })
            .collect(),
        created_at: ts(u.created_at),
        disabled_at: None,
    }
}
