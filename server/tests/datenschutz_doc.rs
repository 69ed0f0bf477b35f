//! docs/datenschutz.md tells the data-protection officer how long each
//! item is kept. This test keeps that table equal to the default
//! configuration: every "`section.key` = `value`" in the document must be
//! the default, and every retention setting must be in the document.

use schoolfleet_server::config::{Config, DEFAULT_CONFIG_TOML};

fn document() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/datenschutz.md");
    std::fs::read_to_string(path).unwrap()
}

/// Every "`a.b` = `v`" pair in the text.
fn settings(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find('`') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('`') else { break };
        let key = &after[..end];
        let tail = &after[end + 1..];
        if let Some(value) = tail.strip_prefix(" = `")
            && let Some(value_end) = value.find('`')
            && key.contains('.')
            && !key.contains(' ')
        {
            out.push((key.to_owned(), value[..value_end].to_owned()));
            rest = &value[value_end + 1..];
        } else {
            rest = tail;
        }
    }
    out
}

fn default_value(defaults: &toml::Table, key: &str) -> Option<String> {
    let (section, name) = key.split_once('.')?;
    match defaults.get(section)?.get(name)? {
        toml::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[test]
fn the_retention_table_matches_the_default_config() {
    let doc = document();
    let defaults: toml::Table = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
    let found = settings(&doc);
    assert!(found.len() >= 14, "too few settings found: {found:?}");
    for (key, value) in &found {
        assert_eq!(
            default_value(&defaults, key).as_deref(),
            Some(value.as_str()),
            "docs/datenschutz.md says `{key}` = `{value}`"
        );
    }
    let mut required: Vec<String> = Config::default()
        .retention
        .all()
        .into_iter()
        .map(|(key, _)| format!("retention.{key}"))
        .collect();
    required.extend(
        [
            "sessions.recording_retention",
            "audit.retention",
            "server.bootstrap_token_validity",
        ]
        .map(String::from),
    );
    for key in required {
        assert!(
            found.iter().any(|(k, _)| *k == key),
            "`{key}` is not in the table of docs/datenschutz.md"
        );
    }
}

#[test]
fn the_parser_sees_a_wrong_value() {
    let found = settings("| x | `retention.sessions` = `1days` | y |");
    assert_eq!(found, [("retention.sessions".into(), "1days".into())]);
    let defaults: toml::Table = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
    assert_ne!(
        default_value(&defaults, "retention.sessions").as_deref(),
        Some("1days")
    );
}
