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
}
