//! Rate limits per key (a device, a token id, a peer address): token
//! buckets in memory.
//!
//! The buckets live on each replica and are lost on restart: a limit is a
//! brake on floods, not an accounting, so several replicas each allowing
//! the rate is acceptable. Memory is bounded: idle buckets are dropped, and
//! once `MAX_KEYS` keys are tracked, new keys are limited until old ones
//! go idle (a flood from many addresses then brakes itself).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys tracked by one limiter.
const MAX_KEYS: usize = 100_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// At most `per` events per `period` per key, with bursts up to `per`.
#[derive(Debug)]
pub struct RateLimiter {
    capacity: f64,
    refill_per_sec: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A refused event: the key used its share; the next one is allowed after
/// `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds to wait, at least 1, for messages and `retry-after`.
    pub fn seconds(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// RESOURCE_EXHAUSTED with `what` and the time to wait, in the message
    /// and as `retry-after` metadata (seconds).
    pub fn status(&self, what: &str) -> tonic::Status {
        let seconds = self.seconds();
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Ok(value) = seconds.to_string().parse() {
            metadata.insert("retry-after", value);
        }
        tonic::Status::with_metadata(
            tonic::Code::ResourceExhausted,
            format!("{what}; try again in {seconds} s"),
            metadata,
        )
    }
}

impl RateLimiter {
    pub fn new(per: u32, period: Duration) -> Self {
        let per = f64::from(per.max(1));
        RateLimiter {
            capacity: per,
            refill_per_sec: per / period.as_secs_f64().max(0.001),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), Limited> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Limited> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= MAX_KEYS {
            self.drop_idle(&mut buckets, now);
            if buckets.len() >= MAX_KEYS {
                return Err(Limited {
                    retry_after: Duration::from_secs_f64(1.0 / self.refill_per_sec),
                });
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Limited {
                retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / self.refill_per_sec),
            })
        }
    }

    /// Forgets buckets that have refilled completely: they hold nothing.
    fn drop_idle(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let full_after = self.capacity / self.refill_per_sec;
        buckets.retain(|_, b| now.saturating_duration_since(b.updated).as_secs_f64() < full_after);
    }

    /// Keys tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or_default()
    }
}

/// The per-device limits of agent requests.
#[derive(Debug)]
pub struct DeviceLimits {
    pub reports: RateLimiter,
    /// Hellos, heartbeats and stream openings.
    pub heartbeats: RateLimiter,
    pub renewals: RateLimiter,
    pub problem_reports: RateLimiter,
}

impl DeviceLimits {
    pub fn new(config: &crate::config::Config) -> Self {
        let limits = &config.limits;
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        // A heartbeat interval shorter than a minute (tests, demos) must
        // not trip the limit: at least three per interval are allowed.
        let interval = config.agents.heartbeat_interval.as_secs().max(1);
        let heartbeats = limits
            .device_heartbeats_per_minute
            .max((3 * 60 / interval) as u32);
        DeviceLimits {
            reports: RateLimiter::new(limits.device_reports_per_hour, hour),
            heartbeats: RateLimiter::new(heartbeats, minute),
            renewals: RateLimiter::new(limits.device_renewals_per_day, 24 * hour),
            problem_reports: RateLimiter::new(limits.device_problem_reports_per_hour, hour),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("d", t0).is_ok());
        }
        let limited = limiter.check_at("d", t0).unwrap_err();
        assert_eq!(limited.seconds(), 20);
        // Other keys have their own bucket.
        assert!(limiter.check_at("e", t0).is_ok());
        // One token back after 20 s, not two.
        let t1 = t0 + Duration::from_secs(20);
        assert!(limiter.check_at("d", t1).is_ok());
        assert!(limiter.check_at("d", t1).is_err());
    }

    #[test]
    fn idle_keys_are_forgotten_when_the_table_is_full() {
        let limiter = RateLimiter::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            let _ = limiter.check_at(&i.to_string(), t0);
        }
        // Full, nothing idle yet: a new key is limited, not tracked.
        assert!(limiter.check_at("new", t0).is_err());
        assert_eq!(limiter.tracked(), MAX_KEYS);
        // Once they have refilled they are dropped.
        assert!(limiter.check_at("new", t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn status_carries_a_retry_hint() {
        let status = Limited {
            retry_after: Duration::from_millis(1500),
        }
        .status("too many heartbeats");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.message(), "too many heartbeats; try again in 2 s");
        assert_eq!(status.metadata().get("retry-after").unwrap(), "2");
    }
}
