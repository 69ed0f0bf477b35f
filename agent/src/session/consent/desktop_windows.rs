//! The desktop provider on Windows: a message box in the interactive
//! user's session (`WTSSendMessageW`, see `os::wts`), with the consent
//! timeout as the box's own timeout. With nobody logged on at the console
//! a prompt is refused, as on Linux: fail closed, never "accepted".

use std::time::Duration;

use super::{BoxFuture, ConsentAnswer, ConsentProvider, ConsentRequest, message};
use crate::os::wts;

/// How long a notice stays on the screen.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time for the box's own timeout to come first.
const SLACK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphicalSession {
    /// The Windows session id of the console.
    pub id: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct DesktopProvider;

/// The console session with a logged-on user, if any.
pub async fn find_session() -> Option<GraphicalSession> {
    tokio::task::spawn_blocking(wts::active_console_session)
        .await
        .ok()
        .flatten()
        .map(|id| GraphicalSession { id })
}

impl ConsentProvider for DesktopProvider {
    fn name(&self) -> &'static str {
        "desktop"
    }

    fn ask<'a>(
        &'a self,
        request: &'a ConsentRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, ConsentAnswer> {
        Box::pin(async move {
            let Some(session) = find_session().await else {
                return ConsentAnswer::NoProvider(
                    "nobody is logged in at the device to ask".into(),
                );
            };
            let text = message::question(request, timeout);
            // The call blocks until an answer or its timeout. If the session
            // is cancelled meanwhile, this future is dropped and a late
            // answer is ignored; the box closes at its timeout (WTS cannot
            // take a box back).
            let asked = tokio::task::spawn_blocking(move || {
                wts::ask_yes_no(session.id, message::TITLE, &text, timeout)
            });
            match tokio::time::timeout(timeout + SLACK, asked).await {
                Ok(Ok(Ok(wts::Answer::Yes))) => ConsentAnswer::Accepted,
                Ok(Ok(Ok(wts::Answer::No))) => ConsentAnswer::Declined,
                Ok(Ok(Ok(wts::Answer::Timeout))) | Err(_) => ConsentAnswer::NoAnswer,
                Ok(Ok(Ok(wts::Answer::Other(code)))) => {
                    tracing::info!(code, "consent box closed without yes or no");
                    ConsentAnswer::Declined
                }
                Ok(Ok(Err(err))) => {
                    tracing::warn!(error = %err, "cannot show the consent box");
                    ConsentAnswer::NoProvider("the consent dialog could not be shown".into())
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "consent box task failed");
                    ConsentAnswer::NoProvider("the consent dialog could not be shown".into())
                }
            }
        })
    }

    fn notify<'a>(&'a self, request: &'a ConsentRequest) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(session) = find_session().await else {
                tracing::info!(session = %request.session_id, "nobody logged in to notify");
                return;
            };
            let text = message::notice(request);
            let told = tokio::task::spawn_blocking(move || {
                wts::tell(session.id, message::TITLE, &text, NOTICE_TIMEOUT)
            })
            .await;
            if let Ok(Err(err)) = told {
                tracing::warn!(error = %err, "cannot show the session notice");
            }
        })
    }

    /// The end notice: like the start notice, a box that does not wait
    /// for the user and closes itself, so the visible indicator ends too.
    fn notify_end<'a>(&'a self, request: &'a ConsentRequest, why: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(session) = find_session().await else {
                tracing::info!(session = %request.session_id, "nobody logged in to tell of the end");
                return;
            };
            let text = message::end_notice(request, why);
            let told = tokio::task::spawn_blocking(move || {
                wts::tell(session.id, message::TITLE, &text, NOTICE_TIMEOUT)
            })
            .await;
            if let Ok(Err(err)) = told {
                tracing::warn!(error = %err, "cannot show the end-of-session notice");
            }
        })
    }
}
