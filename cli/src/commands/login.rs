//! `login`, `logout`, `whoami`.

use anyhow::bail;
use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::WhoAmIRequest;

use super::Context;
use super::users::UserRow;
use crate::client::{Api, Reply, canonical_pin};
use crate::output::Ui;
use crate::profile::{self, Profile};

/// Checks the settings by asking the server who the token belongs to, and
/// only then saves them: a typo in the pin or token never ends up in the
/// profile.
pub async fn login(ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let path = ctx.profile_path()?;
    let settings = ctx.settings()?;
    let (Some(server), Some(ca_pin), Some(token)) =
        (settings.server, settings.ca_pin, settings.token)
    else {
        bail!(
            "login needs --server, --ca-pin and --token, e.g. `schoolfleet login --server \
             https://fleet.example.org:7443 --ca-pin sha256:HEX --token sft_...`"
        );
    };
    let profile = Profile {
        server,
        ca_pin: canonical_pin(&ca_pin)?,
        token,
    };

    let api = Api::connect(&profile).await?;
    let me = api.users().who_am_i(WhoAmIRequest {}).await.reply(&api)?;
    profile::save(&path, &profile)?;

    let row = UserRow::from_proto(&me);
    ui.one(&row, |out| {
        writeln!(
            out,
            "Logged in to {} as {} ({}).\nProfile saved to {}.",
            for_terminal(&profile.server),
            for_terminal(&row.name),
            for_terminal(&row.roles_text()),
            path.display()
        )
    })?;
    Ok(())
}

/// Deletes the saved profile. The token is not revoked: the profile may
/// hold a token that is also used elsewhere, and revoking needs its id.
pub fn logout(ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let path = ctx.profile_path()?;
    if profile::remove(&path)? {
        ui.done(&format!(
            "Deleted {}. The token stays valid until it expires; revoke it with `schoolfleet token revoke ID`.",
            path.display()
        ))?;
    } else {
        ui.done(&format!(
            "Not logged in (no profile at {}).",
            path.display()
        ))?;
    }
    Ok(())
}

pub async fn whoami(ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    let me = api.users().who_am_i(WhoAmIRequest {}).await.reply(&api)?;
    let row = UserRow::from_proto(&me);
    let server = api.server().to_owned();
    ui.one(&row, |out| {
        let mut section = row.section("You are");
        section.field("Server", server);
        out.write_all(section.render().as_bytes())
    })?;
    Ok(())
}
