//! The desktop provider on Windows: not built yet (WTSSendMessage into the
//! interactive session is the plan). Until then it says so, and a prompt
//! is refused: fail closed, never "accepted".

use std::time::Duration;

use super::{BoxFuture, ConsentAnswer, ConsentProvider, ConsentRequest};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphicalSession;

#[derive(Debug, Clone, Copy)]
pub struct DesktopProvider;

/// No session lookup on Windows yet.
pub async fn find_session() -> Option<GraphicalSession> {
    None
}

impl ConsentProvider for DesktopProvider {
    fn name(&self) -> &'static str {
        "desktop"
    }

    fn ask<'a>(&'a self, _: &'a ConsentRequest, _: Duration) -> BoxFuture<'a, ConsentAnswer> {
        Box::pin(async {
            ConsentAnswer::NoProvider(
                "the consent dialog is not available on Windows yet; use --consent-command".into(),
            )
        })
    }

    fn notify<'a>(&'a self, request: &'a ConsentRequest) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::info!(session = %request.session_id, "no desktop notice on Windows yet: session start only logged");
        })
    }
}
