//! Reconnect backoff after gRPC's connection-backoff spec: start at 1 s,
//! multiply by 1.6, jitter ±20 %, cap at 120 s. The jitter keeps 10,000
//! agents from returning at the same instant after a server restart.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    multiplier: f64,
    jitter: f64,
    max: Duration,
    current: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), 1.6, 0.2, Duration::from_secs(120))
    }
}

impl Backoff {
    pub fn new(initial: Duration, multiplier: f64, jitter: f64, max: Duration) -> Self {
        Backoff {
            initial,
            multiplier,
            jitter,
            max,
            current: initial,
        }
    }

    /// The delay before the next attempt; grows the base for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = jittered(self.current, self.jitter);
        self.current = self.current.mul_f64(self.multiplier).min(self.max);
        delay.min(self.max)
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// `base` scaled by a random factor in [1 - jitter, 1 + jitter].
pub fn jittered(base: Duration, jitter: f64) -> Duration {
    let factor = 1.0 + rand::rng().random_range(-jitter..=jitter);
    base.mul_f64(factor.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_the_multiplier_within_jitter_and_caps() {
        let mut backoff = Backoff::default();
        let mut base = 1.0f64;
        for _ in 0..20 {
            let delay = backoff.next_delay().as_secs_f64();
            let expected = base.min(120.0);
            assert!(
                delay >= expected * 0.8 - 1e-9 && delay <= (expected * 1.2).min(120.0) + 1e-9,
                "delay {delay} outside jitter of {expected}"
            );
            base *= 1.6;
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(1200));
    }

    #[test]
    fn jitter_spreads_delays() {
        let delays: std::collections::HashSet<u128> = (0..50)
            .map(|_| jittered(Duration::from_secs(60), 0.2).as_millis())
            .collect();
        assert!(delays.len() > 10, "jitter produced too few distinct delays");
    }
}
