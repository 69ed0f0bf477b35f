//! Property tests for evaluation, and the fuzz target's invariants over
//! thousands of mutated example files (so CI covers it without nightly).

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use schoolfleet_proto::v1::{
    Antivirus, Disk, Filesystem, Firmware, Hardware, Inventory, OperatingSystem, Security,
    SoftwarePackage, SystemInfo,
};
use schoolfleet_standard::{DeviceFacts, Mode, Standard, Status, fuzzing::parse_and_lint};

const CLIENT: &str = include_str!("../examples/schul-it-client.toml");
const LINUX: &str = include_str!("../examples/linux-clients.toml");

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 15, 12, 0, 0).unwrap()
}

fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// Arbitrary inventories, including nonsense an agent might send:
/// invalid enum numbers, empty strings, far-off timestamps.
fn inventory() -> impl Strategy<Value = Inventory> {
    let os = (
        prop::sample::select(vec!["linux", "windows", "macos", "", "Windows"]),
        prop::sample::select(vec![
            "Debian GNU/Linux",
            "Windows 11 Education",
            "Ubuntu",
            "",
        ]),
        "[0-9a-z.~+-]{0,14}",
        prop::sample::select(vec!["", "Education", "Pro", "Home"]),
    );
    let hw = (any::<u64>(), 0u32..64);
    let fw = (
        prop::sample::select(vec!["uefi", "bios", "", "UEFI"]),
        -1i32..4,
        any::<bool>(),
        prop::sample::select(vec!["2.0", "1.2", "", "x"]),
    );
    let disks = prop::collection::vec((any::<u64>(), -1i32..5, any::<bool>()), 0..3);
    let software = prop::collection::vec(
        (
            prop::sample::select(vec![
                "Mozilla Firefox",
                "openssl",
                "Adobe Flash Player",
                "x",
            ]),
            "[0-9a-z.~:+-]{0,10}",
        ),
        0..4,
    );
    let security = (
        -1i32..4,
        prop::collection::vec((-1i32..4, any::<i64>()), 0..2),
    );
    let times = (
        prop::option::of(-100_000_000_000i64..100_000_000_000),
        any::<bool>(),
    );
    (os, hw, fw, disks, software, security, times).prop_map(
        |(os, hw, fw, disks, software, security, times)| Inventory {
            system: Some(SystemInfo {
                hostname: "kus012-sp0101".into(),
                last_update_time: times.0.map(ts),
                ..Default::default()
            }),
            os: Some(OperatingSystem {
                family: os.0.into(),
                name: os.1.into(),
                version: os.2,
                edition: os.3.into(),
                ..Default::default()
            }),
            hardware: Some(Hardware {
                memory_total_bytes: hw.0,
                cpu_physical_cores: hw.1,
                ..Default::default()
            }),
            firmware: Some(Firmware {
                boot_mode: fw.0.into(),
                secure_boot: fw.1,
                tpm_present: fw.2,
                tpm_version: fw.3.into(),
                ..Default::default()
            }),
            disks: disks
                .into_iter()
                .map(|(size_bytes, media, system)| Disk {
                    size_bytes,
                    media,
                    system,
                    ..Default::default()
                })
                .collect(),
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                encrypted: times.1,
                encryption: if times.1 {
                    "luks".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }],
            software: software
                .into_iter()
                .map(|(name, version)| SoftwarePackage {
                    name: name.into(),
                    version,
                    ..Default::default()
                })
                .collect(),
            security: Some(Security {
                system_disk_encrypted: security.0,
                antivirus: security
                    .1
                    .into_iter()
                    .map(|(rt, secs)| Antivirus {
                        product: "Defender".into(),
                        realtime_protection: rt,
                        signatures_updated: Some(ts(secs)),
                    })
                    .collect(),
            }),
            ..Default::default()
        },
    )
}

fn facts<'a>(inv: Option<&'a Inventory>, class: &'a str, age_days: i64) -> DeviceFacts<'a> {
    DeviceFacts {
        device_id: "d",
        hostname: "kus012-sp0101",
        county_id: "kus",
        school_id: "kus012",
        device_class: class,
        inventory: inv,
        inventory_at: Some(now() - Duration::days(age_days)),
        now: now(),
    }
}

fn ram_standard(gib: u32, tolerance: u32) -> schoolfleet_standard::CompiledStandard {
    let text = format!(
        "schema = \"schoolfleet-standard/v1\"\n[standard]\nid = \"t\"\nversion = \"1\"\n\
         [[rule]]\nid = \"RAM\"\ntitle = \"t\"\n\
         check = {{ type = \"hardware_min\", ram_gib = {gib}, tolerance_pct = {tolerance} }}\n"
    );
    Standard::compile(&text).unwrap()
}

proptest! {
    #[test]
    fn more_ram_than_the_minimum_never_fails(
        gib in 1u32..256,
        tolerance in 0u32..=50,
        extra in 0u64..(1 << 40),
        mut inv in inventory(),
    ) {
        let s = ram_standard(gib, tolerance);
        inv.hardware.as_mut().unwrap().memory_total_bytes = u64::from(gib) * (1 << 30) + extra;
        let r = &s.evaluate(&facts(Some(&inv), "schueler-pc", 1))[0];
        prop_assert_eq!(r.status, Status::Pass, "{:?}", r);
    }

    #[test]
    fn less_ram_than_the_tolerated_minimum_always_fails(
        gib in 2u32..256,
        short in 1u64..(1 << 30),
        inv in inventory(),
    ) {
        let s = ram_standard(gib, 0);
        let mut inv = inv;
        inv.hardware.as_mut().unwrap().memory_total_bytes = u64::from(gib) * (1 << 30) - short;
        let r = &s.evaluate(&facts(Some(&inv), "schueler-pc", 1))[0];
        prop_assert_eq!(r.status, Status::Fail);
        prop_assert!(r.reason.ends_with(&format!("< {gib} GiB")), "{}", r.reason);
    }

    #[test]
    fn never_pass_without_inventory(
        class in prop::sample::select(vec!["schueler-pc", "lehrer-laptop", "verwaltungs-pc", "x"]),
        age in -5i64..400,
        at_known in any::<bool>(),
    ) {
        for text in [CLIENT, LINUX] {
            let s = Standard::compile(text).unwrap();
            let mut f = facts(None, class, age);
            if !at_known {
                f.inventory_at = None;
            }
            for r in s.evaluate(&f) {
                prop_assert_ne!(r.status, Status::Pass, "{:?}", r);
            }
        }
    }

    #[test]
    fn stale_inventory_never_passes_data_rules(inv in inventory(), age in 31i64..4000) {
        let s = Standard::compile(LINUX).unwrap();
        for r in s.evaluate(&facts(Some(&inv), "schueler-pc", age)) {
            prop_assert_ne!(r.status, Status::Pass, "{:?}", r);
        }
    }

    #[test]
    fn beobachten_is_reported_but_never_counted(
        inv in inventory(),
        class in prop::sample::select(vec!["schueler-pc", "lehrer-laptop", "verwaltungs-pc"]),
        age in 0i64..60,
    ) {
        for text in [CLIENT, LINUX] {
            let s = Standard::compile(text).unwrap();
            let results = s.evaluate(&facts(Some(&inv), class, age));
            // Every rule is reported, watched ones included.
            prop_assert_eq!(results.len(), s.rules().len());
            for (r, rule) in results.iter().zip(s.rules()) {
                prop_assert_eq!(r.rule_id, rule.id.as_str());
                prop_assert_eq!(r.counted, rule.mode != Mode::Beobachten);
                // A failing result always says what was expected and why.
                if r.status == Status::Fail {
                    prop_assert!(!r.expected.is_empty() && !r.reason.is_empty(), "{:?}", r);
                }
                prop_assert!(r.waiver_id.is_some() == (r.status == Status::Waived));
            }
        }
    }
}

/// Edits to the example file: the mutations a fuzzer would find first.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let snippets = prop::sample::select(vec![
        "\"",
        "[",
        "]",
        "{",
        "}",
        "=",
        "\n",
        "[[rule]]\n",
        "[[waiver]]\n",
        "id = \"HW-RAM-01\"\n",
        "(",
        "\\",
        "#",
        "type = \"os\"",
        ">=",
        "2026-13-01",
        "ü",
        "\u{202e}",
        "'''",
        "\"\"\"",
    ]);
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (
            any::<usize>(),
            prop_oneof![snippets.prop_map(String::from), "\\PC{0,8}"]
        )
            .prop_map(|(a, s)| Edit::Insert(a, s)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        match e {
            Edit::Delete(at, n) => {
                let at = at % (chars.len() + 1);
                let end = (at + n).min(chars.len());
                chars.drain(at..end);
            }
            Edit::Insert(at, s) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Edit::DuplicateLine(i) | Edit::SwapLines(i, _) => {
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.split('\n').collect();
                let a = i % lines.len();
                match e {
                    Edit::SwapLines(_, j) => {
                        let b = j % lines.len();
                        lines.swap(a, b);
                    }
                    _ => lines.insert(a, lines[a]),
                }
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn parse_and_lint_survives_mutated_examples(
        linux in any::<bool>(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let base = if linux { LINUX } else { CLIENT };
        parse_and_lint(&apply(base, &edits));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn parse_and_lint_survives_arbitrary_text(text in "\\PC{0,200}") {
        parse_and_lint(&text);
    }
}

#[test]
fn parse_and_lint_accepts_the_examples() {
    parse_and_lint(CLIENT);
    parse_and_lint(LINUX);
}
