//! Fleet evaluation throughput: 100,000 devices × 30 rules.
//!
//! `cargo bench -p schoolfleet-standard --bench evaluate`
//!
//! The standard is `examples/schul-it-client.toml` (17 rules) plus 13 more
//! rules of the common kinds, 30 in all. Devices are Windows clients with
//! 300 installed programs each; 1,000 distinct inventories are shared by
//! the 100,000 devices so the run fits in memory (evaluation does not cache
//! anything between devices, so sharing does not make it cheaper).
//!
//! Devices are evaluated on all cores (`EVAL_BENCH_THREADS` to change),
//! and a full run checks its result counts against the reference run.
//! `EVAL_BENCH_DEVICES` and `EVAL_BENCH_ROUNDS` make a smaller run for a
//! profiler (`valgrind --tool=callgrind`, whose instruction counts do not
//! depend on what else the shared machine is doing).

use std::time::Instant;

use chrono::{TimeDelta, Utc};
use schoolfleet_proto::v1::*;
use schoolfleet_standard::{DeviceFacts, Standard, Status, parallel};

const DEVICES: usize = 100_000;
const ROUNDS: usize = 3;
const DISTINCT_INVENTORIES: usize = 1_000;
const PROGRAMS: usize = 300;

const EXTRA_RULES: &str = r#"
[[rule]]
id = "X-SW-01"
title = "7-Zip"
check = { type = "software_required", any_of = [ { name = "^7-Zip", version = ">=23.0" } ] }
[[rule]]
id = "X-SW-02"
title = "Kein TeamViewer"
check = { type = "software_forbidden", name = "^TeamViewer" }
[[rule]]
id = "X-SW-03"
title = "Kein uTorrent"
check = { type = "software_forbidden", name = "^(µ|u)Torrent" }
[[rule]]
id = "X-SW-04"
title = "VLC aktuell"
mode = "empfehlung"
check = { type = "software_required", any_of = [ { name = "^VLC media player", version = ">=3.0.20" } ] }
[[rule]]
id = "X-SW-05"
title = "Java 8 verboten"
check = { type = "software_forbidden", name = "^Java 8" }
[[rule]]
id = "X-SW-06"
title = "Kein Adobe Reader XI"
check = { type = "software_forbidden", name = "^Adobe Reader XI" }
[[rule]]
id = "X-SW-07"
title = "GeoGebra"
mode = "beobachten"
check = { type = "software_required", any_of = [ { name = "^GeoGebra" } ] }
[[rule]]
id = "X-HW-01"
title = "4 Kerne"
check = { type = "hardware_min", cpu_cores = 4 }
[[rule]]
id = "X-HW-02"
title = "8 GB RAM (streng)"
check = { type = "hardware_min", ram_gib = 8, tolerance_pct = 0 }
[[rule]]
id = "X-FW-01"
title = "Secure Boot"
check = { type = "firmware", secure_boot = true }
[[rule]]
id = "X-UPD-01"
title = "Updates 60 Tage"
mode = "empfehlung"
check = { type = "update_age", max_days = 60 }
[[rule]]
id = "X-INV-01"
title = "Inventar 7 Tage"
mode = "beobachten"
check = { type = "inventory_age", max_days = 7 }
[[rule]]
id = "X-NAME-02"
title = "Kurzer Name"
check = { type = "hostname", regex = "^.{1,15}$" }
"#;

fn standard_text() -> String {
    let base = include_str!("../examples/schul-it-client.toml");
    // Rules go before the waivers and lifecycle tables of the example.
    let split = base.find("[[waiver]]").unwrap_or(base.len());
    format!("{}{EXTRA_RULES}\n{}", &base[..split], &base[split..])
}

fn inventory(i: usize, now: chrono::DateTime<Utc>) -> Inventory {
    let ts = |t: chrono::DateTime<Utc>| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    };
    let mut software: Vec<SoftwarePackage> = (0..PROGRAMS)
        .map(|p| SoftwarePackage {
            name: format!("Programm {p} von Hersteller {}", p % 17),
            version: format!("{}.{}.{}", p % 9, i % 13, p),
            source: "msi".into(),
            ..Default::default()
        })
        .collect();
    software[0].name = "Mozilla Firefox ESR".into();
    software[0].version = if i.is_multiple_of(5) {
        "115.0".into()
    } else {
        "140.3".into()
    };
    software[1].name = "LibreOffice".into();
    software[1].version = "24.8.2".into();
    if i.is_multiple_of(50) {
        software[2].name = "Microsoft Office Professional Plus 2016".into();
    }
    Inventory {
        system: Some(SystemInfo {
            hostname: format!("kus012-sp{:04}", i % 10_000),
            last_update_time: Some(ts(now - TimeDelta::days((i % 50) as i64))),
            ..Default::default()
        }),
        os: Some(OperatingSystem {
            family: "windows".into(),
            name: "Windows 11 Education".into(),
            version: format!(
                "10.0.{}.{}",
                if i.is_multiple_of(7) { 19045 } else { 26100 },
                i % 3000
            ),
            edition: "Education".into(),
            ..Default::default()
        }),
        hardware: Some(Hardware {
            cpu_logical_cores: if i.is_multiple_of(3) { 2 } else { 8 },
            memory_total_bytes: if i.is_multiple_of(4) {
                4 << 30
            } else {
                16 << 30
            },
            ..Default::default()
        }),
        firmware: Some(Firmware {
            boot_mode: "uefi".into(),
            secure_boot: Tristate::Yes as i32,
            tpm_present: !i.is_multiple_of(10),
            tpm_version: if !i.is_multiple_of(10) {
                "2.0".into()
            } else {
                String::new()
            },
            ..Default::default()
        }),
        disks: vec![Disk {
            name: "nvme0n1".into(),
            size_bytes: 512_000_000_000,
            media: DiskMedia::Nvme as i32,
            system: true,
            ..Default::default()
        }],
        security: Some(Security {
            system_disk_encrypted: Tristate::Yes as i32,
            antivirus: vec![Antivirus {
                product: "Microsoft Defender".into(),
                realtime_protection: Tristate::Yes as i32,
                signatures_updated: Some(ts(now - TimeDelta::days((i % 5) as i64))),
            }],
        }),
        software,
        ..Default::default()
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let devices = env_or("EVAL_BENCH_DEVICES", DEVICES);
    let rounds = env_or("EVAL_BENCH_ROUNDS", ROUNDS);
    let now = Utc::now();
    let compiled = Standard::compile(&standard_text())
        .unwrap_or_else(|e| panic!("benchmark standard invalid: {e:?}"));
    assert_eq!(
        compiled.rules().len(),
        30,
        "the benchmark is defined for 30 rules"
    );
    let inventories: Vec<Inventory> = (0..DISTINCT_INVENTORIES)
        .map(|i| inventory(i, now))
        .collect();
    let hostnames: Vec<String> = (0..devices)
        .map(|i| format!("kus012-sp{:04}", i % 10_000))
        .collect();
    let ids: Vec<String> = (0..devices).map(|i| format!("device-{i}")).collect();

    let threads = env_or("EVAL_BENCH_THREADS", parallel::threads());
    let indexes: Vec<usize> = (0..devices).collect();
    let mut counts = [0usize; 5];
    for round in 0..rounds {
        let start = Instant::now();
        // Each chunk counts its own results; the counts are summed after.
        let per_chunk = parallel::map_chunks(&indexes, 1024, threads, |chunk| {
            let mut out = Vec::with_capacity(30);
            let mut counts = [0usize; 5];
            for &i in chunk {
                let facts = DeviceFacts {
                    device_id: &ids[i],
                    hostname: &hostnames[i],
                    county_id: "kus",
                    school_id: "kus012",
                    device_class: "schueler-pc",
                    inventory: Some(&inventories[i % DISTINCT_INVENTORIES]),
                    inventory_at: Some(now - TimeDelta::hours(3)),
                    now,
                };
                out.clear();
                compiled.evaluate_into(&facts, &mut out);
                for r in &out {
                    counts[match r.status {
                        Status::Pass => 0,
                        Status::Fail => 1,
                        Status::Waived => 2,
                        Status::NotApplicable => 3,
                        Status::Unknown => 4,
                    }] += 1;
                }
            }
            counts
        });
        let elapsed = start.elapsed();
        let mut round_counts = [0usize; 5];
        for c in per_chunk {
            for (sum, n) in round_counts.iter_mut().zip(c) {
                *sum += n;
            }
        }
        if round == 0 {
            counts = round_counts;
        }
        assert_eq!(round_counts, counts, "rounds disagree");
        println!(
            "round {round}: {devices} devices x 30 rules on {threads} threads in {:.3} s ({:.2} µs per device)",
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e6 / devices as f64
        );
    }
    println!(
        "results: pass {}, fail {}, waived {}, not_applicable {}, unknown {}",
        counts[0], counts[1], counts[2], counts[3], counts[4]
    );
    if devices == DEVICES {
        // The figures of the first, one-regex-per-program implementation:
        // faster must not mean different.
        assert_eq!(
            counts,
            [2_041_400, 458_600, 0, 300_000, 200_000],
            "results differ from the reference run"
        );
    }
}
