//! Collect less (issue 12): what an inventory must not carry about
//! removable media. Applied by the agent before it reports and again by the
//! server when it validates a report, since agents are hostile.

use crate::v1::Inventory;

/// Mount points under which desktops mount removable media by their volume
/// label (`/media/<user>/<label>`, `/run/media/<user>/<label>`).
const REMOVABLE_MOUNT_ROOTS: [&str; 2] = ["/media/", "/run/media/"];

/// Clears the serial numbers of removable disks (USB sticks, SD cards) and
/// drops the filesystems on removable media, whose mount points carry the
/// volume label. Returns how many values were removed.
///
/// A USB stick's serial number and label follow a person from PC to PC;
/// neither the standard nor support needs them. The stick itself stays
/// visible as a removable disk (model and size).
pub fn strip_removable_media(inventory: &mut Inventory) -> usize {
    let mut removed = 0;
    let mut removable_devices = Vec::new();
    for disk in inventory.disks.iter_mut().filter(|d| d.removable) {
        if !disk.serial_number.is_empty() {
            disk.serial_number.clear();
            removed += 1;
        }
        if !disk.name.is_empty() {
            removable_devices.push(format!("/dev/{}", disk.name));
        }
    }
    let before = inventory.filesystems.len();
    inventory.filesystems.retain(|fs| {
        let on_removable_disk = removable_devices
            .iter()
            .any(|dev| fs.device.starts_with(dev.as_str()));
        let under_media_root = REMOVABLE_MOUNT_ROOTS
            .iter()
            .any(|root| fs.mount_point.starts_with(root));
        let by_label = fs.device.starts_with("/dev/disk/by-label/");
        !(on_removable_disk || under_media_root || by_label)
    });
    removed + (before - inventory.filesystems.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Disk, Filesystem};

    fn fs(mount_point: &str, device: &str) -> Filesystem {
        Filesystem {
            mount_point: mount_point.into(),
            device: device.into(),
            fs_type: "vfat".into(),
            ..Default::default()
        }
    }

    #[test]
    fn usb_serials_and_labels_are_dropped_fixed_disks_stay() {
        let mut inv = Inventory {
            disks: vec![
                Disk {
                    name: "nvme0n1".into(),
                    serial_number: "S5GXNF0R123456".into(),
                    system: true,
                    ..Default::default()
                },
                Disk {
                    name: "sdb".into(),
                    model: "SanDisk Cruzer".into(),
                    serial_number: "4C530001230915117243".into(),
                    removable: true,
                    ..Default::default()
                },
            ],
            filesystems: vec![
                fs("/", "/dev/nvme0n1p2"),
                fs("/media/<user>/KLASSENFAHRT", "/dev/sdb1"),
                fs("/mnt/stick", "/dev/sdb1"),
                fs("/run/media/<user>/BEWERBUNG", "/dev/sdc1"),
                fs("/mnt/x", "/dev/disk/by-label/PRIVAT"),
            ],
            ..Default::default()
        };
        assert_eq!(strip_removable_media(&mut inv), 5);
        assert_eq!(inv.disks[0].serial_number, "S5GXNF0R123456");
        assert_eq!(inv.disks[1].serial_number, "");
        assert_eq!(inv.disks[1].model, "SanDisk Cruzer");
        let mounts: Vec<_> = inv.filesystems.iter().map(|f| &f.mount_point).collect();
        assert_eq!(mounts, ["/"]);
        // Idempotent.
        assert_eq!(strip_removable_media(&mut inv), 0);
    }
}
