//! Secrets in exec command lines (issue 12, part 3), one rule set for
//! every place a command line is shown: the server masks the session row's
//! summary and spec, the audit entry and its logs
//! (`server::sessions::redact`, rules from `[sessions] redact_*`); the
//! agent masks what it shows and logs on the device (the local `sessions`
//! listing, the consent question and notice), with the default rules. The
//! device still runs the real argv; secrets that must not appear anywhere
//! go in the environment (`exec --env-file`) or on stdin.

use regex::Regex;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Programs whose arguments are all secrets.
pub const DEFAULT_COMMANDS: [&str; 5] = ["chpasswd", "passwd", "htpasswd", "smbpasswd", "chntpw"];

/// Arguments that carry a secret; the part a group named `keep` matched
/// stays.
pub const DEFAULT_ARG_PATTERNS: [&str; 2] = [
    r"(?i)^(?P<keep>--?[a-z0-9_-]*(password|passwd|passphrase|pass|pwd|secret|token|apikey|api-key)[a-z0-9_-]*[=:]).+$",
    r"(?i)^(?P<keep>[a-z0-9._-]+:)[^/\s]+@",
];

/// The compiled rules.
#[derive(Debug, Clone)]
pub struct Redactor {
    commands: Vec<String>,
    args: Vec<Regex>,
}

impl Default for Redactor {
    /// The default rules (those of a server without `[sessions] redact_*`).
    fn default() -> Self {
        Redactor::new(
            DEFAULT_COMMANDS.iter().copied(),
            DEFAULT_ARG_PATTERNS.iter().copied(),
        )
    }
}

impl Redactor {
    /// Compiles the rules. Invalid patterns are skipped: the server refuses
    /// them when it loads its configuration, and the defaults compile.
    pub fn new<'a>(
        commands: impl IntoIterator<Item = &'a str>,
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Redactor {
            commands: commands.into_iter().map(str::to_owned).collect(),
            args: patterns
                .into_iter()
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
                    let base = bare.rsplit(['/', '\\']).next().unwrap_or(bare);
                    let base = base.trim_end_matches([';', '|', '&', ')']);
                    if self.is_command(base) {
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

    fn is_command(&self, base: &str) -> bool {
        let base = base.strip_suffix(".exe").unwrap_or(base);
        self.commands.iter().any(|c| c == base)
    }

    /// argv with every secret masked.
    pub fn argv(&self, argv: &[String]) -> Vec<String> {
        let program = argv.first().map(String::as_str).unwrap_or_default();
        let program_base = program.rsplit(['/', '\\']).next().unwrap_or(program);
        let all = self.is_command(program_base);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(words: &[&str]) -> Vec<String> {
        let argv: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        Redactor::default().argv(&argv)
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

    #[test]
    fn windows_paths_and_exe_names_count_too() {
        assert_eq!(
            redact(&[r"C:\Tools\chntpw.exe", "-u", "Administrator"]),
            [r"C:\Tools\chntpw.exe", "***", "***"]
        );
        assert_eq!(
            redact(&["cmd", "/c", r"echo x | C:\bin\smbpasswd.exe -s"]),
            ["cmd", "/c", "***"]
        );
    }
}
