//! The Windows collector: the portable basics from sysinfo, then the
//! registry (software, OS, Secure Boot, firmware type) and WMI (hardware,
//! disks, TPM, BitLocker, Defender, Security Center, updates). Every
//! source that fails is named in `collector_errors`; the rest still counts.
//!
//! Only real Windows can show that every class answers as assumed here;
//! the parsers behind it are tested on Linux (`parse.rs`).

use std::collections::HashMap;

use schoolfleet_proto::v1::{Antivirus, Disk, Inventory, Tristate};
use serde::Deserialize;
use winreg::RegKey;
use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_32KEY, KEY_WOW64_64KEY};
use wmi::{COMLibrary, WMIConnection};

use super::parse::{self, UninstallEntry};
use crate::inventory::{Errors, Platform, SysinfoPlatform, sort_lists};

const UNINSTALL: &str = "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall";
const CURRENT_VERSION: &str = "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion";

#[derive(Debug, Default, Clone, Copy)]
pub struct WindowsPlatform;

impl Platform for WindowsPlatform {
    fn collect(&self) -> Inventory {
        let mut inv = SysinfoPlatform.collect();
        // The portable collector's "not supported" notes are replaced by
        // what the Windows sources say.
        inv.collector_errors.clear();
        let mut errors = Errors::default();
        let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);

        match software(&hklm) {
            Ok(packages) => inv.software = packages,
            Err(err) => errors.record("software", err),
        }
        if let Err(err) = operating_system(&hklm, &mut inv) {
            errors.record("os", err);
        }
        firmware_from_registry(&hklm, &mut inv);

        match COMLibrary::new() {
            Ok(com) => wmi_sections(com, &mut inv, &mut errors),
            Err(err) => errors.record("wmi", err),
        }
        inv.windows11 = Some(readiness(&inv, &errors));
        inv.collector_errors = errors.into_vec();
        sort_lists(&mut inv);
        inv
    }
}

/// Both views of the uninstall key; never per-user hives (personal data).
fn software(hklm: &RegKey) -> std::io::Result<Vec<schoolfleet_proto::v1::SoftwarePackage>> {
    let mut entries = Vec::new();
    for (flag, wow64) in [(KEY_WOW64_64KEY, false), (KEY_WOW64_32KEY, true)] {
        let root = match hklm.open_subkey_with_flags(UNINSTALL, KEY_READ | flag) {
            Ok(root) => root,
            Err(err) if wow64 => {
                // 32-bit Windows has no second view.
                tracing::debug!(error = %err, "no WOW6432Node uninstall view");
                continue;
            }
            Err(err) => return Err(err),
        };
        for name in root.enum_keys().filter_map(Result::ok) {
            let Ok(key) = root.open_subkey_with_flags(&name, KEY_READ | flag) else {
                continue;
            };
            let text = |value: &str| key.get_value::<String, _>(value).ok();
            let number = |value: &str| key.get_value::<u32, _>(value).ok();
            entries.push(UninstallEntry {
                key_name: name.clone(),
                display_name: text("DisplayName"),
                display_version: text("DisplayVersion"),
                publisher: text("Publisher"),
                install_date: text("InstallDate"),
                system_component: number("SystemComponent"),
                parent_key_name: text("ParentKeyName"),
                release_type: text("ReleaseType"),
                windows_installer: number("WindowsInstaller"),
                wow64,
            });
        }
    }
    Ok(parse::software(&entries))
}

fn operating_system(hklm: &RegKey, inv: &mut Inventory) -> std::io::Result<()> {
    let key = hklm.open_subkey_with_flags(CURRENT_VERSION, KEY_READ | KEY_WOW64_64KEY)?;
    let text = |value: &str| key.get_value::<String, _>(value).unwrap_or_default();
    let number = |value: &str| key.get_value::<u32, _>(value).ok();
    let build = parse::build_number(&text("CurrentBuild")).unwrap_or(0);
    let os = inv.os.get_or_insert_with(Default::default);
    os.family = "windows".into();
    os.name = parse::os_name(&text("ProductName"), build);
    os.edition = text("EditionID");
    let (major, minor) = parse::major_minor(
        number("CurrentMajorVersionNumber"),
        number("CurrentMinorVersionNumber"),
        &text("CurrentVersion"),
    );
    os.version = parse::os_version(major, minor, build, number("UBR"));
    // The NT kernel's version is the OS version on Windows.
    os.kernel_version = os.version.clone();
    // 23H2 and the like: the version people talk about (Windows 10 1809
    // and older have only ReleaseId).
    os.display_version = Some(text("DisplayVersion"))
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| text("ReleaseId"))
        .trim()
        .to_owned();
    Ok(())
}

/// UEFI or BIOS (`PEFirmwareType`: 1 BIOS, 2 UEFI) and Secure Boot.
fn firmware_from_registry(hklm: &RegKey, inv: &mut Inventory) {
    let firmware = inv.firmware.get_or_insert_with(Default::default);
    if let Ok(key) = hklm.open_subkey("SYSTEM\\CurrentControlSet\\Control")
        && let Ok(kind) = key.get_value::<u32, _>("PEFirmwareType")
    {
        firmware.boot_mode = if kind == 2 { "uefi" } else { "bios" }.into();
    }
    firmware.secure_boot = match hklm
        .open_subkey("SYSTEM\\CurrentControlSet\\Control\\SecureBoot\\State")
        .and_then(|k| k.get_value::<u32, _>("UEFISecureBootEnabled"))
    {
        Ok(1) => Tristate::Yes,
        Ok(_) => Tristate::No,
        // No key: BIOS firmware, or not readable.
        Err(_) if firmware.boot_mode == "bios" => Tristate::No,
        Err(_) => Tristate::Unknown,
    }
    .into();
    // UEFI firmware that reports a Secure Boot state can do Secure Boot
    // (on or off); BIOS firmware cannot.
    firmware.secure_boot_capable = match firmware.boot_mode.as_str() {
        "bios" => Tristate::No,
        "uefi" if firmware.secure_boot != Tristate::Unknown as i32 => Tristate::Yes,
        _ => Tristate::Unknown,
    }
    .into();
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ComputerSystem {
    manufacturer: Option<String>,
    model: Option<String>,
    total_physical_memory: Option<u64>,
}

/// Asked apart: Wine's provider lacks these, and a missing property fails
/// the whole row in the wmi crate.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Membership {
    part_of_domain: Option<bool>,
    domain: Option<String>,
    workgroup: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Bios {
    manufacturer: Option<String>,
    #[serde(rename = "SMBIOSBIOSVersion")]
    smbios_bios_version: Option<String>,
    release_date: Option<String>,
    serial_number: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ComputerSystemProduct {
    #[serde(rename = "UUID")]
    uuid: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Processor {
    name: Option<String>,
    number_of_cores: Option<u32>,
    number_of_logical_processors: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PhysicalDisk {
    device_id: Option<String>,
    friendly_name: Option<String>,
    serial_number: Option<String>,
    size: Option<u64>,
    media_type: Option<u16>,
    bus_type: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tpm {
    spec_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptableVolume {
    drive_letter: Option<String>,
    protection_status: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MpComputerStatus {
    real_time_protection_enabled: Option<bool>,
    antivirus_signature_last_updated: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AntiVirusProduct {
    display_name: Option<String>,
    product_state: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QuickFix {
    installed_on: Option<String>,
}

/// One WQL query. A property the provider lacks fails the whole query
/// (even for an `Option` field), so properties that may be missing are
/// asked in queries of their own.
fn query<T: serde::de::DeserializeOwned>(
    wmi: &WMIConnection,
    wql: &str,
    collector: &str,
    errors: &mut Errors,
) -> Vec<T> {
    match wmi.raw_query::<T>(wql) {
        Ok(rows) => rows,
        Err(err) => {
            errors.record(collector, format!("{wql}: {err}"));
            Vec::new()
        }
    }
}

fn connect(
    com: COMLibrary,
    namespace: &str,
    collector: &str,
    errors: &mut Errors,
) -> Option<WMIConnection> {
    match WMIConnection::with_namespace_path(namespace, com) {
        Ok(wmi) => Some(wmi),
        Err(err) => {
            errors.record(collector, format!("{namespace}: {err}"));
            None
        }
    }
}

fn wmi_sections(com: COMLibrary, inv: &mut Inventory, errors: &mut Errors) {
    let trim = |s: Option<String>| s.unwrap_or_default().trim().to_owned();
    if let Some(cim) = connect(com, "ROOT\\CIMV2", "hardware", errors) {
        let hardware = inv.hardware.get_or_insert_with(Default::default);
        if let Some(cs) = query::<ComputerSystem>(
            &cim,
            "SELECT Manufacturer, Model, TotalPhysicalMemory FROM Win32_ComputerSystem",
            "hardware",
            errors,
        )
        .into_iter()
        .next()
        {
            hardware.vendor = trim(cs.manufacturer);
            hardware.model = trim(cs.model);
            if let Some(bytes) = cs.total_physical_memory {
                hardware.memory_total_bytes = bytes;
            }
        }
        if let Some(m) = query::<Membership>(
            &cim,
            "SELECT PartOfDomain, Domain, Workgroup FROM Win32_ComputerSystem",
            "membership",
            errors,
        )
        .into_iter()
        .next()
        {
            let membership = parse::membership(
                m.part_of_domain.unwrap_or(false),
                m.domain.as_deref().unwrap_or(""),
                m.workgroup.as_deref().unwrap_or(""),
            );
            let system = inv.system.get_or_insert_with(Default::default);
            match membership {
                parse::Membership::Domain(name) => system.domain = name,
                parse::Membership::Workgroup(name) => system.workgroup = name,
            }
        }
        if let Some(bios) = query::<Bios>(
            &cim,
            "SELECT Manufacturer, SMBIOSBIOSVersion, ReleaseDate, SerialNumber FROM Win32_BIOS",
            "firmware",
            errors,
        )
        .into_iter()
        .next()
        {
            hardware.bios_vendor = trim(bios.manufacturer);
            hardware.bios_version = trim(bios.smbios_bios_version);
            hardware.bios_date = bios
                .release_date
                .as_deref()
                .and_then(parse::wmi_datetime)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            hardware.serial_number = trim(bios.serial_number);
        }
        if let Some(product) = query::<ComputerSystemProduct>(
            &cim,
            "SELECT UUID FROM Win32_ComputerSystemProduct",
            "hardware",
            errors,
        )
        .into_iter()
        .next()
        {
            hardware.system_uuid = trim(product.uuid).to_ascii_lowercase();
        }
        let cpus = query::<Processor>(
            &cim,
            "SELECT Name, NumberOfCores, NumberOfLogicalProcessors FROM Win32_Processor",
            "hardware",
            errors,
        );
        if let Some(first) = cpus.first() {
            hardware.cpu_model = first.name.clone().unwrap_or_default().trim().to_owned();
            hardware.cpu_physical_cores = cpus.iter().filter_map(|c| c.number_of_cores).sum();
            hardware.cpu_logical_cores = cpus
                .iter()
                .filter_map(|c| c.number_of_logical_processors)
                .sum();
        }
        let last_update = query::<QuickFix>(
            &cim,
            "SELECT InstalledOn FROM Win32_QuickFixEngineering",
            "updates",
            errors,
        )
        .into_iter()
        .filter_map(|q| q.installed_on.as_deref().and_then(parse::hotfix_date))
        .max();
        if let (Some(date), Some(system)) = (last_update, inv.system.as_mut()) {
            let seconds = date
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp())
                .unwrap_or_default();
            system.last_update_time = Some(prost_types::Timestamp { seconds, nanos: 0 });
        }
    }

    if let Some(storage) = connect(com, "ROOT\\Microsoft\\Windows\\Storage", "disks", errors) {
        inv.disks = query::<PhysicalDisk>(
            &storage,
            "SELECT DeviceId, FriendlyName, SerialNumber, Size, MediaType, BusType FROM MSFT_PhysicalDisk",
            "disks",
            errors,
        )
        .into_iter()
        .map(|d| Disk {
            name: format!("PhysicalDrive{}", trim(d.device_id)),
            model: trim(d.friendly_name),
            serial_number: trim(d.serial_number),
            size_bytes: d.size.unwrap_or(0),
            media: parse::disk_media(d.media_type.unwrap_or(0), d.bus_type.unwrap_or(0)).into(),
            // USB (7) and SD (12) buses.
            removable: matches!(d.bus_type, Some(7) | Some(12)),
            // The disk of C: needs a partition walk; not claimed here.
            system: false,
        })
        .collect();
    }

    let firmware = inv.firmware.get_or_insert_with(Default::default);
    if let Some(tpm_ns) = connect(com, "ROOT\\CIMV2\\Security\\MicrosoftTpm", "tpm", errors) {
        let tpm = query::<Tpm>(&tpm_ns, "SELECT SpecVersion FROM Win32_Tpm", "tpm", errors);
        firmware.tpm_present = !tpm.is_empty();
        firmware.tpm_version = tpm
            .first()
            .and_then(|t| t.spec_version.as_deref())
            .map(parse::tpm_version)
            .unwrap_or_default();
    }

    let security = inv.security.get_or_insert_with(Default::default);
    if let Some(bitlocker) = connect(
        com,
        "ROOT\\CIMV2\\Security\\MicrosoftVolumeEncryption",
        "encryption",
        errors,
    ) {
        let volumes = query::<EncryptableVolume>(
            &bitlocker,
            "SELECT DriveLetter, ProtectionStatus FROM Win32_EncryptableVolume",
            "encryption",
            errors,
        );
        let by_letter: HashMap<String, u32> = volumes
            .into_iter()
            .filter_map(|v| Some((v.drive_letter?.to_ascii_uppercase(), v.protection_status?)))
            .collect();
        let system_drive = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
        security.system_disk_encrypted = by_letter
            .get(&system_drive.to_ascii_uppercase())
            .map_or(Tristate::Unknown, |s| parse::bitlocker_protection(*s))
            .into();
        for fs in &mut inv.filesystems {
            let letter = fs.mount_point.trim_end_matches('\\').to_ascii_uppercase();
            if by_letter.get(&letter) == Some(&1) {
                fs.encrypted = true;
                fs.encryption = "bitlocker".into();
            }
        }
    }
    if let Some(defender) = connect(com, "ROOT\\Microsoft\\Windows\\Defender", "antivirus", errors)
        && let Some(status) = query::<MpComputerStatus>(
            &defender,
            "SELECT RealTimeProtectionEnabled, AntivirusSignatureLastUpdated FROM MSFT_MpComputerStatus",
            "antivirus",
            errors,
        )
        .into_iter()
        .next()
    {
        security.antivirus.push(Antivirus {
            product: "Microsoft Defender Antivirus".into(),
            realtime_protection: match status.real_time_protection_enabled {
                Some(true) => Tristate::Yes,
                Some(false) => Tristate::No,
                None => Tristate::Unknown,
            }
            .into(),
            signatures_updated: status
                .antivirus_signature_last_updated
                .as_deref()
                .and_then(parse::wmi_datetime)
                .map(|t| prost_types::Timestamp {
                    seconds: t.timestamp(),
                    nanos: 0,
                }),
        });
    }
    // Security Center: other products (and Defender again, by its name).
    if let Some(center) = connect(com, "ROOT\\SecurityCenter2", "antivirus", errors) {
        for product in query::<AntiVirusProduct>(
            &center,
            "SELECT displayName, productState FROM AntiVirusProduct",
            "antivirus",
            errors,
        ) {
            let name = product.display_name.unwrap_or_default().trim().to_owned();
            if name.is_empty() || name.contains("Defender") {
                continue;
            }
            security.antivirus.push(Antivirus {
                product: name,
                realtime_protection: product
                    .product_state
                    .map_or(Tristate::Unknown, parse::av_realtime)
                    .into(),
                signatures_updated: None,
            });
        }
    }
}

/// The Windows 11 check from what the collectors found; a fact whose
/// collector failed stays unknown instead of counting as "no".
fn readiness(inv: &Inventory, errors: &Errors) -> schoolfleet_proto::v1::Windows11Readiness {
    let firmware = inv.firmware.clone().unwrap_or_default();
    let hardware = inv.hardware.clone().unwrap_or_default();
    let known = |value: bool| value.then_some(());
    let facts = parse::ReadinessFacts {
        tpm_version: known(!errors.failed("tpm")).map(|()| firmware.tpm_version.clone()),
        uefi: known(!firmware.boot_mode.is_empty()).map(|()| firmware.boot_mode == "uefi"),
        secure_boot_capable: match firmware.secure_boot_capable() {
            Tristate::Yes => Some(true),
            Tristate::No => Some(false),
            Tristate::Unknown => None,
        },
        cpu_name: hardware.cpu_model,
        memory_bytes: hardware.memory_total_bytes,
        system_disk_bytes: inv
            .filesystems
            .iter()
            .find(|f| f.mount_point.to_ascii_uppercase().starts_with("C:"))
            .map_or(0, |f| f.total_bytes),
    };
    let readiness = parse::windows11_readiness(&facts);
    tracing::debug!(ready = ?readiness.ready(), blockers = ?readiness.blockers, "Windows 11 readiness");
    readiness
}
