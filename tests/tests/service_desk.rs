//! The service desk with real processes: an agent reports a problem with
//! its device certificate; once the device is revoked, its reports are
//! refused.

use schoolfleet_e2e::*;

#[test]
fn agent_reports_a_ticket_and_is_refused_once_revoked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("server")).unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let cli = server.admin_cli(&dir.path().join("cli"));
    cli.ok(&["county", "add", "kus", "--name", "Landkreis Kusel"]);
    cli.ok(&[
        "school",
        "add",
        "kus012",
        "--county",
        "kus",
        "--name",
        "IGS Kusel",
    ]);
    let token = cli.enrollment_token("kus012", "1h", 5);
    let agent = AgentProcess::new(&dir.path().join("agent"));
    let enrolled = agent.enroll(&server.url(), &token);
    assert!(enrolled.status.success(), "{}", output_text(&enrolled));

    let reported = agent.report("Beamer zeigt kein Bild");
    let text = output_text(&reported);
    assert!(reported.status.success(), "{text}");
    assert!(text.contains("Reported as SUP-1001"), "{text}");

    let shown = cli.json(&["ticket", "show", "SUP-1001"]);
    assert_eq!(
        shown["ticket"]["title"], "Beamer zeigt kein Bild",
        "{shown}"
    );
    assert_eq!(shown["ticket"]["school_id"], "kus012", "{shown}");
    let device_id = shown["ticket"]["device_ids"].as_str().unwrap().to_owned();
    assert_eq!(shown["ticket"]["reporter"], format!("device:{device_id}"));
    assert_eq!(shown["timeline"][0]["kind"], "created", "{shown}");
    let device = cli.ok(&["device", "show", &device_id]);
    assert!(device.contains("Open tickets (1)"), "{device}");
    assert!(device.contains("SUP-1001"), "{device}");

    cli.ok(&["device", "revoke", &device_id, "--yes"]);
    let refused = agent.report("Noch ein Problem");
    let text = output_text(&refused);
    assert!(
        !refused.status.success(),
        "a revoked device reported: {text}"
    );
    assert!(text.contains("revoked"), "{text}");
    let tickets = cli.json(&["ticket", "list"]);
    assert_eq!(tickets.as_array().unwrap().len(), 1, "{tickets}");
}
