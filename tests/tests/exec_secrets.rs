//! Secrets in exec (issue 12, part 3), with real processes: a value sent
//! with `exec --env-file` reaches the command on the device and nothing
//! else (session row, audit, database file and WAL, logs); the person at
//! the device sees the command line masked like the server stores it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use schoolfleet_e2e::{Fleet, output_text, unique_marker, wait_until};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn an_env_file_reaches_the_command_and_nothing_keeps_its_value() {
    let fleet = Fleet::start(1, &[], &[]);
    let secret = unique_marker("Geheim-env");
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("zugang.env");
    std::fs::write(
        &env_file,
        format!("# Zugang für den Test\nSF_DB_PASSWORD={secret}\nexport SF_USER=max\n"),
    )
    .unwrap();

    let out = fleet.cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        "Zugang setzen",
        "--env-file",
        env_file.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "printf 'got:%s:%s\\n' \"$SF_USER\" \"$SF_DB_PASSWORD\"",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, format!("got:max:{secret}\n"));

    // The session row names the variables, not their values.
    let listed = fleet.cli.json(&["sessions", "list"]);
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let shown = fleet.cli.json(&["sessions", "show", &id]).to_string();
    assert!(shown.contains("SF_DB_PASSWORD"), "{shown}");
    assert!(!shown.contains(&secret), "{shown}");
    let audit = fleet.cli.ok(&["audit", "list", "-o", "json"]);
    assert!(audit.contains(&id), "the start is audited: {audit}");
    assert!(!audit.contains(&secret), "{audit}");

    // Nowhere on the server's disk, nor in either log.
    let data = &fleet.server.data_dir;
    assert!(data.join("schoolfleet.db").exists(), "the right directory");
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(!contains(&bytes, &secret), "in {}", path.display());
        }
    }
    assert!(!fleet.server.log().contains(&secret), "in the server log");
    assert!(!fleet.agents[0].log().contains(&secret), "in the agent log");

    // A file that is not NAME=value fails before any session, without
    // showing the line.
    std::fs::write(&env_file, format!("SF_DB_PASSWORD {secret}\n")).unwrap();
    let out = fleet.cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        "Zugang setzen",
        "--env-file",
        env_file.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(text.contains("line 1: expected NAME=value"), "{text}");
    assert!(!text.contains(&secret), "{text}");
    assert_eq!(
        fleet
            .cli
            .json(&["sessions", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn the_local_listing_masks_secrets_like_the_server() {
    // The person at the device is asked, and takes their time: meanwhile
    // the session is listed on the device.
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("consent.sh");
    let asked = scripts.path().join("asked");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s' \"$SCHOOLFLEET_SESSION_SUMMARY\" > {}\nsleep 20\nexit 1\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fleet = Fleet::start(
        1,
        &[],
        &[
            "--consent-min",
            "prompt",
            "--consent-provider",
            "command",
            "--consent-command",
            script.to_str().unwrap(),
        ],
    );
    let secret = unique_marker("Geheim-argv");
    let mut exec = fleet
        .cli
        .command(&[
            "exec",
            fleet.device(),
            "--reason",
            "Passwort zurücksetzen",
            "--",
            "mysql",
            &format!("--password={secret}"),
            "-e",
            "select 1",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let agent = &fleet.agents[0];
    let mut listed = String::new();
    wait_until(Duration::from_secs(20), "the session on the device", || {
        listed = output_text(&agent.run(&["sessions", "--json"]));
        listed.contains("mysql")
    });
    assert!(listed.contains("--password=***"), "{listed}");
    assert!(!listed.contains(&secret), "{listed}");
    let table = output_text(&agent.run(&["sessions"]));
    assert!(table.contains("--password=***"), "{table}");
    assert!(!table.contains(&secret), "{table}");
    // The question shows the same.
    wait_until(Duration::from_secs(10), "the question", || asked.exists());
    let question = std::fs::read_to_string(&asked).unwrap();
    assert!(question.contains("--password=***"), "{question}");
    assert!(!question.contains(&secret), "{question}");
    // The server stored it masked the same way.
    let sessions = fleet.cli.json(&["sessions", "list"]).to_string();
    assert!(sessions.contains("--password=***"), "{sessions}");
    assert!(!sessions.contains(&secret), "{sessions}");

    let _ = agent.run(&["sessions", "end"]);
    let _ = exec.kill();
    let _ = exec.wait();
    assert!(!agent.log().contains(&secret), "in the agent log");
}
