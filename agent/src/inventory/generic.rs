//! A minimal collector for platforms without a dedicated one yet.
//!
//! It uses only the portable `sysinfo` crate, so it compiles and runs
//! everywhere; whatever it cannot know (software, firmware, disk encryption)
//! is named in `collector_errors` rather than left silently empty.

use schoolfleet_proto::v1::{
    Filesystem, Firmware, Hardware, Inventory, NetworkInterface, OperatingSystem, Security,
    SystemInfo, Tristate,
};
#[cfg(not(windows))]
use sysinfo::Product;
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, System};

use super::{AGENT_VERSION, Errors, Platform, sort_lists};

/// Portable fallback collector; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct SysinfoPlatform;

impl Platform for SysinfoPlatform {
    fn collect(&self) -> Inventory {
        let mut errors = Errors::default();
        let mut sys = System::new();
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        sys.refresh_cpu_list(CpuRefreshKind::nothing());

        let hostname = System::host_name().unwrap_or_else(|| {
            errors.record("system", "hostname unknown");
            String::new()
        });
        let system = SystemInfo {
            hostname,
            uptime_seconds: System::uptime(),
            boot_time: boot_time(System::boot_time()),
            last_update_time: None,
            agent_version: AGENT_VERSION.to_owned(),
            architecture: System::cpu_arch(),
            ..Default::default()
        };
        let os = OperatingSystem {
            // "linux", "macos", "windows": the proto's spelling already.
            family: std::env::consts::OS.to_owned(),
            name: System::name().unwrap_or_default(),
            version: System::os_version().unwrap_or_default(),
            edition: String::new(),
            kernel_version: System::kernel_version().unwrap_or_default(),
            ..Default::default()
        };
        let product = product();
        let hardware = Hardware {
            vendor: product.vendor,
            model: product.model,
            serial_number: product.serial_number,
            system_uuid: product.system_uuid,
            cpu_model: sys
                .cpus()
                .first()
                .map(|c| c.brand().trim().to_owned())
                .unwrap_or_default(),
            cpu_physical_cores: count(System::physical_core_count().unwrap_or(0)),
            cpu_logical_cores: count(sys.cpus().len()),
            memory_total_bytes: sys.total_memory(),
            memory_available_bytes: sys.available_memory(),
            ..Default::default()
        };

        // Without the statvfs-style storage refresh sizes would be zero; I/O
        // counters are not wanted.
        let disks =
            Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage());
        let filesystems = disks
            .list()
            .iter()
            .map(|d| Filesystem {
                mount_point: d.mount_point().to_string_lossy().into_owned(),
                device: d.name().to_string_lossy().into_owned(),
                fs_type: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
                encrypted: false,
                encryption: String::new(),
            })
            .collect();

        let networks = Networks::new_with_refreshed_list();
        let network_interfaces = networks
            .list()
            .iter()
            .filter(|(name, _)| !is_loopback(name))
            .map(|(name, data)| {
                let mac = data.mac_address();
                NetworkInterface {
                    name: name.clone(),
                    mac_address: if mac.is_unspecified() {
                        String::new()
                    } else {
                        mac.to_string()
                    },
                    ip_addresses: data.ip_networks().iter().map(ToString::to_string).collect(),
                }
            })
            .collect();

        errors.record("firmware", "not supported on this platform yet");
        errors.record("disks", "not supported on this platform yet");
        errors.record("encryption", "not supported on this platform yet");
        errors.record("software", "not supported on this platform yet");

        let mut inv = Inventory {
            system: Some(system),
            os: Some(os),
            hardware: Some(hardware),
            firmware: Some(Firmware {
                secure_boot: Tristate::Unknown.into(),
                ..Default::default()
            }),
            disks: Vec::new(),
            filesystems,
            network_interfaces,
            software: Vec::new(),
            security: Some(Security {
                system_disk_encrypted: Tristate::Unknown.into(),
                antivirus: Vec::new(),
            }),
            collector_errors: errors.into_vec(),
            windows11: None,
        };
        sort_lists(&mut inv);
        inv
    }
}

/// Vendor, model, serial and UUID from sysinfo's SMBIOS reader.
#[cfg(not(windows))]
fn product() -> Hardware {
    Hardware {
        vendor: Product::vendor_name().unwrap_or_default(),
        model: Product::name().unwrap_or_default(),
        serial_number: Product::serial_number().unwrap_or_default(),
        system_uuid: Product::uuid().unwrap_or_default(),
        ..Default::default()
    }
}

/// Not on Windows: sysinfo 0.37's SMBIOS parser panics on short tables
/// (Wine's, and any firmware that writes one), and the release build
/// aborts on a panic. The Windows collector asks WMI instead.
#[cfg(windows)]
fn product() -> Hardware {
    Hardware::default()
}

/// `None` where the platform did not say (sysinfo returns 0 then).
pub(crate) fn boot_time(secs_since_epoch: u64) -> Option<prost_types::Timestamp> {
    let seconds = i64::try_from(secs_since_epoch).ok().filter(|s| *s > 0)?;
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// Saturating conversion for core counts (u32 on the wire).
pub(crate) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn is_loopback(name: &str) -> bool {
    // "lo" on Linux, "lo0" on macOS and the BSDs.
    name == "lo" || name == "lo0" || name.starts_with("Loopback")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysinfo_platform_fills_the_portable_basics() {
        let inv = SysinfoPlatform.collect();
        let system = inv.system.unwrap();
        assert!(!system.hostname.is_empty());
        assert_eq!(system.agent_version, AGENT_VERSION);
        let hardware = inv.hardware.unwrap();
        assert!(hardware.memory_total_bytes > 0);
        assert!(hardware.cpu_logical_cores > 0);
        assert!(
            inv.collector_errors
                .iter()
                .any(|e| e.collector == "software")
        );
    }

    #[test]
    fn boot_time_zero_is_unknown() {
        assert_eq!(boot_time(0), None);
        assert_eq!(boot_time(5).map(|t| t.seconds), Some(5));
    }
}
