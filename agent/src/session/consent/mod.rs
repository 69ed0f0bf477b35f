//! Asking the person at the device before a remote session starts.
//!
//! A provider either asks (`prompt`: yes, no or no answer in time) or just
//! tells (`notify`). Providers run outside the agent's loop; a notice never
//! holds up the session.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

mod command;
#[cfg(unix)]
mod desktop;
#[cfg(windows)]
#[path = "desktop_windows.rs"]
mod desktop;
#[cfg_attr(not(windows), allow(dead_code))] // the Windows box; tested everywhere
mod message;

pub use command::CommandProvider;
pub use desktop::{DesktopProvider, GraphicalSession};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the local user is asked about. Everything but `kind` comes from
/// the server: pass it on as data, never as markup or shell text.
#[derive(Debug, Clone, Default)]
pub struct ConsentRequest {
    pub session_id: String,
    /// shell, exec, forward or cp.
    pub kind: String,
    pub summary: String,
    pub admin: String,
    pub reason: String,
    pub ticket: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentAnswer {
    Accepted,
    Declined,
    NoAnswer,
    /// Nobody can be asked; the text says why (never a local user name).
    NoProvider(String),
}

pub trait ConsentProvider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Asks and waits at most `timeout` for an answer.
    fn ask<'a>(
        &'a self,
        request: &'a ConsentRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, ConsentAnswer>;
    /// Tells the user that a session starts; best effort.
    fn notify<'a>(&'a self, request: &'a ConsentRequest) -> BoxFuture<'a, ()>;
    /// Tells the user that a session they were told of or asked about has
    /// ended, so the indicator goes away too; best effort, nothing by
    /// default (a consent script is asked, not told).
    fn notify_end<'a>(&'a self, _request: &'a ConsentRequest, _why: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// `--consent-provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderChoice {
    #[default]
    Auto,
    Desktop,
    Command,
    None,
}

impl std::str::FromStr for ProviderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ProviderChoice::Auto),
            "desktop" => Ok(ProviderChoice::Desktop),
            "command" => Ok(ProviderChoice::Command),
            "none" => Ok(ProviderChoice::None),
            other => Err(format!(
                "unknown consent provider {other:?} (auto, desktop, command, none)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("--consent-provider command needs --consent-command PATH")]
    MissingCommand,
}

pub fn build(
    choice: ProviderChoice,
    command: Option<PathBuf>,
) -> Result<Arc<dyn ConsentProvider>, ConsentError> {
    Ok(match choice {
        ProviderChoice::Command => Arc::new(CommandProvider::new(
            command.ok_or(ConsentError::MissingCommand)?,
        )),
        ProviderChoice::Desktop => Arc::new(DesktopProvider),
        ProviderChoice::None => Arc::new(NoProvider),
        ProviderChoice::Auto => Arc::new(AutoProvider {
            command: command.map(CommandProvider::new),
        }),
    })
}

/// Nobody to ask: prompts are refused, notices only logged.
#[derive(Debug)]
pub struct NoProvider;

impl ConsentProvider for NoProvider {
    fn name(&self) -> &'static str {
        "none"
    }
    fn ask<'a>(&'a self, _: &'a ConsentRequest, _: Duration) -> BoxFuture<'a, ConsentAnswer> {
        Box::pin(async {
            ConsentAnswer::NoProvider("no way to ask the user is configured on the device".into())
        })
    }
    fn notify<'a>(&'a self, request: &'a ConsentRequest) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::info!(session = %request.session_id, "no consent provider: session start only logged");
        })
    }
}

/// The command when configured, else the desktop when someone is logged
/// in graphically, else nobody.
#[derive(Debug)]
pub struct AutoProvider {
    command: Option<CommandProvider>,
}

impl ConsentProvider for AutoProvider {
    fn name(&self) -> &'static str {
        "auto"
    }
    fn ask<'a>(
        &'a self,
        request: &'a ConsentRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, ConsentAnswer> {
        Box::pin(async move {
            if let Some(command) = &self.command {
                return command.ask(request, timeout).await;
            }
            if desktop::find_session().await.is_some() {
                return DesktopProvider.ask(request, timeout).await;
            }
            ConsentAnswer::NoProvider("nobody is logged in at the device to ask".into())
        })
    }
    fn notify<'a>(&'a self, request: &'a ConsentRequest) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(command) = &self.command {
                return command.notify(request).await;
            }
            if desktop::find_session().await.is_some() {
                return DesktopProvider.notify(request).await;
            }
            NoProvider.notify(request).await
        })
    }
    fn notify_end<'a>(&'a self, request: &'a ConsentRequest, why: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if self.command.is_none() && desktop::find_session().await.is_some() {
                DesktopProvider.notify_end(request, why).await;
            }
        })
    }
}

/// Runs a prepared command in its own process group; `None` when it was
/// still running at the timeout. The whole group is killed on every path:
/// at the timeout, when the caller gives up (the future is dropped: the
/// session was cancelled while asking), and after the leader exited, so a
/// dialog started by a wrapper (runuser, a script) never outlives it.
pub(crate) async fn run_bounded(
    mut command: tokio::process::Command,
    timeout: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = crate::os::process::TreeChild::spawn(command)?;
    // Declared after `child`, so it drops first: the tree is killed while
    // the leader is not yet reaped and its id cannot have been reused.
    let _tree = child.kill_on_drop_guard();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map(Some),
        Err(_) => Ok(None),
    }
}

/// Untrusted text for a dialog: no control characters, bounded length.
pub(crate) fn plain(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| !schoolfleet_proto::text::is_dangerous_char(*c) || *c == '\n')
        .take(max_chars)
        .collect()
}

/// The capability in German, for dialogs.
pub(crate) fn kind_german(kind: &str) -> &'static str {
    match kind {
        "shell" => "eine Kommandozeile (Shell) öffnen",
        "exec" => "einen Befehl ausführen",
        "forward" => "eine Netzwerkverbindung weiterleiten",
        "cp" => "eine Datei übertragen",
        _ => "auf diesen Computer zugreifen",
    }
}
