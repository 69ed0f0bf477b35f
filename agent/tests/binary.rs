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
