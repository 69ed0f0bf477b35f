//! One module per command group. Each exposes `run(command, &Context, &mut Ui)`
//! and defines the serde row structs it prints.

pub mod devices;
pub mod enroll;
pub mod login;
pub mod software;
pub mod tenants;
pub mod users;

use std::path::PathBuf;

use crate::args::{Cli, Command, GlobalArgs};
use crate::client::Api;
use crate::output::Ui;
use crate::profile::{self, Environment, Profile, Settings};

/// What every command may need: the global flags and the environment,
/// captured once.
#[derive(Debug)]
pub struct Context {
    pub global: GlobalArgs,
    pub env: Environment,
}

impl Context {
    pub fn profile_path(&self) -> anyhow::Result<PathBuf> {
        let dir = profile::config_dir(self.global.config_dir.as_deref(), &self.env)?;
        Ok(dir.join(profile::PROFILE_FILE))
    }

    /// Flags over environment over the saved profile.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let saved = profile::load(&self.profile_path()?)?;
        Ok(Settings::resolve(&self.global, &self.env, saved.as_ref()))
    }

    /// The complete connection settings, or "not logged in".
    pub fn profile(&self) -> anyhow::Result<Profile> {
        self.settings()?.require()
    }

    /// Connects with the resolved settings.
    pub async fn connect(&self) -> anyhow::Result<Api> {
        Api::connect(&self.profile()?).await
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli, env: Environment, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let ctx = Context {
        global: cli.global,
        env,
    };
    match cli.command {
        Command::Login => login::login(&ctx, ui).await,
        Command::Logout => login::logout(&ctx, ui),
        Command::Whoami => login::whoami(&ctx, ui).await,
        Command::County(cmd) => tenants::county(cmd, &ctx, ui).await,
        Command::School(cmd) => tenants::school(cmd, &ctx, ui).await,
        Command::Class(cmd) => tenants::class(cmd, &ctx, ui).await,
        Command::EnrollToken(cmd) => enroll::run(cmd, &ctx, ui).await,
        Command::User(cmd) => users::user(cmd, &ctx, ui).await,
        Command::Token(cmd) => users::token(cmd, &ctx, ui).await,
        Command::Devices(args) => devices::list(args, &ctx, ui).await,
        Command::Device(cmd) => devices::run(cmd, &ctx, ui).await,
        Command::Software(cmd) => software::run(cmd, &ctx, ui).await,
    }
}
