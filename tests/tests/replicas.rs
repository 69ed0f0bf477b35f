//! Two server replicas share one PostgreSQL database and one CA: an agent
//! connected to replica A is seen online through replica B, and a device
//! revoked through B is cut off on A. This holds because the server keeps no
//! state in memory except the live streams.
//!
//! Needs `SCHOOLFLEET_TEST_DATABASE_URL` (CI sets it; a missing server in CI
//! is a failure). The test creates its own database and drops it.

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

#[test]
fn two_replicas_share_devices_and_revocations() {
    let Ok(admin_url) = std::env::var(PG_URL_VAR) else {
        assert!(
            std::env::var("CI").is_err(),
            "{PG_URL_VAR} must be set in CI"
        );
        eprintln!("skipping: {PG_URL_VAR} not set");
        return;
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
    let replica_a = ServerProcess::start_with_env(
        &dir.path().join("a"),
        &[("SCHOOLFLEET_SERVER__DATABASE_URL", database.url.as_str())],
    );
    // Replica B shares the database, A's CA and A's audit head key.
    let ca_cert = dir.path().join("a/ca.pem").display().to_string();
    let ca_key = dir.path().join("a/ca.key").display().to_string();
    let head_key = dir.path().join("a/audit-head.key").display().to_string();
    let replica_b = ServerProcess::start_with_env(
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

    // Revoked through B: A ends the stream at the next heartbeat.
    let device_id = agent.status()["device_id"].as_str().unwrap().to_owned();
    cli_b.ok(&["device", "revoke", &device_id, "--yes"]);
    wait_until(
        Duration::from_secs(20),
        "A to cut the revoked agent off",
        || {
            let status = agent.status();
            status["connected"] == false
                && status["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("revoked"))
        },
    );
    agent.stop();
    // Both replicas appended to one audit chain and signed its head with
    // the same key: either verifies it.
    for cli in [&cli_a, &cli_b] {
        let verified = cli.run(&["audit", "verify"]);
        assert!(verified.status.success(), "{verified:?}");
    }
    drop(replica_a);
    drop(replica_b);
    drop(database);
}
