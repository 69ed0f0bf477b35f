//! The consent question and the notice as plain text, for the Windows
//! message box (no markup there: the text is shown as it is). Built on
//! every platform so that it is tested everywhere.

use std::time::Duration;

use super::{ConsentRequest, kind_german, plain};

/// The title of both boxes.
pub const TITLE: &str = "Fernwartung";

/// The question, in German, with what answers do and when it expires.
pub fn question(request: &ConsentRequest, timeout: Duration) -> String {
    let mut text = format!(
        "{} möchte {}.\n\n{}\nGrund: {}",
        plain(&request.admin, 200),
        kind_german(&request.kind),
        plain(&request.summary, 300),
        plain(&request.reason, 500),
    );
    if !request.ticket.is_empty() {
        text.push_str(&format!("\nTicket: {}", plain(&request.ticket, 100)));
    }
    text.push_str(&format!(
        "\n\nErlauben Sie den Zugriff? Ohne Antwort innerhalb von {} Sekunden wird er abgelehnt.",
        timeout.as_secs().max(1)
    ));
    text
}

/// The notice for consent "notify", in German.
pub fn notice(request: &ConsentRequest) -> String {
    format!(
        "Fernwartung gestartet: {} wird {}.\n{}\nGrund: {}",
        plain(&request.admin, 200),
        kind_german(&request.kind),
        plain(&request.summary, 300),
        plain(&request.reason, 500),
    )
}

/// The notice when a session the user was told of or asked about ended,
/// in German: who, what, and why it ended.
pub fn end_notice(request: &ConsentRequest, why: &str) -> String {
    format!(
        "Fernwartung beendet: {} ({}).\n{}",
        plain(&request.admin, 200),
        kind_german(&request.kind),
        plain(why, 300),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ConsentRequest {
        ConsentRequest {
            session_id: "s1".into(),
            kind: "exec".into(),
            summary: "cmd /c ipconfig".into(),
            admin: "anna".into(),
            reason: "Drucker prüfen\u{1b}[2J\u{202e}".into(),
            ticket: String::new(),
        }
    }

    #[test]
    fn question_names_admin_kind_reason_and_the_deadline() {
        let text = question(&request(), Duration::from_secs(60));
        assert!(
            text.starts_with(
                "anna möchte einen Befehl ausführen.\n\ncmd /c ipconfig\nGrund: Drucker prüfen"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("innerhalb von 60 Sekunden wird er abgelehnt."),
            "{text}"
        );
        assert!(!text.contains("Ticket"));
        // Control characters and bidi overrides from the server are gone.
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text:?}"
        );
        let with_ticket = ConsentRequest {
            ticket: "SUP-1042".into(),
            ..request()
        };
        assert!(question(&with_ticket, Duration::from_secs(5)).contains("\nTicket: SUP-1042\n"));
    }

    #[test]
    fn notice_is_bounded() {
        let long = ConsentRequest {
            reason: "x".repeat(10_000),
            ..request()
        };
        let text = notice(&long);
        assert!(text.starts_with("Fernwartung gestartet: anna wird einen Befehl ausführen."));
        assert!(text.len() < 1200, "{}", text.len());
    }

    #[test]
    fn the_end_notice_names_who_what_and_why() {
        let text = end_notice(&request(), "ended by the admin\u{1b}[2J");
        assert_eq!(
            text,
            "Fernwartung beendet: anna (einen Befehl ausführen).\nended by the admin[2J"
        );
    }
}
