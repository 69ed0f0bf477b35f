//! Installed RPM packages, for Fedora/openSUSE-style machines.
//!
//! The rpm database is a SQLite or Berkeley DB file whose format changed
//! between rpm versions, so asking the `rpm` binary is the robust way. It is
//! only used where dpkg is not the package manager: Debian machines may have
//! an `rpm` binary with an empty database.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use schoolfleet_proto::v1::SoftwarePackage;

/// Absolute paths only: the agent runs as a system service and must not run
/// whatever `rpm` an environment's PATH happens to point at.
const RPM_PATHS: [&str; 2] = ["/usr/bin/rpm", "/bin/rpm"];

/// A locked rpm database can make `rpm -qa` wait forever; an inventory
/// without software is better than a stuck agent.
const RPM_TIMEOUT: Duration = Duration::from_secs(60);

/// Epoch only where set, as rpm itself prints versions.
const QUERY_FORMAT: &str = "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{VENDOR}\\t%{INSTALLTIME}\\n";

pub(crate) fn find_rpm() -> Option<PathBuf> {
    RPM_PATHS.iter().map(PathBuf::from).find(|p| p.is_file())
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {timeout:?}")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed: {status}")]
    Failed { program: String, status: ExitStatus },
    #[error("cannot read output of {program}: {source}")]
    Read {
        program: String,
        source: std::io::Error,
    },
}

/// Installed packages and the newest install time, from `rpm -qa`.
pub(crate) fn query(
    rpm: &Path,
) -> Result<(Vec<SoftwarePackage>, Option<SystemTime>), CommandError> {
    let mut cmd = Command::new(rpm);
    cmd.args(["-qa", "--qf", QUERY_FORMAT]).env("LC_ALL", "C");
    let output = run_with_timeout(cmd, RPM_TIMEOUT)?;
    Ok(parse_query_output(&String::from_utf8_lossy(&output)))
}

/// Parses the tab-separated output of [`QUERY_FORMAT`]. `gpg-pubkey`
/// entries are imported signing keys, not software, and are skipped.
pub(crate) fn parse_query_output(text: &str) -> (Vec<SoftwarePackage>, Option<SystemTime>) {
    let mut packages = Vec::new();
    let mut newest: Option<u64> = None;
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(name), Some(version), Some(arch)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if name.is_empty() || name == "gpg-pubkey" {
            continue;
        }
        let vendor = fields.next().unwrap_or_default();
        if let Some(installed) = fields.next().and_then(|t| t.trim().parse::<u64>().ok()) {
            newest = newest.max(Some(installed));
        }
        packages.push(SoftwarePackage {
            name: name.to_owned(),
            version: version.to_owned(),
            source: "rpm".to_owned(),
            architecture: none_to_empty(arch).to_owned(),
            publisher: none_to_empty(vendor).to_owned(),
            install_date: String::new(),
        });
    }
    let newest = newest.map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    (packages, newest)
}

/// rpm prints unset tags as "(none)".
fn none_to_empty(value: &str) -> &str {
    if value == "(none)" { "" } else { value }
}

/// Runs a command and returns its stdout, killing it after `timeout`.
///
/// stdout is drained on a thread while the child runs, so a large output
/// cannot fill the pipe and stall the child.
pub(crate) fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
) -> Result<Vec<u8>, CommandError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program.clone(),
            source,
        })?;
    let Some(mut stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(CommandError::Read {
            program,
            source: std::io::Error::other("no stdout pipe"),
        });
    };
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(CommandError::Timeout {
                    program: program.clone(),
                    timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(CommandError::Read {
                    program: program.clone(),
                    source,
                });
            }
        }
    };
    // On failure the reader thread is left to finish on its own: a
    // grandchild could still hold the pipe open, and joining would hang.
    let status = status?;
    if !status.success() {
        return Err(CommandError::Failed { program, status });
    }
    reader
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("reader thread panicked")))
        .map_err(|source| CommandError::Read { program, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rpm_query_output() {
        let text = "bash\t5.2.26-3.fc40\tx86_64\tFedora Project\t1714000000\n\
                    gpg-pubkey\t3c3359c4-5c6ae44d\t(none)\t(none)\t1713000000\n\
                    tzdata\t2024a-5.fc40\tnoarch\t(none)\t1715000000\n\
                    kernel-core\t0:6.8.5-301.fc40\tx86_64\tFedora Project\tnot-a-number\n\
                    truncated line\n";
        let (packages, newest) = parse_query_output(text);
        let names: Vec<_> = packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "tzdata", "kernel-core"]);
        assert_eq!(packages[0].publisher, "Fedora Project");
        assert_eq!(packages[0].source, "rpm");
        assert_eq!(packages[1].publisher, "");
        assert_eq!(packages[2].version, "0:6.8.5-301.fc40");
        assert_eq!(
            newest,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_715_000_000))
        );
    }

    #[test]
    fn run_with_timeout_returns_output() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo hello"]);
        assert_eq!(
            run_with_timeout(cmd, Duration::from_secs(10)).unwrap(),
            b"hello\n"
        );
    }

    #[test]
    fn run_with_timeout_kills_a_hanging_command() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exec sleep 30"]);
        let started = Instant::now();
        let err = run_with_timeout(cmd, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn run_with_timeout_reports_failure() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "exit 3"]);
        let err = run_with_timeout(cmd, Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, CommandError::Failed { .. }), "{err}");
    }
}
