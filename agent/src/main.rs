//! `schoolfleet-agent`: thin entry point. See the library for the parts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use schoolfleet_agent::control::{self, ControlRequest};
use schoolfleet_agent::runtime::{self, RunOptions};
use schoolfleet_agent::session::Capability;
use schoolfleet_agent::session::ConsentFloor;
use schoolfleet_agent::session::consent::ProviderChoice;
use schoolfleet_agent::{DEFAULT_STATE_DIR, enroll, inventory};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "schoolfleet-agent",
    version,
    about = "schoolfleet agent: inventory and remote support for this PC"
)]
struct Cli {
    /// Identity, spool and control socket live here.
    #[arg(long, global = true, env = "SCHOOLFLEET_AGENT_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol this device with a one-time token from an admin.
    Enroll {
        /// Server URL, e.g. https://schoolfleet.example:7443
        #[arg(long)]
        server: String,
        /// The enrolment token (sfe_...). Prefer --token-file or the
        /// environment: a command line is visible to other local users.
        #[arg(
            long,
            env = "SCHOOLFLEET_AGENT_TOKEN",
            hide_env_values = true,
            conflicts_with = "token_file"
        )]
        token: Option<String>,
        /// Read the enrolment token from this file.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// How the server recognises this device when it enrols again:
        /// `hardware` (firmware UUID + serial, else the OS machine id) or
        /// `instance` (a random id per installation, for cloned images
        /// without firmware UUIDs).
        #[arg(long, value_enum, default_value = "hardware")]
        host_identifier: HostIdentifierArg,
    },
    /// Run the agent in the foreground (systemd runs it like this).
    Run(RunArgs),
    /// The Windows service: install, uninstall, start, stop, and `run`
    /// (what the service control manager starts).
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Remote sessions on this device (any local user may list and end them).
    Sessions {
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// The running agent's user socket [default: <state-dir>/user.sock].
        #[arg(
            long,
            value_name = "PATH",
            env = "SCHOOLFLEET_AGENT_USER_SOCKET",
            global = true
        )]
        user_socket: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<SessionsAction>,
    },
    /// Show the running agent's state.
    Status,
    /// Make the running agent collect and report its inventory now.
    CollectNow,
    /// Collect the inventory of this machine and print it (no server needed).
    Inventory,
    /// Report a problem with this device to the service desk, e.g.
    /// `schoolfleet-agent report "Beamer zeigt kein Bild"`. Sends a small
    /// snapshot (host name, OS, uptime, free disk, inventory hash).
    Report {
        /// What is wrong, in one line.
        title: String,
        /// More detail.
        #[arg(long, short = 'd', default_value = "")]
        description: String,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// Collect the inventory this often instead of the server's interval.
    #[arg(long, value_parser = humantime::parse_duration)]
    inventory_interval: Option<Duration>,
    /// Largest size of the offline spool.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    spool_max_bytes: u64,
    /// Switch a remote-session capability off on this device
    /// (shell, exec, forward, cp). Repeatable.
    #[arg(
        long = "remote-disable",
        value_name = "CAP",
        env = "SCHOOLFLEET_AGENT_REMOTE_DISABLE",
        value_delimiter = ','
    )]
    remote_disable: Vec<Capability>,
    /// Copy sessions may only read and write files below these
    /// directories. Repeatable; default /tmp and /var/tmp.
    #[arg(
        long = "transfer-root",
        value_name = "PATH",
        env = "SCHOOLFLEET_AGENT_TRANSFER_ROOT",
        value_delimiter = ','
    )]
    transfer_root: Vec<PathBuf>,
    /// How the local user is asked for consent: auto (the command if
    /// set, else the desktop if someone is logged in, else nobody),
    /// desktop, command or none.
    #[arg(
        long,
        value_name = "PROVIDER",
        env = "SCHOOLFLEET_AGENT_CONSENT_PROVIDER",
        default_value = "auto"
    )]
    consent_provider: ProviderChoice,
    /// Program that decides on consent (exit 0 = yes); it gets the
    /// request in SCHOOLFLEET_* environment variables.
    #[arg(long, value_name = "PATH", env = "SCHOOLFLEET_AGENT_CONSENT_COMMAND")]
    consent_command: Option<PathBuf>,
    /// The least consent this device applies, whatever the server sends:
    /// none, notify or prompt. Not even a compromised server goes below it.
    #[arg(
        long,
        value_name = "MODE",
        env = "SCHOOLFLEET_AGENT_CONSENT_MIN",
        default_value = "none"
    )]
    consent_min: ConsentFloor,
    /// Socket on which any local user may list and end remote sessions
    /// [default: <state-dir>/user.sock].
    #[arg(long, value_name = "PATH", env = "SCHOOLFLEET_AGENT_USER_SOCKET")]
    user_socket: Option<PathBuf>,
    /// Shell for remote shell sessions [default: root's login shell,
    /// else /bin/bash, else /bin/sh].
    #[arg(long, value_name = "PATH", env = "SCHOOLFLEET_AGENT_SHELL")]
    shell: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ServiceAction {
    /// Register the service `schoolfleet-agent` (LocalSystem, automatic
    /// start, restart on failure) running this program from where it is.
    Install,
    /// Stop and remove the service.
    Uninstall {
        /// Also delete the state directory (identity, spool, logs).
        #[arg(long)]
        purge: bool,
    },
    /// Delete the state directory (identity, spool, logs) of a stopped or
    /// removed service; the MSI runs this on uninstall with PURGE=1.
    Purge,
    /// Start the installed service.
    Start,
    /// Stop the running service.
    Stop,
    /// The service's entry point (only the service control manager calls
    /// this); takes the options of `run`.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum HostIdentifierArg {
    Hardware,
    Instance,
}

impl From<HostIdentifierArg> for enroll::HostIdentifier {
    fn from(arg: HostIdentifierArg) -> Self {
        match arg {
            HostIdentifierArg::Hardware => enroll::HostIdentifier::Hardware,
            HostIdentifierArg::Instance => enroll::HostIdentifier::Instance,
        }
    }
}

#[derive(Debug, Subcommand)]
enum SessionsAction {
    /// End a remote session now; without ID, end all of them.
    End {
        /// Session id (from `schoolfleet-agent sessions`).
        id: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Service { action } = cli.command {
        return service(cli.state_dir, action);
    }
    init_tracing();
    async_runtime()?.block_on(dispatch(cli))
}

/// One thread is plenty for the agent: low footprint is a feature.
fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Enroll {
            server,
            token,
            token_file,
            host_identifier,
        } => {
            let token = match (token, token_file) {
                (Some(token), _) => token,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read token file {}", path.display()))?,
                (None, None) => bail!(
                    "an enrolment token is required: --token, --token-file or SCHOOLFLEET_AGENT_TOKEN"
                ),
            };
            let enrolled = enroll::enroll(&server, &token, &cli.state_dir, host_identifier.into())
                .await
                .map_err(|e| anyhow::anyhow!("enrolment failed: {}", runtime::error_chain(&e)))?;
            println!(
                "{} device {} (school {}, class {}). Start the agent with `schoolfleet-agent run`.",
                if enrolled.reenrolled {
                    "Re-enrolled existing"
                } else {
                    "Enrolled new"
                },
                enrolled.device_id,
                enrolled.school,
                enrolled.device_class
            );
            if !enrolled.resembles_device.is_empty() {
                println!(
                    "This PC looks like existing device {}. It stays a separate device until an \
                     admin confirms it: `schoolfleet device adopt {} {}`.",
                    enrolled.resembles_device, enrolled.device_id, enrolled.resembles_device
                );
            }
            Ok(())
        }
        Command::Run(args) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(wait_for_signal(shutdown.clone()));
            run_agent(cli.state_dir, args, shutdown).await
        }
        Command::Service { .. } => unreachable!("handled in main before the runtime starts"),
        Command::Sessions {
            json,
            user_socket,
            action,
        } => {
            let path = user_socket.unwrap_or_else(|| control::user_socket_path(&cli.state_dir));
            match action {
                None => {
                    let response = control::call_at(&path, &ControlRequest::Sessions).await?;
                    if !response.ok {
                        bail!("{}", response.error);
                    }
                    if json {
                        println!("{}", serde_json::to_string_pretty(&response.sessions)?);
                    } else {
                        print_sessions(&response.sessions);
                    }
                }
                Some(SessionsAction::End { id }) => {
                    let request = ControlRequest::EndSessions { session_id: id };
                    let response = control::call_at(&path, &request).await?;
                    if !response.ok {
                        bail!("{}", response.error);
                    }
                    if json {
                        println!("{}", serde_json::to_string_pretty(&response.ended)?);
                    } else if response.ended.is_empty() {
                        println!("No remote sessions.");
                    } else {
                        for id in &response.ended {
                            println!("Ended session {id}.");
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Status => {
            let response = control::call(&cli.state_dir, &ControlRequest::Status).await?;
            if !response.ok {
                bail!("{}", response.error);
            }
            println!("{}", serde_json::to_string_pretty(&response.status)?);
            Ok(())
        }
        Command::CollectNow => {
            let response = control::call(&cli.state_dir, &ControlRequest::CollectNow).await?;
            if !response.ok {
                bail!("{}", response.error);
            }
            println!("{}", response.report_id);
            Ok(())
        }
        Command::Report { title, description } => {
            let key = schoolfleet_agent::report::report(&cli.state_dir, &title, &description)
                .await
                .map_err(|e| anyhow::anyhow!("report failed: {}", runtime::error_chain(&e)))?;
            println!("Reported as {key}.");
            Ok(())
        }
        Command::Inventory => {
            let collected =
                tokio::task::spawn_blocking(|| inventory::current_platform().collect()).await?;
            println!("content hash: {}", inventory::content_hash(&collected));
            println!("{collected:#?}");
            Ok(())
        }
    }
}

/// A plain table; every value came from the server, so it is made safe
/// for the terminal first.
fn print_sessions(sessions: &[schoolfleet_agent::session::LocalSession]) {
    if sessions.is_empty() {
        println!("No remote sessions.");
        return;
    }
    let safe = |s: &str| schoolfleet_proto::text::for_terminal(s).into_owned();
    let header = [
        "ID", "KIND", "ADMIN", "REASON", "TICKET", "STARTED", "STATE", "CONSENT", "SUMMARY",
    ];
    let rows: Vec<[String; 9]> = sessions
        .iter()
        .map(|s| {
            [
                safe(&s.id),
                safe(&s.kind),
                safe(&s.admin),
                safe(&s.reason),
                safe(&s.ticket),
                safe(&s.started),
                safe(&s.state),
                safe(&s.consent),
                safe(&s.summary),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `run`, in a console or as the Windows service: until `shutdown`.
async fn run_agent(
    state_dir: PathBuf,
    args: RunArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let RunArgs {
        inventory_interval,
        spool_max_bytes,
        remote_disable,
        transfer_root,
        consent_provider,
        consent_command,
        consent_min,
        user_socket,
        shell,
    } = args;
    if consent_provider == ProviderChoice::Command && consent_command.is_none() {
        bail!("--consent-provider command needs --consent-command PATH");
    }
    let options = RunOptions {
        spool_max_bytes,
        inventory_interval,
        remote_disable,
        transfer_roots: transfer_root,
        consent_provider,
        consent_command,
        consent_min,
        user_socket,
        shell,
        ..RunOptions::new(state_dir)
    };
    runtime::run(options, shutdown).await?;
    Ok(())
}

#[cfg(not(windows))]
fn service(_state_dir: PathBuf, _action: ServiceAction) -> anyhow::Result<()> {
    bail!(
        "`schoolfleet-agent service` is only on Windows; on Linux systemd runs \
         `schoolfleet-agent run` (see packaging/systemd/)"
    )
}

#[cfg(windows)]
fn service(state_dir: PathBuf, action: ServiceAction) -> anyhow::Result<()> {
    use schoolfleet_agent::os::service as svc;
    match action {
        ServiceAction::Install => {
            let custom = (state_dir.as_path() != std::path::Path::new(DEFAULT_STATE_DIR))
                .then_some(state_dir.as_path());
            svc::install(custom)?;
            println!(
                "Installed the service {}. Enrol with `schoolfleet-agent enroll`, then \
                 `schoolfleet-agent service start`.",
                svc::SERVICE_NAME
            );
        }
        ServiceAction::Uninstall { purge } => {
            svc::uninstall(&state_dir, purge)?;
            println!("Removed the service {}.", svc::SERVICE_NAME);
            if purge {
                println!("Removed {}.", state_dir.display());
            }
        }
        ServiceAction::Purge => {
            svc::purge(&state_dir)?;
            println!("Removed {}.", state_dir.display());
        }
        ServiceAction::Start => {
            svc::start()?;
            println!("Started {}.", svc::SERVICE_NAME);
        }
        ServiceAction::Stop => {
            svc::stop()?;
            println!("Stopped {}.", svc::SERVICE_NAME);
        }
        ServiceAction::Run(args) => {
            // A service has no console: the log goes to daily files.
            let writer = svc::log_writer(&state_dir)?;
            let filter = tracing_subscriber::EnvFilter::try_from_env("SCHOOLFLEET_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(writer)
                .init();
            let mut args = args;
            let (floor, refused) = args
                .consent_min
                .with_setup_value(svc::setup_consent_min().as_deref());
            if let Some(error) = refused {
                tracing::warn!(%error, "the installer's ConsentMin is not a mode; applying prompt");
            }
            args.consent_min = floor;
            svc::run_as_service(Box::new(move |shutdown| {
                async_runtime()?.block_on(async {
                    enrol_if_pending(&state_dir).await?;
                    run_agent(state_dir, args, shutdown).await
                })
            }))?;
        }
    }
    Ok(())
}

/// First start after an MSI install: enrol with the server URL and token
/// file the installer left in the registry, then forget the token file.
#[cfg(windows)]
async fn enrol_if_pending(state_dir: &std::path::Path) -> anyhow::Result<()> {
    use schoolfleet_agent::identity::{AgentIdentity, IdentityError};
    use schoolfleet_agent::os::service as svc;
    let Some(pending) = svc::pending_enrolment() else {
        return Ok(());
    };
    match AgentIdentity::load(state_dir) {
        Ok(_) => {
            tracing::info!("already enrolled; the installer's token file is not used");
            return svc::clear_pending_enrolment();
        }
        Err(IdentityError::NotEnrolled { .. }) => {}
        // A broken identity is for an admin to look at, not to overwrite.
        Err(e) => return Err(e).context("cannot read the identity"),
    }
    let token = std::fs::read_to_string(&pending.token_file).with_context(|| {
        format!(
            "cannot read the token file {}",
            pending.token_file.display()
        )
    })?;
    let enrolled = enroll::enroll(
        &pending.server,
        &token,
        state_dir,
        enroll::HostIdentifier::Hardware,
    )
    .await
    .map_err(|e| anyhow::anyhow!("first enrolment failed: {}", runtime::error_chain(&e)))?;
    tracing::info!(device = %enrolled.device_id, server = %pending.server, "enrolled on first start");
    svc::clear_pending_enrolment()
}

async fn wait_for_signal(shutdown: CancellationToken) {
    schoolfleet_agent::os::service::wait_for_stop(shutdown).await;
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCHOOLFLEET_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
