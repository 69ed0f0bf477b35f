//! The real inventory of this machine against a standard written for Linux:
//! each rule gives the expected result, failures explain themselves, a
//! waiver turns a failure into `waived`, and a new version re-evaluates the
//! fleet while the old version's report stays reproducible.

use std::time::Duration;

use schoolfleet_e2e::*;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

fn meminfo_gib() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kib / 1024.0 / 1024.0
}

/// A standard whose results on this machine are known in advance.
fn standard(version: &str, waiver_for: Option<&str>) -> String {
    let mut text = format!(
        r#"schema = "schoolfleet-standard/v1"

[standard]
id = "e2e-linux"
version = "{version}"

[[rule]]
id = "T-RAM-OK"
title = "Mindestens 1 GB RAM"
check = {{ type = "hardware_min", ram_gib = 1 }}

[[rule]]
id = "T-RAM-BIG"
title = "Mindestens 4096 GB RAM"
check = {{ type = "hardware_min", ram_gib = 4096 }}

[[rule]]
id = "T-OS"
title = "Linux"
check = {{ type = "os", family = "linux" }}

[[rule]]
id = "T-NAME"
title = "Rechnername nach Konvention"
severity = "niedrig"
check = {{ type = "hostname", regex = "^(don|kus|kl)[0-9]{{3}}-(sp|ll|vw)[0-9]{{4}}$" }}
remediation = "Rechner umbenennen."

[[rule]]
id = "T-INV"
title = "Inventar höchstens 14 Tage alt"
check = {{ type = "inventory_age", max_days = 14 }}

[[rule]]
id = "T-LAPTOP"
title = "Nur Lehrer-Laptops"
applies_to = {{ device_classes = ["lehrer-laptop"] }}
check = {{ type = "hardware_min", ram_gib = 4096 }}

[[rule]]
id = "T-WATCH"
title = "Beobachtet, nicht gezählt"
mode = "beobachten"
check = {{ type = "hardware_min", ram_gib = 8192 }}
"#
    );
    if let Some(host) = waiver_for {
        text.push_str(&format!(
            r#"
[[waiver]]
id = "W-E2E-1"
rule = "T-NAME"
devices = ["{host}"]
reason = "Testgerät behält seinen Namen"
approved_by = "Koordination Schul-IT"
ticket = "SUP-1"
expires = 2099-12-31
"#
        ));
    }
    text
}

fn results(cli: &CliRunner, revision: Option<u64>) -> (bool, serde_json::Value) {
    let mut args = vec!["compliance", "device", "THIS"];
    let host = hostname();
    args[2] = &host;
    let rev;
    if let Some(r) = revision {
        rev = r.to_string();
        args.extend(["--revision", &rev]);
    }
    let rows = cli.json(&args);
    let compliant =
        !rows.as_array().unwrap().iter().any(|r| {
            matches!(r["status"].as_str(), Some("fail" | "unknown")) && r["counted"] == true
        });
    (compliant, rows)
}

fn status<'a>(rows: &'a serde_json::Value, rule: &str) -> &'a serde_json::Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule_id"] == rule)
        .unwrap_or_else(|| panic!("no result for {rule}: {rows}"))
}

#[test]
fn real_inventory_against_a_linux_standard() {
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
    let token = cli.enrollment_token("kus012", "1h", 1);
    let mut agent = AgentProcess::new(&dir.path().join("agent"));
    assert!(agent.enroll(&server.url(), &token).status.success());
    agent.start();
    wait_until(Duration::from_secs(30), "the first inventory", || {
        cli.json(&["devices"])
            .as_array()
            .is_some_and(|d| d.len() == 1 && !d[0]["inventory_at"].is_null())
    });

    // Lint catches mistakes with line numbers, and refuses to apply them.
    let broken = dir.path().join("broken.toml");
    let broken_text = standard("1", None).replace("type = \"os\"", "type = \"betriebssystem\"");
    let broken_line = broken_text
        .lines()
        .position(|l| l.contains("betriebssystem"))
        .unwrap()
        + 1;
    std::fs::write(&broken, &broken_text).unwrap();
    let out = cli.json_result(&["standard", "lint", broken.to_str().unwrap()]);
    assert!(!out.0, "lint accepted an unknown check type");
    let problems = out.1;
    assert!(
        problems
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["line"] == broken_line
                && p["message"].as_str().unwrap().contains("betriebssystem")),
        "no problem reported at line {broken_line}: {problems}"
    );
    assert!(
        !cli.run(&["standard", "apply", broken.to_str().unwrap()])
            .status
            .success()
    );

    let v1 = dir.path().join("v1.toml");
    std::fs::write(&v1, standard("2025.1.0", None)).unwrap();
    cli.ok(&["standard", "lint", v1.to_str().unwrap()]);
    let applied = cli.ok(&["standard", "apply", v1.to_str().unwrap()]);
    assert!(applied.contains("1 device evaluated"), "{applied}");

    let (compliant, rows) = results(&cli, None);
    assert!(!compliant, "T-RAM-BIG and T-NAME must fail: {rows}");
    assert_eq!(status(&rows, "T-RAM-OK")["status"], "pass");
    assert_eq!(status(&rows, "T-OS")["status"], "pass");
    assert_eq!(status(&rows, "T-INV")["status"], "pass");
    assert_eq!(status(&rows, "T-LAPTOP")["status"], "not_applicable");
    let ram = status(&rows, "T-RAM-BIG");
    assert_eq!(ram["status"], "fail");
    // The failure explains itself with the real value.
    let reason = ram["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{:.1} GiB", meminfo_gib())) && reason.contains("4096"),
        "{reason}"
    );
    let name = status(&rows, "T-NAME");
    assert_eq!(name["status"], "fail");
    assert!(
        name["actual"].as_str().unwrap().contains(&hostname()),
        "{name}"
    );
    assert_eq!(status(&rows, "T-WATCH")["mode"], "beobachten");
    // `counted` is in the JSON, as standard/README.md promises.
    assert_eq!(status(&rows, "T-WATCH")["counted"], false);
    assert_eq!(status(&rows, "T-RAM-OK")["counted"], true);

    // The coordinator's views.
    let failing = cli.json(&["compliance", "failing", "--rule", "T-NAME"]);
    assert_eq!(failing.as_array().unwrap().len(), 1, "{failing}");
    let summary = cli.json(&["compliance", "summary"]);
    let school = summary["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["school_id"] == "kus012")
        .unwrap()
        .clone();
    assert_eq!(
        (school["devices"].as_u64(), school["compliant"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    // CSV: all three tables, numbers as numbers, an empty school for the
    // county's total.
    let csv = cli.ok(&["-o", "csv", "compliance", "summary"]);
    let blocks: Vec<Vec<Vec<&str>>> = csv
        .split("\r\n\r\n")
        .map(|block| {
            block
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| l.split(',').collect())
                .collect()
        })
        .collect();
    assert_eq!(blocks.len(), 3, "{csv}");
    assert_eq!(blocks[0][0][..2], ["county_id", "school_id"], "{csv}");
    assert!(
        blocks[0].contains(&vec!["kus", "", "1", "0", "0", ""]),
        "{csv}"
    );
    assert!(
        blocks[0].contains(&vec!["kus", "kus012", "1", "0", "0", ""]),
        "{csv}"
    );
    assert_eq!(blocks[1][0][..3], ["rule_id", "title", "mode"], "{csv}");
    assert!(blocks[1].len() > 1, "{csv}");
    for rule in &blocks[1][1..] {
        let rate = rule.last().unwrap();
        assert!(rate.is_empty() || rate.parse::<f64>().is_ok(), "{csv}");
    }
    assert_eq!(
        blocks[2][0],
        ["waiver_id", "rule_id", "expires", "reason"],
        "{csv}"
    );

    // Version 2 adds a waiver for the host name: the fleet is re-evaluated.
    let v2 = dir.path().join("v2.toml");
    std::fs::write(&v2, standard("2025.2.0", Some(&hostname()))).unwrap();
    cli.ok(&["standard", "apply", v2.to_str().unwrap()]);
    let (_, rows2) = results(&cli, None);
    assert_eq!(status(&rows2, "T-NAME")["status"], "waived", "{rows2}");
    assert_eq!(status(&rows2, "T-NAME")["waiver_id"], "W-E2E-1");
    // The report of revision 1 is still what it was.
    let (_, old) = results(&cli, Some(1));
    assert_eq!(status(&old, "T-NAME")["status"], "fail");
    let versions = cli.json(&["standard", "versions"]);
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let diff = cli.ok(&["standard", "diff", "1", "2"]);
    assert!(
        diff.contains("+ id = \"W-E2E-1\"") && diff.contains("- version = \"2025.1.0\""),
        "{diff}"
    );
}
