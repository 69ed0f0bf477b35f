//! `user add|list`, `token create|revoke`, and the user row `whoami` shares.

use schoolfleet_proto::v1::{
    CreateApiTokenRequest, CreateUserRequest, ListUsersRequest, RevokeApiTokenRequest, RoleBinding,
    SetWebPasswordRequest, User,
};
use serde::Serialize;

use super::Context;
use crate::args::{TokenCommand, UserCommand};
use crate::client::Reply;
use crate::output::{self, Column, Record, Section, Ui, col, wide};

#[derive(Debug, Serialize)]
pub struct UserRow {
    pub name: String,
    pub county_id: String,
    pub roles: Vec<RoleRow>,
    pub created_at: Option<String>,
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct RoleRow {
    pub role: String,
    pub scope: String,
    /// Remote-session capabilities this binding keeps ("" = all the role grants).
    pub remote: String,
}

impl UserRow {
    pub fn from_proto(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            name: u.name.clone(),
            county_id: u.county_id.clone(),
            roles: u
                .roles
                .iter()
                .map(|r| RoleRow {
                    role: r.role.clone(),
                    scope: r.scope.clone(),
                    remote: r.remote.clone(),
                })
                .collect(),
            created_at: output::time_opt(u.created_at.as_ref()),
        }
    }

    /// "technician@county:kus (remote: exec,cp), viewer@cooperation".
    pub fn roles_text(&self) -> String {
        let roles: Vec<String> = self
            .roles
            .iter()
            .map(|r| {
                if r.remote.is_empty() {
                    format!("{}@{}", r.role, r.scope)
                } else {
                    format!("{}@{} (remote: {})", r.role, r.scope, r.remote)
                }
            })
            .collect();
        roles.join(", ")
    }

    /// The human form of one user, for `whoami` and `user add`.
    pub fn section(&self, title: &str) -> Section {
        let mut s = Section::new(title);
        s.field("Name", self.name.clone())
            .field("Id", self.id.clone())
            .field("County", self.county_id.clone())
            .field("Roles", self.roles_text())
            .field("Created", self.created_at.clone().unwrap_or_default());
        s
    }
}

impl Record for UserRow {
    const NOUN: &'static str = "users";
    const COLUMNS: &'static [Column] = &[
        col("name", "NAME"),
        col("county_id", "COUNTY"),
        col("roles", "ROLES"),
        col("created_at", "CREATED"),
        wide("id", "ID"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.county_id.clone(),
            self.roles_text(),
            self.created_at.clone().unwrap_or_default(),
            self.id.clone(),
        ]
    }
}

/// The answer to `token create`: shown once.
#[derive(Debug, Serialize)]
pub struct CreatedApiToken {
    pub token_id: String,
    pub expires_at: Option<String>,
    pub secret: String,
}

impl Record for CreatedApiToken {
    const NOUN: &'static str = "tokens";
    const COLUMNS: &'static [Column] = &[
        col("token_id", "ID"),
        col("expires_at", "EXPIRES"),
        col("secret", "SECRET"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.token_id.clone(),
            self.expires_at.clone().unwrap_or_default(),
            self.secret.clone(),
        ]
    }
}

pub async fn user(cmd: UserCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        UserCommand::Add {
            name,
            roles,
            county,
            remote,
        } => {
            let request = CreateUserRequest {
                name,
                county_id: county.unwrap_or_default(),
                roles: roles
                    .iter()
                    .map(|r| RoleBinding {
                        role: r.role.as_str().to_owned(),
                        scope: r.scope.to_string(),
                        remote: remote.clone().unwrap_or_default(),
                    })
                    .collect(),
            };
            let user = api.users().create_user(request).await.reply(&api)?;
            let row = UserRow::from_proto(&user);
            ui.one(&row, |out| {
                out.write_all(row.section("Created user").render().as_bytes())
            })?;
        }
        UserCommand::List => {
            let users = api
                .users()
                .list_users(ListUsersRequest {})
                .await
                .reply(&api)?
                .users;
            let rows: Vec<UserRow> = users.iter().map(UserRow::from_proto).collect();
            ui.list(&rows)?;
        }
        UserCommand::SetPassword { name } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            if password.is_empty() {
                anyhow::bail!("no password on standard input");
            }
            let who = name.clone().unwrap_or_default();
            api.users()
                .set_web_password(SetWebPasswordRequest {
                    user: who,
                    password,
                })
                .await
                .reply(&api)?;
            ui.done(&format!(
                "web password set for {}",
                name.as_deref().unwrap_or("you")
            ))?;
        }
    }
    Ok(())
}

pub async fn token(cmd: TokenCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let profile = ctx.profile()?;
    let api = crate::client::Api::connect(&profile).await?;
    match cmd {
        TokenCommand::Create {
            user,
            expires,
            description,
        } => {
            let request = CreateApiTokenRequest {
                user: user.unwrap_or_default(),
                expires_in_seconds: expires.as_secs(),
                description: description.unwrap_or_default(),
            };
            let created = api.users().create_api_token(request).await.reply(&api)?;
            let row = CreatedApiToken {
                token_id: created.token_id,
                expires_at: output::time_opt(created.expires_at.as_ref()),
                secret: created.secret,
            };
            ui.one(&row, |out| {
                let secret = schoolfleet_proto::text::for_terminal(&row.secret);
                writeln!(
                    out,
                    "Created API token {} (valid until {}).\n\
                     The secret is shown only this once; store it in a password manager:\n\n  \
                     {secret}\n\n\
                     Log in with it:\n  \
                     schoolfleet login --server {} --ca-pin {} --token {secret}",
                    schoolfleet_proto::text::for_terminal(&row.token_id),
                    row.expires_at.as_deref().unwrap_or("unknown"),
                    schoolfleet_proto::text::for_terminal(&profile.server),
                    schoolfleet_proto::text::for_terminal(&profile.ca_pin),
                )
            })?;
        }
        TokenCommand::Revoke { id } => {
            api.users()
                .revoke_api_token(RevokeApiTokenRequest {
                    token_id: id.clone(),
                })
                .await
                .reply(&api)?;
            ui.done(&format!("Revoked API token {id}."))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_row_json_keys_match_columns() {
        let user = User {
            id: "u1".into(),
            name: "m.müller".into(),
            county_id: "kus".into(),
            roles: vec![
                RoleBinding {
                    role: "technician".into(),
                    scope: "county:kus".into(),
                    remote: String::new(),
                },
                RoleBinding {
                    role: "viewer".into(),
                    scope: "cooperation".into(),
                    remote: String::new(),
                },
                RoleBinding {
                    role: "technician".into(),
                    scope: "school:kus012".into(),
                    remote: "exec,cp".into(),
                },
            ],
            created_at: None,
        };
        let row = UserRow::from_proto(&user);
        crate::output::assert_keys_match_columns(&row);
        assert_eq!(
            row.cells()[2],
            "technician@county:kus, viewer@cooperation, technician@school:kus012 (remote: exec,cp)"
        );
        assert_eq!(json_remote(&row), "exec,cp");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["roles"][0]["scope"], "county:kus");
        assert!(json["created_at"].is_null());
    }

    fn json_remote(row: &UserRow) -> String {
        let json = serde_json::to_value(row).unwrap();
        json["roles"][2]["remote"].as_str().unwrap().to_owned()
    }
}
