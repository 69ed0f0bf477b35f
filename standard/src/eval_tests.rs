//! Unit tests per check type: pass, fail with the exact texts, unknown when
//! data is missing or stale, not_applicable by scope.

use chrono::{DateTime, Duration, TimeZone, Utc};
use schoolfleet_proto::v1::{
    Antivirus, CollectorError, Disk, DiskMedia, Filesystem, Firmware, Hardware, Inventory,
    OperatingSystem, Security, SoftwarePackage, SystemInfo, Tristate,
};

use super::*;
use crate::format::Standard;

const GIB: u64 = 1 << 30;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 15, 12, 0, 0).unwrap()
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn linux_inventory() -> Inventory {
    Inventory {
        system: Some(SystemInfo {
            hostname: "kus012-sp0101".into(),
            ..Default::default()
        }),
        os: Some(OperatingSystem {
            family: "linux".into(),
            name: "Debian GNU/Linux".into(),
            version: "12".into(),
            ..Default::default()
        }),
        hardware: Some(Hardware {
            memory_total_bytes: 16 * GIB,
            cpu_physical_cores: 4,
            ..Default::default()
        }),
        firmware: Some(Firmware {
            boot_mode: "uefi".into(),
            secure_boot: Tristate::Yes.into(),
            tpm_present: true,
            tpm_version: "2.0".into(),
            ..Default::default()
        }),
        disks: vec![Disk {
            name: "nvme0n1".into(),
            size_bytes: 512_000_000_000,
            media: DiskMedia::Nvme.into(),
            system: true,
            ..Default::default()
        }],
        filesystems: vec![Filesystem {
            mount_point: "/".into(),
            encrypted: true,
            encryption: "luks".into(),
            ..Default::default()
        }],
        software: vec![
            SoftwarePackage {
                name: "openssl".into(),
                version: "3.0.15-1~deb12u1".into(),
                source: "dpkg".into(),
                ..Default::default()
            },
            SoftwarePackage {
                name: "Firefox".into(),
                version: "115.0".into(),
                source: "dpkg".into(),
                ..Default::default()
            },
        ],
        security: Some(Security {
            system_disk_encrypted: Tristate::Yes.into(),
            antivirus: vec![],
        }),
        ..Default::default()
    }
}

fn windows_inventory() -> Inventory {
    let mut inv = linux_inventory();
    inv.os = Some(OperatingSystem {
        family: "windows".into(),
        name: "Windows 11 Education".into(),
        version: "10.0.26100.2314".into(),
        edition: "Education".into(),
        ..Default::default()
    });
    inv.filesystems[0].mount_point = "C:".into();
    inv.filesystems[0].encryption = "bitlocker".into();
    inv
}

fn facts(inv: &Inventory) -> DeviceFacts<'_> {
    DeviceFacts {
        device_id: "dev-1",
        hostname: "kus012-sp0101",
        county_id: "kus",
        school_id: "kus012",
        device_class: "schueler-pc",
        inventory: Some(inv),
        inventory_at: Some(now() - Duration::days(1)),
        now: now(),
    }
}

/// A standard with one rule `R` and the given check (and extra lines).
fn standard(check: &str, extra: &str) -> crate::CompiledStandard {
    let text = format!(
        "schema = \"schoolfleet-standard/v1\"\n\
         [standard]\nid = \"t\"\nversion = \"1\"\n\
         [device_classes]\nschueler-pc = {{ label = \"S\" }}\nlehrer-laptop = {{ label = \"L\" }}\n\
         [[rule]]\nid = \"R\"\ntitle = \"t\"\ncheck = {check}\n{extra}"
    );
    match Standard::compile(&text) {
        Ok(s) => s,
        Err(e) => panic!("{e:?}\n{text}"),
    }
}

fn one<'s>(std: &'s crate::CompiledStandard, f: &DeviceFacts<'_>) -> RuleResult<'s> {
    std.evaluate(f).remove(0)
}

fn assert_fail(r: &RuleResult<'_>, expected: &str, actual: &str, reason: &str) {
    assert_eq!(r.status, Status::Fail, "{r:?}");
    assert_eq!(r.expected, expected);
    assert_eq!(r.actual, actual);
    assert_eq!(r.reason, reason);
}

// ---- hardware_min -------------------------------------------------------

#[test]
fn ram_pass_fail_unknown() {
    let s = standard("{ type = \"hardware_min\", ram_gib = 8 }", "");
    let mut inv = linux_inventory();
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
    assert_eq!(one(&s, &facts(&inv)).actual, "RAM 16.0 GiB");

    inv.hardware.as_mut().unwrap().memory_total_bytes = 4 * GIB;
    assert_fail(
        &one(&s, &facts(&inv)),
        "RAM >= 8 GiB",
        "RAM 4.0 GiB",
        "RAM 4.0 GiB < 8 GiB",
    );

    inv.hardware = None;
    let r = one(&s, &facts(&inv));
    assert_eq!(
        (r.status, &*r.reason),
        (Status::Unknown, "RAM not reported")
    );
}

#[test]
fn ram_tolerance_lets_reported_memory_pass() {
    // 8 GiB installed shows as ~7.6 GiB: within the default 5 %.
    let s = standard("{ type = \"hardware_min\", ram_gib = 8 }", "");
    let mut inv = linux_inventory();
    inv.hardware.as_mut().unwrap().memory_total_bytes = 7_800 * (1 << 20);
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
    let strict = standard(
        "{ type = \"hardware_min\", ram_gib = 8, tolerance_pct = 0 }",
        "",
    );
    assert_eq!(one(&strict, &facts(&inv)).status, Status::Fail);
}

#[test]
fn cpu_and_disk() {
    let s = standard(
        "{ type = \"hardware_min\", cpu_cores = 8, system_disk_gb = 240, system_disk_media = [\"ssd\", \"nvme\"] }",
        "",
    );
    let mut inv = linux_inventory();
    assert_fail(
        &one(&s, &facts(&inv)),
        "CPU >= 8 cores; system disk >= 240 GB; system disk ssd or nvme",
        "CPU 4 cores; system disk 512 GB; system disk nvme",
        "CPU 4 cores < 8 cores",
    );
    inv.hardware.as_mut().unwrap().cpu_physical_cores = 8;
    inv.disks[0].size_bytes = 128_000_000_000;
    inv.disks[0].media = DiskMedia::Hdd.into();
    assert_eq!(
        one(&s, &facts(&inv)).reason,
        "system disk 128 GB < 240 GB; system disk hdd, expected ssd or nvme"
    );
    inv.disks[0].system = false;
    let r = one(&s, &facts(&inv));
    assert_eq!(
        (r.status, &*r.reason),
        (Status::Unknown, "system disk not reported")
    );
    inv.disks[0].system = true;
    inv.disks[0].media = DiskMedia::Unknown.into();
    inv.disks[0].size_bytes = 256_000_000_000;
    assert_eq!(one(&s, &facts(&inv)).status, Status::Unknown);
}

// ---- firmware -------------------------------------------------------------

#[test]
fn firmware_checks() {
    let s = standard(
        "{ type = \"firmware\", uefi = true, secure_boot = true, tpm_min = \"2.0\" }",
        "",
    );
    let mut inv = linux_inventory();
    let r = one(&s, &facts(&inv));
    assert_eq!(r.status, Status::Pass);
    assert_eq!(r.actual, "boot mode uefi; Secure Boot on; TPM 2.0");

    let fw = inv.firmware.as_mut().unwrap();
    fw.boot_mode = "bios".into();
    fw.tpm_version = "1.2".into();
    assert_fail(
        &one(&s, &facts(&inv)),
        "boot mode uefi; Secure Boot on; TPM >= 2.0",
        "boot mode bios; Secure Boot on; TPM 1.2",
        "boot mode bios, expected uefi; TPM 1.2 < 2.0",
    );

    let fw = inv.firmware.as_mut().unwrap();
    fw.boot_mode = "uefi".into();
    fw.tpm_version = "2.0".into();
    fw.secure_boot = Tristate::Unknown.into();
    let r = one(&s, &facts(&inv));
    assert_eq!(
        (r.status, &*r.reason),
        (Status::Unknown, "Secure Boot state not reported")
    );

    inv.firmware.as_mut().unwrap().tpm_present = false;
    inv.firmware.as_mut().unwrap().secure_boot = Tristate::No.into();
    assert_eq!(
        one(&s, &facts(&inv)).reason,
        "Secure Boot off, expected on; no TPM, expected TPM 2.0"
    );
}

// ---- os -------------------------------------------------------------------

#[test]
fn os_linux_name_and_version() {
    let s = standard(
        "{ type = \"os\", family = \"linux\", name = \"^Debian\", min_version = \"12\" }",
        "",
    );
    let mut inv = linux_inventory();
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
    inv.os.as_mut().unwrap().version = "11".into();
    assert_fail(
        &one(&s, &facts(&inv)),
        "OS family linux; name matching ^Debian; version >= 12",
        "Debian GNU/Linux (linux) 11",
        "OS version 11 < 12",
    );
    inv.os.as_mut().unwrap().name = "Ubuntu".into();
    assert_eq!(
        one(&s, &facts(&inv)).reason,
        "OS name \"Ubuntu\" does not match ^Debian"
    );
    inv.os = None;
    assert_eq!(one(&s, &facts(&inv)).status, Status::Unknown);
}

#[test]
fn os_windows_edition_and_build() {
    let s = standard(
        "{ type = \"os\", family = \"windows\", editions = [\"Education\", \"Pro\"], min_version = \"10.0.26100.2500\" }",
        "",
    );
    let mut inv = windows_inventory();
    assert_fail(
        &one(&s, &facts(&inv)),
        "OS family windows; edition Education or Pro; version >= 10.0.26100.2500",
        "Windows 11 Education (windows, Education) 10.0.26100.2314",
        "OS version 10.0.26100.2314 < 10.0.26100.2500",
    );
    inv.os.as_mut().unwrap().version = "10.0.26100.10000".into();
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
    inv.os.as_mut().unwrap().edition = "Home".into();
    assert_eq!(
        one(&s, &facts(&inv)).reason,
        "edition Home not in Education, Pro"
    );
    let linux = linux_inventory();
    assert_eq!(
        one(&s, &facts(&linux)).reason,
        "OS family linux, expected windows"
    );
}

// ---- os_lifecycle ---------------------------------------------------------

const LIFECYCLE: &str = "\
[[lifecycle.os]]\nfamily = \"windows\"\nproduct = \"Windows 10\"\nversion_prefix = \"10.0.1\"\nend_of_support = 2025-10-14\n\
[[lifecycle.os]]\nfamily = \"windows\"\nproduct = \"Windows 11 24H2\"\nversion_prefix = \"10.0.26100\"\nend_of_support = 2026-04-01\n\
[[lifecycle.os]]\nfamily = \"linux\"\nproduct = \"Debian 12\"\nname = \"^Debian\"\nversion_prefix = \"12\"\nend_of_support = 2028-06-30\n";

#[test]
fn os_lifecycle() {
    let s = standard(
        "{ type = \"os_lifecycle\", warn_days_before_end = 30 }",
        LIFECYCLE,
    );
    let mut inv = windows_inventory();
    let r = one(&s, &facts(&inv));
    assert_eq!(r.status, Status::Pass);
    assert_eq!(r.reason, "end of support in 17 days");
    inv.os.as_mut().unwrap().version = "10.0.19045.5011".into();
    assert_fail(
        &one(&s, &facts(&inv)),
        "OS within vendor support",
        "Windows 10 (10.0.19045.5011), end of support 2025-10-14",
        "Windows 10 end of support 2025-10-14 passed 152 days ago",
    );
    let linux = linux_inventory();
    let r = one(&s, &facts(&linux));
    assert_eq!((r.status, &*r.reason), (Status::Pass, ""));
    inv.os.as_mut().unwrap().version = "6.1".into();
    let r = one(&s, &facts(&inv));
    assert_eq!(
        (r.status, &*r.reason),
        (
            Status::Unknown,
            "Windows 11 Education 6.1 is not in the lifecycle table"
        )
    );
}

// ---- update_age / inventory_age --------------------------------------------

#[test]
fn update_age() {
    let s = standard("{ type = \"update_age\", max_days = 35 }", "");
    let mut inv = linux_inventory();
    let r = one(&s, &facts(&inv));
    assert_eq!(
        (r.status, &*r.reason),
        (Status::Unknown, "time of the last update not reported")
    );
    inv.system.as_mut().unwrap().last_update_time = Some(ts(now() - Duration::days(40)));
    assert_fail(
        &one(&s, &facts(&inv)),
        "last update <= 35 days ago",
        "last update 40 days ago (2026-02-03)",
        "last update 40 days ago > 35 days",
    );
    inv.system.as_mut().unwrap().last_update_time = Some(ts(now() - Duration::days(3)));
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
}

#[test]
fn inventory_age_fails_without_inventory() {
    let s = standard("{ type = \"inventory_age\", max_days = 14 }", "");
    let inv = linux_inventory();
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
    let mut f = facts(&inv);
    f.inventory_at = Some(now() - Duration::days(20));
    assert_fail(
        &one(&s, &f),
        "inventory <= 14 days old",
        "inventory 20 days old (2026-02-23)",
        "inventory 20 days old > 14 days",
    );
    f.inventory = None;
    assert_fail(
        &one(&s, &f),
        "inventory <= 14 days old",
        "no inventory",
        "no inventory received",
    );
}

#[test]
fn stale_inventory_makes_data_rules_unknown() {
    let s = standard(
        "{ type = \"hardware_min\", ram_gib = 8 }",
        "[defaults]\nstale_after_days = 30\n",
    );
    let inv = linux_inventory();
    let mut f = facts(&inv);
    f.inventory_at = Some(now() - Duration::days(31));
    let r = one(&s, &f);
    assert_eq!(r.status, Status::Unknown);
    assert_eq!(
        r.reason,
        "inventory 31 days old > 30 days, too old to judge"
    );
    f.inventory_at = None;
    assert_eq!(one(&s, &f).reason, "time of the inventory unknown");
    f.inventory = None;
    assert_eq!(one(&s, &f).reason, "no inventory received");
}

// ---- disk_encryption --------------------------------------------------------

#[test]
fn disk_encryption() {
    let s = standard("{ type = \"disk_encryption\", methods = [\"luks\"] }", "");
    let mut inv = linux_inventory();
    assert_eq!(one(&s, &facts(&inv)).actual, "system disk encrypted (luks)");
    let win = windows_inventory();
    assert_fail(
        &one(&s, &facts(&win)),
        "system disk encrypted (luks)",
        "system disk encrypted (bitlocker)",
        "encrypted with bitlocker, expected luks",
    );
    inv.security.as_mut().unwrap().system_disk_encrypted = Tristate::No.into();
    assert_fail(
        &one(&s, &facts(&inv)),
        "system disk encrypted (luks)",
        "system disk not encrypted",
        "system disk not encrypted",
    );
    // Security unknown: the root filesystem's flag decides, else unknown.
    inv.security = None;
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
    inv.filesystems[0].encrypted = false;
    assert_eq!(one(&s, &facts(&inv)).status, Status::Unknown);
}

// ---- antivirus --------------------------------------------------------------

#[test]
fn antivirus_absent_is_unknown_on_linux_and_fail_on_windows() {
    let s = standard("{ type = \"antivirus\", signature_max_age_days = 3 }", "");
    let linux = linux_inventory();
    let r = one(&s, &facts(&linux));
    assert_eq!(
        (r.status, &*r.reason),
        (Status::Unknown, "antivirus not reported on linux")
    );
    let mut win = windows_inventory();
    assert_fail(
        &one(&s, &facts(&win)),
        "antivirus with realtime protection, signatures <= 3 days old",
        "no antivirus",
        "no antivirus reported",
    );
    win.security.as_mut().unwrap().antivirus.push(Antivirus {
        product: "Microsoft Defender".into(),
        realtime_protection: Tristate::Yes.into(),
        signatures_updated: Some(ts(now() - Duration::days(5))),
    });
    assert_fail(
        &one(&s, &facts(&win)),
        "antivirus with realtime protection, signatures <= 3 days old",
        "Microsoft Defender",
        "Microsoft Defender: signatures 5 days old > 3 days",
    );
    win.security.as_mut().unwrap().antivirus[0].signatures_updated =
        Some(ts(now() - Duration::days(1)));
    assert_eq!(one(&s, &facts(&win)).status, Status::Pass);
    win.security.as_mut().unwrap().antivirus[0].realtime_protection = Tristate::Unknown.into();
    assert_eq!(one(&s, &facts(&win)).status, Status::Unknown);
}

// ---- software ---------------------------------------------------------------

#[test]
fn software_required() {
    let s = standard(
        "{ type = \"software_required\", any_of = [ { name = \"^Firefox\", version = \">=140.0\" }, { name = \"^Microsoft Edge$\" } ] }",
        "",
    );
    let mut inv = linux_inventory();
    assert_fail(
        &one(&s, &facts(&inv)),
        "^Firefox >=140.0 or ^Microsoft Edge$",
        "Firefox 115.0",
        "Firefox 115.0 < 140.0",
    );
    inv.software[1].version = "140.0.4".into();
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
    inv.software.remove(1);
    assert_fail(
        &one(&s, &facts(&inv)),
        "^Firefox >=140.0 or ^Microsoft Edge$",
        "not installed",
        "none of the required packages installed",
    );
    inv.collector_errors.push(CollectorError {
        collector: "software".into(),
        message: "rpm failed".into(),
    });
    assert_eq!(one(&s, &facts(&inv)).status, Status::Unknown);
    inv.software.clear();
    assert_eq!(one(&s, &facts(&inv)).reason, "software list not reported");
}

#[test]
fn software_dpkg_versions() {
    let s = standard(
        "{ type = \"software_required\", any_of = [ { name = \"^openssl$\", version = \">=3.0.15\" } ] }",
        "",
    );
    let mut inv = linux_inventory();
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
    inv.software[0].version = "3.0.11-1~deb12u2".into();
    assert_eq!(
        one(&s, &facts(&inv)).reason,
        "openssl 3.0.11-1~deb12u2 < 3.0.15"
    );
}

#[test]
fn software_forbidden() {
    let s = standard(
        "{ type = \"software_forbidden\", name = \"^Firefox$\", version = \"<128\" }",
        "",
    );
    let mut inv = linux_inventory();
    assert_fail(
        &one(&s, &facts(&inv)),
        "no ^Firefox$ <128",
        "Firefox 115.0",
        "Firefox 115.0 installed",
    );
    inv.software[1].version = "128.1".into();
    let r = one(&s, &facts(&inv));
    assert_eq!((r.status, &*r.actual), (Status::Pass, "not installed"));
    inv.software.clear();
    assert_eq!(one(&s, &facts(&inv)).status, Status::Unknown);
}

// ---- hostname ---------------------------------------------------------------

#[test]
fn hostname() {
    let s = standard(
        "{ type = \"hostname\", regex = \"^(don|kus|kl)[0-9]{3}-(sp|ll|vw)[0-9]{4}$\", max_len = 15 }",
        "",
    );
    let inv = linux_inventory();
    assert_eq!(one(&s, &facts(&inv)).status, Status::Pass);
    let mut f = facts(&inv);
    f.hostname = "PC-RAUM-101";
    assert_fail(
        &one(&s, &f),
        "host name matching ^(don|kus|kl)[0-9]{3}-(sp|ll|vw)[0-9]{4}$, at most 15 characters",
        "PC-RAUM-101",
        "host name \"PC-RAUM-101\" does not match ^(don|kus|kl)[0-9]{3}-(sp|ll|vw)[0-9]{4}$",
    );
    f.hostname = "kus012-sp0101-extra";
    assert_eq!(
        one(&s, &f).reason,
        "host name \"kus012-sp0101-extra\" has 19 characters > 15"
    );
    // The registered name is empty: the inventory's is used.
    f.hostname = "";
    assert_eq!(one(&s, &f).status, Status::Pass);
}

// ---- scope, modes, waivers ---------------------------------------------------

#[test]
fn scope_gives_not_applicable() {
    let s = standard(
        "{ type = \"hardware_min\", ram_gib = 64 }",
        "applies_to = { device_classes = [\"lehrer-laptop\"], counties = [\"kus\", \"kl\"] }",
    );
    let inv = linux_inventory();
    let r = one(&s, &facts(&inv));
    assert_eq!(r.status, Status::NotApplicable);
    assert_eq!(r.reason, "device class schueler-pc not in scope");
    let mut f = facts(&inv);
    f.device_class = "lehrer-laptop";
    assert_eq!(one(&s, &f).status, Status::Fail);
    f.county_id = "don";
    assert_eq!(one(&s, &f).reason, "county don not in scope");
    // Out of scope even without inventory: scope needs no data.
    f.inventory = None;
    assert_eq!(one(&s, &f).status, Status::NotApplicable);
}

#[test]
fn os_family_scope() {
    let s = standard(
        "{ type = \"antivirus\" }",
        "applies_to = { os_families = [\"windows\"] }",
    );
    let linux = linux_inventory();
    let r = one(&s, &facts(&linux));
    assert_eq!(
        (r.status, &*r.reason),
        (Status::NotApplicable, "OS family linux not in scope")
    );
    let win = windows_inventory();
    assert_eq!(one(&s, &facts(&win)).status, Status::Fail);
}

#[test]
fn defaults_scope_merges_key_by_key() {
    let s = standard(
        "{ type = \"hardware_min\", ram_gib = 64 }",
        "applies_to = { device_classes = [\"schueler-pc\"] }\n[defaults]\napplies_to = { counties = [\"don\"] }\n",
    );
    let inv = linux_inventory();
    // The rule's classes match, but the default county scope still applies.
    assert_eq!(one(&s, &facts(&inv)).reason, "county kus not in scope");
}

#[test]
fn beobachten_is_reported_but_not_counted() {
    let s = standard(
        "{ type = \"hardware_min\", ram_gib = 64 }",
        "mode = \"beobachten\"",
    );
    let inv = linux_inventory();
    let r = one(&s, &facts(&inv));
    assert_eq!(
        (r.status, r.mode, r.counted),
        (Status::Fail, Mode::Beobachten, false)
    );
    let s = standard("{ type = \"hardware_min\", ram_gib = 64 }", "");
    assert!(one(&s, &facts(&inv)).counted);
}

const WAIVER: &str = "\
[[waiver]]\nid = \"W1\"\nrule = \"R\"\nscope = { schools = [\"kus012\"] }\ndevices = [\"kus012-sp0101\"]\n\
reason = \"Altgerät\"\napproved_by = \"Koordination\"\nticket = \"SUP-1\"\ngranted = 2026-01-01\nexpires = 2026-04-01\n";

#[test]
fn waiver_turns_fail_into_waived_until_expiry() {
    let s = standard("{ type = \"hardware_min\", ram_gib = 64 }", WAIVER);
    let inv = linux_inventory();
    let mut f = facts(&inv);
    let r = one(&s, &f);
    assert_eq!((r.status, r.waiver_id), (Status::Waived, Some("W1")));
    assert_eq!(r.reason, "RAM 16.0 GiB < 64 GiB");

    // The last moment before the expiry date still counts as waived.
    f.now = Utc.with_ymd_and_hms(2026, 3, 31, 23, 59, 59).unwrap();
    f.inventory_at = Some(f.now);
    assert_eq!(one(&s, &f).status, Status::Waived);
    // From the expiry date on, the failure is back, with nobody editing.
    f.now = Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap();
    f.inventory_at = Some(f.now);
    let r = one(&s, &f);
    assert_eq!((r.status, r.waiver_id), (Status::Fail, None));
    // Before it was granted it does not apply either.
    f.now = Utc.with_ymd_and_hms(2025, 12, 31, 0, 0, 0).unwrap();
    f.inventory_at = Some(f.now);
    assert_eq!(one(&s, &f).status, Status::Fail);
}

#[test]
fn waiver_needs_listed_device_in_scope() {
    let s = standard("{ type = \"hardware_min\", ram_gib = 64 }", WAIVER);
    let inv = linux_inventory();
    let mut f = facts(&inv);
    f.hostname = "kus012-sp0199";
    assert_eq!(one(&s, &f).status, Status::Fail);
    f.hostname = "kus012-sp0101";
    f.school_id = "kus013";
    assert_eq!(one(&s, &f).status, Status::Fail);
}

#[test]
fn waiver_leaves_pass_and_unknown_alone() {
    let s = standard("{ type = \"hardware_min\", ram_gib = 8 }", WAIVER);
    let mut inv = linux_inventory();
    let r = one(&s, &facts(&inv));
    assert_eq!((r.status, r.waiver_id), (Status::Pass, None));
    inv.hardware = None;
    assert_eq!(one(&s, &facts(&inv)).status, Status::Unknown);
}

#[test]
fn example_files_evaluate_a_real_linux_inventory() {
    let s = crate::Standard::compile(include_str!("../examples/linux-clients.toml")).unwrap();
    let mut inv = linux_inventory();
    inv.system.as_mut().unwrap().last_update_time = Some(ts(now() - Duration::days(2)));
    let results = s.evaluate(&facts(&inv));
    let status: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r.rule_id, r.status.as_str()))
        .collect();
    assert_eq!(
        status,
        vec![
            ("LX-OS-01", "pass"),
            ("LX-OS-02", "pass"),
            ("LX-HW-01", "pass"),
            ("LX-FW-01", "pass"),
            ("LX-UPD-01", "pass"),
            ("LX-ENC-01", "not_applicable"),
            ("LX-SW-01", "pass"),
            ("LX-SW-02", "pass"),
            ("LX-AV-01", "unknown"),
            ("LX-INV-01", "pass"),
        ]
    );
    // The Windows standard does not apply to this Linux PC at all.
    let w = crate::Standard::compile(include_str!("../examples/schul-it-client.toml")).unwrap();
    assert!(
        w.evaluate(&facts(&inv))
            .iter()
            .all(|r| r.status == Status::NotApplicable)
    );
}
