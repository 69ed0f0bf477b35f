//! The `schoolfleet` binary itself: usage errors and missing settings give
//! clear messages and the documented exit codes. (Having an integration
//! test here also makes `cargo test --workspace` build the binary that the
//! end-to-end tests in `tests/` run.)

use std::process::Command;

fn schoolfleet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_schoolfleet"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SCHOOLFLEET_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn usage_errors_exit_with_two() {
    let out = schoolfleet()
        .args(["devices", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn missing_profile_says_how_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = schoolfleet()
        .arg("devices")
        .env("SCHOOLFLEET_CONFIG_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("schoolfleet login"), "{stderr}");
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = schoolfleet()
        .arg("devices")
        .env("SCHOOLFLEET_CONFIG_DIR", dir.path())
        .env("SCHOOLFLEET_SERVER", format!("https://127.0.0.1:{port}"))
        .env("SCHOOLFLEET_CA_PIN", format!("sha256:{}", "ab".repeat(32)))
        .env(
            "SCHOOLFLEET_TOKEN",
            format!("sft_{}_{}", "0".repeat(16), "1".repeat(48)),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
}

/// `shell` and `exec` are like ssh: a session that cannot even start exits
/// 255, so scripts can tell it from the remote command's own status.
#[test]
fn session_commands_exit_255_when_the_session_fails() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["shell", "kus012-pc07", "--reason", "Test"][..],
        &["exec", "kus012-pc07", "--reason", "Test", "--", "true"],
    ] {
        let out = schoolfleet()
            .args(args)
            .env("SCHOOLFLEET_CONFIG_DIR", dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(255), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: not logged in"), "{stderr}");
    }
    // Fan-out reports per device; its own failures are ordinary errors.
    let out = schoolfleet()
        .args([
            "exec", "--school", "kus012", "--reason", "Test", "--", "true",
        ])
        .env("SCHOOLFLEET_CONFIG_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn forward_on_a_network_address_warns_that_the_port_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let run = |bind: &str| {
        let out = schoolfleet()
            .args(["forward", "pc07", "0:127.0.0.1:5900", "--reason", "test"])
            .args(["--bind", bind])
            .env("SCHOOLFLEET_CONFIG_DIR", dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "no profile, so no session");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let open = run("0.0.0.0");
    assert!(
        open.contains("warning: listening on 0.0.0.0") && open.contains("network"),
        "{open}"
    );
    assert!(!run("127.0.0.1").contains("warning"));
}

#[test]
fn help_says_that_silent_sessions_end_after_the_idle_timeout() {
    for command in ["exec", "shell", "forward"] {
        let out = schoolfleet().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
        assert!(
            help.contains("15 minutes") && help.contains("idle_timeout"),
            "{command}: {help}"
        );
    }
    let out = schoolfleet().args(["exec", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
    assert!(help.contains("runs silently"), "{help}");
    assert!(help.contains("127"), "{help}");
}
