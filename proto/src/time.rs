//! Conversions between protobuf timestamps and chrono.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

pub fn to_timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// `None` for a missing or out-of-range timestamp (agents are untrusted).
pub fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(t.nanos).ok()?;
    DateTime::from_timestamp(t.seconds, nanos)
}

pub fn opt_to_timestamp(t: Option<DateTime<Utc>>) -> Option<Timestamp> {
    t.map(to_timestamp)
}

pub fn opt_from_timestamp(t: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(from_timestamp)
}
