//! The floor on the agent itself (issue 12, part 4): `--consent-min
//! prompt` asks the local user even when the server's policy says "none",
//! and the agent reports the floor it enforces.

use std::os::unix::fs::PermissionsExt;

use schoolfleet_e2e::{Fleet, output_text};

#[test]
fn the_agent_asks_even_when_the_server_says_none() {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("consent.sh");
    let log = scripts.path().join("consent.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$SCHOOLFLEET_CONSENT_MODE|$SCHOOLFLEET_REASON\" >> {}\nexit 1\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The fleet's school policy is "none".
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
    assert_eq!(fleet.agents[0].status()["consent_min"], "prompt");

    let out = fleet.cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        "Boden prüfen",
        "--",
        "echo",
        "darf-nicht-laufen",
    ]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("declined by the local user"),
        "{}",
        output_text(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("darf-nicht-laufen"));
    // The local user was asked, in prompt mode.
    let asked = std::fs::read_to_string(&log).unwrap();
    assert_eq!(asked, "prompt|Boden prüfen\n");

    // The agent reported its floor: the device shows it, and the session
    // is recorded with the mode that applied, not the school's "none".
    let show = fleet.cli.json(&["device", "show", fleet.device()]);
    assert_eq!(show["overview"]["agent_consent_min"], "prompt", "{show}");
    let text = fleet.cli.ok(&["device", "show", fleet.device()]);
    assert!(
        text.contains("prompt (agent --consent-min)"),
        "the floor is not in `device show`:\n{text}"
    );
    let sessions = fleet.cli.json(&["sessions", "list"]);
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(sessions[0]["consent"], "prompt", "{sessions}");
    let policies = fleet.cli.ok(&["consent", "list"]);
    assert!(
        policies.contains("none"),
        "the school's policy is none: {policies}"
    );
}

#[test]
fn an_agent_without_a_floor_gets_the_schools_mode() {
    let fleet = Fleet::start(1, &[], &[]);
    assert_eq!(fleet.agents[0].status()["consent_min"], "none");
    let show = fleet.cli.json(&["device", "show", fleet.device()]);
    assert_eq!(show["overview"]["agent_consent_min"], "none", "{show}");
    let out = fleet.cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        "Boden prüfen",
        "--",
        "echo",
        "darf-laufen",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let sessions = fleet.cli.json(&["sessions", "list"]);
    assert_eq!(sessions[0]["consent"], "none", "{sessions}");
}
