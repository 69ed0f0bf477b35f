//! `user add|list|set-password|disable|enable|delete|role|tokens|token|mfa`,
//! `token create|revoke`, and the user row `whoami` shares.

use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::{
    ApiTokenInfo, ChangeRoleBindingsRequest, CreateApiTokenRequest, CreateUserRequest,
    ListUsersRequest, RevokeApiTokenRequest, RoleBinding, SetWebPasswordRequest, User, UserRef,
};
use serde::Serialize;

use super::Context;
use crate::args::{TokenCommand, UserCommand, UserMfaCommand, UserRoleCommand};
use crate::client::Reply;
use crate::output::{self, Column, Record, Section, Ui, col, wide};

#[derive(Debug, Serialize)]
pub struct UserRow {
    pub name: String,
    pub county_id: String,
    pub roles: Vec<RoleRow>,
    pub created_at: Option<String>,
    /// Set while the user is disabled.
    pub disabled_at: Option<String>,
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
            disabled_at: output::time_opt(u.disabled_at.as_ref()),
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
        if let Some(at) = &self.disabled_at {
            s.field("Disabled", at.clone());
        }
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
        col("disabled_at", "DISABLED"),
        wide("id", "ID"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.county_id.clone(),
            self.roles_text(),
            self.created_at.clone().unwrap_or_default(),
            self.disabled_at.clone().unwrap_or_default(),
            self.id.clone(),
        ]
    }
}

/// One row of `user tokens`: never a secret.
#[derive(Debug, Serialize)]
pub struct TokenRow {
    pub id: String,
    pub description: String,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl TokenRow {
    fn from_proto(t: &ApiTokenInfo) -> Self {
        Self {
            id: t.id.clone(),
            description: t.description.clone(),
            created_at: output::time_opt(t.created_at.as_ref()),
            expires_at: output::time_opt(t.expires_at.as_ref()),
            last_used_at: output::time_opt(t.last_used_at.as_ref()),
            revoked_at: output::time_opt(t.revoked_at.as_ref()),
        }
    }
}

impl Record for TokenRow {
    const NOUN: &'static str = "tokens";
    const COLUMNS: &'static [Column] = &[
        col("id", "ID"),
        col("description", "DESCRIPTION"),
        col("created_at", "CREATED"),
        col("expires_at", "EXPIRES"),
        col("last_used_at", "LAST USED"),
        col("revoked_at", "REVOKED"),
    ];
    fn cells(&self) -> Vec<String> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            self.id.clone(),
            self.description.clone(),
            opt(&self.created_at),
            opt(&self.expires_at),
            opt(&self.last_used_at),
            opt(&self.revoked_at),
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
    if let UserCommand::Token(cmd) = cmd {
        return token(cmd, ctx, ui).await;
    }
    // Refuse before touching the network when nobody could confirm.
    if let UserCommand::Delete { yes: false, .. } = cmd
        && !ui.interactive
    {
        anyhow::bail!("refusing to delete without confirmation: not a terminal; pass --yes");
    }
    let api = ctx.connect().await?;
    let show = |ui: &mut Ui<'_>, user: &User, title: &str| -> anyhow::Result<()> {
        let row = UserRow::from_proto(user);
        ui.one(&row, |out| {
            out.write_all(row.section(title).render().as_bytes())
        })?;
        Ok(())
    };
    match cmd {
        UserCommand::Token(_) => unreachable!("handled above"),
        UserCommand::Disable { name } => {
            let user = api
                .users()
                .disable_user(UserRef { user: name })
                .await
                .reply(&api)?;
            show(ui, &user, "Disabled user")?;
        }
        UserCommand::Enable { name } => {
            let user = api
                .users()
                .enable_user(UserRef { user: name })
                .await
                .reply(&api)?;
            show(ui, &user, "Enabled user")?;
        }
        UserCommand::Delete { name, yes } => {
            if !yes {
                let question = format!(
                    "Delete user {name} with their roles, tokens, web login and second factor? \
                     This cannot be undone."
                );
                if !ui.confirm(&question)? {
                    anyhow::bail!("aborted: {} was not deleted", for_terminal(&name));
                }
            }
            let answer = api
                .users()
                .delete_user(UserRef { user: name.clone() })
                .await
                .reply(&api)?;
            ui.done(&format!(
                "Deleted user {}; sessions keep the pseudonym {}.",
                for_terminal(&name),
                for_terminal(&answer.pseudonym)
            ))?;
        }
        UserCommand::Role(cmd) => {
            let (name, add, remove) = match cmd {
                UserRoleCommand::Add {
                    name,
                    binding,
                    remote,
                } => (
                    name,
                    vec![RoleBinding {
                        role: binding.role.as_str().to_owned(),
                        scope: binding.scope.to_string(),
                        remote: remote.unwrap_or_default(),
                    }],
                    Vec::new(),
                ),
                UserRoleCommand::Remove { name, binding } => (
                    name,
                    Vec::new(),
                    vec![RoleBinding {
                        role: binding.role.as_str().to_owned(),
                        scope: binding.scope.to_string(),
                        remote: String::new(),
                    }],
                ),
            };
            let user = api
                .users()
                .change_role_bindings(ChangeRoleBindingsRequest {
                    user: name,
                    add,
                    remove,
                })
                .await
                .reply(&api)?;
            show(ui, &user, "Changed roles")?;
        }
        UserCommand::Tokens { name } => {
            let tokens = api
                .users()
                .list_api_tokens(UserRef {
                    user: name.unwrap_or_default(),
                })
                .await
                .reply(&api)?
                .tokens;
            let rows: Vec<TokenRow> = tokens.iter().map(TokenRow::from_proto).collect();
            ui.list(&rows)?;
        }
        UserCommand::Mfa(UserMfaCommand::Reset { name }) => {
            let answer = api
                .users()
                .reset_mfa(UserRef { user: name.clone() })
                .await
                .reply(&api)?;
            let name = for_terminal(&name);
            ui.done(&if answer.had_mfa {
                format!("Reset the second factor of {name}; they enrol again with `schoolfleet mfa enroll`.")
            } else {
                format!("{name} had no second factor enrolled.")
            })?;
        }
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
            disabled_at: None,
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
