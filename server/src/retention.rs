//! The deletion concept in code: what the `[retention]` settings mean as
//! cut-off times, and the pass that applies them (called by
//! `server::sweep_retention`, hourly).
//!
//! Every pass ends with [`crate::storage::DataProtection::compact`], so a
//! deleted row also leaves the database file and the SQLite WAL.

use crate::api::AppState;
use crate::config::Config;
use crate::inventory::diff::ChangeKind;
use crate::storage::{DeviceRecord, Millis, RetentionCounts, RetentionCutoffs};

fn before(now: Millis, keep: std::time::Duration) -> Option<Millis> {
    Some(now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)))
}

/// The cut-off times of a pass at `now` under `config`.
pub fn cutoffs(config: &Config, now: Millis) -> RetentionCutoffs {
    let r = &config.retention;
    let snapshot_day = before(now, r.compliance_snapshots)
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d").to_string());
    RetentionCutoffs {
        sessions_ended_before: before(now, r.sessions),
        inventory_history_before: before(now, r.inventory_history),
        network_history_before: before(now, r.network_history),
        network_history_classes: r.network_history_classes.clone(),
        report_log_before: before(now, r.report_log),
        tickets_closed_before: before(now, r.tickets),
        compliance_results_before: before(now, r.compliance_results),
        compliance_history_before: before(now, r.compliance_history),
        compliance_snapshots_before: snapshot_day,
        webhook_outbox_before: before(now, r.webhook_outbox),
        enrollment_tokens_before: before(now, r.enrollment_tokens),
        api_tokens_before: before(now, r.api_tokens),
    }
}

/// Collect less: is this change of `device` written to its history? A
/// network change (its addresses) only for the device classes that opted
/// in (`retention.network_history_classes`); teacher laptops would
/// otherwise tell where and when they are used. The current addresses are
/// kept either way.
pub fn keep_change(config: &Config, device: &DeviceRecord, kind: ChangeKind) -> bool {
    kind != ChangeKind::NetworkChanged
        || config
            .retention
            .network_history_classes
            .contains(&device.device_class)
}

/// Deletes what the `[retention]` settings no longer allow. Replicas may
/// run it at once: every delete is idempotent.
pub async fn sweep(state: &AppState, now: Millis) -> Option<RetentionCounts> {
    match state
        .store
        .delete_expired(&cutoffs(&state.config, now))
        .await
    {
        Ok(counts) => {
            if counts.total() > 0 {
                tracing::info!(
                    sessions = counts.sessions,
                    inventory_history = counts.inventory_history,
                    network_history = counts.network_history,
                    report_log = counts.report_log,
                    tickets = counts.tickets,
                    compliance_results = counts.compliance_results,
                    compliance_history = counts.compliance_history,
                    compliance_snapshots = counts.compliance_snapshots,
                    webhook_outbox = counts.webhook_outbox,
                    enrollment_tokens = counts.enrollment_tokens,
                    api_tokens = counts.api_tokens,
                    "deleted rows past their retention"
                );
            }
            Some(counts)
        }
        Err(err) => {
            tracing::error!(error = %err, "retention sweep failed");
            None
        }
    }
}

/// Makes what was deleted unreadable in the database files; logged, not
/// fatal (the next pass tries again).
pub async fn compact(state: &AppState) {
    if let Err(err) = state.store.compact().await {
        tracing::error!(error = %err, "compacting the database after deletion failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_follow_the_settings() {
        let config = Config::default();
        let now = 1_000 * 86_400_000;
        let c = cutoffs(&config, now);
        assert_eq!(c.sessions_ended_before, Some(now - 180 * 86_400_000));
        assert_eq!(c.network_history_before, Some(now - 30 * 86_400_000));
        assert!(c.network_history_classes.is_empty());
        // Day 1000 minus 730 days is day 270 of 1970.
        assert_eq!(c.compliance_snapshots_before.as_deref(), Some("1970-09-28"));
    }
}
