//! Enrol a real agent on this machine and see its real inventory.

use std::time::Duration;

use schoolfleet_e2e::*;

/// Sets up counties, a school and a server; returns (server, cli, tempdir).
fn fleet() -> (ServerProcess, CliRunner, tempfile::TempDir) {
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
    (server, cli, dir)
}

fn dpkg_package_count() -> Option<usize> {
    let out = std::process::Command::new("dpkg-query")
        .arg("-W")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).lines().count())
}

fn meminfo_total_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn enrolled_agent_reports_this_machines_real_inventory() {
    let (server, cli, dir) = fleet();
    let token = cli.enrollment_token("kus012", "1h", 5);
    let mut agent = AgentProcess::new(&dir.path().join("agent"));
    let out = agent.enroll(&server.url(), &token);
    assert!(out.status.success(), "enrol failed: {}", output_text(&out));

    // The private key is readable by the agent's user only.
    let key = std::fs::metadata(dir.path().join("agent/device.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        key.permissions().mode() & 0o077,
        0,
        "device key readable by others"
    );

    agent.start();
    wait_until(Duration::from_secs(30), "the first inventory", || {
        cli.json(&["devices"])
            .as_array()
            .is_some_and(|d| d.len() == 1 && !d[0]["inventory_at"].is_null())
    });
    let devices = cli.json(&["devices"]);
    let device = &devices[0];
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(device["hostname"], hostname.as_str());
    assert_eq!(device["school_id"], "kus012");
    assert_eq!(device["online"], true, "{device}");

    let show = cli.json(&["device", "show", &hostname]);
    assert_eq!(
        show["hardware"]["memory_total_bytes"].as_u64().unwrap(),
        meminfo_total_bytes()
    );
    if let Some(expected) = dpkg_package_count() {
        assert_eq!(
            show["software"]["count"].as_u64().unwrap() as usize,
            expected,
            "software count differs from dpkg-query -W"
        );
    }
    assert_eq!(show["operating_system"]["family"], "linux");
    assert!(!show["hardware"]["cpu_model"].as_str().unwrap().is_empty());

    // The human view has the sections an admin expects.
    let text = cli.ok(&["device", "show", &hostname]);
    for section in [
        "Operating system",
        "Hardware",
        "Firmware",
        "Disks",
        "Network",
        "Software",
    ] {
        assert!(text.contains(section), "section {section} missing:\n{text}");
    }
    // A software search finds a package every Debian system has.
    if dpkg_package_count().is_some() {
        let hits = cli.json(&["software", "search", "dpkg"]);
        assert!(hits.as_array().is_some_and(|h| !h.is_empty()), "{hits}");
    }
}

#[test]
fn server_restart_reconnects_and_delivers_the_spooled_report_exactly_once() {
    let (mut server, cli, dir) = fleet();
    let token = cli.enrollment_token("kus012", "1h", 1);
    let mut agent = AgentProcess::new(&dir.path().join("agent"));
    assert!(agent.enroll(&server.url(), &token).status.success());
    agent.start();
    let reports = |cli: &CliRunner| cli.json(&["device", "reports", "--limit", "100", &hostname()]);
    wait_until(Duration::from_secs(30), "the startup report", || {
        reports(&cli).as_array().is_some_and(|r| r.len() == 1)
    });

    server.stop();
    wait_until(Duration::from_secs(15), "the agent to notice", || {
        agent.status()["connected"] == false
    });
    // Made while the server is down: it must wait in the spool.
    let report_id = agent.collect_now();
    assert_eq!(agent.status()["spooled_reports"], 1);

    server.restart();
    wait_until(Duration::from_secs(30), "the agent to reconnect", || {
        agent.status()["connected"] == true
    });
    wait_until(Duration::from_secs(30), "the spooled report", || {
        reports(&cli)
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["report_id"] == report_id.as_str()))
    });
    // Give a duplicate delivery time to show up, then count.
    std::thread::sleep(Duration::from_secs(2));
    let all = reports(&cli);
    let count = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["report_id"] == report_id.as_str())
        .count();
    assert_eq!(count, 1, "report stored {count} times: {all}");
    assert_eq!(agent.status()["spooled_reports"], 0);
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}
