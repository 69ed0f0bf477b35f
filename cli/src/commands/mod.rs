//! One module per command group. Each exposes async functions taking
//! `(command, &Context, &mut Ui)` and defines the serde row structs it prints.
//!
//! Adding a command, e.g. `school rename`:
//!
//! 1. `args.rs`: add the variant with doc comments (they are the `--help`
//!    text) and value parsers (`tenant_id`, `positive_duration`, ...);
//!    `Cli::command().debug_assert()` in the tests checks the definition.
//! 2. Here: route it in [`run`] (the `match` is exhaustive, so the compiler
//!    points at the spot).
//! 3. In the group's module: `let api = ctx.connect().await?;`, call the RPC
//!    with `.await.reply(&api)?` (maps `tonic::Status` to a readable error),
//!    turn the answer into a row struct (`#[derive(Serialize)]` +
//!    [`Record`](crate::output::Record), keys == `COLUMNS`, checked by
//!    `output::assert_keys_match_columns`), and print it with `ui.list`,
//!    `ui.one` or `ui.done`. Never `println!`: `Ui` neutralises escapes and
//!    keeps stdout for data.

pub mod audit;
pub mod compliance;
pub mod consent;
pub mod copy;
pub mod devices;
pub mod enroll;
pub mod exec;
pub mod forward;
pub mod kb;
pub mod login;
pub mod mfa;
pub mod sessions;
pub mod shell;
pub mod software;
pub mod tenants;
pub mod tickets;
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

    /// Flags over environment over the saved profile. The profile is read
    /// only when flags and environment leave a gap, so a script that sets
    /// all three variables works without a home directory.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let settings = Settings::resolve(&self.global, &self.env, None);
        if settings.is_complete() {
            return Ok(settings);
        }
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
        Command::Standard(cmd) => compliance::standard(cmd, &ctx, ui).await,
        Command::Compliance(cmd) => compliance::compliance(cmd, &ctx, ui).await,
        Command::Ticket(cmd) => tickets::run(cmd, &ctx, ui).await,
        Command::Kb(cmd) => kb::run(cmd, &ctx, ui).await,
        Command::Shell(args) => shell::run(args, &ctx, ui)
            .await
            .map_err(crate::exit::as_session_failure),
        Command::Exec(args) => exec::run(args, &ctx, ui).await,
        Command::Forward(args) => forward::run(args, &ctx, ui).await,
        Command::Cp(args) => copy::run(args, &ctx, ui).await,
        Command::Sessions(cmd) => sessions::run(cmd, &ctx, ui).await,
        Command::Audit(cmd) => audit::run(cmd, &ctx, ui).await,
        Command::Consent(cmd) => consent::run(cmd, &ctx, ui).await,
        Command::Mfa(cmd) => mfa::run(cmd, &ctx, ui).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::OutputFormat;
    use crate::profile::Secret;
    use clap::Parser;

    /// Runs a command line in-process with injected environment; returns
    /// (result, stdout, stderr).
    fn run_cli(args: &[&str], env: Environment) -> (anyhow::Result<()>, String, String) {
        let cli = Cli::try_parse_from(std::iter::once("schoolfleet").chain(args.iter().copied()))
            .unwrap();
        let (mut out, mut err, mut input) = (Vec::new(), Vec::new(), std::io::empty());
        let mut ui = Ui {
            format: cli.global.output,
            out: &mut out,
            err: &mut err,
            input: &mut input,
            interactive: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(run(cli, env, &mut ui));
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn env_with_config(dir: &std::path::Path) -> Environment {
        Environment {
            config_dir: Some(dir.to_path_buf()),
            ..Default::default()
        }
    }

    #[test]
    fn commands_without_profile_say_not_logged_in() {
        let dir = tempfile::tempdir().unwrap();
        let (result, out, _) = run_cli(&["devices"], env_with_config(dir.path()));
        let msg = format!("{:#}", result.unwrap_err());
        assert!(
            msg.starts_with("not logged in: run `schoolfleet login"),
            "{msg}"
        );
        assert_eq!(out, "");
    }

    #[test]
    fn logout_deletes_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(profile::PROFILE_FILE);
        let saved = Profile {
            server: "https://fleet:7443".into(),
            ca_pin: "sha256:00".into(),
            token: Secret::new("sft_a_b"),
        };
        profile::save(&path, &saved).unwrap();
        let (result, out, _) = run_cli(&["logout"], env_with_config(dir.path()));
        result.unwrap();
        assert!(out.starts_with("Deleted "), "{out}");
        assert!(!path.exists());

        // --config-dir beats SCHOOLFLEET_CONFIG_DIR.
        let other = tempfile::tempdir().unwrap();
        profile::save(&path, &saved).unwrap();
        let flag = dir.path().to_str().unwrap();
        let (result, _, _) = run_cli(
            &["logout", "--config-dir", flag],
            env_with_config(other.path()),
        );
        result.unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn revoke_without_terminal_needs_yes() {
        let env = Environment {
            server: Some("https://fleet:7443".into()),
            ca_pin: Some("sha256:00".into()),
            token: Some(Secret::new("sft_a_b")),
            ..Default::default()
        };
        let (result, _, _) = run_cli(&["device", "revoke", "kus012-pc07"], env);
        let msg = result.unwrap_err().to_string();
        assert!(msg.contains("--yes"), "{msg}");
    }

    #[test]
    fn env_settings_skip_the_profile_file() {
        let env = Environment {
            server: Some("https://fleet:7443".into()),
            ca_pin: Some("sha256:00".into()),
            token: Some(Secret::new("sft_a_b")),
            // No config dir, no HOME: reading the file would fail.
            ..Default::default()
        };
        let ctx = Context {
            global: GlobalArgs::default(),
            env,
        };
        assert!(ctx.settings().unwrap().is_complete());
        assert_eq!(ctx.global.output, OutputFormat::Table);
    }
}
