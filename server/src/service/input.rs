//! Checks of request fields that every transport shares: the same text
//! is refused with the same message from the CLI and from the web.

use super::error::{AppError, AppResult};

/// The German name of a request field, for the portal's messages.
pub fn german_field(field: &str) -> &str {
    match field {
        "county" => "Landkreis",
        "school" => "Schule",
        "device class" => "Geräteklasse",
        "device" => "Gerät",
        "title" => "Titel",
        "text" | "description" => "Beschreibung",
        "comment" => "Kommentar",
        "category" => "Kategorie",
        "reason" => "Grund",
        "name" => "Name",
        other => other,
    }
}

/// Validates a tenant id (county, school, device class) from a request.
pub fn tenant_id(field: &str, value: &str) -> AppResult<String> {
    let value = value.trim();
    if schoolfleet_proto::scope::is_valid_tenant_id(value) {
        Ok(value.to_owned())
    } else {
        Err(AppError::invalid(format!(
            "{field} {value:?} is invalid: use 1-32 lowercase letters, digits, '-' or '_'"
        ))
        .with_german(format!(
            "{} „{}“ ist ungültig: erlaubt sind 1 bis 32 Kleinbuchstaben, Ziffern, „-“ oder „_“.",
            german_field(field),
            schoolfleet_proto::text::clean(value, 64).value
        )))
    }
}

/// Validates a human-readable name or description: refused, not altered,
/// when too long or holding control characters.
pub fn display_text(field: &str, value: &str, max: usize) -> AppResult<String> {
    let cleaned = schoolfleet_proto::text::clean(value.trim(), max);
    if cleaned.changed {
        return Err(AppError::invalid(format!(
            "{field} is too long (max {max} bytes) or contains control characters"
        ))
        .with_german(format!(
            "{} ist zu lang (höchstens {max} Bytes) oder enthält Steuerzeichen.",
            german_field(field)
        )));
    }
    Ok(cleaned.value)
}

/// Cleans multi-line text: each line like [`display_text`], newlines kept.
/// `strict` refuses dangerous characters (people's input); otherwise they
/// are replaced (an agent's input, which is hostile by definition).
pub fn multiline_text(field: &str, value: &str, max: usize, strict: bool) -> AppResult<String> {
    let value = value.trim().replace("\r\n", "\n");
    if value.len() > max {
        return Err(
            AppError::invalid(format!("{field} is too long (max {max} bytes)")).with_german(
                format!(
                    "{} ist zu lang (höchstens {max} Bytes).",
                    german_field(field)
                ),
            ),
        );
    }
    let mut out = Vec::new();
    for line in value.split('\n') {
        let cleaned = schoolfleet_proto::text::clean(&line.replace('\t', "    "), max);
        if cleaned.changed && strict {
            return Err(
                AppError::invalid(format!("{field} contains control characters"))
                    .with_german(format!("{} enthält Steuerzeichen.", german_field(field))),
            );
        }
        out.push(cleaned.value);
    }
    Ok(out.join("\n"))
}

/// Empty (after trimming) is `None`.
pub fn optional(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
