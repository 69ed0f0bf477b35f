//! `audit list|verify`: the tamper-evident audit log.

use schoolfleet_proto::v1::{
    AuditEntry, ListAuditEventsRequest, VerifyAuditChainRequest, VerifyAuditChainResponse,
};
use serde::Serialize;

use super::Context;
use crate::args::AuditCommand;
use crate::client::Reply;
use crate::exit::Exit;
use crate::output::{Column, OutputFormat, Record, Ui, col, time_opt, wide};

#[derive(Debug, Serialize)]
pub struct AuditRow {
    pub seq: u64,
    pub at: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub details: String,
    pub county_id: String,
    /// The school the entry concerns; empty for county-wide entries.
    pub school_id: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&AuditEntry> for AuditRow {
    fn from(e: &AuditEntry) -> Self {
        Self {
            seq: e.seq,
            at: time_opt(e.at.as_ref()),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            details: e.details.clone(),
            county_id: e.county_id.clone(),
            school_id: e.school_id.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

impl Record for AuditRow {
    const NOUN: &'static str = "audit entries";
    const COLUMNS: &'static [Column] = &[
        col("seq", "SEQ"),
        col("at", "AT"),
        col("actor", "ACTOR"),
        col("action", "ACTION"),
        col("target", "TARGET"),
        col("outcome", "OUTCOME"),
        col("details", "DETAILS"),
        wide("county_id", "COUNTY"),
        wide("school_id", "SCHOOL"),
        wide("prev_hash", "PREV HASH"),
        wide("hash", "HASH"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.seq.to_string(),
            self.at.clone().unwrap_or_default(),
            self.actor.clone(),
            self.action.clone(),
            self.target.clone(),
            self.outcome.clone(),
            self.details.clone(),
            self.county_id.clone(),
            self.school_id.clone(),
            self.prev_hash.clone(),
            self.hash.clone(),
        ]
    }
}

/// `audit verify -o json`.
#[derive(Debug, Serialize)]
pub struct VerifyRow {
    pub ok: bool,
    pub entries_checked: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub broken_at_seq: Option<u64>,
    pub problem: String,
    pub pruned_before_seq: u64,
    pub head_seq: u64,
    pub head_hash: String,
    pub head_mac: String,
}

impl From<&VerifyAuditChainResponse> for VerifyRow {
    fn from(v: &VerifyAuditChainResponse) -> Self {
        Self {
            ok: v.ok,
            entries_checked: v.entries_checked,
            first_seq: v.first_seq,
            last_seq: v.last_seq,
            broken_at_seq: (!v.ok).then_some(v.broken_at_seq),
            problem: v.problem.clone(),
            pruned_before_seq: v.pruned_before_seq,
            head_seq: v.head_seq,
            head_hash: v.head_hash.clone(),
            head_mac: v.head_mac.clone(),
        }
    }
}

impl Record for VerifyRow {
    const NOUN: &'static str = "results";
    const COLUMNS: &'static [Column] = &[
        col("ok", "OK"),
        col("entries_checked", "ENTRIES"),
        col("first_seq", "FIRST"),
        col("last_seq", "LAST"),
        col("broken_at_seq", "BROKEN AT"),
        col("problem", "PROBLEM"),
        col("pruned_before_seq", "PRUNED BEFORE"),
        col("head_seq", "HEAD SEQ"),
        col("head_hash", "HEAD HASH"),
        col("head_mac", "HEAD MAC"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            crate::output::yes_no(self.ok),
            self.entries_checked.to_string(),
            self.first_seq.to_string(),
            self.last_seq.to_string(),
            self.broken_at_seq
                .map(|s| s.to_string())
                .unwrap_or_default(),
            self.problem.clone(),
            self.pruned_before_seq.to_string(),
            self.head_seq.to_string(),
            self.head_hash.clone(),
            self.head_mac.clone(),
        ]
    }
}

/// The one-line verdict of `audit verify`.
pub fn verdict(v: &VerifyAuditChainResponse) -> String {
    if v.ok {
        let mut text = format!(
            "audit chain intact: {} entries (seq {}..{})",
            v.entries_checked, v.first_seq, v.last_seq
        );
        if v.pruned_before_seq > 0 {
            text.push_str(&format!(
                "; entries before {} were removed by the retention policy",
                v.pruned_before_seq
            ));
        }
        // The signed head, to be kept outside the server: a later chain
        // that no longer contains it was rewritten.
        if !v.head_mac.is_empty() {
            text.push_str(&format!(
                "\nhead: seq {} sha256 {} hmac {}",
                v.head_seq, v.head_hash, v.head_mac
            ));
        }
        text
    } else {
        format!(
            "audit chain broken at entry {}: {}",
            v.broken_at_seq, v.problem
        )
    }
}

pub async fn run(cmd: AuditCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        AuditCommand::List {
            action,
            target,
            since,
            limit,
        } => {
            let entries = api
                .audit()
                .list_audit_events(ListAuditEventsRequest {
                    action_prefix: action.unwrap_or_default(),
                    target: target.unwrap_or_default(),
                    since: since.map(schoolfleet_proto::time::to_timestamp),
                    limit,
                })
                .await
                .reply(&api)?
                .entries;
            let rows: Vec<AuditRow> = entries.iter().map(AuditRow::from).collect();
            ui.list(&rows)?;
        }
        AuditCommand::Verify => {
            let result = api
                .audit()
                .verify_audit_chain(VerifyAuditChainRequest {})
                .await
                .reply(&api)?;
            let text = verdict(&result);
            match ui.format {
                OutputFormat::Table => {
                    writeln!(ui.out, "{}", schoolfleet_proto::text::for_terminal(&text))?
                }
                _ => ui.one(&VerifyRow::from(&result), |_| Ok(()))?,
            }
            if !result.ok {
                ui.out.flush()?;
                return Err(Exit::silent(1).into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let ok = VerifyAuditChainResponse {
            ok: true,
            entries_checked: 42,
            first_seq: 1,
            last_seq: 42,
            ..Default::default()
        };
        assert_eq!(verdict(&ok), "audit chain intact: 42 entries (seq 1..42)");
        let broken = VerifyAuditChainResponse {
            ok: false,
            broken_at_seq: 17,
            problem: "entry 17 was changed".into(),
            ..Default::default()
        };
        assert_eq!(
            verdict(&broken),
            "audit chain broken at entry 17: entry 17 was changed"
        );
        let row = VerifyRow::from(&broken);
        crate::output::assert_keys_match_columns(&row);
        assert_eq!(row.broken_at_seq, Some(17));
        assert_eq!(VerifyRow::from(&ok).broken_at_seq, None);
        let signed = VerifyAuditChainResponse {
            head_seq: 42,
            head_hash: "ab".into(),
            head_mac: "cd".into(),
            ..ok
        };
        assert_eq!(
            verdict(&signed),
            "audit chain intact: 42 entries (seq 1..42)\nhead: seq 42 sha256 ab hmac cd"
        );
    }

    #[test]
    fn audit_rows_match_columns() {
        let row = AuditRow::from(&AuditEntry {
            seq: 3,
            action: "session.denied".into(),
            ..Default::default()
        });
        crate::output::assert_keys_match_columns(&row);
    }
}
