//! Block devices from sysfs: the physical disks, and which disks and
//! encryption layers lie beneath a given device number.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use schoolfleet_proto::v1::{Disk, DiskMedia};

use super::read_trimmed;
use crate::inventory::Errors;

/// Virtual block devices that are no hardware: loop devices, RAM disks,
/// compressed swap, device-mapper and md (their disks are listed on their
/// own) and network block devices.
const VIRTUAL_PREFIXES: [&str; 6] = ["loop", "ram", "zram", "dm-", "md", "nbd"];

/// Kernel sector unit of /sys/block/*/size, independent of the disk's own
/// sector size.
const SECTOR_BYTES: u64 = 512;

/// Deepest stack of layers followed (partition → LUKS → LVM → ...); guards
/// against cycles in a corrupt or malicious sysfs.
const MAX_DEPTH: usize = 16;

/// What lies beneath one block device.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Backing {
    /// Kernel names of the physical disks, e.g. {"nvme0n1"}.
    pub disks: BTreeSet<String>,
    /// "luks" or "dm-crypt" when any layer is a dm-crypt mapping.
    pub encryption: Option<String>,
}

/// Follows device `major:minor` down through partitions, device-mapper
/// (LUKS, LVM) and md layers to the physical disks. `None` when sysfs does
/// not know the device.
pub(crate) fn resolve(sys: &Path, major: u32, minor: u32) -> Option<Backing> {
    let node = std::fs::canonicalize(sys.join(format!("dev/block/{major}:{minor}"))).ok()?;
    let mut backing = Backing::default();
    walk(&node, &mut backing, 0);
    Some(backing)
}

fn walk(node: &Path, out: &mut Backing, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Some(name) = node.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    if node.join("partition").exists() {
        // A partition's sysfs directory sits inside its disk's.
        if let Some(parent) = node.parent() {
            walk(parent, out, depth + 1);
        }
        return;
    }
    if name.starts_with("dm-")
        && let Ok(uuid) = std::fs::read_to_string(node.join("dm/uuid"))
        && let Some(kind) = crypt_kind(&uuid)
    {
        // The outermost (first found) layer wins; nested encryption is rare.
        out.encryption.get_or_insert_with(|| kind.to_owned());
    }
    let slaves: Vec<PathBuf> = std::fs::read_dir(node.join("slaves"))
        .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    if slaves.is_empty() {
        out.disks.insert(name);
        return;
    }
    for slave in slaves {
        if let Ok(target) = std::fs::canonicalize(&slave) {
            walk(&target, out, depth + 1);
        }
    }
}

/// dm-crypt mappings have a dm uuid "CRYPT-<TYPE>-...", e.g.
/// "CRYPT-LUKS2-<uuid>-<name>" or "CRYPT-PLAIN-<name>".
pub(crate) fn crypt_kind(dm_uuid: &str) -> Option<&'static str> {
    let rest = dm_uuid.trim().strip_prefix("CRYPT-")?;
    Some(if rest.starts_with("LUKS") {
        "luks"
    } else {
        "dm-crypt"
    })
}

/// The physical disks in `sys`/block. `system_disks` names the disks that
/// hold the root filesystem.
pub(crate) fn list_disks(
    sys: &Path,
    system_disks: &BTreeSet<String>,
    errors: &mut Errors,
) -> Vec<Disk> {
    let dir = match std::fs::read_dir(sys.join("block")) {
        Ok(dir) => dir,
        Err(e) => {
            errors.record(
                "disks",
                format_args!("cannot list {}: {e}", sys.join("block").display()),
            );
            return Vec::new();
        }
    };
    let mut disks = Vec::new();
    for entry in dir.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        disks.push(read_disk(&entry.path(), name, system_disks));
    }
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    disks
}

fn read_disk(dir: &Path, name: String, system_disks: &BTreeSet<String>) -> Disk {
    let size_bytes = read_trimmed(&dir.join("size"))
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(0, |sectors| sectors.saturating_mul(SECTOR_BYTES));
    let rotational = read_trimmed(&dir.join("queue/rotational")).ok();
    let media = if name.starts_with("nvme") {
        DiskMedia::Nvme
    } else {
        match rotational.as_deref() {
            Some("1") => DiskMedia::Hdd,
            Some("0") => DiskMedia::Ssd,
            _ => DiskMedia::Unknown,
        }
    };
    // USB disks often claim not to be removable; they are, for inventory
    // purposes.
    let on_usb = std::fs::canonicalize(dir.join("device"))
        .map(|p| {
            p.components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with("usb"))
        })
        .unwrap_or(false);
    let removable = read_trimmed(&dir.join("removable")).is_ok_and(|r| r == "1") || on_usb;
    Disk {
        model: first_present(&[dir.join("device/model"), dir.join("device/name")]),
        serial_number: serial(dir),
        size_bytes,
        media: media.into(),
        removable,
        system: system_disks.contains(&name),
        name,
    }
}

/// The serial number wherever this kind of disk keeps it: NVMe and MMC in
/// device/serial, virtio at the block level, SCSI/SATA in VPD page 0x80.
fn serial(dir: &Path) -> String {
    let serial = first_present(&[dir.join("device/serial"), dir.join("serial")]);
    if !serial.is_empty() {
        return serial;
    }
    std::fs::read(dir.join("device/vpd_pg80"))
        .map(|page| parse_vpd_serial(&page))
        .unwrap_or_default()
}

/// VPD page 0x80 (Unit Serial Number): a 4-byte header whose bytes 2..4 are
/// the length, then the serial in ASCII, often padded with spaces.
fn parse_vpd_serial(page: &[u8]) -> String {
    if page.len() < 4 || page[1] != 0x80 {
        return String::new();
    }
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let body = page.get(4..4 + len).unwrap_or(&page[4..]);
    String::from_utf8_lossy(body)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_owned()
}

fn first_present(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .find_map(|p| read_trimmed(p).ok().filter(|v| !v.is_empty()))
        .unwrap_or_default()
}

/// Splits a Linux `dev_t` (as from `MetadataExt::rdev`) into major and minor,
/// as glibc's `gnu_dev_major`/`gnu_dev_minor` do.
pub(crate) fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    // Both masks leave at most 32 bits.
    (major as u32, minor as u32)
}

/// Resolves a block device node such as /dev/mapper/root to its device number.
pub(crate) fn dev_of_node(path: &Path) -> io::Result<(u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path)?;
    if !meta.file_type().is_block_device() {
        return Err(io::Error::other("not a block device"));
    }
    Ok(split_dev(meta.rdev()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Builds a fake sysfs: nvme0n1 with partitions p1 (plain) and p2
    /// (LUKS, dm-0) carrying an LVM volume (dm-1); sda as a USB stick; loop0.
    fn fake_sys() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path();
        let mk = |p: &str, files: &[(&str, &str)]| {
            let dir = sys.join(p);
            std::fs::create_dir_all(&dir).unwrap();
            for (f, content) in files {
                let path = dir.join(f);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
        };
        let nvme = "devices/pci0000:00/0000:00:1d.0/nvme/nvme0/nvme0n1";
        mk(
            nvme,
            &[
                ("size", "1000215216\n"),
                ("queue/rotational", "0\n"),
                ("removable", "0\n"),
            ],
        );
        mk(
            "devices/pci0000:00/0000:00:1d.0/nvme/nvme0",
            &[
                ("model", "Samsung SSD 980  \n"),
                ("serial", "S64DNX0R123\n"),
            ],
        );
        symlink(
            sys.join("devices/pci0000:00/0000:00:1d.0/nvme/nvme0"),
            sys.join(nvme).join("device"),
        )
        .unwrap();
        mk(&format!("{nvme}/nvme0n1p1"), &[("partition", "1\n")]);
        mk(&format!("{nvme}/nvme0n1p2"), &[("partition", "2\n")]);
        mk(
            "devices/virtual/block/dm-0",
            &[
                ("dm/uuid", "CRYPT-LUKS2-0123abcd-luks-0123abcd\n"),
                ("size", "1\n"),
            ],
        );
        mk("devices/virtual/block/dm-0/slaves", &[]);
        symlink(
            sys.join(nvme).join("nvme0n1p2"),
            sys.join("devices/virtual/block/dm-0/slaves/nvme0n1p2"),
        )
        .unwrap();
        mk(
            "devices/virtual/block/dm-1",
            &[("dm/uuid", "LVM-abcdef\n"), ("size", "1\n")],
        );
        mk("devices/virtual/block/dm-1/slaves", &[]);
        symlink(
            sys.join("devices/virtual/block/dm-0"),
            sys.join("devices/virtual/block/dm-1/slaves/dm-0"),
        )
        .unwrap();
        let usb = "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0";
        mk(usb, &[("model", "Cruzer Blade    \n")]);
        let mut vpd = vec![0u8, 0x80, 0, 12];
        vpd.extend_from_slice(b"4C530001  \0\0");
        std::fs::write(sys.join(usb).join("vpd_pg80"), vpd).unwrap();
        mk(
            &format!("{usb}/block/sda"),
            &[
                ("size", "60063744\n"),
                ("queue/rotational", "1\n"),
                ("removable", "0\n"),
            ],
        );
        symlink(sys.join(usb), sys.join(usb).join("block/sda/device")).unwrap();
        mk("devices/virtual/block/loop0", &[("size", "0\n")]);

        mk("block", &[]);
        mk("dev/block", &[]);
        for (name, target, dev) in [
            ("nvme0n1", nvme.to_owned(), "259:0"),
            ("sda", format!("{usb}/block/sda"), "8:0"),
            ("dm-0", "devices/virtual/block/dm-0".to_owned(), "254:0"),
            ("dm-1", "devices/virtual/block/dm-1".to_owned(), "254:1"),
            ("loop0", "devices/virtual/block/loop0".to_owned(), "7:0"),
        ] {
            symlink(sys.join(&target), sys.join("block").join(name)).unwrap();
            symlink(sys.join(&target), sys.join("dev/block").join(dev)).unwrap();
        }
        symlink(
            sys.join(nvme).join("nvme0n1p1"),
            sys.join("dev/block/259:1"),
        )
        .unwrap();
        root
    }

    #[test]
    fn resolves_lvm_on_luks_to_the_nvme_disk() {
        let sys = fake_sys();
        let backing = resolve(sys.path(), 254, 1).unwrap();
        assert_eq!(backing.disks, BTreeSet::from(["nvme0n1".to_owned()]));
        assert_eq!(backing.encryption.as_deref(), Some("luks"));
    }

    #[test]
    fn resolves_plain_partition_without_encryption() {
        let sys = fake_sys();
        let backing = resolve(sys.path(), 259, 1).unwrap();
        assert_eq!(backing.disks, BTreeSet::from(["nvme0n1".to_owned()]));
        assert_eq!(backing.encryption, None);
        assert_eq!(resolve(sys.path(), 1, 99), None);
    }

    #[test]
    fn lists_physical_disks_only() {
        let sys = fake_sys();
        let mut errors = Errors::default();
        let system = BTreeSet::from(["nvme0n1".to_owned()]);
        let disks = list_disks(sys.path(), &system, &mut errors);
        assert!(errors.into_vec().is_empty());
        let names: Vec<_> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["nvme0n1", "sda"]);
        let nvme = &disks[0];
        assert_eq!(nvme.model, "Samsung SSD 980");
        assert_eq!(nvme.serial_number, "S64DNX0R123");
        assert_eq!(nvme.size_bytes, 1_000_215_216 * 512);
        assert_eq!(nvme.media(), DiskMedia::Nvme);
        assert!(nvme.system && !nvme.removable);
        let stick = &disks[1];
        assert_eq!(stick.model, "Cruzer Blade");
        assert_eq!(stick.serial_number, "4C530001");
        assert_eq!(stick.media(), DiskMedia::Hdd);
        assert!(stick.removable, "a USB disk counts as removable");
        assert!(!stick.system);
    }

    #[test]
    fn crypt_kinds() {
        assert_eq!(crypt_kind("CRYPT-LUKS1-abc-name"), Some("luks"));
        assert_eq!(crypt_kind("CRYPT-PLAIN-name\n"), Some("dm-crypt"));
        assert_eq!(crypt_kind("LVM-xyz"), None);
    }

    #[test]
    fn splits_dev_t() {
        // makedev(254, 0) and makedev(259, 65537) as glibc encodes them.
        assert_eq!(split_dev(254 << 8), (254, 0));
        let dev = ((259u64 & 0xfff) << 8) | ((65537u64 & 0xff) | ((65537u64 & !0xff) << 12));
        assert_eq!(split_dev(dev), (259, 65537));
    }

    #[test]
    fn vpd_serial_is_trimmed_and_bounded() {
        assert_eq!(
            parse_vpd_serial(&[0, 0x80, 0, 4, b' ', b'A', b'B', b' ']),
            "AB"
        );
        assert_eq!(parse_vpd_serial(&[0, 0x80, 0, 200, b'X']), "X");
        assert_eq!(parse_vpd_serial(&[0, 0x83, 0, 1, b'X']), "");
        assert_eq!(parse_vpd_serial(&[0]), "");
    }
}
