//! The `schoolfleet-agent` binary itself. (Having an integration test here
//! also makes `cargo test --workspace` build the binary that the end-to-end
//! tests in `tests/` run.)

use std::process::Command;

fn agent(state_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_schoolfleet-agent"));
    command
        .env_remove("SCHOOLFLEET_AGENT_TOKEN")
        .arg("--state-dir")
        .arg(state_dir);
    command
}

#[test]
fn run_without_enrolment_explains_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(dir.path()).arg("run").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not enrolled") && stderr.contains("schoolfleet-agent enroll"),
        "{stderr}"
    );
}

#[test]
fn enrol_with_a_malformed_token_fails_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(dir.path())
        .args([
            "enroll",
            "--server",
            "https://127.0.0.1:9",
            "--token",
            "not-a-token",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid enrolment token"), "{stderr}");
    assert!(!dir.path().join("device.key").exists());
}

#[test]
fn inventory_command_prints_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(dir.path()).arg("inventory").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(stdout.contains("content hash: "), "{stdout}");
    assert!(
        stdout.contains(hostname.trim()),
        "host name missing from inventory output"
    );
}

#[test]
fn status_without_a_running_agent_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(dir.path()).arg("status").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the running agent"));
}

#[test]
fn sessions_without_a_running_agent_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(dir.path())
        .args(["sessions", "end"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the running agent") && stderr.contains("user.sock"),
        "{stderr}"
    );
}

#[test]
fn consent_command_provider_needs_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(dir.path())
        .args(["run", "--consent-provider", "command"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--consent-command"));
    let out = agent(dir.path())
        .args(["run", "--remote-disable", "telnet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown capability"));
}

/// `sessions` asks the user socket and prints what the server sent, made
/// safe for the terminal.
#[test]
fn sessions_lists_from_the_user_socket_without_terminal_escapes() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("custom.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).unwrap();
        let response = serde_json::json!({
            "ok": true,
            "sessions": [{
                "id": "s-1", "kind": "shell", "admin": "user:anna",
                "reason": "Drucker\u{1b}[2J", "ticket": "SUP-1",
                "started": "2026-11-28T10:00:00Z", "summary": "bash", "state": "active"
            }]
        });
        (&stream)
            .write_all(format!("{response}\n").as_bytes())
            .unwrap();
        request
    });
    let out = agent(dir.path())
        .args(["sessions", "--user-socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request = server.join().unwrap();
    assert_eq!(request.trim(), r#"{"command":"sessions"}"#);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ADMIN") && stdout.contains("user:anna"),
        "{stdout}"
    );
    assert!(stdout.contains("Drucker\\x1b[2J"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'));
}
