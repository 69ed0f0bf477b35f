//! How the agent is told to stop on Unix: SIGTERM (systemd) or SIGINT.

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on SIGTERM or SIGINT.
pub async fn wait_for_stop(shutdown: CancellationToken) {
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
