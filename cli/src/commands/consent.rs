//! `consent set|list`: whether the user at a device is asked before a
//! remote session.

use schoolfleet_proto::v1::{ConsentPolicy, ListConsentPoliciesRequest, SetConsentPolicyRequest};
use serde::Serialize;

use super::Context;
use crate::args::ConsentCommand;
use crate::client::Reply;
use crate::output::{Column, Record, Ui, col, time_opt};

#[derive(Debug, Serialize)]
pub struct ConsentRow {
    pub school_id: String,
    pub device_class: String,
    pub consent: String,
    pub updated_by: String,
    pub updated_at: Option<String>,
}

impl From<&ConsentPolicy> for ConsentRow {
    fn from(p: &ConsentPolicy) -> Self {
        Self {
            school_id: p.school_id.clone(),
            device_class: p.device_class.clone(),
            consent: p.consent.clone(),
            updated_by: p.updated_by.clone(),
            updated_at: time_opt(p.updated_at.as_ref()),
        }
    }
}

impl Record for ConsentRow {
    const NOUN: &'static str = "consent policies";
    const COLUMNS: &'static [Column] = &[
        col("school_id", "SCHOOL"),
        col("device_class", "CLASS"),
        col("consent", "CONSENT"),
        col("updated_by", "UPDATED BY"),
        col("updated_at", "UPDATED"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.school_id.clone(),
            if self.device_class.is_empty() {
                "(all)".into()
            } else {
                self.device_class.clone()
            },
            self.consent.clone(),
            self.updated_by.clone(),
            self.updated_at.clone().unwrap_or_default(),
        ]
    }
}

pub async fn run(cmd: ConsentCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        ConsentCommand::Set {
            school,
            class,
            mode,
        } => {
            let policy = api
                .sessions()
                .set_consent_policy(SetConsentPolicyRequest {
                    school_id: school,
                    device_class: class.unwrap_or_default(),
                    consent: mode.as_str().into(),
                })
                .await
                .reply(&api)?;
            let row = ConsentRow::from(&policy);
            let class = if row.device_class.is_empty() {
                "every device class without its own policy".to_owned()
            } else {
                format!("class {}", row.device_class)
            };
            let message = format!(
                "Consent for school {}, {class}: {}.",
                row.school_id, row.consent
            );
            ui.one(&row, |out| {
                writeln!(out, "{}", schoolfleet_proto::text::for_terminal(&message))
            })?;
        }
        ConsentCommand::List { school } => {
            let answer = api
                .sessions()
                .list_consent_policies(ListConsentPoliciesRequest {
                    school_id: school.unwrap_or_default(),
                })
                .await
                .reply(&api)?;
            let rows: Vec<ConsentRow> = answer.policies.iter().map(ConsentRow::from).collect();
            ui.list(&rows)?;
            if !answer.default_consent.is_empty() {
                ui.note(&format!(
                    "Everything else: {} (the server's default).",
                    answer.default_consent
                ))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_rows_match_columns_and_name_the_default_class() {
        let row = ConsentRow::from(&ConsentPolicy {
            school_id: "kus012".into(),
            consent: "prompt".into(),
            ..Default::default()
        });
        crate::output::assert_keys_match_columns(&row);
        assert_eq!(row.cells()[1], "(all)");
    }
}
