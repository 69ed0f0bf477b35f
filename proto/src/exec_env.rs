//! Environment variables for exec (`ExecSpec.env`): the way to hand a
//! command a secret without putting it in argv. The CLI reads them from an
//! `--env-file`, the server checks them and passes them to the device only
//! (it stores and audits the names), the agent checks them again (the
//! server is not trusted with the device's limits) and sets them for the
//! child. Values never reach a log: `EnvVar`'s Debug hides them.

use crate::v1::EnvVar;

/// At most this many variables per exec.
pub const MAX_VARS: usize = 64;
/// Longest name.
pub const MAX_NAME: usize = 128;
/// All names and values together.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024;

impl std::fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvVar")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Checks the variables: portable names (`[A-Za-z_][A-Za-z0-9_]*`), each
/// once, no NUL in a value, within the limits. The message names the
/// offending variable by name only.
pub fn check(env: &[EnvVar]) -> Result<(), String> {
    if env.len() > MAX_VARS {
        return Err(format!(
            "exec takes at most {MAX_VARS} environment variables"
        ));
    }
    let mut total = 0usize;
    let mut seen = std::collections::BTreeSet::new();
    for var in env {
        if !valid_name(&var.name) {
            return Err(format!(
                "environment variable name {} is not a valid name ([A-Za-z_][A-Za-z0-9_]*, at most {MAX_NAME} bytes)",
                crate::text::echo(&var.name)
            ));
        }
        if !seen.insert(var.name.as_str()) {
            return Err(format!("environment variable {} is given twice", var.name));
        }
        if var.value.contains('\0') {
            return Err(format!(
                "the value of environment variable {} contains NUL",
                var.name
            ));
        }
        total += var.name.len() + var.value.len();
    }
    if total > MAX_TOTAL_BYTES {
        return Err(format!(
            "exec environment variables total more than {MAX_TOTAL_BYTES} bytes"
        ));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_NAME
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The names, for what may be stored, audited and shown.
pub fn names(env: &[EnvVar]) -> Vec<String> {
    env.iter().map(|v| v.name.clone()).collect()
}

/// Reads an env file: `NAME=value` per line; blank lines and lines
/// starting with `#` are skipped; an optional `export ` before the name is
/// allowed; the value is taken as it is, up to the end of the line (no
/// quotes removed, no expansion), so any byte but newline and NUL can be
/// passed. Errors name the line, never its value.
pub fn parse_file(text: &str) -> Result<Vec<EnvVar>, String> {
    let mut vars = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let Some((name, value)) = trimmed.split_once('=') else {
            return Err(format!("line {}: expected NAME=value", number + 1));
        };
        vars.push(EnvVar {
            name: name.trim().to_owned(),
            value: value.to_owned(),
        });
    }
    check(&vars).map(|()| vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn env_files_are_read_as_written() {
        let vars =
            parse_file("# Zugang\n\nDB_PASSWORD=Geheim 123 \"x\"\nexport API_TOKEN=a=b\r\n  _X=\n")
                .unwrap();
        assert_eq!(
            vars.iter()
                .map(|v| (v.name.as_str(), v.value.as_str()))
                .collect::<Vec<_>>(),
            [
                ("DB_PASSWORD", "Geheim 123 \"x\""),
                ("API_TOKEN", "a=b"),
                ("_X", "")
            ]
        );
    }

    #[test]
    fn bad_files_and_names_are_refused_without_the_value() {
        let err = parse_file("PASSWORD Geheim123\n").unwrap_err();
        assert_eq!(err, "line 1: expected NAME=value");
        assert!(!err.contains("Geheim"));
        for name in ["", "1X", "A-B", "A B", "Ä", &"X".repeat(MAX_NAME + 1)] {
            assert!(check(&[var(name, "v")]).is_err(), "{name:?}");
        }
        let err = check(&[var("A", "x"), var("A", "y")]).unwrap_err();
        assert!(err.contains("twice"));
        assert!(check(&[var("A", "a\0b")]).is_err());
        assert!(check(&vec![var("A", "x"); 1]).is_ok());
        let many: Vec<EnvVar> = (0..=MAX_VARS).map(|i| var(&format!("V{i}"), "x")).collect();
        assert!(check(&many).is_err());
        assert!(check(&[var("A", &"x".repeat(MAX_TOTAL_BYTES))]).is_err());
    }

    #[test]
    fn debug_output_hides_the_value() {
        let shown = format!("{:?}", var("DB_PASSWORD", "Geheim123"));
        assert!(shown.contains("DB_PASSWORD"));
        assert!(!shown.contains("Geheim123"));
    }
}
