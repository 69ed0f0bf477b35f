//! Inventory collection behind a platform trait.
//!
//! Each operating system gets one [`Platform`] implementation: Linux
//! (`linux.rs`) and Windows (`windows/`: registry, WMI, BitLocker,
//! Defender). Every other system gets [`SysinfoPlatform`], which reports
//! what the portable `sysinfo` crate knows and says in `collector_errors`
//! what is missing.

mod generic;
#[cfg(target_os = "linux")]
mod linux;
pub mod windows;

use prost::Message;
use schoolfleet_proto::v1::{CollectorError, Inventory};
use sha2::{Digest, Sha256};

pub use generic::SysinfoPlatform;
#[cfg(target_os = "linux")]
pub use linux::LinuxPlatform;
#[cfg(windows)]
pub use windows::WindowsPlatform;

/// One way of collecting the inventory of the machine the agent runs on.
///
/// `collect` never fails as a whole: a sub-collector that fails records a
/// [`CollectorError`] and the rest of the inventory is still filled, so the
/// server sees both the data and why some of it is missing. Collection is
/// blocking file and process I/O; async callers should run it on
/// `spawn_blocking`.
pub trait Platform: Send + Sync {
    fn collect(&self) -> Inventory;

    /// The host name, cheaply (for renewals and problem reports).
    fn host_name(&self) -> String {
        crate::os::machine::host_name()
    }

    /// Seconds since boot, cheaply (for heartbeats); 0 when unknown.
    fn uptime_seconds(&self) -> u64 {
        crate::os::machine::uptime_seconds()
    }
}

/// The best collector for the operating system this agent was built for.
pub fn current_platform() -> Box<dyn Platform> {
    #[cfg(target_os = "linux")]
    {
        Box::new(LinuxPlatform::new())
    }
    #[cfg(windows)]
    {
        Box::new(WindowsPlatform)
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        Box::new(SysinfoPlatform)
    }
}

/// Hex SHA-256 of the stable part of an inventory.
///
/// The agent sends this hash in heartbeats so the server knows an unchanged
/// inventory is still current; it must therefore not change with values that
/// move on their own (uptime, boot time, free memory, free disk space) and
/// must not depend on the order in which the OS happened to list things.
/// Protobuf encoding by prost is deterministic for messages without maps,
/// which `Inventory` is.
pub fn content_hash(inv: &Inventory) -> String {
    let mut stable = inv.clone();
    if let Some(system) = stable.system.as_mut() {
        system.uptime_seconds = 0;
        // Changes at every reboot, which is no change of the inventory.
        system.boot_time = None;
    }
    if let Some(hardware) = stable.hardware.as_mut() {
        hardware.memory_available_bytes = 0;
    }
    for fs in &mut stable.filesystems {
        fs.available_bytes = 0;
    }
    sort_lists(&mut stable);
    hex::encode(Sha256::digest(stable.encode_to_vec()))
}

/// Puts every list into a canonical order, so that two collections of the same
/// machine encode to the same bytes.
pub(crate) fn sort_lists(inv: &mut Inventory) {
    inv.software.sort_by(|a, b| {
        (
            &a.name,
            &a.architecture,
            &a.source,
            &a.version,
            &a.publisher,
        )
            .cmp(&(
                &b.name,
                &b.architecture,
                &b.source,
                &b.version,
                &b.publisher,
            ))
    });
    inv.disks.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.serial_number.cmp(&b.serial_number))
    });
    inv.filesystems.sort_by(|a, b| {
        a.mount_point
            .cmp(&b.mount_point)
            .then_with(|| a.device.cmp(&b.device))
    });
    for iface in &mut inv.network_interfaces {
        iface.ip_addresses.sort();
    }
    inv.network_interfaces.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.mac_address.cmp(&b.mac_address))
    });
    if let Some(security) = inv.security.as_mut() {
        security.antivirus.sort_by(|a, b| a.product.cmp(&b.product));
    }
    inv.collector_errors
        .sort_by(|a, b| (&a.collector, &a.message).cmp(&(&b.collector, &b.message)));
}

/// Failures of sub-collectors, gathered while the rest of the collection goes on.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<CollectorError>);

impl Errors {
    pub(crate) fn record(&mut self, collector: &str, message: impl std::fmt::Display) {
        self.0.push(CollectorError {
            collector: collector.to_owned(),
            message: message.to_string(),
        });
    }

    /// Whether `collector` recorded a failure.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn failed(&self, collector: &str) -> bool {
        self.0.iter().any(|e| e.collector == collector)
    }

    pub(crate) fn into_vec(self) -> Vec<CollectorError> {
        self.0
    }
}

/// Version of this agent, reported in every inventory.
pub(crate) const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::{
        Disk, Filesystem, Hardware, NetworkInterface, SoftwarePackage, SystemInfo,
    };

    fn package(name: &str, version: &str, arch: &str) -> SoftwarePackage {
        SoftwarePackage {
            name: name.into(),
            version: version.into(),
            source: "dpkg".into(),
            architecture: arch.into(),
            publisher: String::new(),
            ..Default::default()
        }
    }

    fn sample() -> Inventory {
        Inventory {
            system: Some(SystemInfo {
                hostname: "pc-r101-07".into(),
                uptime_seconds: 3600,
                boot_time: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                agent_version: "0.1.0".into(),
                architecture: "x86_64".into(),
                ..Default::default()
            }),
            hardware: Some(Hardware {
                memory_total_bytes: 8 << 30,
                memory_available_bytes: 5 << 30,
                ..Default::default()
            }),
            disks: vec![
                Disk {
                    name: "sda".into(),
                    size_bytes: 1 << 40,
                    ..Default::default()
                },
                Disk {
                    name: "nvme0n1".into(),
                    size_bytes: 1 << 39,
                    system: true,
                    ..Default::default()
                },
            ],
            filesystems: vec![
                Filesystem {
                    mount_point: "/".into(),
                    total_bytes: 100,
                    available_bytes: 40,
                    ..Default::default()
                },
                Filesystem {
                    mount_point: "/boot".into(),
                    total_bytes: 10,
                    available_bytes: 5,
                    ..Default::default()
                },
            ],
            network_interfaces: vec![
                NetworkInterface {
                    name: "eth0".into(),
                    mac_address: "52:54:00:12:34:56".into(),
                    ip_addresses: vec!["10.0.0.7/24".into(), "fe80::1/64".into()],
                },
                NetworkInterface {
                    name: "wlan0".into(),
                    ..Default::default()
                },
            ],
            software: vec![
                package("bash", "5.2.15-2+b7", "amd64"),
                package("libc6", "2.36-9+deb12u9", "amd64"),
                package("libc6", "2.36-9+deb12u9", "i386"),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn content_hash_ignores_list_order() {
        let a = sample();
        let mut b = sample();
        b.software.reverse();
        b.disks.reverse();
        b.filesystems.reverse();
        b.network_interfaces.reverse();
        b.network_interfaces[1].ip_addresses.reverse();
        assert_eq!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn content_hash_ignores_volatile_values() {
        let a = sample();
        let mut b = sample();
        let system = b.system.as_mut().unwrap();
        system.uptime_seconds = 99_999;
        system.boot_time = Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        });
        b.hardware.as_mut().unwrap().memory_available_bytes = 1;
        b.filesystems[0].available_bytes = 0;
        assert_eq!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn content_hash_changes_with_package_version() {
        let a = sample();
        let mut b = sample();
        b.software[0].version = "5.2.15-2+b8".into();
        assert_ne!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn content_hash_changes_with_stable_values() {
        let a = sample();
        let mut b = sample();
        b.hardware.as_mut().unwrap().memory_total_bytes = 16 << 30;
        assert_ne!(content_hash(&a), content_hash(&b));
        let mut c = sample();
        c.filesystems[0].total_bytes = 200;
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn content_hash_is_hex_sha256() {
        let hash = content_hash(&sample());
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(hash, content_hash(&sample()));
    }
}
