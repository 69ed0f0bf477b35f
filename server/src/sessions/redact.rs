//! Secrets in exec command lines (issue 12, part 3): what is stored (the
//! session row's summary and spec), audited and logged shows `***` where
//! an argument carries a secret. The device still gets the real argv; the
//! CLI's advice is to send secrets on stdin, which is never stored.

use regex::Regex;

use super::policy::{CheckedSpec, Kind};
use crate::config::SessionsSection;

const MASK: &str = "***";

/// The compiled rules of the configuration.
#[derive(Debug)]
pub struct Redactor {
    commands: Vec<String>,
    args: Vec<Regex>,
}

impl Redactor {
    /// Compiles the rules; invalid patterns were refused when the
    /// configuration was loaded and are skipped here.
    pub fn new(config: &SessionsSection) -> Self {
        Redactor {
            commands: config.redact_commands.clone(),
            args: config
                .redact_args
                .iter()
                .filter_map(|r| Regex::new(r).ok())
                .collect(),
        }
    }

    /// Whether a shell command line (an argument with spaces, as in
    /// `sh -c '…'`) runs one of the programs: a word in command position,
    /// at the start or after `|`, `;`, `&`, `(` or `sudo`.
    fn names_command(&self, text: &str) -> bool {
        if !text.contains(char::is_whitespace) {
            return false;
        }
        let mut command_position = true;
        for word in text.split_whitespace() {
            let bare = word.trim_start_matches(['|', ';', '&', '(']);
            if !bare.is_empty() {
                if command_position || bare.len() < word.len() {
                    let base = bare.rsplit('/').next().unwrap_or(bare);
                    let base = base.trim_end_matches([';', '|', '&', ')']);
                    if self.commands.iter().any(|c| c == base) {
                        return true;
                    }
                }
                command_position = bare == "sudo";
            } else {
                command_position = true;
            }
            if word.ends_with(['|', ';', '&']) {
                command_position = true;
            }
        }
        false
    }

    /// argv with every secret masked.
    pub fn argv(&self, argv: &[String]) -> Vec<String> {
        let program = argv.first().map(String::as_str).unwrap_or_default();
        let program_base = program.rsplit('/').next().unwrap_or(program);
        let all = self.commands.iter().any(|c| c == program_base);
        argv.iter()
            .enumerate()
            .map(|(i, arg)| {
                if i == 0 {
                    return arg.clone();
                }
                if all || self.names_command(arg) {
                    return MASK.to_owned();
                }
                for rule in &self.args {
                    if let Some(found) = rule.captures(arg) {
                        let keep = found.name("keep").map_or("", |m| m.as_str());
                        return format!("{keep}{MASK}");
                    }
                }
                arg.clone()
            })
            .collect()
    }

    /// The checked spec as it may be stored, audited and logged.
    pub fn spec(&self, mut spec: CheckedSpec, argv: Option<&[String]>) -> CheckedSpec {
        if let (Kind::Exec, Some(argv)) = (spec.kind, argv) {
            let masked = self.argv(argv);
            if masked != argv {
                spec.summary = schoolfleet_proto::text::clean(&masked.join(" "), 200).value;
                spec.json = serde_json::json!({"exec": {"argv": masked}}).to_string();
            }
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(words: &[&str]) -> Vec<String> {
        let argv: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        Redactor::new(&SessionsSection::default()).argv(&argv)
    }

    #[test]
    fn secrets_become_stars_and_the_rest_stays() {
        assert_eq!(
            redact(&["chpasswd", "max.mustermann:Geheim123"]),
            ["chpasswd", "***"]
        );
        assert_eq!(
            redact(&["sh", "-c", "echo max:Geheim123 | /usr/sbin/chpasswd"]),
            ["sh", "-c", "***"]
        );
        assert_eq!(
            redact(&["mysql", "--password=Geheim123", "-u", "root", "schule"]),
            ["mysql", "--password=***", "-u", "root", "schule"]
        );
        assert_eq!(
            redact(&["curl", "--api-token:abc", "https://x/y"]),
            ["curl", "--api-token:***", "https://x/y"]
        );
        assert_eq!(
            redact(&["smbclient", "admin:Geheim@fileserver", "-c", "ls"]),
            ["smbclient", "admin:***", "-c", "ls"]
        );
        assert_eq!(redact(&["apt", "update"]), ["apt", "update"]);
        assert_eq!(
            redact(&["sh", "-c", "grep x /etc/passwd | wc -l"]),
            ["sh", "-c", "grep x /etc/passwd | wc -l"]
        );
        assert_eq!(
            redact(&["sh", "-c", "sudo passwd -d gast;true"]),
            ["sh", "-c", "***"]
        );
        assert_eq!(
            redact(&["ls", "/etc/passwd"]),
            ["ls", "/etc/passwd"],
            "a file named like a command is no command"
        );
    }
}
