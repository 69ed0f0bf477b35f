//! The simulated PCs: Windows (70 %) and Linux templates with 300 to
//! 3,000 programs and varied hardware, the same PC for the same number.

use prost::Message;
use schoolfleet_proto::v1::*;

/// A small deterministic generator, so agent `n` always gets the same PC.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WINDOWS_PROGRAMS: &[&str] = &[
    "Mozilla Firefox ESR",
    "LibreOffice",
    "7-Zip",
    "VLC media player",
    "GeoGebra Classic",
    "Microsoft Edge",
    "Microsoft Visual C++ 2015-2022 Redistributable (x64)",
    "Adobe Acrobat Reader",
    "Notepad++",
    "Audacity",
    "GIMP",
    "Scratch 3",
    "Microsoft Teams",
    "Zoom Workplace",
    "Java 8 Update 401",
];

const LINUX_PACKAGES: &[&str] = &[
    "bash",
    "coreutils",
    "firefox-esr",
    "libreoffice-core",
    "openssl",
    "libssl3",
    "systemd",
    "python3",
    "vlc",
    "geogebra",
    "gimp",
    "openssh-client",
    "curl",
    "git",
    "vim",
];

/// The generator that makes PC `n`; its first draw picks the template.
fn pc_rng(n: usize) -> Rng {
    Rng(0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1).wrapping_mul(0x1000_0001))
}

fn hostname_of(n: usize, windows: bool) -> String {
    format!("lg{:05}-{}", n, if windows { "win" } else { "lnx" })
}

/// The host name of simulated PC `n`, without building its inventory.
pub fn hostname(n: usize) -> String {
    hostname_of(n, pc_rng(n).below(10) < 7)
}

/// What a new generation of a simulated PC's inventory changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// One program's version (an update now and then).
    OneProgram,
    /// Every program's version (the worst case for the store).
    Everything,
}

/// The inventory of simulated PC `n`, generation `generation`: each
/// generation changes one program's version, or all of them.
pub fn inventory(n: usize, generation: u64, change: Change) -> Inventory {
    let mut rng = pc_rng(n);
    let windows = rng.below(10) < 7;
    let programs = 300 + rng.below(2_701) as usize;
    let (family, names, source) = if windows {
        ("windows", WINDOWS_PROGRAMS, "msi")
    } else {
        ("linux", LINUX_PACKAGES, "dpkg")
    };
    let software: Vec<SoftwarePackage> = (0..programs)
        .map(|p| {
            let name = match names.get(p) {
                Some(name) => (*name).to_owned(),
                None if windows => format!("Programm {p} von Hersteller {}", p % 37),
                None => format!("lib{}-{p}", ["gtk", "qt", "x11", "perl", "py"][p % 5]),
            };
            let bump = match change {
                Change::OneProgram => {
                    u64::from(p as u64 == generation % programs as u64) * generation
                }
                Change::Everything => generation,
            };
            SoftwarePackage {
                name,
                version: format!("{}.{}.{}", p % 11, (n + p) % 7 + bump as usize, p),
                source: source.into(),
                publisher: format!("Hersteller {}", p % 37),
                ..Default::default()
            }
        })
        .collect();
    let cores = [2, 4, 4, 8, 8, 16][rng.below(6) as usize];
    Inventory {
        system: Some(SystemInfo {
            hostname: hostname_of(n, windows),
            uptime_seconds: 60 + generation,
            ..Default::default()
        }),
        os: Some(OperatingSystem {
            family: family.into(),
            name: if windows {
                "Windows 11 Education".into()
            } else {
                "Debian GNU/Linux 12 (bookworm)".into()
            },
            version: if windows {
                format!(
                    "10.0.{}.{}",
                    [19045, 22631, 26100][rng.below(3) as usize],
                    rng.below(5000)
                )
            } else {
                "12".into()
            },
            ..Default::default()
        }),
        hardware: Some(Hardware {
            vendor: ["Dell Inc.", "LENOVO", "HP", "Fujitsu"][rng.below(4) as usize].into(),
            model: format!("Model {}", rng.below(40)),
            cpu_logical_cores: cores,
            cpu_physical_cores: cores / 2,
            memory_total_bytes: [4u64, 8, 8, 16, 32][rng.below(5) as usize] << 30,
            system_uuid: uuid::Uuid::from_u128((u128::from(rng.next()) << 64) | n as u128)
                .to_string(),
            serial_number: format!("LG{n:08}"),
            ..Default::default()
        }),
        software,
        ..Default::default()
    }
}

pub fn inventory_report(inv: &Inventory, reason: &str) -> (InventoryReport, String) {
    let hash = schoolfleet_agent::inventory::content_hash(inv);
    let report = InventoryReport {
        report_id: uuid::Uuid::new_v4().to_string(),
        collected_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        }),
        content_hash: hash.clone(),
        inventory: inv.encode_to_vec(),
        reason: reason.into(),
        inventory_size: 0,
    };
    (report, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventories_are_varied_stable_and_change_one_program_or_all() {
        let one = |n, g| inventory(n, g, Change::OneProgram);
        let sizes: Vec<usize> = (0..200).map(|n| one(n, 0).software.len()).collect();
        assert!(sizes.iter().all(|s| (300..=3000).contains(s)), "{sizes:?}");
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() > 1000);
        let families: std::collections::HashSet<String> =
            (0..50).map(|n| one(n, 0).os.unwrap().family).collect();
        assert_eq!(families.len(), 2, "both Windows and Linux templates");

        let hash = |inv: &Inventory| schoolfleet_agent::inventory::content_hash(inv);
        // The same PC again: the same inventory.
        assert_eq!(hash(&one(7, 0)), hash(&one(7, 0)));
        let changed = |a: &Inventory, b: &Inventory| {
            a.software
                .iter()
                .zip(&b.software)
                .filter(|(x, y)| x != y)
                .count()
        };
        let (a, b) = (one(7, 0), one(7, 1));
        assert_eq!(changed(&a, &b), 1);
        assert_ne!(hash(&a), hash(&b));
        let all = inventory(7, 1, Change::Everything);
        for n in [0, 7, 4711] {
            assert_eq!(Some(hostname(n)), one(n, 0).system.map(|s| s.hostname));
        }
        assert_eq!(changed(&a, &all), a.software.len());
    }
}
