//! The step-up before remote sessions with the real binaries (issue 12,
//! part 1): `mfa enroll` and `mfa confirm` through the CLI, a TOTP code
//! computed here, exec refused without it, one code for a fan-out within
//! the grace window, and the method on record.

use schoolfleet_e2e::{Fleet, output_text};
use schoolfleet_server::auth::mfa;

const REASON: &str = "Druckertreiber prüfen";

/// The code of the current time step moved by `offset` (within the
/// server's one step of drift). Each later use takes a later offset, so
/// every code is newer than the last one used, however the clock moves.
fn code(secret: &[u8], offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let step = mfa::step_of(now) as i64 + offset;
    mfa::format_code(mfa::code_at(secret, step as u64))
}

#[test]
fn exec_needs_a_totp_code_and_a_fan_out_needs_one() {
    let fleet = Fleet::start(
        2,
        &[("SCHOOLFLEET_SESSIONS__REQUIRE_MFA", r#"["exec", "shell"]"#)],
        &[],
    );
    let cli = &fleet.cli;

    // Before enrolment the refusal says what to do.
    let out = cli.run(&["exec", fleet.device(), "--reason", REASON, "--", "true"]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("mfa enroll"),
        "{}",
        output_text(&out)
    );

    // Enrol: the URI and secret come back; the first code activates it.
    let enrolled = cli.json(&["mfa", "enroll"]);
    let uri = enrolled["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/schoolfleet:admin?secret="),
        "{uri}"
    );
    let secret = data_encoding::BASE32_NOPAD
        .decode(enrolled["secret"].as_str().unwrap().as_bytes())
        .unwrap();
    cli.ok(&["mfa", "confirm", &code(&secret, -1)]);
    let again = cli.run(&["mfa", "enroll"]);
    assert!(
        !again.status.success(),
        "replacing an active one needs a code"
    );

    // No code and no terminal: refused with the way to give one.
    let out = cli.run(&["exec", fleet.device(), "--reason", REASON, "--", "true"]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("--otp"), "{}", output_text(&out));

    // With the next code (the confirming one is used up) the command runs.
    let out = cli.run(&[
        "exec",
        fleet.device(),
        "--reason",
        REASON,
        "--otp",
        &code(&secret, 0),
        "--",
        "echo",
        "mit-zweitem-faktor",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mit-zweitem-faktor"));

    // A fan-out over the school with a fresh code from the environment:
    // the first start uses it, the others ride on its grace.
    let mut fan_out = cli.command(&[
        "-o", "json", "exec", "--school", "kus012", "--reason", "Updates", "--", "echo", "hallo",
    ]);
    fan_out.env("SCHOOLFLEET_OTP", code(&secret, 1).as_str());
    let out = fan_out.output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().all(|r| r["result"] == "ok"), "{results:?}");

    // On record: the method per session, and in the start's audit entry.
    let sessions = cli.json(&["sessions", "list"]);
    let mut methods: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "ended")
        .map(|s| s["step_up"].as_str().unwrap())
        .collect();
    methods.sort();
    assert_eq!(methods, ["totp", "totp", "totp-grace"], "{sessions:#}");
    let audit = cli.json(&["audit", "list", "--action", "session.start"]);
    let with_step_up = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let d = e["details"].as_str().unwrap_or_default();
            d.contains("step_up=totp ") || d.contains("step_up=totp-grace ")
        })
        .count();
    assert_eq!(with_step_up, 3, "{audit:#}");
}
