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
    /// and as `retry-after` (seconds).
    pub fn error(&self, what: &str) -> crate::service::AppError {
        let seconds = self.seconds();
        crate::service::AppError::exhausted(format!("{what}; try again in {seconds} s"))
            .with_retry_after(std::time::Duration::from_secs(seconds))
    }

    /// [`Limited::error`] as a gRPC status.
    pub fn status(&self, what: &str) -> tonic::Status {
        self.error(what).into()
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

    /// Would `check` allow `key` now? Takes nothing: for limits that count
    /// only failures, which are known after the attempt.
    pub fn peek(&self, key: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bucket) = buckets.get(key) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        let tokens = (bucket.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(Limited {
                retry_after: Duration::from_secs_f64((1.0 - tokens) / self.refill_per_sec),
            })
        }
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

/// The key of a peer address for limits: the IP without the port; for
/// IPv6 its /64, which one host usually holds whole.
pub fn peer_key(addr: Option<std::net::SocketAddr>) -> String {
    match addr.map(|a| a.ip().to_canonical()) {
        Some(std::net::IpAddr::V4(ip)) => ip.to_string(),
        Some(std::net::IpAddr::V6(ip)) => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".into(),
    }
}

/// Failed enrolments and API-token authentications: limited per token id
/// and per peer, and audited in aggregate (one entry per token or peer per
/// window, with a count), so that a flood of wrong secrets cannot write
/// one audit row per attempt.
#[derive(Debug)]
pub struct AuthFailures {
    pub per_token: RateLimiter,
    pub per_peer: RateLimiter,
    pending: Mutex<HashMap<FailureKey, FailureCount>>,
}

/// What one aggregated audit entry is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FailureKey {
    /// `device.enroll` or `api_token.authenticate`.
    pub action: &'static str,
    /// `enrollment_token:<id>`, `api_token:<id>` or `peer:<address>`.
    pub target: String,
    pub county_id: Option<String>,
}

/// Failures of one key within the current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCount {
    pub count: u64,
    pub first_at: i64,
    pub last_at: i64,
    /// Up to `MAX_LISTED` peers and reasons; the count covers all.
    pub peers: Vec<String>,
    pub reasons: Vec<String>,
}

const MAX_LISTED: usize = 5;
/// Keys collected per window; beyond, failures count under one key.
const MAX_PENDING: usize = 10_000;

impl AuthFailures {
    pub fn new(limits: &crate::config::LimitsSection) -> Self {
        let minute = Duration::from_secs(60);
        AuthFailures {
            per_token: RateLimiter::new(limits.auth_failures_per_token_per_minute, minute),
            per_peer: RateLimiter::new(limits.auth_failures_per_peer_per_minute, minute),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses an attempt from a peer that failed too often lately, before
    /// any work is done for it.
    pub fn admit(&self, peer: &str) -> Result<(), Limited> {
        self.per_peer.peek(peer)
    }

    /// Refuses an attempt against a key (a token id, a web user's second
    /// factor) that failed too often lately, before any work is done.
    pub fn admit_key(&self, key: &str) -> Result<(), Limited> {
        self.per_token.peek(key)
    }

    /// Counts one failure against the token and the peer, for the limits
    /// and for the next aggregated audit entry. `Err` when the token or the
    /// peer is now over its limit: the caller answers RESOURCE_EXHAUSTED
    /// instead of the failure (and need not log it). The token id's limit
    /// applies to failures only, so that whoever knows a token's id cannot
    /// lock out its holder, who presents the right secret.
    pub fn record(
        &self,
        key: FailureKey,
        token_id: Option<&str>,
        peer: &str,
        reason: &str,
    ) -> Result<(), Limited> {
        let by_peer = self.per_peer.check(peer);
        let by_token = token_id.map_or(Ok(()), |id| self.per_token.check(id));
        let now = crate::storage::now_millis();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = if pending.len() >= MAX_PENDING && !pending.contains_key(&key) {
            FailureKey {
                action: key.action,
                target: "many".into(),
                county_id: None,
            }
        } else {
            key
        };
        let entry = pending.entry(key).or_insert(FailureCount {
            count: 0,
            first_at: now,
            last_at: now,
            peers: Vec::new(),
            reasons: Vec::new(),
        });
        entry.count += 1;
        entry.last_at = now;
        for (list, value) in [(&mut entry.peers, peer), (&mut entry.reasons, reason)] {
            if list.len() < MAX_LISTED && !list.iter().any(|v| v == value) {
                list.push(value.to_owned());
            }
        }
        by_peer.and(by_token)
    }

    /// Takes the counts of the window that just ended.
    pub fn drain(&self) -> Vec<(FailureKey, FailureCount)> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut drained: Vec<_> = pending.drain().collect();
        drained.sort_by_key(|(_, count)| count.first_at);
        drained
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
    fn peers_are_keyed_by_address_and_ipv6_prefix() {
        let v4 = "192.0.2.7:5555".parse().ok();
        assert_eq!(peer_key(v4), "192.0.2.7");
        let a = "[2001:db8:1:2:aaaa::1]:1".parse().ok();
        let b = "[2001:db8:1:2:bbbb::9]:2".parse().ok();
        assert_eq!(peer_key(a), peer_key(b));
        assert_eq!(peer_key(a), "2001:db8:1:2::/64");
        let mapped = "[::ffff:192.0.2.7]:1".parse().ok();
        assert_eq!(peer_key(mapped), "192.0.2.7");
    }

    #[test]
    fn failures_are_counted_per_key_and_drained_once() {
        let limits = crate::config::LimitsSection {
            auth_failures_per_token_per_minute: 2,
            ..Default::default()
        };
        let failures = AuthFailures::new(&limits);
        let key = FailureKey {
            action: "device.enroll",
            target: "enrollment_token:t1".into(),
            county_id: Some("kus".into()),
        };
        assert!(failures.admit("p").is_ok());
        let outcomes: Vec<bool> = (0..3)
            .map(|_| {
                failures
                    .record(key.clone(), Some("t1"), "p", "wrong secret")
                    .is_ok()
            })
            .collect();
        // The third failure of t1 is over its limit; the peer is not.
        assert_eq!(outcomes, [true, true, false]);
        assert!(failures.admit("p").is_ok());
        let other = FailureKey {
            target: "enrollment_token:t2".into(),
            ..key.clone()
        };
        assert!(failures.record(other, Some("t2"), "p", "revoked").is_ok());
        let mut drained = failures.drain();
        // Drained in map order: sort for the comparison.
        drained.sort_by(|a, b| a.0.target.cmp(&b.0.target));
        assert_eq!(drained.len(), 2);
        assert_eq!(drained[0].0, key);
        assert_eq!(drained[0].1.count, 3);
        assert_eq!(drained[0].1.reasons, ["wrong secret"]);
        assert!(failures.drain().is_empty());
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
