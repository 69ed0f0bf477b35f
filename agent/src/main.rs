//! `schoolfleet-agent`: thin entry point. See the library for the parts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use schoolfleet_agent::control::{self, ControlRequest};
use schoolfleet_agent::runtime::{self, RunOptions};
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
    Run {
        /// Collect the inventory this often instead of the server's interval.
        #[arg(long, value_parser = humantime::parse_duration)]
        inventory_interval: Option<Duration>,
        /// Largest size of the offline spool.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        spool_max_bytes: u64,
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    // One thread is plenty for the agent: low footprint is a feature.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(dispatch(cli))
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
            Ok(())
        }
        Command::Run {
            inventory_interval,
            spool_max_bytes,
        } => {
            let shutdown = CancellationToken::new();
            tokio::spawn(wait_for_signal(shutdown.clone()));
            let options = RunOptions {
                state_dir: cli.state_dir,
                spool_max_bytes,
                inventory_interval,
            };
            runtime::run(options, shutdown).await?;
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

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    shutdown.cancel();
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCHOOLFLEET_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
