//! What changed between two inventories of one device.
//!
//! The result feeds the device's change history ("firefox-esr updated from
//! 115.1 to 115.2", "disk sdb removed"). Volatile values (uptime, boot time,
//! free memory, free disk space) are never compared, and a list whose
//! collector failed on either side is not compared either: a failed dpkg
//! read must not show up as every package removed and then reinstalled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use schoolfleet_proto::v1::{Disk, DiskMedia, Inventory, NetworkInterface, Tristate};

use super::programs::{ProgramKey, Programs};

/// The kinds of change, stored and shown as snake_case strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    SoftwareInstalled,
    SoftwareRemoved,
    SoftwareUpdated,
    HardwareChanged,
    OsChanged,
    FirmwareChanged,
    DiskAdded,
    DiskRemoved,
    DiskChanged,
    MemoryChanged,
    NetworkChanged,
    HostnameChanged,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 12] = [
        Self::SoftwareInstalled,
        Self::SoftwareRemoved,
        Self::SoftwareUpdated,
        Self::HardwareChanged,
        Self::OsChanged,
        Self::FirmwareChanged,
        Self::DiskAdded,
        Self::DiskRemoved,
        Self::DiskChanged,
        Self::MemoryChanged,
        Self::NetworkChanged,
        Self::HostnameChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SoftwareInstalled => "software_installed",
            Self::SoftwareRemoved => "software_removed",
            Self::SoftwareUpdated => "software_updated",
            Self::HardwareChanged => "hardware_changed",
            Self::OsChanged => "os_changed",
            Self::FirmwareChanged => "firmware_changed",
            Self::DiskAdded => "disk_added",
            Self::DiskRemoved => "disk_removed",
            Self::DiskChanged => "disk_changed",
            Self::MemoryChanged => "memory_changed",
            Self::NetworkChanged => "network_changed",
            Self::HostnameChanged => "hostname_changed",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change. `old_value` is empty for additions, `new_value` for removals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// What changed: "hostname", "os.version", a disk or interface name, a
    /// package as "name:architecture".
    pub subject: String,
    pub old_value: String,
    pub new_value: String,
}

impl Change {
    fn new(
        kind: ChangeKind,
        subject: impl Into<String>,
        old: impl Into<String>,
        new: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            subject: subject.into(),
            old_value: old.into(),
            new_value: new.into(),
        }
    }
}

/// Kernels shift MemTotal by a few MiB between versions (reserved memory);
/// a real change of RAM is far more than this share of it.
const MEMORY_TOLERANCE_DIVISOR: u64 = 100;

/// A list is only compared when its collector succeeded both times.
fn comparable(old: &Inventory, new: &Inventory, collector: &str) -> bool {
    let failed = |inv: &Inventory| {
        inv.collector_errors
            .iter()
            .any(|e| e.collector == collector)
    };
    !failed(old) && !failed(new)
}

fn field(out: &mut Vec<Change>, kind: ChangeKind, subject: &str, old: &str, new: &str) {
    if old != new {
        out.push(Change::new(kind, subject, old, new));
    }
}

fn hostname(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    let get = |inv: &Inventory| {
        inv.system
            .as_ref()
            .map(|s| s.hostname.clone())
            .unwrap_or_default()
    };
    field(
        out,
        ChangeKind::HostnameChanged,
        "hostname",
        &get(old),
        &get(new),
    );
}

fn os(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    let (o, n) = (
        old.os.clone().unwrap_or_default(),
        new.os.clone().unwrap_or_default(),
    );
    let kind = ChangeKind::OsChanged;
    field(out, kind, "os.family", &o.family, &n.family);
    field(out, kind, "os.name", &o.name, &n.name);
    field(out, kind, "os.version", &o.version, &n.version);
    field(out, kind, "os.edition", &o.edition, &n.edition);
    field(
        out,
        kind,
        "os.kernel_version",
        &o.kernel_version,
        &n.kernel_version,
    );
    // A Windows feature update (23H2 → 24H2) keeps the build prefix of
    // the version but is what people plan by.
    field(
        out,
        kind,
        "os.display_version",
        &o.display_version,
        &n.display_version,
    );
}

/// Hardware identity and CPU; BIOS fields count as firmware (a BIOS update
/// is a firmware change), total memory has its own kind.
fn hardware(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    let (o, n) = (
        old.hardware.clone().unwrap_or_default(),
        new.hardware.clone().unwrap_or_default(),
    );
    let kind = ChangeKind::HardwareChanged;
    field(out, kind, "hardware.vendor", &o.vendor, &n.vendor);
    field(out, kind, "hardware.model", &o.model, &n.model);
    field(
        out,
        kind,
        "hardware.serial_number",
        &o.serial_number,
        &n.serial_number,
    );
    field(
        out,
        kind,
        "hardware.system_uuid",
        &o.system_uuid,
        &n.system_uuid,
    );
    field(out, kind, "hardware.cpu_model", &o.cpu_model, &n.cpu_model);
    let cores = |h: &schoolfleet_proto::v1::Hardware| {
        format!(
            "{} physical, {} logical",
            h.cpu_physical_cores, h.cpu_logical_cores
        )
    };
    field(out, kind, "hardware.cpu_cores", &cores(&o), &cores(&n));

    let fw = ChangeKind::FirmwareChanged;
    field(
        out,
        fw,
        "hardware.bios_vendor",
        &o.bios_vendor,
        &n.bios_vendor,
    );
    field(
        out,
        fw,
        "hardware.bios_version",
        &o.bios_version,
        &n.bios_version,
    );
    field(out, fw, "hardware.bios_date", &o.bios_date, &n.bios_date);

    let (a, b) = (o.memory_total_bytes, n.memory_total_bytes);
    if a.abs_diff(b) > a.max(b) / MEMORY_TOLERANCE_DIVISOR {
        out.push(Change::new(
            ChangeKind::MemoryChanged,
            "memory_total_bytes",
            a.to_string(),
            b.to_string(),
        ));
    }
}

fn firmware(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    let (o, n) = (
        old.firmware.clone().unwrap_or_default(),
        new.firmware.clone().unwrap_or_default(),
    );
    let kind = ChangeKind::FirmwareChanged;
    field(out, kind, "firmware.boot_mode", &o.boot_mode, &n.boot_mode);
    field(
        out,
        kind,
        "firmware.secure_boot",
        tristate(o.secure_boot()),
        tristate(n.secure_boot()),
    );
    field(
        out,
        kind,
        "firmware.tpm_present",
        &o.tpm_present.to_string(),
        &n.tpm_present.to_string(),
    );
    field(
        out,
        kind,
        "firmware.tpm_version",
        &o.tpm_version,
        &n.tpm_version,
    );
}

fn tristate(t: Tristate) -> &'static str {
    match t {
        Tristate::Unknown => "unknown",
        Tristate::Yes => "yes",
        Tristate::No => "no",
    }
}

/// Disks are matched by serial number where they have a unique one: kernel
/// names (sda, sdb) swap with the order in which disks are detected at boot.
/// Cheap USB sticks may share a serial; those fall back to their name.
fn disks(old: &[Disk], new: &[Disk], out: &mut Vec<Change>) {
    fn index(disks: &[Disk]) -> BTreeMap<String, &Disk> {
        let mut serials: HashMap<&str, usize> = HashMap::new();
        for d in disks {
            *serials.entry(d.serial_number.as_str()).or_default() += 1;
        }
        disks
            .iter()
            .map(|d| {
                let key = if !d.serial_number.is_empty()
                    && serials.get(d.serial_number.as_str()) == Some(&1)
                {
                    format!("serial:{}", d.serial_number)
                } else {
                    format!("name:{}", d.name)
                };
                (key, d)
            })
            .collect()
    }
    let (old, new) = (index(old), index(new));
    let mut changes = Vec::new();
    for (k, n) in &new {
        match old.get(k) {
            None => changes.push(Change::new(
                ChangeKind::DiskAdded,
                &n.name,
                "",
                describe_disk(n),
            )),
            Some(o) => {
                let (a, b) = (describe_disk(o), describe_disk(n));
                if a != b {
                    changes.push(Change::new(ChangeKind::DiskChanged, &n.name, a, b));
                }
            }
        }
    }
    for (k, o) in &old {
        if !new.contains_key(k) {
            changes.push(Change::new(
                ChangeKind::DiskRemoved,
                &o.name,
                describe_disk(o),
                "",
            ));
        }
    }
    changes.sort_by(|a, b| (&a.subject, a.kind).cmp(&(&b.subject, b.kind)));
    out.extend(changes);
}

/// Everything compared about a disk, in one readable line, e.g.
/// "sda: Samsung SSD 860, serial S3Z1, 500107862016 bytes, ssd, system".
fn describe_disk(d: &Disk) -> String {
    let media = match d.media() {
        DiskMedia::Unknown => "unknown media",
        DiskMedia::Hdd => "hdd",
        DiskMedia::Ssd => "ssd",
        DiskMedia::Nvme => "nvme",
    };
    let mut s = format!(
        "{}: {}",
        d.name,
        if d.model.is_empty() {
            "unknown model"
        } else {
            &d.model
        }
    );
    if !d.serial_number.is_empty() {
        s.push_str(&format!(", serial {}", d.serial_number));
    }
    s.push_str(&format!(", {} bytes, {media}", d.size_bytes));
    if d.removable {
        s.push_str(", removable");
    }
    if d.system {
        s.push_str(", system");
    }
    s
}

fn network(old: &[NetworkInterface], new: &[NetworkInterface], out: &mut Vec<Change>) {
    let old: BTreeMap<&str, String> = old
        .iter()
        .map(|i| (i.name.as_str(), describe_interface(i)))
        .collect();
    let new: BTreeMap<&str, String> = new
        .iter()
        .map(|i| (i.name.as_str(), describe_interface(i)))
        .collect();
    let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for name in names {
        let (a, b) = (old.get(name), new.get(name));
        if a != b {
            let empty = String::new();
            out.push(Change::new(
                ChangeKind::NetworkChanged,
                name,
                a.unwrap_or(&empty).as_str(),
                b.unwrap_or(&empty).as_str(),
            ));
        }
    }
}

/// "mac 52:54:00:12:34:56, 10.0.0.7/24, fe80::1/64", addresses sorted so that
/// order does not count as a change.
fn describe_interface(i: &NetworkInterface) -> String {
    let mut ips: Vec<&str> = i.ip_addresses.iter().map(String::as_str).collect();
    ips.sort_unstable();
    ips.dedup();
    let mac = if i.mac_address.is_empty() {
        "none"
    } else {
        &i.mac_address
    };
    let mut s = format!("mac {mac}");
    for ip in ips {
        s.push_str(", ");
        s.push_str(ip);
    }
    s
}

/// One side of a comparison: the inventory, and its programs apart, so
/// that a stored inventory can be compared without copying its programs
/// (its `software` list is then not read).
#[derive(Debug, Clone, Copy)]
pub struct Side<'s, 'a> {
    pub inventory: &'s Inventory,
    pub programs: &'s Programs<'a>,
}

/// The changes from `old` to `new`. The first inventory of a device
/// (`old` = None) has no changes: everything would be "installed".
pub fn diff_sides(old: Option<Side<'_, '_>>, new: Side<'_, '_>) -> Vec<Change> {
    let Some(old) = old else { return Vec::new() };
    let (o, n) = (old.inventory, new.inventory);
    let mut out = Vec::new();
    hostname(o, n, &mut out);
    os(o, n, &mut out);
    hardware(o, n, &mut out);
    firmware(o, n, &mut out);
    if comparable(o, n, "disks") {
        disks(&o.disks, &n.disks, &mut out);
    }
    if comparable(o, n, "network") {
        network(&o.network_interfaces, &n.network_interfaces, &mut out);
    }
    if comparable(o, n, "software") {
        software(old.programs.as_slice(), new.programs.as_slice(), &mut out);
    }
    out
}

/// Packages are keyed by (source, name, architecture). One key can carry
/// several versions at once (rpm installs kernels side by side), so each
/// key has a set of versions: one old and one new version is an update;
/// otherwise each version only on one side is an install or a removal.
fn software(old: &[ProgramKey<'_>], new: &[ProgramKey<'_>], out: &mut Vec<Change>) {
    fn same_key(a: &ProgramKey<'_>, b: &ProgramKey<'_>) -> bool {
        a[..3] == b[..3]
    }
    fn subject(key: &ProgramKey<'_>) -> String {
        let [_, name, arch, _] = *key;
        if arch.is_empty() {
            name.to_owned()
        } else {
            format!("{name}:{arch}")
        }
    }
    let installed =
        |p: &ProgramKey<'_>| Change::new(ChangeKind::SoftwareInstalled, subject(p), "", p[3]);
    let removed =
        |p: &ProgramKey<'_>| Change::new(ChangeKind::SoftwareRemoved, subject(p), p[3], "");
    let mut changes = Vec::new();
    // Both sides are sorted: walk their groups of one key in step.
    let (mut old, mut new) = (
        old.chunk_by(same_key).peekable(),
        new.chunk_by(same_key).peekable(),
    );
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(o), Some(n)) => o[0][..3].cmp(&n[0][..3]),
        };
        match order {
            std::cmp::Ordering::Less => {
                changes.extend(old.next().into_iter().flatten().map(removed))
            }
            std::cmp::Ordering::Greater => {
                changes.extend(new.next().into_iter().flatten().map(installed))
            }
            std::cmp::Ordering::Equal => {
                let (Some(o), Some(n)) = (old.next(), new.next()) else {
                    break;
                };
                if o.iter().map(|p| p[3]).eq(n.iter().map(|p| p[3])) {
                    continue;
                }
                if let ([o], [n]) = (o, n) {
                    changes.push(Change::new(
                        ChangeKind::SoftwareUpdated,
                        subject(n),
                        o[3],
                        n[3],
                    ));
                    continue;
                }
                // Versions are sorted within a key too.
                let has = |group: &[ProgramKey<'_>], v: &str| {
                    group.binary_search_by(|p| p[3].cmp(v)).is_ok()
                };
                changes.extend(n.iter().filter(|p| !has(o, p[3])).map(installed));
                changes.extend(o.iter().filter(|p| !has(n, p[3])).map(removed));
            }
        }
    }
    // The history should read the same every time: by subject, then kind.
    changes.sort_by(|a, b| {
        (&a.subject, a.kind, &a.old_value, &a.new_value).cmp(&(
            &b.subject,
            b.kind,
            &b.old_value,
            &b.new_value,
        ))
    });
    out.extend(changes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::{
        CollectorError, Filesystem, Firmware, Hardware, OperatingSystem, SoftwarePackage,
        SystemInfo,
    };

    /// [`diff_sides`] on two whole inventories.
    fn diff(old: Option<&Inventory>, new: &Inventory) -> Vec<Change> {
        let old_programs = old.map(|o| Programs::of(&o.software));
        let new_programs = Programs::of(&new.software);
        let old = old
            .zip(old_programs.as_ref())
            .map(|(inventory, programs)| Side {
                inventory,
                programs,
            });
        let new = Side {
            inventory: new,
            programs: &new_programs,
        };
        diff_sides(old, new)
    }

    fn pkg(name: &str, version: &str) -> SoftwarePackage {
        SoftwarePackage {
            name: name.into(),
            version: version.into(),
            source: "dpkg".into(),
            architecture: "amd64".into(),
            publisher: String::new(),
            ..Default::default()
        }
    }

    fn base() -> Inventory {
        Inventory {
            system: Some(SystemInfo {
                hostname: "pc-r101-07".into(),
                uptime_seconds: 100,
                ..Default::default()
            }),
            os: Some(OperatingSystem {
                family: "linux".into(),
                name: "Debian GNU/Linux".into(),
                version: "12".into(),
                edition: String::new(),
                kernel_version: "6.1.0-28-amd64".into(),
                ..Default::default()
            }),
            hardware: Some(Hardware {
                vendor: "LENOVO".into(),
                model: "20L7S0JQ00".into(),
                bios_version: "N22ET80W".into(),
                cpu_model: "Intel(R) Core(TM) i5-8250U".into(),
                cpu_physical_cores: 4,
                cpu_logical_cores: 8,
                memory_total_bytes: 8_000_000_000,
                memory_available_bytes: 4_000_000_000,
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
                model: "Samsung SSD 980".into(),
                serial_number: "S64D".into(),
                size_bytes: 500_107_862_016,
                media: DiskMedia::Nvme.into(),
                removable: false,
                system: true,
            }],
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                total_bytes: 100,
                available_bytes: 50,
                ..Default::default()
            }],
            network_interfaces: vec![NetworkInterface {
                name: "eth0".into(),
                mac_address: "52:54:00:12:34:56".into(),
                ip_addresses: vec!["10.0.0.7/24".into(), "fe80::1/64".into()],
            }],
            software: vec![
                pkg("bash", "5.2.15-2+b7"),
                pkg("firefox-esr", "115.1.0esr-1"),
            ],
            ..Default::default()
        }
    }

    fn kinds(changes: &[Change]) -> Vec<&'static str> {
        changes.iter().map(|c| c.kind.as_str()).collect()
    }

    #[test]
    fn first_inventory_has_no_changes() {
        assert!(diff(None, &base()).is_empty());
    }

    #[test]
    fn identical_and_volatile_only_changes_are_nothing() {
        let old = base();
        let mut new = base();
        new.system.as_mut().unwrap().uptime_seconds = 99_999;
        new.system.as_mut().unwrap().boot_time = Some(prost_types::Timestamp {
            seconds: 5,
            nanos: 0,
        });
        new.hardware.as_mut().unwrap().memory_available_bytes = 1;
        new.filesystems[0].available_bytes = 1;
        new.software.reverse();
        new.network_interfaces[0].ip_addresses.reverse();
        assert_eq!(diff(Some(&old), &new), []);
    }

    #[test]
    fn software_installed_removed_updated() {
        let old = base();
        let mut new = base();
        new.software = vec![pkg("bash", "5.2.15-2+b8"), pkg("vlc", "3.0.21-0+deb12u1")];
        let changes = diff(Some(&old), &new);
        assert_eq!(
            changes,
            [
                Change::new(
                    ChangeKind::SoftwareUpdated,
                    "bash:amd64",
                    "5.2.15-2+b7",
                    "5.2.15-2+b8"
                ),
                Change::new(
                    ChangeKind::SoftwareRemoved,
                    "firefox-esr:amd64",
                    "115.1.0esr-1",
                    ""
                ),
                Change::new(
                    ChangeKind::SoftwareInstalled,
                    "vlc:amd64",
                    "",
                    "3.0.21-0+deb12u1"
                ),
            ]
        );
    }

    #[test]
    fn software_key_includes_architecture_and_source() {
        let old = base();
        let mut new = base();
        new.software.push(SoftwarePackage {
            architecture: "i386".into(),
            ..pkg("bash", "5.2.15-2+b7")
        });
        new.software.push(SoftwarePackage {
            source: "flatpak".into(),
            ..pkg("firefox-esr", "128.0")
        });
        assert_eq!(
            kinds(&diff(Some(&old), &new)),
            ["software_installed", "software_installed"]
        );
    }

    #[test]
    fn side_by_side_versions_are_installs_and_removals() {
        let mut old = base();
        old.software = vec![pkg("kernel-core", "6.8.5"), pkg("kernel-core", "6.8.7")];
        let mut new = base();
        new.software = vec![pkg("kernel-core", "6.8.7"), pkg("kernel-core", "6.9.1")];
        let changes = diff(Some(&old), &new);
        assert_eq!(
            changes,
            [
                Change::new(
                    ChangeKind::SoftwareInstalled,
                    "kernel-core:amd64",
                    "",
                    "6.9.1"
                ),
                Change::new(
                    ChangeKind::SoftwareRemoved,
                    "kernel-core:amd64",
                    "6.8.5",
                    ""
                ),
            ]
        );
    }

    #[test]
    fn failed_software_collector_is_not_a_mass_removal() {
        let old = base();
        let mut new = base();
        new.software.clear();
        new.collector_errors.push(CollectorError {
            collector: "software".into(),
            message: "cannot read /var/lib/dpkg/status".into(),
        });
        assert_eq!(diff(Some(&old), &new), []);
        // And recovery is not a mass installation.
        assert_eq!(diff(Some(&new), &old), []);
    }

    #[test]
    fn hostname_changed() {
        let old = base();
        let mut new = base();
        new.system.as_mut().unwrap().hostname = "pc-r102-01".into();
        assert_eq!(
            diff(Some(&old), &new),
            [Change::new(
                ChangeKind::HostnameChanged,
                "hostname",
                "pc-r101-07",
                "pc-r102-01"
            )]
        );
    }

    #[test]
    fn os_changed_per_field() {
        let old = base();
        let mut new = base();
        let os = new.os.as_mut().unwrap();
        os.version = "13".into();
        os.kernel_version = "6.12.0-1-amd64".into();
        assert_eq!(
            diff(Some(&old), &new),
            [
                Change::new(ChangeKind::OsChanged, "os.version", "12", "13"),
                Change::new(
                    ChangeKind::OsChanged,
                    "os.kernel_version",
                    "6.1.0-28-amd64",
                    "6.12.0-1-amd64"
                ),
            ]
        );
    }

    #[test]
    fn windows_feature_update_is_an_os_change() {
        let mut old = base();
        old.os.as_mut().unwrap().display_version = "23H2".into();
        let mut new = old.clone();
        new.os.as_mut().unwrap().display_version = "24H2".into();
        assert_eq!(
            diff(Some(&old), &new),
            [Change::new(
                ChangeKind::OsChanged,
                "os.display_version",
                "23H2",
                "24H2"
            )]
        );
    }

    #[test]
    fn hardware_and_bios_changes() {
        let old = base();
        let mut new = base();
        let hw = new.hardware.as_mut().unwrap();
        hw.cpu_model = "Intel(R) Core(TM) i7-8650U".into();
        hw.bios_version = "N22ET82W".into();
        let changes = diff(Some(&old), &new);
        assert_eq!(kinds(&changes), ["hardware_changed", "firmware_changed"]);
        assert_eq!(changes[1].subject, "hardware.bios_version");
    }

    #[test]
    fn firmware_changed() {
        let old = base();
        let mut new = base();
        new.firmware.as_mut().unwrap().secure_boot = Tristate::No.into();
        assert_eq!(
            diff(Some(&old), &new),
            [Change::new(
                ChangeKind::FirmwareChanged,
                "firmware.secure_boot",
                "yes",
                "no"
            )]
        );
    }

    #[test]
    fn memory_changed_beyond_kernel_noise() {
        let old = base();
        let mut new = base();
        new.hardware.as_mut().unwrap().memory_total_bytes = 8_000_000_000 - 4_000_000;
        assert_eq!(diff(Some(&old), &new), [], "a few MB are kernel noise");
        new.hardware.as_mut().unwrap().memory_total_bytes = 16_000_000_000;
        assert_eq!(
            diff(Some(&old), &new),
            [Change::new(
                ChangeKind::MemoryChanged,
                "memory_total_bytes",
                "8000000000",
                "16000000000"
            )]
        );
    }

    #[test]
    fn disk_added_removed_changed() {
        let old = base();
        let mut new = base();
        new.disks[0].size_bytes = 1_000_204_886_016;
        new.disks.push(Disk {
            name: "sda".into(),
            model: "Cruzer Blade".into(),
            serial_number: "4C53".into(),
            size_bytes: 30_752_636_928,
            media: DiskMedia::Hdd.into(),
            removable: true,
            system: false,
        });
        let changes = diff(Some(&old), &new);
        assert_eq!(kinds(&changes), ["disk_changed", "disk_added"]);
        assert_eq!(changes[0].subject, "nvme0n1");
        assert!(
            changes[0].new_value.contains("1000204886016 bytes"),
            "{}",
            changes[0].new_value
        );
        assert_eq!(
            changes[1].new_value,
            "sda: Cruzer Blade, serial 4C53, 30752636928 bytes, hdd, removable"
        );
        let back = diff(Some(&new), &old);
        assert_eq!(kinds(&back), ["disk_changed", "disk_removed"]);
        assert_eq!(back[1].new_value, "");
    }

    #[test]
    fn disks_sharing_a_serial_are_matched_by_name() {
        let mut old = base();
        let stick = |name: &str| Disk {
            name: name.into(),
            serial_number: "0000001".into(),
            ..Default::default()
        };
        old.disks = vec![stick("sda"), stick("sdb")];
        let mut new = old.clone();
        new.disks[1].size_bytes = 1;
        let changes = diff(Some(&old), &new);
        assert_eq!(kinds(&changes), ["disk_changed"]);
        assert_eq!(changes[0].subject, "sdb");
    }

    #[test]
    fn renamed_disk_with_same_serial_is_a_change_not_a_swap() {
        let old = base();
        let mut new = base();
        new.disks[0].name = "nvme1n1".into();
        let changes = diff(Some(&old), &new);
        assert_eq!(kinds(&changes), ["disk_changed"]);
    }

    #[test]
    fn network_changed() {
        let old = base();
        let mut new = base();
        new.network_interfaces[0].ip_addresses[0] = "10.0.0.8/24".into();
        new.network_interfaces.push(NetworkInterface {
            name: "wlan0".into(),
            mac_address: "a4:5e:60:00:00:01".into(),
            ip_addresses: vec![],
        });
        assert_eq!(
            diff(Some(&old), &new),
            [
                Change::new(
                    ChangeKind::NetworkChanged,
                    "eth0",
                    "mac 52:54:00:12:34:56, 10.0.0.7/24, fe80::1/64",
                    "mac 52:54:00:12:34:56, 10.0.0.8/24, fe80::1/64"
                ),
                Change::new(
                    ChangeKind::NetworkChanged,
                    "wlan0",
                    "",
                    "mac a4:5e:60:00:00:01"
                ),
            ]
        );
    }

    #[test]
    fn kinds_render_as_snake_case() {
        let names: BTreeSet<&str> = ChangeKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ChangeKind::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        assert_eq!(ChangeKind::DiskAdded.to_string(), "disk_added");
    }

    /// The one-pass walk over sorted lists finds what an index of each
    /// side finds (how it was done before), on random lists with shared
    /// names, side-by-side versions and duplicates.
    #[test]
    fn sorted_walk_agrees_with_an_index_of_each_side() {
        type Index<'a> = BTreeMap<(&'a str, &'a str, &'a str), BTreeSet<&'a str>>;
        fn index(list: &[SoftwarePackage]) -> Index<'_> {
            let mut map = Index::new();
            for p in list {
                map.entry((&*p.source, &*p.name, &*p.architecture))
                    .or_default()
                    .insert(&*p.version);
            }
            map
        }
        fn by_index(old: &[SoftwarePackage], new: &[SoftwarePackage]) -> Vec<Change> {
            let (old, new) = (index(old), index(new));
            let subject = |(_, name, arch): (&str, &str, &str)| {
                if arch.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name}:{arch}")
                }
            };
            let none = BTreeSet::new();
            let mut out = Vec::new();
            for key in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
                let (o, n) = (old.get(key).unwrap_or(&none), new.get(key).unwrap_or(&none));
                if o == n {
                    continue;
                }
                if o.len() == 1 && n.len() == 1 {
                    let (a, b) = (o.first().unwrap(), n.first().unwrap());
                    out.push(Change::new(
                        ChangeKind::SoftwareUpdated,
                        subject(*key),
                        *a,
                        *b,
                    ));
                    continue;
                }
                for v in n.difference(o) {
                    out.push(Change::new(
                        ChangeKind::SoftwareInstalled,
                        subject(*key),
                        "",
                        *v,
                    ));
                }
                for v in o.difference(n) {
                    out.push(Change::new(
                        ChangeKind::SoftwareRemoved,
                        subject(*key),
                        *v,
                        "",
                    ));
                }
            }
            out.sort_by(|a, b| {
                (&a.subject, a.kind, &a.old_value, &a.new_value).cmp(&(
                    &b.subject,
                    b.kind,
                    &b.old_value,
                    &b.new_value,
                ))
            });
            out
        }
        // A fixed linear congruential sequence: the same lists every run.
        let mut seed = 0x5eed_u64;
        let mut pick = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize % n
        };
        let list = |pick: &mut dyn FnMut(usize) -> usize| -> Vec<SoftwarePackage> {
            (0..pick(10))
                .map(|_| SoftwarePackage {
                    source: ["dpkg", "msi"][pick(2)].into(),
                    name: ["bash", "vlc", "kernel", "7-Zip"][pick(4)].into(),
                    architecture: ["amd64", ""][pick(2)].into(),
                    version: ["1.0", "1.1", "2.0"][pick(3)].into(),
                    ..Default::default()
                })
                .collect()
        };
        for _ in 0..2_000 {
            let (mut old, mut new) = (base(), base());
            old.software = list(&mut pick);
            new.software = list(&mut pick);
            assert_eq!(
                diff(Some(&old), &new),
                by_index(&old.software, &new.software),
                "{:?} -> {:?}",
                old.software,
                new.software
            );
        }
    }

    #[test]
    fn five_thousand_packages_are_fast() {
        let mut old = base();
        old.software = (0..5_000)
            .map(|i| pkg(&format!("package-{i}"), "1.0-1"))
            .collect();
        let mut new = old.clone();
        new.software.reverse();
        for p in new.software.iter_mut().step_by(50) {
            p.version = "1.0-2".into();
        }
        new.software.truncate(4_990);
        let started = std::time::Instant::now();
        let changes = diff(Some(&old), &new);
        // Generous: debug build on a busy machine; the real cost is a few ms.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let updated = changes
            .iter()
            .filter(|c| c.kind == ChangeKind::SoftwareUpdated)
            .count();
        let removed = changes
            .iter()
            .filter(|c| c.kind == ChangeKind::SoftwareRemoved)
            .count();
        assert_eq!((updated, removed), (100, 10));
    }
}
