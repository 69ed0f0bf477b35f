//! What a run counts and measures: counters, latency lists, and the CPU
//! and memory of this process and of the server's.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Counters shared by all simulated agents.
#[derive(Debug, Default)]
pub struct Counters {
    pub enrolled: AtomicU64,
    pub enrol_errors: AtomicU64,
    /// Streams opened (a Welcome received), reconnects included.
    pub connected: AtomicU64,
    /// Agents whose stream is open now.
    pub online: AtomicI64,
    /// Failed attempts to open a stream; the agent retries with backoff.
    pub connect_failures: AtomicU64,
    /// Streams that ended while the run went on; the agent reconnects.
    pub disconnects: AtomicU64,
    pub heartbeats: AtomicU64,
    pub heartbeats_acked: AtomicU64,
    pub reports: AtomicU64,
    pub reports_acked: AtomicU64,
    pub report_errors: AtomicU64,
    /// Reports unacknowledged when their stream broke.
    pub reports_lost: AtomicU64,
    /// "Send again later" answers (a full backlog at the server); the report
    /// is sent again after the time the server named.
    pub reports_deferred: AtomicU64,
    pub requests_unanswered: AtomicU64,
    /// Exec sessions accepted, and their channels answered or failed.
    pub sessions_accepted: AtomicU64,
    pub channels_answered: AtomicU64,
    pub channel_errors: AtomicU64,
    /// Agents that were not connected when the run ended (gave up).
    pub not_back: AtomicU64,
}

impl Counters {
    /// What makes a run fail. Disconnects and failed connection attempts
    /// are not errors by themselves: an agent that never came back is.
    pub fn errors(&self) -> u64 {
        [
            &self.enrol_errors,
            &self.report_errors,
            &self.channel_errors,
            &self.not_back,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Latencies in microseconds, by kind.
#[derive(Debug, Default)]
pub struct Latencies {
    pub enrol: Mutex<Vec<u64>>,
    pub open: Mutex<Vec<u64>>,
    pub report: Mutex<Vec<u64>>,
    pub heartbeat: Mutex<Vec<u64>>,
    /// From a stream's end to the Welcome of the next one.
    pub reconnect: Mutex<Vec<u64>>,
}

pub async fn record(list: &Mutex<Vec<u64>>, since: Instant) {
    list.lock().await.push(since.elapsed().as_micros() as u64);
}

/// `p`-th percentile (0..=100) of sorted values, in milliseconds.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSample {
    /// User plus system time.
    pub cpu: Duration,
    pub rss_kib: u64,
    /// Peak RSS since the process started.
    pub peak_rss_kib: u64,
}

/// `pid` "self" for this process.
pub fn sample(pid: &str) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here;
    // the kernel's user clock is 100 Hz.
    let cpu = Duration::from_millis((ticks(11) + ticks(12)) * 10);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Some(ProcessSample {
        cpu,
        rss_kib: kib("VmRSS:"),
        peak_rss_kib: kib("VmHWM:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let values: Vec<u64> = (1..=100).map(|v| v * 1000).collect();
        assert_eq!(percentile(&values, 50.0), 51.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn samples_this_process() {
        let s = sample("self").expect("/proc/self");
        assert!(s.rss_kib > 0 && s.peak_rss_kib >= s.rss_kib, "{s:?}");
    }
}
