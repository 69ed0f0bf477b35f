//! How the agent is told to stop on Windows: Ctrl+C, Ctrl+Break, closing
//! the console or system shutdown (the service control handler cancels the
//! same token).

use tokio_util::sync::CancellationToken;

pub async fn wait_for_stop(shutdown: CancellationToken) {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
    let (Ok(mut c), Ok(mut brk), Ok(mut close), Ok(mut down)) =
        (ctrl_c(), ctrl_break(), ctrl_close(), ctrl_shutdown())
    else {
        tracing::error!("cannot install console control handlers");
        return;
    };
    tokio::select! {
        _ = c.recv() => tracing::info!("Ctrl+C: stopping"),
        _ = brk.recv() => tracing::info!("Ctrl+Break: stopping"),
        _ = close.recv() => tracing::info!("console closed: stopping"),
        _ = down.recv() => tracing::info!("system shutdown: stopping"),
        _ = shutdown.cancelled() => {}
    }
    shutdown.cancel();
}
