//! `standard ...` and `compliance ...`: the common IT standard and how the
//! fleet measures up to it.

use anyhow::{Context as _, bail};
use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::*;
use serde::Serialize;

use super::Context;
use crate::args::{ComplianceCommand, StandardCommand};
use crate::client::Reply;
use crate::output::{self, Column, Record, Section, Ui, col, time_opt, wide};
use schoolfleet_standard::reasons;

fn read_file(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes multi-line text safely: each line neutralised on its own, so
/// line breaks stay line breaks and escapes become visible.
fn write_text(ui: &mut Ui<'_>, text: &str) -> std::io::Result<()> {
    for line in text.lines() {
        writeln!(ui.out, "{}", for_terminal(line))?;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct ProblemRow {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl Record for ProblemRow {
    const NOUN: &'static str = "problems";
    const COLUMNS: &'static [Column] = &[
        col("line", "LINE"),
        col("column", "COL"),
        col("message", "PROBLEM"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.line.to_string(),
            self.column.to_string(),
            self.message.clone(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct VersionRow {
    pub revision: u64,
    pub standard_id: String,
    pub version: String,
    pub rules: u32,
    pub waivers: u32,
    pub applied_by: String,
    pub applied_at: Option<String>,
}

impl Record for VersionRow {
    const NOUN: &'static str = "standard versions";
    const COLUMNS: &'static [Column] = &[
        col("revision", "REVISION"),
        col("standard_id", "STANDARD"),
        col("version", "VERSION"),
        col("rules", "RULES"),
        col("waivers", "WAIVERS"),
        col("applied_by", "APPLIED BY"),
        col("applied_at", "APPLIED"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.revision.to_string(),
            self.standard_id.clone(),
            self.version.clone(),
            self.rules.to_string(),
            self.waivers.to_string(),
            self.applied_by.clone(),
            self.applied_at.clone().unwrap_or_default(),
        ]
    }
}

pub async fn standard(cmd: StandardCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    match cmd {
        StandardCommand::Lint { file, offline } => {
            let content = read_file(&file)?;
            // Offline first: it needs no server and covers most mistakes.
            let mut problems: Vec<ProblemRow> = schoolfleet_standard::lint(
                &content,
                &schoolfleet_standard::KnownTenants::default(),
            )
            .into_iter()
            .map(|e| ProblemRow {
                line: e.line as u32,
                column: e.column as u32,
                message: e.message,
            })
            .collect();
            if problems.is_empty() && !offline && ctx.settings()?.is_complete() {
                let api = ctx.connect().await?;
                problems = api
                    .compliance()
                    .lint_standard(LintStandardRequest { content })
                    .await
                    .reply(&api)?
                    .problems
                    .into_iter()
                    .map(|p| ProblemRow {
                        line: p.line,
                        column: p.column,
                        message: p.message,
                    })
                    .collect();
            }
            if problems.is_empty() {
                ui.done(&format!("{}: no problems", file.display()))?;
                return Ok(());
            }
            ui.list(&problems)?;
            bail!("{}: {} problem(s)", file.display(), problems.len())
        }
        StandardCommand::Apply { file } => {
            let content = read_file(&file)?;
            let api = ctx.connect().await?;
            let applied = api
                .compliance()
                .apply_standard(ApplyStandardRequest { content })
                .await
                .reply(&api)?;
            let v = applied.version.unwrap_or_default();
            ui.done(&format!(
                "applied {} {} as revision {}; {} evaluated",
                v.standard_id,
                v.version,
                v.revision,
                crate::output::count(applied.devices_evaluated.into(), "device", "devices")
            ))?;
            Ok(())
        }
        StandardCommand::Show { revision } => {
            let api = ctx.connect().await?;
            let v = api
                .compliance()
                .get_standard(GetStandardRequest { revision })
                .await
                .reply(&api)?;
            if ui.format == output::OutputFormat::Table {
                write_text(ui, &v.content)?;
            } else {
                ui.one(&version_row(&v), |_| Ok(()))?;
            }
            Ok(())
        }
        StandardCommand::Versions => {
            let api = ctx.connect().await?;
            let versions = api
                .compliance()
                .list_standard_versions(ListStandardVersionsRequest {})
                .await
                .reply(&api)?
                .versions;
            let rows: Vec<VersionRow> = versions.iter().map(version_row).collect();
            ui.list(&rows)?;
            Ok(())
        }
        StandardCommand::Diff { from, to } => {
            let api = ctx.connect().await?;
            let mut compliance = api.compliance();
            let old = compliance
                .get_standard(GetStandardRequest { revision: from })
                .await
                .reply(&api)?;
            let new = compliance
                .get_standard(GetStandardRequest { revision: to })
                .await
                .reply(&api)?;
            writeln!(
                ui.out,
                "--- revision {} ({} {})",
                old.revision, old.standard_id, old.version
            )?;
            writeln!(
                ui.out,
                "+++ revision {} ({} {})",
                new.revision, new.standard_id, new.version
            )?;
            let diff = crate::diff::lines(&old.content, &new.content);
            write_text(ui, &diff)?;
            Ok(())
        }
    }
}

fn version_row(v: &StandardVersion) -> VersionRow {
    VersionRow {
        revision: v.revision,
        standard_id: v.standard_id.clone(),
        version: v.version.clone(),
        rules: v.rules,
        waivers: v.waivers,
        applied_by: v.applied_by.clone(),
        applied_at: time_opt(v.applied_at.as_ref()),
    }
}

#[derive(Debug, Serialize)]
pub struct TenantRow {
    pub county_id: String,
    pub school_id: String,
    pub devices: u32,
    pub compliant: u32,
    /// Percent compliant, one decimal.
    pub compliant_percent: Option<f64>,
    pub compliant_percent_last_week: Option<f64>,
}

fn percent(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| (f64::from(part) * 1000.0 / f64::from(whole)).round() / 10.0)
}

fn show_percent(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| format!("{p:.1} %"))
}

impl Record for TenantRow {
    const NOUN: &'static str = "devices with compliance results";
    const COLUMNS: &'static [Column] = &[
        col("county_id", "COUNTY"),
        col("school_id", "SCHOOL"),
        col("devices", "DEVICES"),
        col("compliant", "COMPLIANT"),
        col("compliant_percent", "SHARE"),
        col("compliant_percent_last_week", "LAST WEEK"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.county_id.clone(),
            if self.school_id.is_empty() {
                "(all)".into()
            } else {
                self.school_id.clone()
            },
            self.devices.to_string(),
            self.compliant.to_string(),
            show_percent(self.compliant_percent),
            show_percent(self.compliant_percent_last_week),
        ]
    }
    /// The county's total has an empty school; shares are plain numbers.
    fn csv_cells(&self) -> Vec<String> {
        vec![
            self.county_id.clone(),
            self.school_id.clone(),
            self.devices.to_string(),
            self.compliant.to_string(),
            csv_number(self.compliant_percent),
            csv_number(self.compliant_percent_last_week),
        ]
    }
}

/// A number for CSV: `85.7`, or an empty cell when there is none.
fn csv_number(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| v.to_string())
}

#[derive(Debug, Serialize)]
pub struct RuleRow {
    pub rule_id: String,
    pub title: String,
    pub mode: String,
    pub pass: u32,
    pub fail: u32,
    pub waived: u32,
    pub unknown: u32,
    pub not_applicable: u32,
    /// Pass (or waived) among devices the rule applies to, percent.
    pub pass_percent: Option<f64>,
}

impl Record for RuleRow {
    const NOUN: &'static str = "rules";
    const COLUMNS: &'static [Column] = &[
        col("rule_id", "RULE"),
        col("title", "TITLE"),
        col("mode", "MODE"),
        col("pass", "PASS"),
        col("fail", "FAIL"),
        col("waived", "WAIVED"),
        col("unknown", "UNKNOWN"),
        col("not_applicable", "N/A"),
        col("pass_percent", "PASS RATE"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.rule_id.clone(),
            self.title.clone(),
            self.mode.clone(),
            self.pass.to_string(),
            self.fail.to_string(),
            self.waived.to_string(),
            self.unknown.to_string(),
            self.not_applicable.to_string(),
            show_percent(self.pass_percent),
        ]
    }
    fn csv_cells(&self) -> Vec<String> {
        let mut cells = self.cells();
        if let Some(last) = cells.last_mut() {
            *last = csv_number(self.pass_percent);
        }
        cells
    }
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub revision: u64,
    pub tenants: Vec<TenantRow>,
    pub rules: Vec<RuleRow>,
    pub expiring_waivers: Vec<WaiverRow>,
}

#[derive(Debug, Serialize)]
pub struct WaiverRow {
    pub waiver_id: String,
    pub rule_id: String,
    pub expires: Option<String>,
    pub reason: String,
}

impl Record for WaiverRow {
    const NOUN: &'static str = "waivers";
    const COLUMNS: &'static [Column] = &[
        col("waiver_id", "WAIVER"),
        col("rule_id", "RULE"),
        col("expires", "EXPIRES"),
        col("reason", "REASON"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.waiver_id.clone(),
            self.rule_id.clone(),
            self.expires.clone().unwrap_or_default(),
            self.reason.clone(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct ResultRow {
    pub rule_id: String,
    pub status: String,
    pub title: String,
    pub mode: String,
    /// Counts for the compliance quota (false for `beobachten`).
    pub counted: bool,
    pub severity: String,
    pub expected: String,
    pub actual: String,
    /// In German for coordinators (`schoolfleet_standard::reasons`).
    pub reason: String,
    /// The machine-readable kind of each part of the reason, joined by ",".
    pub reason_kind: String,
    pub waiver_id: String,
    pub remediation: String,
}

/// A device's rule result as coordinators read it: the reason in German,
/// its kinds for machines.
fn result_row(x: &RuleResult) -> ResultRow {
    ResultRow {
        rule_id: x.rule_id.clone(),
        status: x.status.clone(),
        title: x.title.clone(),
        mode: x.mode.clone(),
        counted: x.counted,
        severity: x.severity.clone(),
        expected: x.expected.clone(),
        actual: x.actual.clone(),
        reason: reasons::german(&x.reason),
        reason_kind: reasons::kinds(&x.reason).join(","),
        waiver_id: x.waiver_id.clone(),
        remediation: x.remediation.clone(),
    }
}

impl Record for ResultRow {
    const NOUN: &'static str = "results (is a standard applied?)";
    const COLUMNS: &'static [Column] = &[
        col("rule_id", "RULE"),
        col("status", "RESULT"),
        col("title", "TITLE"),
        col("mode", "MODE"),
        wide("severity", "SEVERITY"),
        col("expected", "EXPECTED"),
        col("actual", "ACTUAL"),
        col("reason", "REASON"),
        wide("reason_kind", "REASON KIND"),
        wide("waiver_id", "WAIVER"),
        wide("remediation", "REMEDIATION"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.rule_id.clone(),
            self.status.clone(),
            self.title.clone(),
            self.mode.clone(),
            self.severity.clone(),
            self.expected.clone(),
            self.actual.clone(),
            self.reason.clone(),
            self.reason_kind.clone(),
            self.waiver_id.clone(),
            self.remediation.clone(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct FailingRow {
    pub hostname: String,
    pub county_id: String,
    pub school_id: String,
    pub expected: String,
    pub actual: String,
    /// In German for coordinators (`schoolfleet_standard::reasons`).
    pub reason: String,
    /// The machine-readable kind of each part of the reason, joined by ",".
    pub reason_kind: String,
    pub device_id: String,
}

impl Record for FailingRow {
    const NOUN: &'static str = "failing devices";
    const COLUMNS: &'static [Column] = &[
        col("hostname", "HOSTNAME"),
        col("county_id", "COUNTY"),
        col("school_id", "SCHOOL"),
        col("expected", "EXPECTED"),
        col("actual", "ACTUAL"),
        col("reason", "REASON"),
        wide("reason_kind", "REASON KIND"),
        wide("device_id", "DEVICE ID"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.hostname.clone(),
            self.county_id.clone(),
            self.school_id.clone(),
            self.expected.clone(),
            self.actual.clone(),
            self.reason.clone(),
            self.reason_kind.clone(),
            self.device_id.clone(),
        ]
    }
}

pub async fn compliance(
    cmd: ComplianceCommand,
    ctx: &Context,
    ui: &mut Ui<'_>,
) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        ComplianceCommand::Summary {
            county,
            school,
            revision,
        } => {
            let s = api
                .compliance()
                .compliance_summary(ComplianceSummaryRequest {
                    county_id: county.unwrap_or_default(),
                    school_id: school.unwrap_or_default(),
                    revision,
                })
                .await
                .reply(&api)?;
            let summary = Summary {
                revision: s.revision,
                tenants: s
                    .tenants
                    .iter()
                    .map(|t| TenantRow {
                        county_id: t.county_id.clone(),
                        school_id: t.school_id.clone(),
                        devices: t.devices,
                        compliant: t.compliant,
                        compliant_percent: percent(t.compliant, t.devices),
                        compliant_percent_last_week: (t.compliant_share_last_week >= 0.0)
                            .then(|| (t.compliant_share_last_week * 1000.0).round() / 10.0),
                    })
                    .collect(),
                rules: s
                    .rules
                    .iter()
                    .map(|r| RuleRow {
                        rule_id: r.rule_id.clone(),
                        title: r.title.clone(),
                        mode: r.mode.clone(),
                        pass: r.pass,
                        fail: r.fail,
                        waived: r.waived,
                        unknown: r.unknown,
                        not_applicable: r.not_applicable,
                        pass_percent: percent(
                            r.pass + r.waived,
                            r.pass + r.waived + r.fail + r.unknown,
                        ),
                    })
                    .collect(),
                expiring_waivers: s
                    .expiring_waivers
                    .iter()
                    .map(|w| WaiverRow {
                        waiver_id: w.waiver_id.clone(),
                        rule_id: w.rule_id.clone(),
                        expires: time_opt(w.expires.as_ref()),
                        reason: w.reason.clone(),
                    })
                    .collect(),
            };
            match ui.format {
                output::OutputFormat::Json => output::write_json(ui.out, &summary)?,
                // Three tables, each with its header row, apart by an empty
                // line: the shares per county and school, the rules, and the
                // waivers that expire soon.
                output::OutputFormat::Csv => {
                    output::write_csv(ui.out, &summary.tenants)?;
                    write!(ui.out, "\r\n")?;
                    output::write_csv(ui.out, &summary.rules)?;
                    write!(ui.out, "\r\n")?;
                    output::write_csv(ui.out, &summary.expiring_waivers)?;
                }
                output::OutputFormat::Table => {
                    let table = |rows: &[TenantRow]| rows.iter().map(Record::cells).collect();
                    let titles = |cols: &[Column]| {
                        cols.iter()
                            .filter(|c| c.in_table)
                            .map(|c| c.title)
                            .collect()
                    };
                    let mut text = String::new();
                    text += &Section::new(format!(
                        "Compliance (standard revision {})",
                        summary.revision
                    ))
                    .table(titles(TenantRow::COLUMNS), table(&summary.tenants))
                    .render();
                    let rules = summary.rules.iter().map(Record::cells).collect();
                    text += &Section::new("Rules")
                        .table(titles(RuleRow::COLUMNS), rules)
                        .render();
                    let mut waivers = Section::new("Waivers expiring within 30 days");
                    if summary.expiring_waivers.is_empty() {
                        waivers.note("none");
                    } else {
                        waivers.table(
                            titles(WaiverRow::COLUMNS),
                            summary.expiring_waivers.iter().map(Record::cells).collect(),
                        );
                    }
                    text += &waivers.render();
                    write!(ui.out, "{text}")?;
                }
            }
            Ok(())
        }
        ComplianceCommand::Device { device, revision } => {
            let r = api
                .compliance()
                .device_compliance(DeviceComplianceRequest { device, revision })
                .await
                .reply(&api)?;
            let rows: Vec<ResultRow> = r.results.iter().map(result_row).collect();
            ui.note(&format!(
                "{}: {} (standard revision {})",
                r.hostname,
                if r.compliant {
                    "compliant"
                } else {
                    "NOT compliant"
                },
                r.revision
            ))?;
            ui.list(&rows)?;
            Ok(())
        }
        ComplianceCommand::Failing {
            rule,
            county,
            school,
            revision,
        } => {
            let devices = api
                .compliance()
                .failing_devices(FailingDevicesRequest {
                    rule_id: rule,
                    county_id: county.unwrap_or_default(),
                    school_id: school.unwrap_or_default(),
                    revision,
                })
                .await
                .reply(&api)?
                .devices;
            let rows: Vec<FailingRow> = devices
                .into_iter()
                .map(|d| FailingRow {
                    hostname: d.hostname,
                    county_id: d.county_id,
                    school_id: d.school_id,
                    expected: d.expected,
                    actual: d.actual,
                    reason: reasons::german(&d.reason),
                    reason_kind: reasons::kinds(&d.reason).join(","),
                    device_id: d.device_id,
                })
                .collect();
            ui.list(&rows)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Coordinators read reasons in German; the kind stays for machines.
    #[test]
    fn device_results_show_german_reasons_with_their_kind() {
        let row = result_row(&RuleResult {
            rule_id: "HW-DISK".into(),
            status: "fail".into(),
            reason: "system disk hdd, expected ssd or nvme; RAM 3.8 GiB < 8 GiB".into(),
            ..Default::default()
        });
        assert_eq!(
            row.reason,
            "Systemlaufwerk hdd, gefordert ssd oder nvme; \
             Arbeitsspeicher 3.8 GiB, mindestens 8 GiB gefordert"
        );
        assert_eq!(row.reason_kind, "disk_media,ram");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["reason_kind"], "disk_media,ram");
        assert_eq!(row.cells().len(), ResultRow::COLUMNS.len());
        let passed = result_row(&RuleResult::default());
        assert_eq!(
            (passed.reason.as_str(), passed.reason_kind.as_str()),
            ("", "")
        );
    }

    #[test]
    fn row_keys_match_columns() {
        output::assert_keys_match_columns(&ProblemRow {
            line: 1,
            column: 2,
            message: "x".into(),
        });
        output::assert_keys_match_columns(&FailingRow {
            hostname: "h".into(),
            county_id: "kus".into(),
            school_id: "kus012".into(),
            expected: "e".into(),
            actual: "a".into(),
            reason: "r".into(),
            reason_kind: "other".into(),
            device_id: "d".into(),
        });
        output::assert_keys_match_columns(&TenantRow {
            county_id: "kus".into(),
            school_id: String::new(),
            devices: 3,
            compliant: 2,
            compliant_percent: percent(2, 3),
            compliant_percent_last_week: None,
        });
    }

    #[test]
    fn percent_rounds_to_one_decimal_and_handles_zero() {
        assert_eq!(percent(2, 3), Some(66.7));
        assert_eq!(percent(0, 0), None);
        assert_eq!(show_percent(None), "-");
    }
}
