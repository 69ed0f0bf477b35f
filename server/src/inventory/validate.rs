//! Checks an inventory from an agent before anything of it is stored.
//!
//! Agents are untrusted: a compromised or broken one may send huge lists,
//! terminal escape sequences, bidi overrides or invalid UTF-8. Counts over a
//! limit refuse the whole report (truncating would store a silently wrong
//! inventory); strings are neutralised and cut, with a warning per change.
//! HTML and SQL need nothing here: storage binds parameters and every output
//! format escapes for itself.

use prost::Message;
use prost_types::Timestamp;
use schoolfleet_proto::text::{clean, is_clean, is_dangerous_char};
use schoolfleet_proto::time::from_timestamp;
use schoolfleet_proto::v1::{DiskMedia, Inventory, Tristate};

/// Upper bounds for one inventory. The defaults are far above any real
/// school PC (a developer workstation has ~5,000 packages) and far below
/// what would hurt the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryLimits {
    pub max_software: usize,
    pub max_disks: usize,
    pub max_filesystems: usize,
    pub max_interfaces: usize,
    pub max_ips_per_interface: usize,
    pub max_collector_errors: usize,
    pub max_antivirus: usize,
    /// Any string field, in bytes.
    pub max_string_bytes: usize,
    /// The longest DNS name (RFC 1035).
    pub max_hostname_bytes: usize,
}

impl Default for InventoryLimits {
    fn default() -> Self {
        Self {
            max_software: 20_000,
            max_disks: 256,
            max_filesystems: 512,
            max_interfaces: 256,
            max_ips_per_interface: 64,
            max_collector_errors: 64,
            max_antivirus: 16,
            max_string_bytes: 1024,
            max_hostname_bytes: 253,
        }
    }
}

/// Windows 11 blockers: five parts, each named once; more is a broken or
/// hostile agent.
const MAX_READINESS_BLOCKERS: usize = 16;
/// "23H2", "1809": short by nature.
const MAX_DISPLAY_VERSION_BYTES: usize = 64;

/// Why a report was refused. The message goes back to the agent in its
/// ReportAck and into the server log, so it names the field and numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryRejected {
    #[error("inventory has {count} {what}; the limit is {limit}")]
    TooMany {
        field: &'static str,
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("network interface {interface:?} has {count} IP addresses; the limit is {limit}")]
    TooManyIps {
        interface: String,
        count: usize,
        limit: usize,
    },
    /// Not a valid encoding, e.g. a string field with invalid UTF-8. The
    /// cause is part of the message because it names the field.
    #[error("inventory cannot be decoded: {0}")]
    Decode(prost::DecodeError),
}

/// Decodes an inventory sent as bytes (see `InventoryReport.inventory`).
pub fn decode(bytes: &[u8]) -> Result<Inventory, InventoryRejected> {
    Inventory::decode(bytes).map_err(InventoryRejected::Decode)
}

/// More warnings than this are summarised in one line: a hostile agent
/// must not be able to flood the log through the warnings themselves.
const MAX_WARNINGS: usize = 100;

/// Checks counts against `limits`, then cleans every string in place.
/// Returns one warning per changed field (e.g. "system.hostname: control
/// characters replaced"), or the reason the report is refused.
pub fn sanitize(
    inv: &mut Inventory,
    limits: &InventoryLimits,
) -> Result<Vec<String>, InventoryRejected> {
    check_counts(inv, limits)?;
    // Agents are hostile: what must not be stored is dropped here again.
    schoolfleet_proto::minimise::strip_removable_media(inv);
    let mut c = Cleaner {
        warnings: Vec::new(),
        suppressed: 0,
        max: limits.max_string_bytes,
    };

    if let Some(s) = inv.system.as_mut() {
        c.text_max(&mut s.hostname, limits.max_hostname_bytes, || {
            "system.hostname".into()
        });
        c.text(&mut s.agent_version, || "system.agent_version".into());
        c.text(&mut s.architecture, || "system.architecture".into());
        c.time(&mut s.boot_time, || "system.boot_time".into());
        c.time(&mut s.last_update_time, || "system.last_update_time".into());
        c.text_max(&mut s.domain, limits.max_hostname_bytes, || {
            "system.domain".into()
        });
        c.text_max(&mut s.workgroup, limits.max_hostname_bytes, || {
            "system.workgroup".into()
        });
    }
    if let Some(os) = inv.os.as_mut() {
        c.text(&mut os.family, || "os.family".into());
        c.text(&mut os.name, || "os.name".into());
        c.text(&mut os.version, || "os.version".into());
        c.text(&mut os.edition, || "os.edition".into());
        c.text(&mut os.kernel_version, || "os.kernel_version".into());
        c.text_max(&mut os.display_version, MAX_DISPLAY_VERSION_BYTES, || {
            "os.display_version".into()
        });
    }
    if let Some(h) = inv.hardware.as_mut() {
        c.text(&mut h.vendor, || "hardware.vendor".into());
        c.text(&mut h.model, || "hardware.model".into());
        c.text(&mut h.serial_number, || "hardware.serial_number".into());
        c.text(&mut h.system_uuid, || "hardware.system_uuid".into());
        c.text(&mut h.bios_vendor, || "hardware.bios_vendor".into());
        c.text(&mut h.bios_version, || "hardware.bios_version".into());
        c.text(&mut h.bios_date, || "hardware.bios_date".into());
        c.text(&mut h.cpu_model, || "hardware.cpu_model".into());
    }
    if let Some(f) = inv.firmware.as_mut() {
        c.text(&mut f.boot_mode, || "firmware.boot_mode".into());
        c.text(&mut f.tpm_version, || "firmware.tpm_version".into());
        c.tristate(&mut f.secure_boot, || "firmware.secure_boot".into());
        c.tristate(&mut f.secure_boot_capable, || {
            "firmware.secure_boot_capable".into()
        });
    }
    for (i, d) in inv.disks.iter_mut().enumerate() {
        c.text(&mut d.name, || format!("disks[{i}].name"));
        c.text(&mut d.model, || format!("disks[{i}].model"));
        c.text(&mut d.serial_number, || format!("disks[{i}].serial_number"));
        if DiskMedia::try_from(d.media).is_err() {
            c.warn(|| format!("disks[{i}].media: unknown value {} reset", d.media));
            d.media = DiskMedia::Unknown.into();
        }
    }
    for (i, f) in inv.filesystems.iter_mut().enumerate() {
        c.text(&mut f.mount_point, || {
            format!("filesystems[{i}].mount_point")
        });
        c.text(&mut f.device, || format!("filesystems[{i}].device"));
        c.text(&mut f.fs_type, || format!("filesystems[{i}].fs_type"));
        c.text(&mut f.encryption, || format!("filesystems[{i}].encryption"));
    }
    for (i, n) in inv.network_interfaces.iter_mut().enumerate() {
        c.text(&mut n.name, || format!("network_interfaces[{i}].name"));
        c.text(&mut n.mac_address, || {
            format!("network_interfaces[{i}].mac_address")
        });
        for (j, ip) in n.ip_addresses.iter_mut().enumerate() {
            c.text(ip, || format!("network_interfaces[{i}].ip_addresses[{j}]"));
        }
    }
    for (i, p) in inv.software.iter_mut().enumerate() {
        c.text(&mut p.name, || format!("software[{i}].name"));
        c.text(&mut p.version, || format!("software[{i}].version"));
        c.text(&mut p.source, || format!("software[{i}].source"));
        c.text(&mut p.architecture, || {
            format!("software[{i}].architecture")
        });
        c.text(&mut p.publisher, || format!("software[{i}].publisher"));
        c.date(&mut p.install_date, || {
            format!("software[{i}].install_date")
        });
    }
    if let Some(s) = inv.security.as_mut() {
        c.tristate(&mut s.system_disk_encrypted, || {
            "security.system_disk_encrypted".into()
        });
        for (i, a) in s.antivirus.iter_mut().enumerate() {
            c.text(&mut a.product, || {
                format!("security.antivirus[{i}].product")
            });
            c.tristate(&mut a.realtime_protection, || {
                format!("security.antivirus[{i}].realtime_protection")
            });
            c.time(&mut a.signatures_updated, || {
                format!("security.antivirus[{i}].signatures_updated")
            });
        }
    }
    if let Some(w) = inv.windows11.as_mut() {
        c.tristate(&mut w.ready, || "windows11.ready".into());
        c.tristate(&mut w.tpm_2, || "windows11.tpm_2".into());
        c.tristate(&mut w.secure_boot_capable, || {
            "windows11.secure_boot_capable".into()
        });
        c.tristate(&mut w.cpu_supported, || "windows11.cpu_supported".into());
        c.tristate(&mut w.memory, || "windows11.memory".into());
        c.tristate(&mut w.storage, || "windows11.storage".into());
        for (i, b) in w.blockers.iter_mut().enumerate() {
            c.text(b, || format!("windows11.blockers[{i}]"));
        }
    }
    for (i, e) in inv.collector_errors.iter_mut().enumerate() {
        c.text(&mut e.collector, || {
            format!("collector_errors[{i}].collector")
        });
        c.text(&mut e.message, || format!("collector_errors[{i}].message"));
    }
    Ok(c.finish())
}

fn check_counts(inv: &Inventory, limits: &InventoryLimits) -> Result<(), InventoryRejected> {
    let antivirus = inv.security.as_ref().map_or(0, |s| s.antivirus.len());
    let blockers = inv.windows11.as_ref().map_or(0, |w| w.blockers.len());
    let counts = [
        (
            "software",
            "software packages",
            inv.software.len(),
            limits.max_software,
        ),
        ("disks", "disks", inv.disks.len(), limits.max_disks),
        (
            "filesystems",
            "filesystems",
            inv.filesystems.len(),
            limits.max_filesystems,
        ),
        (
            "network_interfaces",
            "network interfaces",
            inv.network_interfaces.len(),
            limits.max_interfaces,
        ),
        (
            "collector_errors",
            "collector errors",
            inv.collector_errors.len(),
            limits.max_collector_errors,
        ),
        (
            "security.antivirus",
            "antivirus products",
            antivirus,
            limits.max_antivirus,
        ),
        (
            "windows11.blockers",
            "Windows 11 blockers",
            blockers,
            MAX_READINESS_BLOCKERS,
        ),
    ];
    for (field, what, count, limit) in counts {
        if count > limit {
            return Err(InventoryRejected::TooMany {
                field,
                what,
                count,
                limit,
            });
        }
    }
    for iface in &inv.network_interfaces {
        if iface.ip_addresses.len() > limits.max_ips_per_interface {
            return Err(InventoryRejected::TooManyIps {
                // The name is untrusted and goes into logs.
                interface: clean(&iface.name, 64).value,
                count: iface.ip_addresses.len(),
                limit: limits.max_ips_per_interface,
            });
        }
    }
    Ok(())
}

struct Cleaner {
    warnings: Vec<String>,
    suppressed: usize,
    max: usize,
}

impl Cleaner {
    fn text(&mut self, value: &mut String, field: impl FnOnce() -> String) {
        self.text_max(value, self.max, field);
    }

    fn text_max(&mut self, value: &mut String, max: usize, field: impl FnOnce() -> String) {
        // Most values are clean: checked without building a copy (a report
        // carries thousands of strings).
        if is_clean(value, max) {
            return;
        }
        let cleaned = clean(value, max);
        let replaced = value.chars().any(is_dangerous_char);
        // Length after replacement; U+FFFD takes three bytes.
        let full: usize = value
            .chars()
            .map(|ch| {
                if is_dangerous_char(ch) {
                    3
                } else {
                    ch.len_utf8()
                }
            })
            .sum();
        let what = match (replaced, full > max) {
            (true, true) => format!("control characters replaced, cut to {max} bytes"),
            (true, false) => "control characters replaced".to_owned(),
            _ => format!("cut to {max} bytes"),
        };
        *value = cleaned.value;
        self.warn(|| format!("{}: {what}", field()));
    }

    /// Unknown enum values (from a newer or broken agent) become UNKNOWN.
    fn tristate(&mut self, value: &mut i32, field: impl FnOnce() -> String) {
        if Tristate::try_from(*value).is_err() {
            let old = *value;
            *value = Tristate::Unknown.into();
            self.warn(|| format!("{}: unknown value {old} reset", field()));
        }
    }

    /// Timestamps that do not denote a real time are dropped.
    fn time(&mut self, value: &mut Option<Timestamp>, field: impl FnOnce() -> String) {
        if value.as_ref().is_some_and(|t| from_timestamp(t).is_none()) {
            *value = None;
            self.warn(|| format!("{}: invalid timestamp dropped", field()));
        }
    }

    /// A calendar date as `YYYY-MM-DD`; anything else is dropped (it would
    /// sort and compare wrongly in reports).
    fn date(&mut self, value: &mut String, field: impl FnOnce() -> String) {
        if value.is_empty()
            || (value.len() == 10 && chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok())
        {
            return;
        }
        value.clear();
        self.warn(|| format!("{}: not a date (YYYY-MM-DD), dropped", field()));
    }

    fn warn(&mut self, message: impl FnOnce() -> String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message());
        } else {
            self.suppressed += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.suppressed > 0 {
            self.warnings
                .push(format!("{} more fields changed", self.suppressed));
        }
        self.warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::{
        Antivirus, CollectorError, Disk, Filesystem, Firmware, Hardware, NetworkInterface,
        OperatingSystem, Security, SoftwarePackage, SystemInfo, Windows11Readiness,
    };

    fn package(name: &str) -> SoftwarePackage {
        SoftwarePackage {
            name: name.into(),
            version: "1.0".into(),
            source: "dpkg".into(),
            architecture: "amd64".into(),
            publisher: String::new(),
            install_date: String::new(),
        }
    }

    fn inventory() -> Inventory {
        Inventory {
            system: Some(SystemInfo {
                hostname: "pc-r101-07".into(),
                agent_version: "0.1.0".into(),
                ..Default::default()
            }),
            os: Some(OperatingSystem {
                family: "linux".into(),
                name: "Debian GNU/Linux".into(),
                ..Default::default()
            }),
            software: vec![package("bash"), package("coreutils")],
            ..Default::default()
        }
    }

    #[test]
    fn terminal_escapes_in_hostname_are_neutralised() {
        let mut inv = inventory();
        inv.system.as_mut().unwrap().hostname = "pc\u{1b}]0;pwned\u{7}\u{1b}[2J".into();
        let before = inv.clone();
        let warnings = sanitize(&mut inv, &InventoryLimits::default()).unwrap();
        assert_eq!(warnings, ["system.hostname: control characters replaced"]);
        let hostname = &inv.system.as_ref().unwrap().hostname;
        assert!(!hostname.chars().any(is_dangerous_char));
        assert!(hostname.starts_with("pc\u{FFFD}]0;pwned"));
        // Everything else is kept as sent.
        assert_eq!(inv.os, before.os);
        assert_eq!(inv.software, before.software);
        assert_eq!(inv.system.as_ref().unwrap().agent_version, "0.1.0");
    }

    #[test]
    fn bidi_override_in_nested_field_is_named() {
        let mut inv = inventory();
        inv.software[1].name = "evil\u{202e}txt.exe".into();
        let warnings = sanitize(&mut inv, &InventoryLimits::default()).unwrap();
        assert_eq!(warnings, ["software[1].name: control characters replaced"]);
        assert_eq!(inv.software[1].name, "evil\u{FFFD}txt.exe");
    }

    #[test]
    fn long_strings_are_cut() {
        let mut inv = inventory();
        inv.system.as_mut().unwrap().hostname = "a".repeat(300);
        inv.os.as_mut().unwrap().name = "ü".repeat(600);
        let warnings = sanitize(&mut inv, &InventoryLimits::default()).unwrap();
        assert_eq!(
            warnings,
            [
                "system.hostname: cut to 253 bytes",
                "os.name: cut to 1024 bytes"
            ]
        );
        assert_eq!(inv.system.unwrap().hostname.len(), 253);
        assert_eq!(inv.os.unwrap().name.len(), 1024);
    }

    #[test]
    fn html_and_sql_are_stored_unchanged() {
        let mut inv = inventory();
        let html = "<script>alert('x')</script>";
        let sql = "x'); DROP TABLE devices; --";
        inv.hardware = Some(Hardware {
            model: html.into(),
            vendor: sql.into(),
            ..Default::default()
        });
        inv.software[0].publisher = format!("{html} & {sql}");
        let expected = inv.clone();
        let warnings = sanitize(&mut inv, &InventoryLimits::default()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(inv, expected);
    }

    #[test]
    fn oversized_software_list_is_refused() {
        let mut inv = inventory();
        inv.software = (0..50_001).map(|i| package(&format!("p{i}"))).collect();
        let err = sanitize(&mut inv, &InventoryLimits::default()).unwrap_err();
        assert_eq!(
            err,
            InventoryRejected::TooMany {
                field: "software",
                what: "software packages",
                count: 50_001,
                limit: 20_000
            }
        );
        assert_eq!(
            err.to_string(),
            "inventory has 50001 software packages; the limit is 20000"
        );
    }

    #[test]
    fn counts_at_the_limit_pass() {
        let limits = InventoryLimits {
            max_software: 2,
            ..Default::default()
        };
        assert!(sanitize(&mut inventory(), &limits).is_ok());
        let limits = InventoryLimits {
            max_software: 1,
            ..Default::default()
        };
        assert!(sanitize(&mut inventory(), &limits).is_err());
    }

    #[test]
    fn too_many_ips_names_the_interface_safely() {
        let mut inv = inventory();
        inv.network_interfaces = vec![NetworkInterface {
            name: "eth\u{1b}0".into(),
            mac_address: String::new(),
            ip_addresses: vec!["10.0.0.1/8".into(); 65],
        }];
        let err = sanitize(&mut inv, &InventoryLimits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "network interface \"eth\u{FFFD}0\" has 65 IP addresses; the limit is 64"
        );
    }

    /// Encodes field `tag` as a length-delimited value, by hand, so that
    /// invalid UTF-8 can be put where prost would never write it.
    fn length_delimited(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2];
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn invalid_utf8_is_refused_with_a_clear_error() {
        // Inventory.system (1) { SystemInfo.hostname (1) = b"pc\xff\xfe" }
        let system = length_delimited(1, b"pc\xff\xfe");
        let bytes = length_delimited(1, &system);
        let err = decode(&bytes).unwrap_err();
        assert!(matches!(err, InventoryRejected::Decode(_)));
        let message = err.to_string();
        assert!(
            message.starts_with("inventory cannot be decoded: "),
            "{message}"
        );
        assert!(message.contains("SystemInfo.hostname"), "{message}");
        assert!(message.contains("not UTF-8"), "{message}");
    }

    #[test]
    fn decode_round_trips_a_valid_inventory() {
        let inv = inventory();
        assert_eq!(decode(&inv.encode_to_vec()).unwrap(), inv);
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn invalid_enums_and_timestamps_are_reset() {
        let mut inv = inventory();
        inv.firmware = Some(Firmware {
            secure_boot: 7,
            ..Default::default()
        });
        inv.disks = vec![Disk {
            media: 42,
            ..Default::default()
        }];
        inv.system.as_mut().unwrap().boot_time = Some(Timestamp {
            seconds: 0,
            nanos: -5,
        });
        let warnings = sanitize(&mut inv, &InventoryLimits::default()).unwrap();
        assert_eq!(
            warnings,
            [
                "system.boot_time: invalid timestamp dropped",
                "firmware.secure_boot: unknown value 7 reset",
                "disks[0].media: unknown value 42 reset",
            ]
        );
        assert_eq!(inv.firmware.unwrap().secure_boot(), Tristate::Unknown);
        assert_eq!(inv.system.unwrap().boot_time, None);
    }

    #[test]
    fn windows_fields_are_checked_like_every_agent_field() {
        let mut inv = inventory();
        inv.software[0].install_date = "2023-10-15".into();
        inv.software[1].install_date = "2023-13-45".into();
        inv.os.as_mut().unwrap().display_version = "23H2".repeat(40);
        inv.firmware = Some(Firmware {
            secure_boot_capable: 9,
            ..Default::default()
        });
        inv.windows11 = Some(Windows11Readiness {
            ready: Tristate::No.into(),
            cpu_supported: -1,
            blockers: vec!["TPM 1.2 statt 2.0".into()],
            ..Default::default()
        });
        let warnings = sanitize(&mut inv, &InventoryLimits::default()).unwrap();
        assert_eq!(
            warnings,
            [
                "os.display_version: cut to 64 bytes",
                "firmware.secure_boot_capable: unknown value 9 reset",
                "software[1].install_date: not a date (YYYY-MM-DD), dropped",
                "windows11.cpu_supported: unknown value -1 reset",
            ]
        );
        assert_eq!(inv.software[0].install_date, "2023-10-15");
        assert_eq!(inv.software[1].install_date, "");
        let w = inv.windows11.as_ref().unwrap();
        assert_eq!(
            (w.ready(), w.cpu_supported()),
            (Tristate::No, Tristate::Unknown)
        );
        assert_eq!(w.blockers, ["TPM 1.2 statt 2.0"]);

        inv.windows11.as_mut().unwrap().blockers = vec![String::new(); 17];
        let err = sanitize(&mut inv, &InventoryLimits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "inventory has 17 Windows 11 blockers; the limit is 16"
        );
    }

    #[test]
    fn warnings_are_capped() {
        let mut inv = inventory();
        inv.software = (0..500).map(|i| package(&format!("p\u{7}{i}"))).collect();
        let warnings = sanitize(&mut inv, &InventoryLimits::default()).unwrap();
        assert_eq!(warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(warnings.last().unwrap(), "400 more fields changed");
        assert!(inv.software.iter().all(|p| !p.name.contains('\u{7}')));
    }

    /// Every string field of Inventory, found through the descriptor set:
    /// when the proto gains a string field, `sanitize` must clean it too.
    fn string_fields_in(message: &str, fds: &prost_types::FileDescriptorSet) -> usize {
        use prost_types::field_descriptor_proto::Type;
        let short = message.trim_start_matches(".schoolfleet.v1.");
        let Some(descriptor) = fds
            .file
            .iter()
            .filter(|f| f.package() == "schoolfleet.v1")
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == short)
        else {
            return 0; // google.protobuf.Timestamp and other foreign types.
        };
        descriptor
            .field
            .iter()
            .map(|f| match f.r#type() {
                Type::String => 1,
                Type::Message => string_fields_in(f.type_name(), fds),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn every_string_field_is_cleaned() {
        let fds =
            prost_types::FileDescriptorSet::decode(schoolfleet_proto::FILE_DESCRIPTOR_SET).unwrap();
        let expected = string_fields_in("Inventory", &fds);
        let s = || "x\u{1b}".to_owned();
        let mut inv = Inventory {
            system: Some(SystemInfo {
                hostname: s(),
                agent_version: s(),
                architecture: s(),
                domain: s(),
                workgroup: s(),
                ..Default::default()
            }),
            os: Some(OperatingSystem {
                family: s(),
                name: s(),
                version: s(),
                edition: s(),
                kernel_version: s(),
                display_version: s(),
            }),
            hardware: Some(Hardware {
                vendor: s(),
                model: s(),
                serial_number: s(),
                system_uuid: s(),
                bios_vendor: s(),
                bios_version: s(),
                bios_date: s(),
                cpu_model: s(),
                ..Default::default()
            }),
            firmware: Some(Firmware {
                boot_mode: s(),
                tpm_version: s(),
                ..Default::default()
            }),
            disks: vec![Disk {
                name: s(),
                model: s(),
                serial_number: s(),
                ..Default::default()
            }],
            filesystems: vec![Filesystem {
                mount_point: s(),
                device: s(),
                fs_type: s(),
                encryption: s(),
                ..Default::default()
            }],
            network_interfaces: vec![NetworkInterface {
                name: s(),
                mac_address: s(),
                ip_addresses: vec![s()],
            }],
            software: vec![SoftwarePackage {
                name: s(),
                version: s(),
                source: s(),
                architecture: s(),
                publisher: s(),
                install_date: s(),
            }],
            security: Some(Security {
                system_disk_encrypted: 0,
                antivirus: vec![Antivirus {
                    product: s(),
                    ..Default::default()
                }],
            }),
            collector_errors: vec![CollectorError {
                collector: s(),
                message: s(),
            }],
            windows11: Some(Windows11Readiness {
                blockers: vec![s()],
                ..Default::default()
            }),
        };
        let warnings = sanitize(&mut inv, &InventoryLimits::default()).unwrap();
        assert_eq!(warnings.len(), expected, "{warnings:#?}");
        assert!(!format!("{inv:?}").contains("\\u{1b}"));
    }
}
