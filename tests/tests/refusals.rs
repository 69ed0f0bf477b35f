//! Enrolment and connection refusals, each with a clear error.

use std::time::Duration;

use schoolfleet_e2e::*;

fn fleet() -> (ServerProcess, CliRunner, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("server")).unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let cli = server.admin_cli(&dir.path().join("cli"));
    cli.ok(&["county", "add", "kl", "--name", "Landkreis Kaiserslautern"]);
    cli.ok(&[
        "school",
        "add",
        "kl001",
        "--county",
        "kl",
        "--name",
        "Realschule plus",
    ]);
    (server, cli, dir)
}

fn refused_with(out: &std::process::Output, needle: &str) {
    let text = output_text(out);
    assert!(
        !out.status.success(),
        "expected a refusal, got success: {text}"
    );
    assert!(
        text.contains(needle),
        "expected {needle:?} in the error, got: {text}"
    );
}

#[test]
fn expired_token_is_refused() {
    let (server, cli, dir) = fleet();
    let token = cli.enrollment_token("kl001", "1s", 5);
    std::thread::sleep(Duration::from_millis(1500));
    let agent = AgentProcess::new(&dir.path().join("agent"));
    refused_with(&agent.enroll(&server.url(), &token), "expired");
    assert!(
        !dir.path().join("agent/device.crt").exists(),
        "a refused agent kept a certificate"
    );
}

#[test]
fn used_up_token_is_refused() {
    let (server, cli, dir) = fleet();
    let token = cli.enrollment_token("kl001", "1h", 1);
    let first = AgentProcess::new(&dir.path().join("first"));
    assert!(first.enroll(&server.url(), &token).status.success());
    let second = AgentProcess::new(&dir.path().join("second"));
    refused_with(&second.enroll(&server.url(), &token), "used up");
}

#[test]
fn token_with_a_foreign_ca_pin_is_refused_before_the_token_is_sent() {
    let (server, cli, dir) = fleet();
    let token = cli.enrollment_token("kl001", "1h", 1);
    // Same id and secret, but the pin of some other CA.
    let (head, _pin) = token.rsplit_once('_').unwrap();
    let forged = format!("{head}_{}", "ab".repeat(32));
    let agent = AgentProcess::new(&dir.path().join("agent"));
    refused_with(&agent.enroll(&server.url(), &forged), "does not match");
    // The real token was never presented to the untrusted server: it still has its use.
    let listed = cli.json(&["enroll-token", "list"]);
    assert_eq!(listed[0]["uses"], 0, "{listed}");
}

#[test]
fn forged_token_is_refused() {
    let (server, cli, dir) = fleet();
    let token = cli.enrollment_token("kl001", "1h", 1);
    let parts: Vec<&str> = token.split('_').collect();
    let forged = format!("sfe_{}_{}_{}", parts[1], "0".repeat(48), parts[3]);
    let agent = AgentProcess::new(&dir.path().join("agent"));
    refused_with(
        &agent.enroll(&server.url(), &forged),
        "unknown enrolment token",
    );
}

#[test]
fn revoked_device_is_cut_off_and_refused() {
    let (server, cli, dir) = fleet();
    let token = cli.enrollment_token("kl001", "1h", 5);
    let mut agent = AgentProcess::new(&dir.path().join("agent"));
    assert!(agent.enroll(&server.url(), &token).status.success());
    agent.start();
    wait_until(Duration::from_secs(20), "the agent to connect", || {
        agent.status()["connected"] == true
    });
    let device_id = agent.status()["device_id"].as_str().unwrap().to_owned();

    cli.ok(&["device", "revoke", &device_id, "--yes"]);
    wait_until(Duration::from_secs(20), "the agent to be cut off", || {
        let status = agent.status();
        status["connected"] == false
            && status["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("revoked"))
    });
    // Told it is revoked, the agent waits hours, not the 2 minutes of an outage.
    let retry = agent.status()["retry_in_seconds"].as_u64().unwrap();
    assert!(retry > 5 * 3600, "retries in {retry} s after being revoked");
    let devices = cli.json(&["devices", "--all"]);
    assert_eq!(devices[0]["status"], "revoked", "{devices}");

    // Re-enrolling the same hardware with a fresh token is refused too.
    let again = AgentProcess::new(&dir.path().join("again"));
    refused_with(&again.enroll(&server.url(), &token), "revoked");
}

#[test]
fn reinstall_keeps_one_device_but_a_school_scoped_token_cannot_pull_it_over() {
    let (server, cli, dir) = fleet();
    cli.ok(&[
        "school",
        "add",
        "kl002",
        "--county",
        "kl",
        "--name",
        "Gymnasium",
    ]);
    let token = cli.enrollment_token("kl001", "1h", 5);
    let first = AgentProcess::new(&dir.path().join("first"));
    assert!(first.enroll(&server.url(), &token).status.success());
    let device_id = |agent: &AgentProcess| {
        let info = std::fs::read_to_string(agent.state_dir.join("device.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&info).unwrap()["device_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Enrolled again in its own state directory, the agent proves itself
    // with its key: same device.
    let out = first.enroll(&server.url(), &token);
    assert!(
        output_text(&out).contains("Re-enrolled existing"),
        "{}",
        output_text(&out)
    );
    let original_id = device_id(&first);

    // A reinstall (fresh state directory, no key) only claims the same
    // hardware: it becomes a new device with the link proposed ...
    let reinstall = AgentProcess::new(&dir.path().join("reinstall"));
    let out = reinstall.enroll(&server.url(), &token);
    let text = output_text(&out);
    assert!(text.contains("Enrolled new"), "{text}");
    assert!(
        text.contains(&format!(
            "schoolfleet device adopt {} {original_id}",
            device_id(&reinstall)
        )),
        "{text}"
    );
    assert_ne!(device_id(&reinstall), original_id);
    // ... which an admin confirms: one device, the old id.
    cli.ok(&["device", "adopt", &device_id(&reinstall), &original_id]);
    let devices = cli.json(&["devices"]);
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
    assert_eq!(devices[0]["id"], original_id.as_str(), "{devices}");
    let history = cli.json(&["device", "history", &original_id]);
    assert!(history.to_string().contains("adopted"), "{history}");

    // A reinstall token for that one device keeps its id without any adopt.
    let reinstall_token = cli.json(&[
        "enroll-token",
        "create",
        "--reinstall",
        &original_id,
        "--expires",
        "1h",
    ])["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = AgentProcess::new(&dir.path().join("second"));
    let out = second.enroll(&server.url(), &reinstall_token);
    assert!(
        output_text(&out).contains("Re-enrolled existing"),
        "{}",
        output_text(&out)
    );
    assert_eq!(device_id(&second), original_id);

    // An admin of school kl002 only cannot move kl001's device by claiming
    // its hardware: the machine enrols as a new device instead.
    cli.ok(&["user", "add", "kl002-admin", "--role", "admin@school:kl002"]);
    let school_admin_token = cli.json(&["token", "create", "--user", "kl002-admin"])["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let school_admin = cli.with_token(&school_admin_token);
    let foreign_token = school_admin.enrollment_token("kl002", "1h", 1);
    let claim = AgentProcess::new(&dir.path().join("claim"));
    let out = claim.enroll(&server.url(), &foreign_token);
    assert!(
        output_text(&out).contains("Enrolled new"),
        "{}",
        output_text(&out)
    );
    assert_ne!(device_id(&claim), original_id);
    let original = cli.json(&["device", "show", &original_id]);
    assert_eq!(
        original["overview"]["school_id"], "kl001",
        "the device was pulled into kl002"
    );
}
