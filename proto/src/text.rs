//! Handling of untrusted text. Every string an agent sends is treated as
//! hostile: it may carry terminal escape sequences, bidi overrides, HTML or
//! SQL. Storage binds values as parameters (so SQL is inert) and output
//! formats escape HTML/JSON themselves; what remains dangerous are control
//! characters, which this module neutralises.

/// Is this a character that can change how a terminal or a text renderer
/// shows the surrounding text?
pub fn is_dangerous_char(c: char) -> bool {
    c.is_control()
        // Bidirectional overrides, isolates and marks ("Trojan Source"),
        // and the invisible characters that hide or join text: zero-width
        // space, non-joiner and joiner, the Arabic letter mark and the
        // byte-order mark (zero-width no-break space).
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200B}'..='\u{200F}'
                | '\u{061C}'
                | '\u{FEFF}'
        )
}

/// Result of cleaning one untrusted string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleaned {
    pub value: String,
    /// True when characters were replaced or the value was cut.
    pub changed: bool,
}

/// Whether [`clean`] would leave `input` as it is: no dangerous character
/// and at most `max_bytes` bytes. Allocates nothing, so the common case (a
/// clean value) costs one pass over its bytes.
pub fn is_clean(input: &str, max_bytes: usize) -> bool {
    input.len() <= max_bytes && !input.chars().any(is_dangerous_char)
}

/// Replaces dangerous characters with U+FFFD and cuts the value to at most
/// `max_bytes` bytes on a character boundary. Used by the server before it
/// stores anything an agent sent.
pub fn clean(input: &str, max_bytes: usize) -> Cleaned {
    let mut value = String::with_capacity(input.len().min(max_bytes));
    let mut changed = false;
    for c in input.chars() {
        let c = if is_dangerous_char(c) {
            changed = true;
            '\u{FFFD}'
        } else {
            c
        };
        if value.len() + c.len_utf8() > max_bytes {
            changed = true;
            break;
        }
        value.push(c);
    }
    Cleaned { value, changed }
}

/// Makes a string safe to print on a terminal: dangerous characters become
/// visible escapes such as `\x1b` or `\u{202e}`. Used by the CLI on every
/// value it prints, whatever the server already did.
pub fn for_terminal(input: &str) -> std::borrow::Cow<'_, str> {
    if !input.chars().any(is_dangerous_char) {
        return std::borrow::Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len() + 8);
    for c in input.chars() {
        if is_dangerous_char(c) {
            let code = c as u32;
            if code <= 0xff {
                out.push_str(&format!("\\x{code:02x}"));
            } else {
                out.push_str(&format!("\\u{{{code:04x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Longest untrusted value repeated in an error message or a log line.
pub const MAX_ECHO_BYTES: usize = 64;

/// An untrusted value (an id, a name a client or device sent) as it may
/// appear in an error message or a log line: dangerous characters
/// neutralised, cut to `MAX_ECHO_BYTES` with `…`, in quotes. A 1 MB session
/// id must never come back in a `grpc-message` header, and a device must
/// never write its own log lines.
pub fn echo(input: &str) -> String {
    let cleaned = clean(input, MAX_ECHO_BYTES);
    // `clean` replaces character for character, so fewer means cut.
    let cut = cleaned.value.chars().count() < input.chars().count();
    format!("{:?}", cleaned.value + if cut { "…" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_clean_agrees_with_clean() {
        let cases = [
            ("", 0),
            ("plain", 5),
            ("plain", 4),
            ("Übersetzer", 11),
            ("Übersetzer", 10),
            ("tab\there", 64),
            ("pc\u{1b}]0;x", 64),
            ("a\u{202e}b", 64),
            ("a\u{200A}b", 64),
        ];
        for (text, max) in cases {
            assert_eq!(
                is_clean(text, max),
                !clean(text, max).changed,
                "{text:?} at {max} bytes"
            );
        }
    }

    #[test]
    fn clean_neutralises_escapes_and_bidi() {
        let hostile = "pc\u{1b}]0;owned\u{7}\u{202e}gpj.exe";
        let cleaned = clean(hostile, 256);
        assert!(cleaned.changed);
        assert!(!cleaned.value.chars().any(is_dangerous_char));
        assert!(cleaned.value.starts_with("pc\u{FFFD}]0;owned"));
    }

    #[test]
    fn invisible_and_bidi_marks_are_neutralised() {
        for c in [
            '\u{061C}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{2066}',
            '\u{2067}', '\u{2068}', '\u{2069}', '\u{FEFF}',
        ] {
            let hostile = format!("admin{c}istrator");
            let cleaned = clean(&hostile, 256);
            assert!(cleaned.changed, "U+{:04X} passed clean", c as u32);
            assert_eq!(cleaned.value, "admin\u{FFFD}istrator");
            assert_eq!(
                for_terminal(&hostile),
                format!("admin\\u{{{:04x}}}istrator", c as u32)
            );
        }
        // Neighbours that are ordinary text stay untouched.
        for text in ["a\u{200A}b", "a\u{2010}b", "a\u{2065}b", "\u{FEFE}"] {
            assert!(!clean(text, 256).changed, "{text:?}");
        }
    }

    #[test]
    fn clean_cuts_on_char_boundary() {
        let cleaned = clean("äöü", 5);
        assert_eq!(cleaned.value, "äö");
        assert!(cleaned.changed);
    }

    #[test]
    fn clean_keeps_ordinary_text_untouched() {
        let text = "Schülerrechner <b>'; DROP TABLE devices; --";
        assert_eq!(
            clean(text, 256),
            Cleaned {
                value: text.into(),
                changed: false
            }
        );
    }

    #[test]
    fn for_terminal_shows_escapes_visibly() {
        assert_eq!(for_terminal("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(for_terminal("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(for_terminal("Überhitzung"), "Überhitzung");
    }

    #[test]
    fn echo_is_bounded_and_clean() {
        let long = "a".repeat(1_000_000);
        let shown = echo(&long);
        assert!(shown.len() < MAX_ECHO_BYTES + 8, "{}", shown.len());
        assert!(shown.ends_with("…\""));
        assert_eq!(echo("pc07"), "\"pc07\"");
        let forged = echo("x\n2026-01-01 INFO forged\x1b[2J");
        assert!(
            !forged.contains('\n') && !forged.contains('\x1b'),
            "{forged}"
        );
    }
}
