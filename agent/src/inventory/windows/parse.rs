//! Windows inventory data, parsed: pure functions over values as the
//! registry and WMI hand them out, so they are tested on every platform
//! (`fixtures/windows/` holds the test data). The collector that reads
//! the registry and WMI is `collect.rs`, Windows only.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use schoolfleet_proto::v1::{DiskMedia, SoftwarePackage, Tristate, Windows11Readiness};
use serde::Deserialize;

/// One subkey of `...\CurrentVersion\Uninstall`, with the values that
/// "Apps & features" looks at. Missing values are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UninstallEntry {
    /// The subkey's name (a product code or a vendor's own name).
    pub key_name: String,
    pub display_name: Option<String>,
    pub display_version: Option<String>,
    pub publisher: Option<String>,
    /// `yyyymmdd` by convention; installers write all sorts of things.
    pub install_date: Option<String>,
    pub system_component: Option<u32>,
    pub parent_key_name: Option<String>,
    pub release_type: Option<String>,
    pub windows_installer: Option<u32>,
    /// Read from `WOW6432Node` (a 32-bit program on 64-bit Windows).
    #[serde(skip)]
    pub wow64: bool,
}

/// Whether "Apps & features" would list the entry: it has a name, is not
/// a system component, not a part of another product (`ParentKeyName`)
/// and not an update or hotfix.
pub fn listed_like_apps_and_features(entry: &UninstallEntry) -> bool {
    let named = entry
        .display_name
        .as_deref()
        .is_some_and(|n| !n.trim().is_empty());
    let update = entry.release_type.as_deref().is_some_and(|t| {
        matches!(
            t.trim().to_ascii_lowercase().as_str(),
            "update" | "hotfix" | "security update" | "service pack"
        )
    });
    named
        && entry.system_component != Some(1)
        && entry
            .parent_key_name
            .as_deref()
            .is_none_or(|p| p.trim().is_empty())
        && !update
}

/// The software list: listed entries only, one per name and version (a
/// program registered in both views counts once, as its native entry).
pub fn software(entries: &[UninstallEntry]) -> Vec<SoftwarePackage> {
    let mut packages: Vec<SoftwarePackage> = entries
        .iter()
        .filter(|e| listed_like_apps_and_features(e))
        .map(|e| SoftwarePackage {
            name: e.display_name.clone().unwrap_or_default().trim().to_owned(),
            version: e
                .display_version
                .clone()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            source: if e.windows_installer == Some(1) {
                "msi".into()
            } else {
                "registry".into()
            },
            architecture: if e.wow64 { "x86".into() } else { "x64".into() },
            publisher: e.publisher.clone().unwrap_or_default().trim().to_owned(),
            install_date: e
                .install_date
                .as_deref()
                .and_then(install_date)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
        })
        .collect();
    packages.sort_by(|a, b| {
        (&a.name, &a.version, &a.architecture).cmp(&(&b.name, &b.version, &b.architecture))
    });
    // x64 sorts before x86: the native entry wins.
    packages.dedup_by(|a, b| a.name == b.name && a.version == b.version);
    packages
}

/// `InstallDate`: `yyyymmdd` (the convention), else `None`.
pub fn install_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y%m%d").ok()
}

/// A CIM datetime as WMI gives it, `yyyymmddHHMMSS.ffffff+UUU` with the
/// offset in minutes (e.g. `20231015143000.000000+120`). Wildcard fields
/// (`*`) and malformed text give `None`.
pub fn wmi_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.len() != 25 || !text.is_char_boundary(21) {
        return None;
    }
    let (stamp, offset) = text.split_at(21);
    let (sign, minutes) = offset.split_at(1);
    let minutes: i32 = minutes.parse().ok()?;
    let seconds = match sign {
        "+" => minutes * 60,
        "-" => -minutes * 60,
        _ => return None,
    };
    let zone = FixedOffset::east_opt(seconds)?;
    let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S%.6f").ok()?;
    Some(
        zone.from_local_datetime(&naive)
            .single()?
            .with_timezone(&Utc),
    )
}

/// `Win32_QuickFixEngineering.InstalledOn`: `M/D/YYYY` (US order, always),
/// sometimes a hex FILETIME on old systems, which is not trusted.
pub fn hotfix_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%m/%d/%Y").ok()
}

/// The OS name. Windows 11 still writes "Windows 10 …" into `ProductName`;
/// builds from 22000 on are Windows 11, as `winver` shows.
pub fn os_name(product_name: &str, build: u32) -> String {
    let name = product_name.trim();
    if build >= 22000
        && let Some(rest) = name.strip_prefix("Windows 10")
    {
        return format!("Windows 11{rest}");
    }
    name.to_owned()
}

/// `10.0.<CurrentBuild>.<UBR>`: the version that compares segment-wise
/// like Windows builds (the standard's `version` rules).
pub fn os_version(major: u32, minor: u32, build: u32, ubr: Option<u32>) -> String {
    match ubr {
        Some(ubr) => format!("{major}.{minor}.{build}.{ubr}"),
        None => format!("{major}.{minor}.{build}"),
    }
}

/// Major and minor version: the DWORDs Windows 10 and newer write, else
/// `CurrentVersion` ("6.1" on Windows 7 and under Wine's default).
pub fn major_minor(major: Option<u32>, minor: Option<u32>, current_version: &str) -> (u32, u32) {
    if let Some(major) = major {
        return (major, minor.unwrap_or(0));
    }
    let mut parts = current_version
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => (10, 0),
    }
}

/// `CurrentBuild` is a string (REG_SZ) in the registry.
pub fn build_number(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// `Win32_Tpm.SpecVersion` ("2.0, 0, 1.38") → "2.0".
pub fn tpm_version(spec_version: &str) -> String {
    spec_version
        .split(',')
        .next()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .unwrap_or_default()
        .to_owned()
}

/// `MSFT_PhysicalDisk`: `BusType` 17 is NVMe; `MediaType` 3 HDD, 4 SSD,
/// 0 unspecified (many VMs).
pub fn disk_media(media_type: u16, bus_type: u16) -> DiskMedia {
    match (bus_type, media_type) {
        (17, _) => DiskMedia::Nvme,
        (_, 3) => DiskMedia::Hdd,
        (_, 4) => DiskMedia::Ssd,
        _ => DiskMedia::Unknown,
    }
}

/// `Win32_EncryptableVolume.ProtectionStatus`: 0 off, 1 on, 2 unknown
/// (for example locked).
pub fn bitlocker_protection(status: u32) -> Tristate {
    match status {
        1 => Tristate::Yes,
        0 => Tristate::No,
        _ => Tristate::Unknown,
    }
}

/// Security Center's `AntiVirusProduct.productState`: the second byte says
/// whether the product is on (0x10 or 0x11 set in it).
pub fn av_realtime(product_state: u32) -> Tristate {
    match (product_state >> 8) & 0xff {
        0x10 | 0x11 => Tristate::Yes,
        0x00 | 0x01 => Tristate::No,
        _ => Tristate::Unknown,
    }
}

/// Domain or workgroup, from `Win32_ComputerSystem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Domain(String),
    Workgroup(String),
}

pub fn membership(part_of_domain: bool, domain: &str, workgroup: &str) -> Membership {
    if part_of_domain {
        Membership::Domain(domain.trim().to_owned())
    } else {
        let group = if workgroup.trim().is_empty() {
            domain
        } else {
            workgroup
        };
        Membership::Workgroup(group.trim().to_owned())
    }
}

/// What the Windows 11 upgrade check needs to know. `None` (or 0, or an
/// empty CPU name) is a fact the collectors could not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadinessFacts {
    /// `Some("")`: WMI answered and there is no TPM.
    pub tpm_version: Option<String>,
    pub uefi: Option<bool>,
    pub secure_boot_capable: Option<bool>,
    pub cpu_name: String,
    pub memory_bytes: u64,
    pub system_disk_bytes: u64,
}

/// Microsoft's minimum: TPM 2.0, UEFI with Secure Boot capability, a
/// supported CPU (Intel Core 8th generation or newer, AMD Ryzen 2000 or
/// newer: the lists are long; this is the rule of thumb that the counties'
/// procurement uses), 4 GiB RAM and 64 GB storage. Every part is YES, NO
/// or UNKNOWN (not read); `blockers` names every NO in German; `ready` is
/// YES only when every part is.
pub fn windows11_readiness(facts: &ReadinessFacts) -> Windows11Readiness {
    let mut blockers = Vec::new();
    let mut part = |known: bool, ok: bool, blocker: &dyn Fn() -> String| -> Tristate {
        match (known, ok) {
            (false, _) => Tristate::Unknown,
            (true, true) => Tristate::Yes,
            (true, false) => {
                blockers.push(blocker());
                Tristate::No
            }
        }
    };
    let tpm = facts.tpm_version.as_deref().unwrap_or_default();
    let tpm_major: u32 = tpm
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let tpm_2 = part(facts.tpm_version.is_some(), tpm_major >= 2, &|| {
        if tpm.is_empty() {
            "kein TPM".to_owned()
        } else {
            format!("TPM {tpm} statt 2.0")
        }
    });
    let secure_boot_capable = match facts.uefi {
        Some(false) => part(true, false, &|| "kein UEFI (BIOS-Modus)".to_owned()),
        _ => part(
            facts.uefi.is_some() && facts.secure_boot_capable.is_some(),
            facts.secure_boot_capable == Some(true),
            &|| "Secure Boot nicht möglich".to_owned(),
        ),
    };
    let cpu = facts.cpu_name.trim();
    let cpu_supported = part(!cpu.is_empty(), cpu_supported(cpu), &|| {
        format!("CPU nicht unterstützt: {cpu}")
    });
    // A little slack: firmware reserves some of 4 GiB.
    let memory = part(
        facts.memory_bytes > 0,
        facts.memory_bytes >= 4 * 1024 * 1024 * 1024 - 64 * 1024 * 1024,
        &|| "weniger als 4 GB Arbeitsspeicher".to_owned(),
    );
    let storage = part(
        facts.system_disk_bytes > 0,
        facts.system_disk_bytes >= 64_000_000_000,
        &|| "weniger als 64 GB Speicher".to_owned(),
    );
    let parts = [tpm_2, secure_boot_capable, cpu_supported, memory, storage];
    let ready = if parts.contains(&Tristate::No) {
        Tristate::No
    } else if parts.iter().all(|p| *p == Tristate::Yes) {
        Tristate::Yes
    } else {
        Tristate::Unknown
    };
    Windows11Readiness {
        ready: ready.into(),
        tpm_2: tpm_2.into(),
        secure_boot_capable: secure_boot_capable.into(),
        cpu_supported: cpu_supported.into(),
        memory: memory.into(),
        storage: storage.into(),
        blockers,
    }
}

/// Intel Core iN-8xxx and newer (also "Core Ultra", 1xth gen), AMD Ryzen
/// 2000 and newer (3-digit Ryzen 3 3200U style too). Unknown names are
/// not supported: better to plan a check than to promise an upgrade.
pub fn cpu_supported(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name.contains("core(tm) ultra") || name.contains("core ultra") {
        return true;
    }
    let model_number = |after: &str| -> Option<u32> {
        let rest = &name[name.find(after)? + after.len()..];
        let digits: String = rest
            .trim_start()
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    };
    if name.contains("intel") {
        // "Intel(R) Core(TM) i5-8250U": generation from the model number.
        for tier in ["i3-", "i5-", "i7-", "i9-"] {
            if let Some(n) = model_number(tier) {
                // 8250 → 8; 10510 → 10; 1235 (mobile 10th–14th gen) → 12.
                let generation = match n {
                    10_000.. => n / 1000,
                    1000..=1999 => n / 100,
                    _ => n / 1000,
                };
                return generation >= 8;
            }
        }
        return false;
    }
    if name.contains("amd") && name.contains("ryzen") {
        // "AMD Ryzen 5 2600", "AMD Ryzen 7 PRO 4750U": series from the
        // model number; the 1000 series (and 2000 APUs, Zen 1) are out.
        let model = name
            .split_whitespace()
            .filter_map(|w| {
                let d: String = w.chars().take_while(|c| c.is_ascii_digit()).collect();
                (d.len() == 4).then(|| d.parse::<u32>().ok()).flatten()
            })
            .next();
        return match model {
            Some(m) if m >= 3000 => true,
            Some(m) if m >= 2000 => {
                !(name.ends_with('g')
                    || name.contains("2200u")
                    || name.contains("2500u")
                    || name.contains("2700u")
                    || name.contains("2300u"))
            }
            _ => false,
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/windows")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn entries() -> Vec<UninstallEntry> {
        #[derive(Deserialize)]
        struct View {
            native: Vec<UninstallEntry>,
            wow6432node: Vec<UninstallEntry>,
        }
        let view: View = serde_json::from_str(&fixture("uninstall.json")).unwrap();
        let mut all = view.native;
        all.extend(view.wow6432node.into_iter().map(|mut e| {
            e.wow64 = true;
            e
        }));
        all
    }

    #[test]
    fn software_is_listed_like_apps_and_features() {
        let packages = software(&entries());
        let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "7-Zip 23.01 (x64)",
                "GeoGebra Classic",
                "Microsoft Edge",
                "Mozilla Firefox (x64 de)",
                "Notepad++ (64-bit x64)",
                "Schülerverwaltung Größe & Co",
            ],
            "{packages:#?}"
        );
        let firefox = &packages[3];
        assert_eq!(firefox.version, "118.0.2");
        assert_eq!(firefox.publisher, "Mozilla");
        assert_eq!(firefox.source, "registry");
        assert_eq!(firefox.architecture, "x64");
        let edge = &packages[2];
        assert_eq!(
            (edge.architecture.as_str(), edge.source.as_str()),
            ("x86", "registry")
        );
        let geogebra = &packages[1];
        assert_eq!(geogebra.source, "msi");
        // Umlauts survive untouched.
        assert_eq!(packages[5].publisher, "Kreisverwaltung Kusel");
        // Install dates as ISO dates; one that is not yyyymmdd is left out.
        assert_eq!(firefox.install_date, "2023-10-15");
        assert_eq!(geogebra.install_date, "2023-09-01");
        assert_eq!(packages[5].install_date, "");
    }

    #[test]
    fn what_apps_and_features_hides_is_skipped() {
        let hidden = |f: &dyn Fn(&mut UninstallEntry)| {
            let mut e = UninstallEntry {
                key_name: "X".into(),
                display_name: Some("Programm".into()),
                ..Default::default()
            };
            f(&mut e);
            !listed_like_apps_and_features(&e)
        };
        assert!(!hidden(&|_| {}));
        assert!(hidden(&|e| e.system_component = Some(1)));
        assert!(!hidden(&|e| e.system_component = Some(0)));
        assert!(hidden(&|e| e.parent_key_name = Some("Office16".into())));
        assert!(hidden(&|e| e.release_type = Some("Update".into())));
        assert!(hidden(&|e| e.release_type = Some("Hotfix".into())));
        assert!(hidden(&|e| e.release_type = Some("Security Update".into())));
        assert!(hidden(&|e| e.display_name = None));
        assert!(hidden(&|e| e.display_name = Some("  ".into())));
    }

    #[test]
    fn install_dates() {
        assert_eq!(
            install_date("20231015"),
            NaiveDate::from_ymd_opt(2023, 10, 15)
        );
        assert_eq!(
            install_date(" 20240229 "),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        for bad in [
            "",
            "2023-10-15",
            "20231315",
            "15.10.2023",
            "2023101",
            "2023101５",
        ] {
            assert_eq!(install_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn wmi_datetimes_with_their_offset_in_minutes() {
        let t = wmi_datetime("20231015000000.000000+120").unwrap();
        assert_eq!(t.to_rfc3339(), "2023-10-14T22:00:00+00:00");
        let t = wmi_datetime("20240102030405.500000-060").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-02T04:04:05.500+00:00");
        assert_eq!(
            wmi_datetime("20231015000000.000000+000")
                .unwrap()
                .to_rfc3339(),
            "2023-10-15T00:00:00+00:00"
        );
        for bad in [
            "",
            "20231015",
            "2023101500000*.******+***",
            "20231015000000.000000x120",
            "20231345000000.000000+120",
            "20231015000000.000000+12ä",
        ] {
            assert_eq!(wmi_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn hotfix_dates_are_us_order() {
        assert_eq!(
            hotfix_date("10/15/2023"),
            NaiveDate::from_ymd_opt(2023, 10, 15)
        );
        assert_eq!(hotfix_date("1/2/2024"), NaiveDate::from_ymd_opt(2024, 1, 2));
        assert_eq!(hotfix_date("15.10.2023"), None);
        assert_eq!(hotfix_date("01d9ff3c4a8b2000"), None);
    }

    #[test]
    fn os_name_version_and_build() {
        let facts: serde_json::Value =
            serde_json::from_str(&fixture("currentversion.json")).unwrap();
        let s = |k: &str| facts[k].as_str().unwrap().to_owned();
        let build = build_number(&s("CurrentBuild")).unwrap();
        let ubr = facts["UBR"].as_u64().map(|u| u as u32);
        assert_eq!(os_name(&s("ProductName"), build), "Windows 11 Education");
        assert_eq!(os_version(10, 0, build, ubr), "10.0.22631.3155");
        assert_eq!(s("EditionID"), "Education");
        assert_eq!(s("DisplayVersion"), "23H2");
        // Windows 10 stays Windows 10.
        assert_eq!(os_name("Windows 10 Pro", 19045), "Windows 10 Pro");
        assert_eq!(os_version(10, 0, 19045, None), "10.0.19045");
        assert_eq!(build_number("22631 "), Some(22631));
        assert_eq!(major_minor(Some(10), Some(0), "6.3"), (10, 0));
        assert_eq!(major_minor(None, None, "6.1"), (6, 1));
        assert_eq!(major_minor(None, None, "kaputt"), (10, 0));
        assert_eq!(build_number("abc"), None);
    }

    #[test]
    fn small_wmi_values() {
        assert_eq!(tpm_version("2.0, 0, 1.38"), "2.0");
        assert_eq!(tpm_version("1.2, 2, 3"), "1.2");
        assert_eq!(tpm_version("Not Supported"), "");
        assert_eq!(tpm_version(""), "");
        assert_eq!(disk_media(4, 17), DiskMedia::Nvme);
        assert_eq!(disk_media(4, 11), DiskMedia::Ssd);
        assert_eq!(disk_media(3, 11), DiskMedia::Hdd);
        assert_eq!(disk_media(0, 11), DiskMedia::Unknown);
        assert_eq!(bitlocker_protection(1), Tristate::Yes);
        assert_eq!(bitlocker_protection(0), Tristate::No);
        assert_eq!(bitlocker_protection(2), Tristate::Unknown);
        // Defender on and up to date; off; a snoozed third-party product.
        assert_eq!(av_realtime(397568), Tristate::Yes); // 0x061100
        assert_eq!(av_realtime(393472), Tristate::No); // 0x060100
        assert_eq!(av_realtime(266240), Tristate::Yes); // 0x041000
        assert_eq!(av_realtime(0x062000), Tristate::Unknown);
        assert_eq!(
            membership(true, "schule.kus.local", "WORKGROUP"),
            Membership::Domain("schule.kus.local".into())
        );
        assert_eq!(
            membership(false, "WORKGROUP", ""),
            Membership::Workgroup("WORKGROUP".into())
        );
    }

    #[test]
    fn windows11_readiness_names_every_blocker() {
        let ready = ReadinessFacts {
            tpm_version: Some("2.0".into()),
            uefi: Some(true),
            secure_boot_capable: Some(true),
            cpu_name: "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz".into(),
            memory_bytes: 8 << 30,
            system_disk_bytes: 256_000_000_000,
        };
        let r = windows11_readiness(&ready);
        assert_eq!(r.ready(), Tristate::Yes);
        assert!(r.blockers.is_empty());
        let old = ReadinessFacts {
            tpm_version: Some("1.2".into()),
            uefi: Some(false),
            secure_boot_capable: Some(false),
            cpu_name: "Intel(R) Core(TM) i5-7500 CPU @ 3.40GHz".into(),
            memory_bytes: 4 << 30,
            system_disk_bytes: 500_000_000_000,
        };
        let r = windows11_readiness(&old);
        assert_eq!(r.ready(), Tristate::No);
        assert_eq!(
            (
                r.tpm_2(),
                r.secure_boot_capable(),
                r.cpu_supported(),
                r.memory(),
                r.storage()
            ),
            (
                Tristate::No,
                Tristate::No,
                Tristate::No,
                Tristate::Yes,
                Tristate::Yes
            )
        );
        assert_eq!(
            r.blockers,
            [
                "TPM 1.2 statt 2.0",
                "kein UEFI (BIOS-Modus)",
                "CPU nicht unterstützt: Intel(R) Core(TM) i5-7500 CPU @ 3.40GHz"
            ]
        );
        let no_tpm = ReadinessFacts {
            tpm_version: Some(String::new()),
            memory_bytes: 2 << 30,
            ..ready.clone()
        };
        assert_eq!(
            windows11_readiness(&no_tpm).blockers,
            ["kein TPM", "weniger als 4 GB Arbeitsspeicher"]
        );
        let uefi_without_secure_boot = ReadinessFacts {
            secure_boot_capable: Some(false),
            ..ready.clone()
        };
        assert_eq!(
            windows11_readiness(&uefi_without_secure_boot).blockers,
            ["Secure Boot nicht möglich"]
        );
    }

    #[test]
    fn windows11_readiness_is_unknown_when_facts_are_missing() {
        // Under Wine (and with WMI broken) the TPM cannot be read: that is
        // not a "no", and certainly not a "yes".
        let facts = ReadinessFacts {
            tpm_version: None,
            uefi: None,
            secure_boot_capable: None,
            cpu_name: "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz".into(),
            memory_bytes: 8 << 30,
            system_disk_bytes: 0,
        };
        let r = windows11_readiness(&facts);
        assert_eq!(r.ready(), Tristate::Unknown);
        assert_eq!(
            (
                r.tpm_2(),
                r.secure_boot_capable(),
                r.cpu_supported(),
                r.storage()
            ),
            (
                Tristate::Unknown,
                Tristate::Unknown,
                Tristate::Yes,
                Tristate::Unknown
            )
        );
        assert!(r.blockers.is_empty());
        // One definite blocker makes it "no" even with others unknown.
        let old_cpu = ReadinessFacts {
            cpu_name: "Intel(R) Core(TM) i3-6100 CPU @ 3.70GHz".into(),
            ..facts
        };
        assert_eq!(windows11_readiness(&old_cpu).ready(), Tristate::No);
    }

    #[test]
    fn cpu_generations() {
        for yes in [
            "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz",
            "Intel(R) Core(TM) i7-10510U CPU @ 1.80GHz",
            "12th Gen Intel(R) Core(TM) i5-1235U",
            "Intel(R) Core(TM) i5-1035G1 CPU @ 1.00GHz",
            "13th Gen Intel(R) Core(TM) i7-13700",
            "Intel(R) Core(TM) Ultra 5 125U",
            "AMD Ryzen 5 2600 Six-Core Processor",
            "AMD Ryzen 7 PRO 4750U with Radeon Graphics",
            "AMD Ryzen 3 3200U with Radeon Vega Mobile Gfx",
        ] {
            assert!(cpu_supported(yes), "{yes}");
        }
        for no in [
            "Intel(R) Core(TM) i5-7500 CPU @ 3.40GHz",
            "Intel(R) Core(TM) i3-6100 CPU @ 3.70GHz",
            "Intel(R) Core(TM)2 Duo CPU E8400",
            "Intel(R) Celeron(R) CPU N3050",
            "AMD Ryzen 5 1600 Six-Core Processor",
            "AMD Ryzen 5 2500U with Radeon Vega Mobile Gfx",
            "QEMU Virtual CPU version 2.5+",
            "",
        ] {
            assert!(!cpu_supported(no), "{no}");
        }
    }
}
