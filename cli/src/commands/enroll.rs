//! `enroll-token create|list|revoke`.

use chrono::{DateTime, Utc};
use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::time::opt_from_timestamp;
use schoolfleet_proto::v1::{
    CreateEnrollmentTokenRequest, EnrollmentToken, ListEnrollmentTokensRequest,
    RevokeEnrollmentTokenRequest,
};
use serde::Serialize;

use super::Context;
use crate::args::EnrollTokenCommand;
use crate::client::Reply;
use crate::output::{self, Column, Record, Ui, col, wide};

#[derive(Debug, Serialize)]
pub struct EnrollTokenRow {
    pub id: String,
    pub school_id: String,
    pub device_class: String,
    /// "active", "expired", "used up" or "revoked".
    pub state: &'static str,
    pub uses: u32,
    pub max_uses: u32,
    pub expires_at: Option<String>,
    pub description: String,
    pub county_id: String,
    pub revoked: bool,
    pub created_by: String,
    pub created_at: Option<String>,
}

impl EnrollTokenRow {
    pub fn new(t: &EnrollmentToken, now: DateTime<Utc>) -> Self {
        let expired = opt_from_timestamp(t.expires_at.as_ref()).is_some_and(|e| e <= now);
        let state = if t.revoked {
            "revoked"
        } else if expired {
            "expired"
        } else if t.max_uses > 0 && t.uses >= t.max_uses {
            "used up"
        } else {
            "active"
        };
        Self {
            id: t.id.clone(),
            school_id: t.school_id.clone(),
            device_class: t.device_class.clone(),
            state,
            uses: t.uses,
            max_uses: t.max_uses,
            expires_at: output::time_opt(t.expires_at.as_ref()),
            description: t.description.clone(),
            county_id: t.county_id.clone(),
            revoked: t.revoked,
            created_by: t.created_by.clone(),
            created_at: output::time_opt(t.created_at.as_ref()),
        }
    }
}

impl Record for EnrollTokenRow {
    const NOUN: &'static str = "enrolment tokens";
    const COLUMNS: &'static [Column] = &[
        col("id", "ID"),
        col("school_id", "SCHOOL"),
        col("device_class", "CLASS"),
        col("state", "STATE"),
        col("uses", "USES"),
        col("max_uses", "MAX"),
        col("expires_at", "EXPIRES"),
        col("description", "DESCRIPTION"),
        wide("county_id", "COUNTY"),
        wide("revoked", "REVOKED"),
        wide("created_by", "CREATED BY"),
        wide("created_at", "CREATED"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.school_id.clone(),
            self.device_class.clone(),
            self.state.to_owned(),
            self.uses.to_string(),
            self.max_uses.to_string(),
            self.expires_at.clone().unwrap_or_default(),
            self.description.clone(),
            self.county_id.clone(),
            self.revoked.to_string(),
            self.created_by.clone(),
            self.created_at.clone().unwrap_or_default(),
        ]
    }
}

/// The answer to `enroll-token create`; the secret is shown once.
#[derive(Debug, Serialize)]
pub struct CreatedEnrollToken {
    pub id: String,
    pub school_id: String,
    pub device_class: String,
    pub max_uses: u32,
    pub expires_at: Option<String>,
    pub secret: String,
    pub enroll_command: String,
}

impl Record for CreatedEnrollToken {
    const NOUN: &'static str = "enrolment tokens";
    const COLUMNS: &'static [Column] = &[
        col("id", "ID"),
        col("school_id", "SCHOOL"),
        col("device_class", "CLASS"),
        col("max_uses", "MAX"),
        col("expires_at", "EXPIRES"),
        col("secret", "SECRET"),
        col("enroll_command", "ENROLL COMMAND"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.school_id.clone(),
            self.device_class.clone(),
            self.max_uses.to_string(),
            self.expires_at.clone().unwrap_or_default(),
            self.secret.clone(),
            self.enroll_command.clone(),
        ]
    }
}

/// What to run on each new device. The enrolment token carries the CA pin,
/// so the agent needs no `--ca-pin`.
pub fn enroll_command(server: &str, secret: &str) -> String {
    format!("schoolfleet-agent enroll --server {server} --token {secret}")
}

pub async fn run(cmd: EnrollTokenCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        EnrollTokenCommand::Create {
            school,
            class,
            expires,
            uses,
            description,
            reinstall,
        } => {
            let request = CreateEnrollmentTokenRequest {
                school_id: school.unwrap_or_default(),
                device_class: class.unwrap_or_default(),
                expires_in_seconds: expires.as_secs(),
                max_uses: uses,
                description: description.unwrap_or_default(),
                reinstall_device: reinstall.unwrap_or_default(),
            };
            let created = api
                .enrollment()
                .create_enrollment_token(request)
                .await
                .reply(&api)?;
            let token = created.token.unwrap_or_default();
            let row = CreatedEnrollToken {
                id: token.id,
                school_id: token.school_id,
                device_class: token.device_class,
                max_uses: token.max_uses,
                expires_at: output::time_opt(token.expires_at.as_ref()),
                enroll_command: enroll_command(api.server(), &created.secret),
                secret: created.secret,
            };
            ui.one(&row, |out| {
                writeln!(
                    out,
                    "Created enrolment token {} for school {}, class {}: {} device(s), valid until {}.\n\
                     The token is shown only this once:\n\n  {}\n\n\
                     On each device, run as root/administrator:\n  {}",
                    for_terminal(&row.id),
                    for_terminal(&row.school_id),
                    for_terminal(&row.device_class),
                    row.max_uses,
                    row.expires_at.as_deref().unwrap_or("unknown"),
                    for_terminal(&row.secret),
                    for_terminal(&row.enroll_command),
                )
            })?;
        }
        EnrollTokenCommand::List {
            school,
            county,
            all,
        } => {
            let request = ListEnrollmentTokensRequest {
                school_id: school.unwrap_or_default(),
                county_id: county.unwrap_or_default(),
                include_inactive: all,
            };
            let list = api
                .enrollment()
                .list_enrollment_tokens(request)
                .await
                .reply(&api)?;
            let now = Utc::now();
            let rows: Vec<EnrollTokenRow> = list
                .tokens
                .iter()
                .map(|t| EnrollTokenRow::new(t, now))
                .collect();
            ui.list(&rows)?;
        }
        EnrollTokenCommand::Revoke { id } => {
            let request = RevokeEnrollmentTokenRequest { id };
            let token = api
                .enrollment()
                .revoke_enrollment_token(request)
                .await
                .reply(&api)?;
            let row = EnrollTokenRow::new(&token, Utc::now());
            ui.one(&row, |out| {
                writeln!(
                    out,
                    "Revoked enrolment token {} (school {}, {} of {} uses taken).",
                    for_terminal(&row.id),
                    for_terminal(&row.school_id),
                    row.uses,
                    row.max_uses
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::assert_keys_match_columns;
    use prost_types::Timestamp;

    fn token(expires: i64, uses: u32, max: u32, revoked: bool) -> EnrollmentToken {
        EnrollmentToken {
            id: "et1".into(),
            school_id: "kus012".into(),
            county_id: "kus".into(),
            device_class: "schueler-pc".into(),
            expires_at: Some(Timestamp {
                seconds: expires,
                nanos: 0,
            }),
            max_uses: max,
            uses,
            revoked,
            ..Default::default()
        }
    }

    #[test]
    fn state_reflects_revocation_expiry_and_uses() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let later = 1_800_000_000 + 3600;
        assert_eq!(
            EnrollTokenRow::new(&token(later, 3, 30, false), now).state,
            "active"
        );
        assert_eq!(
            EnrollTokenRow::new(&token(later, 30, 30, false), now).state,
            "used up"
        );
        assert_eq!(
            EnrollTokenRow::new(&token(later - 7200, 3, 30, false), now).state,
            "expired"
        );
        assert_eq!(
            EnrollTokenRow::new(&token(later, 3, 30, true), now).state,
            "revoked"
        );
    }

    #[test]
    fn rows_have_stable_keys() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_keys_match_columns(&EnrollTokenRow::new(&token(0, 0, 1, false), now));
        assert_keys_match_columns(&CreatedEnrollToken {
            id: "et1".into(),
            school_id: "kus012".into(),
            device_class: "schueler-pc".into(),
            max_uses: 30,
            expires_at: None,
            secret: "sfe_x".into(),
            enroll_command: enroll_command("https://fleet:7443", "sfe_x"),
        });
        assert_eq!(
            enroll_command("https://fleet:7443", "sfe_a_b_c"),
            "schoolfleet-agent enroll --server https://fleet:7443 --token sfe_a_b_c"
        );
    }
}
