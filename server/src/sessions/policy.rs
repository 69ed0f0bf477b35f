//! What a session may be: the capability per spec kind, the checks on the
//! spec, and the consent mode that applies to a device.

use schoolfleet_proto::v1::session_spec::Kind as SpecKind;
use schoolfleet_proto::v1::{CopyDirection, SessionKind, SessionSpec};

use crate::auth::Permission;
use crate::storage::{Result, Store};

pub const CONSENT_MODES: [&str; 3] = ["none", "notify", "prompt"];

/// A consent mode in German (the portal's words for it).
pub fn consent_german(mode: &str) -> &str {
    match mode {
        "none" => "ohne Rückfrage",
        "notify" => "mit Hinweis",
        "prompt" => "nur mit Zustimmung",
        other => other,
    }
}

/// The consent mode for a device: the policy of its school and class, else
/// of its school, else the server default; never below the floor the
/// school's lead set.
pub async fn resolve_consent(
    store: &dyn Store,
    school_id: &str,
    device_class: &str,
    default: &str,
) -> Result<String> {
    let floor = super::consent_floor::floor_for(store, school_id, device_class).await?;
    let policy = resolve_policy(store, school_id, device_class, default).await?;
    Ok(match floor {
        Some(floor) => super::consent_floor::stricter(&policy, &floor).to_owned(),
        None => policy,
    })
}

async fn resolve_policy(
    store: &dyn Store,
    school_id: &str,
    device_class: &str,
    default: &str,
) -> Result<String> {
    if !device_class.is_empty()
        && let Some(p) = store.get_consent_policy(school_id, device_class).await?
    {
        return Ok(p.consent);
    }
    if let Some(p) = store.get_consent_policy(school_id, "").await? {
        return Ok(p.consent);
    }
    Ok(default.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Shell,
    Exec,
    Forward,
    Copy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shell => "shell",
            Kind::Exec => "exec",
            Kind::Forward => "forward",
            Kind::Copy => "cp",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Shell, Kind::Exec, Kind::Forward, Kind::Copy]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    pub fn permission(self) -> Permission {
        match self {
            Kind::Shell => Permission::SessionShell,
            Kind::Exec => Permission::SessionExec,
            Kind::Forward => Permission::SessionForward,
            Kind::Copy => Permission::SessionCopy,
        }
    }

    pub fn proto(self) -> SessionKind {
        match self {
            Kind::Shell => SessionKind::Shell,
            Kind::Exec => SessionKind::Exec,
            Kind::Forward => SessionKind::Forward,
            Kind::Copy => SessionKind::Copy,
        }
    }
}

/// A checked spec: its kind, a one-line summary and its JSON form.
#[derive(Debug, Clone)]
pub struct CheckedSpec {
    pub kind: Kind,
    pub summary: String,
    pub json: String,
    /// Shell: TERM and size, for the recording header.
    pub term: String,
    pub size: (u32, u32),
}

/// The stored JSON of an exec spec: argv (the caller masks it first) and
/// the names of the environment variables, never their values.
pub fn exec_json(argv: &[String], env: &[schoolfleet_proto::v1::EnvVar]) -> serde_json::Value {
    let mut exec = serde_json::json!({"argv": argv});
    if !env.is_empty() {
        exec["env"] = schoolfleet_proto::exec_env::names(env).into();
    }
    serde_json::json!({"exec": exec})
}

pub fn kind_of(spec: Option<&SessionSpec>) -> Option<Kind> {
    Some(match spec?.kind.as_ref()? {
        SpecKind::Shell(_) => Kind::Shell,
        SpecKind::Exec(_) => Kind::Exec,
        SpecKind::Forward(_) => Kind::Forward,
        SpecKind::Copy(_) => Kind::Copy,
    })
}

const MAX_ARG: usize = 4096;
const MAX_ARGV: usize = 64 * 1024;
const MAX_SUMMARY: usize = 200;

/// Checks the spec; the error is the message for INVALID_ARGUMENT.
pub fn check_spec(spec: Option<&SessionSpec>, max_file_bytes: u64) -> Result<CheckedSpec, String> {
    let kind = spec
        .and_then(|s| s.kind.as_ref())
        .ok_or("spec is required: shell, exec, forward or copy")?;
    let text = |s: &str| schoolfleet_proto::text::clean(s, MAX_SUMMARY).value;
    let (kind, summary, json, term, size) = match kind {
        SpecKind::Shell(shell) => {
            if shell.term.len() > 64 {
                return Err("shell term is too long (max 64 bytes)".into());
            }
            let (cols, rows) = shell.size.map_or((80, 24), |s| (s.cols, s.rows));
            if cols > 10_000 || rows > 10_000 {
                return Err("shell window size is out of range".into());
            }
            let (cols, rows) = (cols.max(1), rows.max(1));
            let term = if shell.term.is_empty() {
                "xterm".to_owned()
            } else {
                text(&shell.term)
            };
            let json =
                serde_json::json!({"shell": {"term": shell.term, "cols": cols, "rows": rows}});
            (Kind::Shell, "shell".to_owned(), json, term, (cols, rows))
        }
        SpecKind::Exec(exec) => {
            if exec.argv.is_empty() || exec.argv[0].is_empty() {
                return Err("exec needs a command (argv must not be empty)".into());
            }
            if let Some(long) = exec.argv.iter().position(|a| a.len() > MAX_ARG) {
                return Err(format!(
                    "exec argument {long} is longer than {MAX_ARG} bytes"
                ));
            }
            if exec.argv.iter().any(|a| a.contains('\0')) {
                return Err("exec arguments must not contain NUL".into());
            }
            let total: usize = exec.argv.iter().map(String::len).sum();
            if total > MAX_ARGV {
                return Err(format!("exec arguments total more than {MAX_ARGV} bytes"));
            }
            schoolfleet_proto::exec_env::check(&exec.env)?;
            let summary = text(&exec.argv.join(" "));
            let json = exec_json(&exec.argv, &exec.env);
            (Kind::Exec, summary, json, String::new(), (0, 0))
        }
        SpecKind::Forward(forward) => {
            // Not trimmed: the agent gets the spec as sent, so what is
            // checked must be exactly that.
            let host = forward.host.as_str();
            if host.is_empty() || host.len() > 255 {
                return Err("forward host must be 1-255 bytes".into());
            }
            if host
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '/')
            {
                return Err("forward host contains invalid characters".into());
            }
            if forward.port == 0 || forward.port > 65535 {
                return Err("forward port must be 1-65535".into());
            }
            let summary = if host.contains(':') {
                format!("[{host}]:{}", forward.port)
            } else {
                format!("{host}:{}", forward.port)
            };
            let json = serde_json::json!({"forward": {"host": host, "port": forward.port}});
            (Kind::Forward, summary, json, String::new(), (0, 0))
        }
        SpecKind::Copy(copy) => {
            let direction = CopyDirection::try_from(copy.direction)
                .ok()
                .filter(|d| *d != CopyDirection::Unspecified)
                .ok_or("copy direction must be to_device or from_device")?;
            // `/…` on Linux, `C:\…` on Windows; the device checks the rest.
            let drive = copy.path.as_bytes().get(..3).is_some_and(|b| {
                b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/')
            });
            if !copy.path.starts_with('/') && !drive {
                return Err("copy path must be absolute".into());
            }
            if copy.path.len() > 4096 || copy.path.contains('\0') {
                return Err("copy path must be at most 4096 bytes without NUL".into());
            }
            let verb = match direction {
                CopyDirection::ToDevice => {
                    if copy.size > max_file_bytes {
                        return Err(format!(
                            "the file is {} bytes; the limit is {max_file_bytes} bytes",
                            copy.size
                        ));
                    }
                    if copy.sha256.len() != 64
                        || !copy.sha256.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err("uploads need the file's SHA-256 as 64 hex digits".into());
                    }
                    "upload"
                }
                _ => "download",
            };
            let json = serde_json::json!({"copy": {"direction": verb, "path": copy.path,
                "size": copy.size, "sha256": copy.sha256}});
            let summary = text(&format!("{verb} {}", copy.path));
            (Kind::Copy, summary, json, String::new(), (0, 0))
        }
    };
    Ok(CheckedSpec {
        kind,
        summary,
        json: json.to_string(),
        term,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::*;

    fn spec(kind: SpecKind) -> SessionSpec {
        SessionSpec { kind: Some(kind) }
    }

    #[test]
    fn specs_are_checked() {
        let ok = check_spec(
            Some(&spec(SpecKind::Exec(ExecSpec {
                argv: vec!["apt".into(), "update".into()],
                env: vec![],
            }))),
            10,
        )
        .unwrap();
        assert_eq!((ok.kind, ok.summary.as_str()), (Kind::Exec, "apt update"));
        let bad = [
            spec(SpecKind::Exec(ExecSpec {
                argv: vec![],
                env: vec![],
            })),
            spec(SpecKind::Exec(ExecSpec {
                argv: vec!["x".repeat(5000)],
                env: vec![],
            })),
            spec(SpecKind::Forward(ForwardSpec {
                host: "127.0.0.1".into(),
                port: 70000,
            })),
            spec(SpecKind::Forward(ForwardSpec {
                host: String::new(),
                port: 22,
            })),
            spec(SpecKind::Forward(ForwardSpec {
                host: " 127.0.0.1".into(),
                port: 22,
            })),
            spec(SpecKind::Copy(CopySpec {
                direction: CopyDirection::FromDevice as i32,
                path: "tmp/x".into(),
                ..Default::default()
            })),
            spec(SpecKind::Copy(CopySpec {
                direction: CopyDirection::ToDevice as i32,
                path: "/tmp/x".into(),
                size: 11,
                sha256: "a".repeat(64),
            })),
        ];
        for s in bad {
            assert!(check_spec(Some(&s), 10).is_err(), "{s:?}");
        }
        assert!(check_spec(None, 10).is_err());
        // A Windows device's path has a drive letter; a drive-relative one
        // (`C:x`) is not absolute.
        let windows = |path: &str| {
            spec(SpecKind::Copy(CopySpec {
                direction: CopyDirection::FromDevice as i32,
                path: path.into(),
                ..Default::default()
            }))
        };
        let ok = check_spec(
            Some(&windows(r"C:\ProgramData\schoolfleet\transfer\a.log")),
            10,
        )
        .unwrap();
        assert_eq!(ok.kind, Kind::Copy);
        assert!(check_spec(Some(&windows("C:x")), 10).is_err());
        assert!(check_spec(Some(&windows(r"\\server\share\x")), 10).is_err());
    }
}
