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

/// When to send a report again that the server asked for later: after
/// the server's `retry_after_seconds` (it spreads a backlog of reports over
/// the time it needs; bounded here so a hostile or broken answer cannot
/// silence the agent for long), or about 30 s when it named no time.
pub fn report_retry_delay(retry_after_seconds: u32) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(30);
    const LONGEST: Duration = Duration::from_secs(3600);
    const SHORTEST: Duration = Duration::from_secs(5);
    if retry_after_seconds == 0 {
        return jittered(DEFAULT, 0.2);
    }
    let asked = Duration::from_secs(retry_after_seconds.into()).clamp(SHORTEST, LONGEST);
    jittered(asked, 0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_sent_again_when_the_server_says_within_bounds() {
        for _ in 0..100 {
            let default = report_retry_delay(0);
            assert!(
                (24.0..=36.0).contains(&default.as_secs_f64()),
                "{default:?}"
            );
            let asked = report_retry_delay(200);
            assert!((180.0..=220.0).contains(&asked.as_secs_f64()), "{asked:?}");
            let too_long = report_retry_delay(u32::MAX);
            assert!(too_long <= Duration::from_secs(3960), "{too_long:?}");
            let too_short = report_retry_delay(1);
            assert!(too_short >= Duration::from_secs_f64(4.5), "{too_short:?}");
        }
    }

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
