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

#[test]
fn tickets_and_articles_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("server")).unwrap();
    let server = ServerProcess::start(&dir.path().join("server"));
    let cli = server.admin_cli(&dir.path().join("cli"));
    cli.ok(&["county", "add", "don", "--name", "Donnersbergkreis"]);
    cli.ok(&[
        "school",
        "add",
        "don001",
        "--county",
        "don",
        "--name",
        "Gymnasium",
    ]);
    let opened = cli.ok(&[
        "ticket",
        "new",
        "Drucker im Lehrerzimmer",
        "--school",
        "don001",
        "--priority",
        "high",
        "-d",
        "Papierstau\nseit Montag",
    ]);
    assert!(opened.contains("Opened SUP-1001 (don001)"), "{opened}");
    cli.ok(&["ticket", "comment", "SUP-1001", "Walze getauscht"]);
    cli.ok(&["ticket", "assign", "SUP-1001", "admin"]);
    cli.ok(&[
        "ticket", "status", "SUP-1001", "resolved", "--note", "erledigt",
    ]);
    let shown = cli.ok(&["ticket", "show", "SUP-1001"]);
    for needle in [
        "Walze getauscht",
        "- -> admin",
        "new -> resolved: erledigt",
        "seit Montag",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing in {shown}");
    }
    let open = cli.json(&["ticket", "list", "--status", "open"]);
    assert_eq!(open.as_array().unwrap().len(), 0, "{open}");
    let mine = cli.json(&["ticket", "list", "--mine"]);
    assert_eq!(mine[0]["key"], "SUP-1001", "{mine}");

    let article = cli.json(&[
        "kb",
        "new",
        "--template",
        "stoerung",
        "--county",
        "don",
        "--title",
        "Störung: Überhitzung der Beamer",
        "--tag",
        "beamer",
        "--publish",
    ]);
    let id = article["id"].as_str().unwrap().to_owned();
    let changes = cli.json(&["kb", "changes", "--since", "1d"]);
    assert_eq!(changes[0]["id"], id.as_str(), "{changes}");
    let hits = cli.json(&["ticket", "search", "Überhitzung", "--articles"]);
    assert_eq!(hits[0]["id"], id.as_str(), "{hits}");
    let hits = cli.json(&["ticket", "search", "drucker"]);
    assert_eq!(hits[0]["id"], "SUP-1001", "{hits}");
    let templates = cli.ok(&["kb", "templates"]);
    assert!(templates.contains("checkliste"), "{templates}");
}
