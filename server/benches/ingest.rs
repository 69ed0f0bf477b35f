//! Inventory ingest throughput: a school morning, when every PC sends its
//! boot report at the same moment.
//!
//! `cargo bench -p schoolfleet-server --bench ingest`
//!
//! The server's own ingest path (`ingest::ingest_report`: gate, decode,
//! validate, diff, store, evaluate against the standard) on a real SQLite
//! file with the server's settings (WAL, `synchronous=FULL`) and, when
//! `SCHOOLFLEET_TEST_DATABASE_URL` names a PostgreSQL server, on a fresh
//! database there (dropped afterwards). No network: the figures are the
//! store's and the ingest code's, not TLS's.
//!
//! For each backend, `INGEST_BENCH_DEVICES` devices (default 1,000) with
//! `INGEST_BENCH_PACKAGES` programs each (default 760) send, all at once:
//! 1. a first report (every row new),
//! 2. a report with the same programs (a reboot: content unchanged),
//! 3. a report where every program has a new version (full change).
//!
//! The example standard is applied, so every stored report is evaluated
//! as in production. Peak RSS is the process's (`VmHWM`).

use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use schoolfleet_proto::v1::{
    Hardware, Inventory, InventoryReport, OperatingSystem, SoftwarePackage, SystemInfo,
};
use schoolfleet_server::api::AppState;
use schoolfleet_server::config::Config;
use schoolfleet_server::ingest;
use schoolfleet_server::storage::*;
use sqlx::Connection;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU time of this process so far (user + system), in seconds: a round
/// that keeps less than one core busy waits on something, not on work.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, fields 14 and 15 of proc(5), in clock ticks (100/s).
    (ticks(11) + ticks(12)) / 100.0
}

fn inventory(device: usize, packages: usize, generation: usize) -> Inventory {
    Inventory {
        system: Some(SystemInfo {
            hostname: format!("kus012-sp{device:05}"),
            // Volatile: differs in every report, as on a real PC.
            uptime_seconds: (60 + generation) as u64,
            ..Default::default()
        }),
        os: Some(OperatingSystem {
            family: "windows".into(),
            name: "Windows 11 Education".into(),
            version: "10.0.26100.4351".into(),
            edition: "Education".into(),
            ..Default::default()
        }),
        hardware: Some(Hardware {
            cpu_logical_cores: 8,
            memory_total_bytes: 16 << 30,
            ..Default::default()
        }),
        software: (0..packages)
            .map(|p| SoftwarePackage {
                name: format!("Programm {p} von Hersteller {}", p % 17),
                // Generation 2 is the full change: every version moves.
                version: format!("{}.{}.{}", p % 9, if generation >= 2 { 2 } else { 1 }, p),
                source: "msi".into(),
                publisher: format!("Hersteller {}", p % 17),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn report(inv: &Inventory, generation: usize) -> InventoryReport {
    InventoryReport {
        report_id: uuid::Uuid::new_v4().to_string(),
        collected_at: Some(prost_types::Timestamp {
            seconds: now_millis() / 1000 - 1000 + generation as i64,
            nanos: 0,
        }),
        // The agent hashes the stable part; only its format matters here.
        content_hash: format!("{:064x}", if generation >= 2 { 2 } else { 0 }),
        reason: "startup".into(),
        inventory: inv.encode_to_vec(),
        inventory_size: 0,
    }
}

async fn seed(store: &Arc<dyn Store>, devices: usize) -> Result<Vec<DeviceRecord>, Error> {
    let now = now_millis();
    store
        .create_county(&County {
            id: "kus".into(),
            name: "Kusel".into(),
            created_at: now,
        })
        .await?;
    store
        .create_school(&School {
            id: "kus012".into(),
            county_id: "kus".into(),
            name: "Schule".into(),
            created_at: now,
        })
        .await?;
    store
        .create_enrollment_token(&EnrollmentToken {
            id: "bench".into(),
            secret_hash: "h".repeat(64),
            county_id: "kus".into(),
            school_id: "kus012".into(),
            device_class: "schueler-pc".into(),
            description: String::new(),
            max_uses: devices as i64,
            uses: 0,
            expires_at: now + 3_600_000,
            created_by: "bench".into(),
            created_at: now,
            revoked_at: None,
            reinstall_device_id: None,
        })
        .await?;
    let mut out = Vec::with_capacity(devices);
    for i in 0..devices {
        let id = uuid::Uuid::now_v7().to_string();
        let device = DeviceRecord {
            id: id.clone(),
            county_id: "kus".into(),
            school_id: "kus012".into(),
            device_class: "schueler-pc".into(),
            status: "active".into(),
            hostname: format!("kus012-sp{i:05}"),
            system_uuid: String::new(),
            serial_number: String::new(),
            machine_id: String::new(),
            cert_fingerprint: Some(format!("fp-{id}")),
            cert_serial: None,
            cert_not_after: None,
            enrolled_at: now,
            last_seen: None,
            connected: false,
            agent_version: String::new(),
            agent_consent_min: None,
            inventory_at: None,
            inventory_hash: None,
            os_name: String::new(),
            os_version: String::new(),
            vendor: String::new(),
            model: String::new(),
            memory_total_bytes: 0,
            ip_addresses: String::new(),
        };
        store
            .enroll_device(&Enrolment {
                token_id: "bench".into(),
                now,
                device: device.clone(),
                existing: false,
            })
            .await?;
        out.push(device);
    }
    let content = include_str!("../../standard/examples/schul-it-client.toml");
    store
        .insert_standard_version(&StandardVersionRecord {
            revision: 0,
            standard_id: "bench".into(),
            version: "1".into(),
            content: content.into(),
            rules: 17,
            waivers: 0,
            applied_by: "bench".into(),
            applied_at: now,
        })
        .await?;
    Ok(out)
}

async fn round(
    state: &AppState,
    devices: &[DeviceRecord],
    packages: usize,
    generation: usize,
    label: &str,
) {
    // Reports are built before the clock starts: that is the agents' work.
    let reports: Vec<InventoryReport> = (0..devices.len())
        .map(|i| report(&inventory(i, packages, generation), generation))
        .collect();
    let start = Instant::now();
    let cpu_start = process_cpu_seconds();
    let tasks: Vec<_> = devices
        .iter()
        .cloned()
        .zip(reports)
        .map(|(device, report)| {
            let state = state.clone();
            tokio::spawn(async move { ingest::ingest_report(&state, &device, report).await })
        })
        .collect();
    let mut failed = 0;
    for task in tasks {
        let ack = task.await.expect("ingest task panicked");
        if !ack.error.is_empty() || ack.duplicate {
            failed += 1;
            if failed == 1 {
                eprintln!("  first failure: {ack:?}");
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_start;
    println!(
        "  {label:<28} {:>5} reports in {elapsed:>7.2} s = {:>7.1} reports/s, {failed} failed, \
         CPU {:.0} % of a core, peak RSS {:.0} MiB",
        devices.len(),
        devices.len() as f64 / elapsed,
        100.0 * cpu / elapsed,
        peak_rss_mib()
    );
}

async fn run(name: &str, database_url: String, data_dir: &std::path::Path) -> Result<(), Error> {
    let devices = env_or("INGEST_BENCH_DEVICES", 1000);
    let packages = env_or("INGEST_BENCH_PACKAGES", 760);
    let mut config = Config::default();
    config.server.data_dir = data_dir.to_path_buf();
    config.server.database_url = database_url;
    // Every report is let in to wait for its turn: the benchmark measures
    // the store's rate, not the deferral of reports beyond 64 MiB waiting.
    config.limits.ingest_queue_bytes = usize::MAX / 2;
    let state = schoolfleet_server::server::prepare(config).await?;
    let seeded = seed(&state.store, devices).await?;
    println!(
        "{name}: {devices} devices x {packages} programs, ingest gate {} at once",
        ingest::IngestGate::size(state.config.limits.ingest_concurrency)
    );
    round(&state, &seeded, packages, 0, "first report (all new)").await;
    round(&state, &seeded, packages, 1, "boot report, unchanged").await;
    round(&state, &seeded, packages, 2, "full change (every version)").await;
    // A technician's search over the whole fleet, as the CLI asks it (100
    // rows): one program on every device, and a name no device has (the
    // full scan). Best of three.
    for (label, needle) in [
        ("search, on every device", "programm 7 von"),
        ("search, on no device", "nicht installiert"),
    ] {
        let mut best = f64::MAX;
        let mut found = 0;
        for _ in 0..3 {
            let start = Instant::now();
            found = state
                .store
                .search_software(needle, &TenantFilter::everything(), None, None, 100)
                .await?
                .len();
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!("  {label:<28} {found:>5} rows in {:>7.1} ms", best * 1000.0);
    }
    // The rows must be the last report's, whatever the code did.
    let rows = state
        .store
        .search_software(
            "programm",
            &TenantFilter::everything(),
            None,
            None,
            (devices * packages + 1) as i64,
        )
        .await?;
    assert_eq!(
        rows.len(),
        devices * packages,
        "software rows lost or doubled"
    );
    assert!(
        rows.iter()
            .all(|r| r.version.split('.').nth(1) == Some("2")),
        "software rows of an older report left behind"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    // Where the server puts its SQLite file by default.
    let data = dir.path().join("sqlite-data");
    let url = format!("sqlite://{}", data.join("schoolfleet.db").display());
    run("SQLite", url, &data).await?;

    let Ok(admin_url) = std::env::var("SCHOOLFLEET_TEST_DATABASE_URL") else {
        println!("PostgreSQL: skipped (SCHOOLFLEET_TEST_DATABASE_URL not set)");
        return Ok(());
    };
    let name = format!("sf_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url.as_str(), String::new()), |(b, q)| {
            (b, format!("?{q}"))
        });
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = base[scheme_end..]
        .find('/')
        .map_or(base, |slash| &base[..scheme_end + slash]);
    let url = format!("{base}/{name}{query}");
    let outcome = run("PostgreSQL", url, &dir.path().join("pg-data")).await;
    // Leave no database behind.
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    outcome
}
