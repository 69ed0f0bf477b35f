//! Two server replicas share one PostgreSQL database and one CA: an agent
//! connected to replica A is seen online through replica B, a device
//! revoked through B is cut off on A, and remote sessions started through
//! B run on A, where the agent's stream is. This holds because the server
//! keeps no state in memory except the live streams and their sessions.
//!
//! Needs `SCHOOLFLEET_TEST_DATABASE_URL` (CI sets it; a missing server in CI
//! is a failure). The test creates its own database and drops it.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use schoolfleet_e2e::*;
use sqlx::Connection;

const PG_URL_VAR: &str = "SCHOOLFLEET_TEST_DATABASE_URL";

/// A fresh database, dropped on drop.
struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    async fn create(admin_url: &str) -> TestDatabase {
        let name = format!("sf_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let (base, query) = admin_url
            .split_once('?')
            .map_or((admin_url, String::new()), |(b, q)| (b, format!("?{q}")));
        let base = &base[..base.rfind('/').unwrap()];
        TestDatabase {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}{query}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside any runtime: use a small one of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Two replicas on one fresh database, A's CA and audit key shared with B,
/// a school with consent "none", and one agent connected through A.
struct TwoReplicas {
    // Field order is drop order: processes before their directories and
    // the database.
    agent: AgentProcess,
    cli_a: CliRunner,
    cli_b: CliRunner,
    _replica_a: ServerProcess,
    _replica_b: ServerProcess,
    dir: tempfile::TempDir,
    _database: TestDatabase,
}

impl TwoReplicas {
    /// None (test skipped) where no PostgreSQL is configured outside CI.
    fn start(relay: bool) -> Option<TwoReplicas> {
        let Ok(admin_url) = std::env::var(PG_URL_VAR) else {
            assert!(
                std::env::var("CI").is_err(),
                "{PG_URL_VAR} must be set in CI"
            );
            eprintln!("skipping: {PG_URL_VAR} not set");
            return None;
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let database = runtime.block_on(TestDatabase::create(&admin_url));

        let dir = tempfile::tempdir().unwrap();
        for d in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let start = if relay {
            ServerProcess::start_replica
        } else {
            ServerProcess::start_with_env
        };
        let replica_a = start(
            &dir.path().join("a"),
            &[("SCHOOLFLEET_SERVER__DATABASE_URL", database.url.as_str())],
        );
        // Replica B shares the database, A's CA and A's audit head key.
        let ca_cert = dir.path().join("a/ca.pem").display().to_string();
        let ca_key = dir.path().join("a/ca.key").display().to_string();
        let head_key = dir.path().join("a/audit-head.key").display().to_string();
        let replica_b = start(
            &dir.path().join("b"),
            &[
                ("SCHOOLFLEET_SERVER__DATABASE_URL", database.url.as_str()),
                ("SCHOOLFLEET_TLS__CA_CERT_FILE", ca_cert.as_str()),
                ("SCHOOLFLEET_TLS__CA_KEY_FILE", ca_key.as_str()),
                ("SCHOOLFLEET_AUDIT__HEAD_KEY_FILE", head_key.as_str()),
            ],
        );
        assert_eq!(replica_a.ca_pin(), replica_b.ca_pin());
        assert!(
            !dir.path().join("b/bootstrap-admin.token").exists(),
            "B bootstrapped a second admin"
        );

        let cli_a = replica_a.admin_cli(&dir.path().join("cli"));
        let cli_b = CliRunner {
            server: replica_b.url(),
            ..cli_a.clone()
        };
        cli_a.ok(&["county", "add", "kl", "--name", "Landkreis Kaiserslautern"]);
        cli_b.ok(&["school", "add", "kl001", "--county", "kl", "--name", "IGS"]);
        cli_b.ok(&["consent", "set", "--school", "kl001", "--mode", "none"]);
        let token = cli_b.enrollment_token("kl001", "1h", 1);

        // The agent enrols and stays connected through replica A.
        let mut agent = AgentProcess::new(&dir.path().join("agent"));
        assert!(agent.enroll(&replica_a.url(), &token).status.success());
        agent.start();
        wait_until(
            Duration::from_secs(30),
            "B to see the device online with inventory",
            || {
                let devices = cli_b.json(&["devices"]);
                devices.as_array().is_some_and(|d| {
                    d.len() == 1 && d[0]["online"] == true && !d[0]["inventory_at"].is_null()
                })
            },
        );
        Some(TwoReplicas {
            agent,
            cli_a,
            cli_b,
            _replica_a: replica_a,
            _replica_b: replica_b,
            dir,
            _database: database,
        })
    }

    fn device_id(&self) -> String {
        self.agent.status()["device_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

#[test]
fn two_replicas_share_devices_and_revocations() {
    let Some(mut cluster) = TwoReplicas::start(false) else {
        return;
    };
    // Without relaying, a session through B is refused clearly.
    let device_id = cluster.device_id();
    let refused = cluster
        .cli_b
        .run(&["exec", &device_id, "--reason", REASON, "--", "true"]);
    assert!(!refused.status.success());
    assert!(
        output_text(&refused).contains("not connected"),
        "{}",
        output_text(&refused)
    );

    // Revoked through B: A ends the stream at the next heartbeat.
    cluster.cli_b.ok(&["device", "revoke", &device_id, "--yes"]);
    wait_until(
        Duration::from_secs(20),
        "A to cut the revoked agent off",
        || {
            let status = cluster.agent.status();
            status["connected"] == false
                && status["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("revoked"))
        },
    );
    cluster.agent.stop();
    // Both replicas appended to one audit chain and signed its head with
    // the same key: either verifies it.
    for cli in [&cluster.cli_a, &cluster.cli_b] {
        let verified = cli.run(&["audit", "verify"]);
        assert!(verified.status.success(), "{verified:?}");
    }
}

const REASON: &str = "Beamer im Raum 12 prüfen";

/// Shell, exec, forward and cp, each started through replica B while the
/// agent's stream is on replica A: B relays to A, and A runs, records and
/// audits the session as usual.
#[test]
fn sessions_start_through_the_replica_that_does_not_hold_the_agent() {
    let Some(cluster) = TwoReplicas::start(true) else {
        return;
    };
    let device = cluster.device_id();
    let cli = &cluster.cli_b;

    // exec: both streams and the exit code come back through B.
    let out = cli.run(&[
        "exec",
        &device,
        "--reason",
        REASON,
        "--",
        "sh",
        "-c",
        "echo relay-$((6*7)); echo to-stderr >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("relay-42"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-stderr"));

    // shell, with its input piped.
    let mut shell = cli
        .command(&["shell", &device, "--reason", REASON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo shell-$((6*7))-relayed\nexit 4\n")
        .unwrap();
    let shell = shell.wait_with_output().unwrap();
    assert_eq!(shell.status.code(), Some(4), "{}", output_text(&shell));
    assert!(String::from_utf8_lossy(&shell.stdout).contains("shell-42-relayed"));

    // cp: up and back down, byte-exact.
    let local = cluster.dir.path().join("local.bin");
    let data: Vec<u8> = (0..300_000u32).map(|n| (n * 7 % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let remote_dir = tempfile::tempdir_in("/tmp").unwrap();
    let target = format!("{device}:{}", remote_dir.path().join("relay.bin").display());
    cli.ok(&["cp", "--reason", REASON, local.to_str().unwrap(), &target]);
    let back = cluster.dir.path().join("back.bin");
    cli.ok(&["cp", "--reason", REASON, &target, back.to_str().unwrap()]);
    assert!(
        std::fs::read(&back).unwrap() == data,
        "cp changed the bytes"
    );

    // forward: two connections through one session, echoed exactly.
    let echo = echo_server();
    let local_port = free_port();
    let spec = format!("{local_port}:127.0.0.1:{echo}");
    let mut forward = cli
        .command(&["forward", &device, &spec, "--reason", REASON])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let messages = collect(forward.stderr.take().unwrap());
    wait_for_output(&messages, "Forwarding", "the forward to listen");
    for n in 0..2u8 {
        let payload = vec![b'a' + n; 100_000];
        let received = echo_roundtrip(local_port, &payload);
        assert!(received == payload, "forwarded connection {n} differs");
    }
    let _ = forward.kill();
    let _ = forward.wait();

    // All four ran on A and are on record, seen through either replica.
    wait_until(Duration::from_secs(15), "every session to end", || {
        let listed = cluster.cli_a.json(&["sessions", "list"]);
        let listed = listed.as_array().unwrap();
        listed.len() == 5 && listed.iter().all(|s| s["state"] == "ended")
    });
    let listed = cli.json(&["sessions", "list"]);
    let mut kinds: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["cp", "cp", "exec", "forward", "shell"]);
    let verified = cli.run(&["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
}
