//! `--consent-command`: a local program decides. Exit 0 accepts, any other
//! exit declines, still running at the timeout means no answer.

use std::path::PathBuf;
use std::time::Duration;

use super::{BoxFuture, ConsentAnswer, ConsentProvider, ConsentRequest, run_bounded};

/// A notice command gets this long before it is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct CommandProvider {
    program: PathBuf,
}

impl CommandProvider {
    pub fn new(program: PathBuf) -> Self {
        CommandProvider { program }
    }

    fn command(&self, mode: &str, request: &ConsentRequest) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .env("SCHOOLFLEET_CONSENT_MODE", mode)
            .env("SCHOOLFLEET_SESSION_ID", &request.session_id)
            .env("SCHOOLFLEET_SESSION_KIND", &request.kind)
            .env("SCHOOLFLEET_SESSION_SUMMARY", &request.summary)
            .env("SCHOOLFLEET_ADMIN", &request.admin)
            .env("SCHOOLFLEET_REASON", &request.reason)
            .env("SCHOOLFLEET_TICKET", &request.ticket);
        command
    }
}

impl ConsentProvider for CommandProvider {
    fn name(&self) -> &'static str {
        "command"
    }

    fn ask<'a>(
        &'a self,
        request: &'a ConsentRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, ConsentAnswer> {
        Box::pin(async move {
            match run_bounded(self.command("prompt", request), timeout).await {
                Ok(Some(status)) if status.success() => ConsentAnswer::Accepted,
                Ok(Some(status)) => {
                    tracing::info!(session = %request.session_id, %status, "consent command declined");
                    ConsentAnswer::Declined
                }
                Ok(None) => ConsentAnswer::NoAnswer,
                Err(err) => {
                    tracing::error!(program = %self.program.display(), error = %err, "cannot run the consent command");
                    ConsentAnswer::NoProvider("the consent command on the device failed".into())
                }
            }
        })
    }

    fn notify<'a>(&'a self, request: &'a ConsentRequest) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match run_bounded(self.command("notify", request), NOTIFY_TIMEOUT).await {
                Ok(Some(_)) => {}
                Ok(None) => tracing::warn!("consent command did not finish its notice in time"),
                Err(err) => {
                    tracing::warn!(program = %self.program.display(), error = %err, "cannot run the consent command")
                }
            }
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        let path = dir.join("consent.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn request() -> ConsentRequest {
        ConsentRequest {
            session_id: "s-1".into(),
            kind: "exec".into(),
            summary: "apt update".into(),
            admin: "user:anna".into(),
            reason: "Updates; $(reboot) `id`".into(),
            ticket: "SUP-7".into(),
        }
    }

    #[tokio::test]
    async fn accepts_on_exit_zero_and_sees_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let body = format!(
            "printf '%s|%s|%s|%s|%s|%s|%s' \"$SCHOOLFLEET_CONSENT_MODE\" \"$SCHOOLFLEET_SESSION_ID\" \"$SCHOOLFLEET_SESSION_KIND\" \"$SCHOOLFLEET_SESSION_SUMMARY\" \"$SCHOOLFLEET_ADMIN\" \"$SCHOOLFLEET_REASON\" \"$SCHOOLFLEET_TICKET\" > {}\nexit 0",
            out.display()
        );
        let provider = CommandProvider::new(script(dir.path(), &body));
        let answer = provider.ask(&request(), Duration::from_secs(10)).await;
        assert_eq!(answer, ConsentAnswer::Accepted);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "prompt|s-1|exec|apt update|user:anna|Updates; $(reboot) `id`|SUP-7"
        );
    }

    #[tokio::test]
    async fn declines_on_other_exit() {
        let dir = tempfile::tempdir().unwrap();
        let provider = CommandProvider::new(script(dir.path(), "exit 1"));
        let answer = provider.ask(&request(), Duration::from_secs(10)).await;
        assert_eq!(answer, ConsentAnswer::Declined);
    }

    #[tokio::test]
    async fn no_answer_at_the_timeout_and_the_command_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("still-running");
        // The child sleep would touch the marker if it survived the kill.
        let body = format!("(sleep 2; touch {}) &\nsleep 30", marker.display());
        let provider = CommandProvider::new(script(dir.path(), &body));
        let started = std::time::Instant::now();
        let answer = provider.ask(&request(), Duration::from_millis(500)).await;
        assert_eq!(answer, ConsentAnswer::NoAnswer);
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "the consent command's group survived");
    }

    #[tokio::test]
    async fn a_cancelled_question_kills_the_dialog_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("dialog-still-open");
        // Like runuser starting zenity: the dialog is a grandchild.
        let body = format!("(sleep 2; touch {}) &\nsleep 30", marker.display());
        let provider = CommandProvider::new(script(dir.path(), &body));
        let request = request();
        // The admin gives up while the user is being asked.
        tokio::select! {
            _ = provider.ask(&request, Duration::from_secs(60)) => panic!("no answer expected"),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !marker.exists(),
            "the dialog's group outlived the cancelled session"
        );
    }

    #[tokio::test]
    async fn a_missing_program_means_nobody_can_be_asked() {
        let provider = CommandProvider::new("/nonexistent/consent".into());
        let answer = provider.ask(&request(), Duration::from_secs(1)).await;
        assert!(matches!(answer, ConsentAnswer::NoProvider(_)), "{answer:?}");
    }
}
