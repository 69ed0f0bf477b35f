//! The Linux collector: reads /proc, /sys and the package databases
//! directly, which is cheaper than anything that spawns processes or asks
//! `sysinfo` for everything it knows (it would walk the process table).
//!
//! Nothing personal is collected: no user names (mount points under a
//! user's directory are redacted), no file contents, no history.

mod block;
mod dmi;
mod dpkg;
mod firmware;
mod mounts;
mod procfs;
mod rpm;

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use schoolfleet_proto::v1::{
    Filesystem, Hardware, Inventory, NetworkInterface, OperatingSystem, Security, SoftwarePackage,
    SystemInfo, Tristate,
};
use sysinfo::{CpuRefreshKind, Networks, System};

use super::generic::{boot_time, count};
use super::{AGENT_VERSION, Errors, Platform, sort_lists};

/// Collector for Linux; see the module documentation.
#[derive(Debug, Clone)]
pub struct LinuxPlatform {
    /// Where sysfs is mounted. A field rather than a constant so the whole
    /// collector can be pointed at a recorded sysfs tree later; the parts
    /// are tested with fake trees already.
    sys: PathBuf,
}

impl LinuxPlatform {
    pub fn new() -> Self {
        Self {
            sys: PathBuf::from("/sys"),
        }
    }
}

impl Default for LinuxPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl Platform for LinuxPlatform {
    fn collect(&self) -> Inventory {
        let mut errors = Errors::default();

        let mount_table = match std::fs::read("/proc/self/mountinfo") {
            Ok(data) => mounts::parse_mountinfo(&data),
            Err(e) => {
                errors.record(
                    "filesystems",
                    format_args!("cannot read /proc/self/mountinfo: {e}"),
                );
                Vec::new()
            }
        };
        let root_backing = mount_table
            .iter()
            .find(|m| m.mount_point == b"/")
            .and_then(|m| self.backing(m));
        let system_disks = root_backing
            .as_ref()
            .map(|b| b.disks.clone())
            .unwrap_or_default();
        let disks = block::list_disks(&self.sys, &system_disks, &mut errors);
        let filesystems = self.filesystems(&mount_table, &mut errors);
        let system_disk_encrypted = match &root_backing {
            Some(backing) if backing.encryption.is_some() => Tristate::Yes,
            Some(_) => Tristate::No,
            None => {
                errors.record(
                    "encryption",
                    "cannot tell which device holds the root filesystem",
                );
                Tristate::Unknown
            }
        };

        let (software, last_update) = software(&mut errors);
        let mut system = system_info(&mut errors);
        system.last_update_time = last_update.map(to_timestamp);

        let mut inv = Inventory {
            system: Some(system),
            os: Some(operating_system(&mut errors)),
            hardware: Some(self.hardware(&mut errors)),
            firmware: Some(firmware::collect(&self.sys)),
            disks,
            filesystems,
            network_interfaces: network_interfaces(&mut errors),
            software,
            security: Some(Security {
                system_disk_encrypted: system_disk_encrypted.into(),
                antivirus: Vec::new(),
            }),
            collector_errors: errors.into_vec(),
            windows11: None,
        };
        sort_lists(&mut inv);
        inv
    }
}

impl LinuxPlatform {
    /// Disks and encryption beneath a mount. Filesystems such as btrfs show
    /// an anonymous device number (major 0) in mountinfo; their source
    /// device node tells the real one.
    fn backing(&self, mount: &mounts::Mount) -> Option<block::Backing> {
        let (major, minor) = if mount.major != 0 {
            (mount.major, mount.minor)
        } else {
            let source = Path::new(std::ffi::OsStr::from_bytes(&mount.source));
            if !source.starts_with("/dev/") {
                return None;
            }
            block::dev_of_node(source).ok()?
        };
        block::resolve(&self.sys, major, minor)
    }

    fn filesystems(&self, table: &[mounts::Mount], errors: &mut Errors) -> Vec<Filesystem> {
        let mut out = Vec::new();
        for mount in mounts::reported(table) {
            let path = Path::new(std::ffi::OsStr::from_bytes(&mount.mount_point));
            let shown = mounts::redact_user_names(&String::from_utf8_lossy(&mount.mount_point));
            let stat = match nix::sys::statvfs::statvfs(path) {
                Ok(stat) => stat,
                Err(e) => {
                    errors.record("filesystems", format_args!("statvfs {shown}: {e}"));
                    continue;
                }
            };
            let (total_bytes, available_bytes) = sizes(&stat);
            let encryption = self.backing(mount).and_then(|b| b.encryption);
            out.push(Filesystem {
                mount_point: shown,
                device: String::from_utf8_lossy(&mount.source).into_owned(),
                fs_type: mount.fs_type.clone(),
                total_bytes,
                available_bytes,
                encrypted: encryption.is_some(),
                encryption: encryption.unwrap_or_default(),
            });
        }
        out
    }

    fn hardware(&self, errors: &mut Errors) -> Hardware {
        let dmi = dmi::collect(&self.sys.join("class/dmi/id"), errors);
        let cpu = match std::fs::read("/proc/cpuinfo") {
            Ok(data) => procfs::parse_cpuinfo(&String::from_utf8_lossy(&data)),
            Err(e) => {
                errors.record("cpu", format_args!("cannot read /proc/cpuinfo: {e}"));
                procfs::CpuInfo::default()
            }
        };
        let cpu_model = if cpu.model.is_empty() {
            // ARM cpuinfo names no model; sysinfo maps the implementer and
            // part numbers to names.
            let mut sys = System::new();
            sys.refresh_cpu_list(CpuRefreshKind::nothing());
            sys.cpus()
                .first()
                .map(|c| c.brand().trim().to_owned())
                .unwrap_or_default()
        } else {
            cpu.model
        };
        // Read directly rather than through sysinfo: MemTotal is the figure
        // admins compare against, and this is one small file.
        let mem = match std::fs::read("/proc/meminfo") {
            Ok(data) => procfs::parse_meminfo(&String::from_utf8_lossy(&data)),
            Err(e) => {
                errors.record("memory", format_args!("cannot read /proc/meminfo: {e}"));
                procfs::MemInfo::default()
            }
        };
        Hardware {
            vendor: dmi.vendor,
            model: dmi.model,
            serial_number: dmi.serial_number,
            system_uuid: dmi.system_uuid,
            bios_vendor: dmi.bios_vendor,
            bios_version: dmi.bios_version,
            bios_date: dmi.bios_date,
            cpu_model,
            cpu_physical_cores: count(cpu.physical_cores),
            cpu_logical_cores: count(cpu.logical_cores),
            memory_total_bytes: mem.total_bytes.unwrap_or(0),
            memory_available_bytes: mem.available_bytes.unwrap_or(0),
        }
    }
}

/// Total and available bytes. f_frsize is the unit of the block counts
/// (f_bsize is only the preferred I/O size).
// The conversions are needed on 32-bit targets, where the fields are u32.
#[allow(clippy::useless_conversion)]
fn sizes(stat: &nix::sys::statvfs::Statvfs) -> (u64, u64) {
    let unit = u64::from(stat.fragment_size());
    (
        u64::from(stat.blocks()).saturating_mul(unit),
        u64::from(stat.blocks_available()).saturating_mul(unit),
    )
}

fn system_info(errors: &mut Errors) -> SystemInfo {
    let hostname = System::host_name().unwrap_or_else(|| {
        errors.record("system", "hostname unknown");
        String::new()
    });
    SystemInfo {
        hostname,
        uptime_seconds: System::uptime(),
        boot_time: boot_time(System::boot_time()),
        last_update_time: None,
        agent_version: AGENT_VERSION.to_owned(),
        architecture: System::cpu_arch(),
        // Domain membership (realmd, sssd) is not collected on Linux.
        ..Default::default()
    }
}

fn operating_system(errors: &mut Errors) -> OperatingSystem {
    // os-release(5): /etc takes precedence, /usr/lib is the fallback.
    let release = std::fs::read("/etc/os-release")
        .or_else(|_| std::fs::read("/usr/lib/os-release"))
        .map(|data| procfs::parse_os_release(&String::from_utf8_lossy(&data)))
        .unwrap_or_else(|e| {
            errors.record("os", format_args!("cannot read os-release: {e}"));
            procfs::OsRelease::default()
        });
    OperatingSystem {
        family: "linux".to_owned(),
        name: release.name,
        version: release.version_id,
        edition: release.variant,
        kernel_version: System::kernel_version().unwrap_or_default(),
        display_version: String::new(),
    }
}

/// Installed packages and the time of the last install/upgrade. dpkg wins
/// where its database exists; rpm is asked only otherwise.
fn software(errors: &mut Errors) -> (Vec<SoftwarePackage>, Option<SystemTime>) {
    match std::fs::File::open(dpkg::STATUS_FILE)
        .and_then(|f| dpkg::read_status(io::BufReader::new(f)))
    {
        Ok(packages) => {
            let last = dpkg::last_change(Path::new(dpkg::INFO_DIR)).unwrap_or_else(|e| {
                errors.record(
                    "last_update",
                    format_args!("cannot list {}: {e}", dpkg::INFO_DIR),
                );
                None
            });
            return (packages, last);
        }
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            errors.record(
                "software",
                format_args!("cannot read {}: {e}", dpkg::STATUS_FILE),
            );
            return (Vec::new(), None);
        }
        Err(_) => {}
    }
    if let Some(rpm) = rpm::find_rpm() {
        return rpm::query(&rpm).unwrap_or_else(|e| {
            errors.record("software", e);
            (Vec::new(), None)
        });
    }
    errors.record("software", "no supported package manager found (dpkg, rpm)");
    (Vec::new(), None)
}

fn network_interfaces(errors: &mut Errors) -> Vec<NetworkInterface> {
    let temporary = match std::fs::read("/proc/net/if_inet6") {
        Ok(data) => temporary_ipv6(&String::from_utf8_lossy(&data)),
        // No IPv6 in this kernel: nothing to filter.
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashSet::new(),
        Err(e) => {
            errors.record(
                "network",
                format_args!("cannot read /proc/net/if_inet6: {e}"),
            );
            HashSet::new()
        }
    };
    let networks = Networks::new_with_refreshed_list();
    networks
        .list()
        .iter()
        .filter(|(name, data)| {
            // Virtual interfaces without an address (ifb, veth, dummy) get a
            // random MAC at every boot; listing them would make every
            // reboot look like a network change. Hardware NICs stay listed
            // even when unplugged.
            name.as_str() != "lo"
                && (!data.ip_networks().is_empty()
                    || Path::new("/sys/class/net")
                        .join(name.as_str())
                        .join("device")
                        .exists())
        })
        .map(|(name, data)| {
            let mac = data.mac_address();
            let ip_addresses = data
                .ip_networks()
                .iter()
                .filter(|net| !matches!(net.addr, IpAddr::V6(v6) if temporary.contains(&v6)))
                .map(ToString::to_string)
                .collect();
            NetworkInterface {
                name: name.clone(),
                mac_address: if mac.is_unspecified() {
                    String::new()
                } else {
                    mac.to_string()
                },
                ip_addresses,
            }
        })
        .collect()
}

/// IPv6 privacy addresses (RFC 8981) from /proc/net/if_inet6. They rotate
/// daily by design; reporting them would make every device look changed
/// every day. Line format: address (32 hex digits), ifindex, prefix length,
/// scope, flags, name; IFA_F_TEMPORARY is flag 0x01.
fn temporary_ipv6(text: &str) -> HashSet<Ipv6Addr> {
    const IFA_F_TEMPORARY: u32 = 0x01;
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(4)?, 16).ok()?;
            if flags & IFA_F_TEMPORARY == 0 {
                return None;
            }
            let addr = u128::from_str_radix(fields.first()?, 16).ok()?;
            Some(Ipv6Addr::from(addr))
        })
        .collect()
}

fn to_timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// Reads a small sysfs/procfs attribute, trimmed, with invalid UTF-8
/// replaced: the agent never sends invalid UTF-8.
fn read_trimmed(path: &Path) -> io::Result<String> {
    let data = std::fs::read(path)?;
    Ok(String::from_utf8_lossy(&data).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn temporary_ipv6_addresses_are_found() {
        let text = "fd000000000000000000000000000002 04 40 00 82     eth0\n\
                    20010db8000000001c2a3b4c5d6e7f80 04 40 00 01     eth0\n\
                    fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n\
                    bogus\n";
        let temp = temporary_ipv6(text);
        assert_eq!(temp.len(), 1);
        assert!(temp.contains(&"2001:db8::1c2a:3b4c:5d6e:7f80".parse::<Ipv6Addr>().unwrap()));
    }

    fn meminfo_total_bytes() -> u64 {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// Packages dpkg-query reports as installed: `?i`, and `?W`/`?t`
    /// (awaiting triggers), matching `dpkg::parse_status`.
    fn dpkg_query_installed() -> Option<usize> {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${db:Status-Abbrev}\n"])
            .output()
            .ok()?;
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Some(
            text.lines()
                .filter(|l| matches!(l.as_bytes().get(1), Some(b'i' | b'W' | b't')))
                .count(),
        )
    }

    #[test]
    fn collects_this_machine() {
        let inv = LinuxPlatform::new().collect();
        let system = inv.system.as_ref().unwrap();
        assert!(!system.hostname.is_empty());
        assert!(!system.architecture.is_empty());
        assert!(system.uptime_seconds > 0);
        let os = inv.os.as_ref().unwrap();
        assert_eq!(os.family, "linux");
        assert!(!os.name.is_empty());
        assert!(!os.kernel_version.is_empty());
        let hardware = inv.hardware.as_ref().unwrap();
        assert_eq!(hardware.memory_total_bytes, meminfo_total_bytes());
        assert!(hardware.memory_available_bytes > 0);
        assert!(hardware.cpu_logical_cores >= hardware.cpu_physical_cores);
        assert!(hardware.cpu_physical_cores > 0);
        assert!(!hardware.cpu_model.is_empty());
        assert!(!inv.network_interfaces.iter().any(|i| i.name == "lo"));
        // In a container "/" is an overlay, which is no filesystem of the
        // machine; on a real or virtual machine it is on a block device.
        let root_on_disk = inv
            .filesystems
            .iter()
            .any(|f| f.mount_point == "/" && f.device.starts_with("/dev/"));
        if root_on_disk {
            let root = inv
                .filesystems
                .iter()
                .find(|f| f.mount_point == "/")
                .unwrap();
            assert!(root.total_bytes >= root.available_bytes && root.total_bytes > 0);
            assert_eq!(
                inv.disks.iter().filter(|d| d.system).count(),
                1,
                "{:?}",
                inv.disks
            );
            assert_ne!(
                inv.security.as_ref().unwrap().system_disk_encrypted(),
                Tristate::Unknown
            );
        }
        if let Some(expected) = dpkg_query_installed() {
            assert_eq!(inv.software.len(), expected);
            assert!(system.last_update_time.is_some());
        }
        // Without root, DMI serial and UUID are unreadable, which is recorded.
        let unexpected: Vec<_> = inv
            .collector_errors
            .iter()
            .filter(|e| e.collector != "dmi" && (root_on_disk || e.collector != "encryption"))
            .collect();
        assert!(unexpected.is_empty(), "{unexpected:?}");
    }

    #[test]
    fn collection_is_stable() {
        let platform = LinuxPlatform::new();
        let a = platform.collect();
        let b = platform.collect();
        assert_eq!(
            crate::inventory::content_hash(&a),
            crate::inventory::content_hash(&b)
        );
    }

    /// Shows what this machine reports, without the package list.
    /// Run with `cargo test -p schoolfleet-agent print_inventory -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints, checks nothing"]
    fn print_inventory() {
        let mut inv = LinuxPlatform::new().collect();
        let packages = std::mem::take(&mut inv.software);
        println!(
            "{inv:#?}\n{} packages, first: {:?}",
            packages.len(),
            packages.first()
        );
    }

    /// Prints the CPU time of one collection (after one warm-up run).
    /// Run with `cargo test -p schoolfleet-agent --release collection_cpu_time -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, not a check"]
    fn collection_cpu_time() {
        fn cpu_time() -> std::time::Duration {
            // First field: nanoseconds this thread spent on a CPU.
            let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            std::time::Duration::from_nanos(text.split(' ').next().unwrap().parse().unwrap())
        }
        let platform = LinuxPlatform::new();
        let _ = platform.collect();
        let runs = 20;
        let cpu0 = cpu_time();
        let wall0 = std::time::Instant::now();
        let mut inv = Inventory::default();
        for _ in 0..runs {
            inv = platform.collect();
        }
        let cpu = (cpu_time() - cpu0) / runs;
        let wall = wall0.elapsed() / runs;
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let memory: Vec<&str> = status
            .lines()
            .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
            .collect();
        println!(
            "one collection: {cpu:?} CPU, {wall:?} wall; {} packages, {} bytes encoded; \
             test process {memory:?}",
            inv.software.len(),
            prost::Message::encoded_len(&inv)
        );
    }
}
