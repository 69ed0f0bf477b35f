//! `schoolfleet-server`: thin entry point. See the library for the parts.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use schoolfleet_server::config::{Config, DEFAULT_CONFIG_TOML, FlagOverrides};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "schoolfleet-server",
    version,
    about = "schoolfleet server: enrolment, inventory and remote support for school IT"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Run(RunArgs),
    /// Print the default configuration, with comments.
    DefaultConfig,
}

#[derive(Debug, Default, clap::Args)]
struct RunArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "SCHOOLFLEET_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:7443.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory (CA, bootstrap token, SQLite file).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://...
    #[arg(long)]
    database_url: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::DefaultConfig) => {
            print!("{DEFAULT_CONFIG_TOML}");
            return Ok(());
        }
        Some(Command::Run(args)) => args,
        None => RunArgs::default(),
    };
    let flags = FlagOverrides {
        listen: args.listen,
        data_dir: args.data_dir,
        database_url: args.database_url,
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    init_tracing(&config.log.format, &config.log.filter);
    // Before any socket or thread: every connection needs a descriptor.
    match schoolfleet_server::server::raise_nofile_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!(before, after, "raised the open-file limit");
        }
        Ok((_, limit)) => tracing::info!(limit, "open-file limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let state = schoolfleet_server::server::prepare(config)
        .await
        .context("startup failed")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let shutdown = CancellationToken::new();
    if let Some(portal) = state.config.portal.listen {
        let portal_listener = tokio::net::TcpListener::bind(portal)
            .await
            .with_context(|| format!("cannot listen on {portal} (portal)"))?;
        schoolfleet_server::server::spawn_portal(&state, portal_listener, shutdown.clone())
            .context("portal startup failed")?;
        tracing::info!(url = %format!("https://{portal}/"), "web portal ready");
    }
    tokio::spawn(wait_for_signal(shutdown.clone()));
    notify_systemd("READY=1");
    schoolfleet_server::server::run(state, listener, shutdown).await?;
    notify_systemd("STOPPING=1");
    Ok(())
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
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

/// Tells systemd (Type=notify) about readiness, if it is listening.
fn notify_systemd(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET")
        && let Ok(socket) = std::os::unix::net::UnixDatagram::unbound()
    {
        let _ = socket.send_to(state.as_bytes(), PathBuf::from(path));
    }
}

fn init_tracing(format: &str, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    // Colours only on a terminal: journald and log files get plain text,
    // so that an escape in the log can only be an attack, never decoration.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
