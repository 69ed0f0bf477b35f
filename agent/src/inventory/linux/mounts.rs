//! Mounted filesystems, from /proc/self/mountinfo.

use std::collections::HashSet;

/// One line of mountinfo. Paths stay raw bytes: they need not be UTF-8, and
/// statvfs needs the exact path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted (not "/" for bind
    /// mounts and btrfs subvolumes).
    pub root: Vec<u8>,
    pub mount_point: Vec<u8>,
    pub fs_type: String,
    pub source: Vec<u8>,
}

/// Parses /proc/self/mountinfo (proc(5)):
/// `id parent major:minor root mount-point options [optional...] - type source super-options`.
/// Malformed lines are skipped.
pub(crate) fn parse_mountinfo(data: &[u8]) -> Vec<Mount> {
    data.split(|b| *b == b'\n').filter_map(parse_line).collect()
}

fn parse_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let (major, minor) = std::str::from_utf8(fields.get(2)?).ok()?.split_once(':')?;
    let separator = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    Some(Mount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: unescape(fields.get(3)?),
        mount_point: unescape(fields.get(4)?),
        fs_type: String::from_utf8_lossy(fields.get(separator + 1)?).into_owned(),
        source: unescape(fields.get(separator + 2)?),
    })
}

/// The kernel escapes space, tab, newline and backslash in mountinfo as
/// three octal digits (`\040`).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(octal) = field.get(i + 1..i + 4)
            && octal.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = octal
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Filesystem types that hold no user data on a local disk.
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "iso9660",
    "udf",
    "nfsd",
    "zonefs",
];

/// Network filesystems are skipped: statvfs on a hard-mounted share whose
/// server is gone blocks forever, and they are not the device's storage.
const NETWORK_FS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "9p",
    "afs",
    "davfs",
    "sshfs",
];

/// Should this mount appear in the inventory? Pseudo and network
/// filesystems do not, nor FUSE filesystems other than `fuseblk` (NTFS and
/// exFAT on a local disk): the others are per-user mounts (gvfs, document
/// portals, sshfs) that may hang or refuse even root.
pub(crate) fn is_reported(mount: &Mount) -> bool {
    let t = mount.fs_type.as_str();
    !(PSEUDO_FS.contains(&t) || NETWORK_FS.contains(&t) || t.starts_with("fuse.") || t == "fuse")
}

/// The mounts worth reporting, one per filesystem: bind mounts and further
/// btrfs subvolumes of a filesystem already listed share its device number,
/// size and free space, and would only repeat it. The first mount in
/// mountinfo order is the original one (/ comes first of all).
pub(crate) fn reported(mounts: &[Mount]) -> Vec<&Mount> {
    let mut seen = HashSet::new();
    mounts
        .iter()
        .filter(|m| is_reported(m))
        .filter(|m| seen.insert((m.major, m.minor)))
        .collect()
}

/// Replaces user names in mount points with "<user>": desktops mount USB
/// sticks under /media/<user>/<label> (Debian/Ubuntu) or
/// /run/media/<user>/<label> (Fedora), and per-user home filesystems live at
/// /home/<user>. The inventory carries no personal data.
pub(crate) fn redact_user_names(mount_point: &str) -> String {
    for (prefix, needs_more) in [("/run/media/", false), ("/media/", true), ("/home/", false)] {
        let Some(rest) = mount_point.strip_prefix(prefix) else {
            continue;
        };
        let (user, tail) = match rest.split_once('/') {
            Some((user, tail)) => (user, Some(tail)),
            None => (rest, None),
        };
        // /media/cdrom or /media/usb0 directly is no user directory.
        if user.is_empty() || (needs_more && tail.is_none()) {
            return mount_point.to_owned();
        }
        return match tail {
            Some(tail) => format!("{prefix}<user>/{tail}"),
            None => format!("{prefix}<user>"),
        };
    }
    mount_point.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &[u8] = b"22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
28 27 0:25 / /run rw,nosuid - tmpfs tmpfs rw
29 27 259:1 / /boot/efi rw,relatime shared:5 master:2 - vfat /dev/nvme0n1p1 rw
30 27 0:40 /@home /home rw,relatime - btrfs /dev/mapper/luks-1234 rw,subvol=/@home
31 27 0:40 /@ /srv rw,relatime - btrfs /dev/mapper/luks-1234 rw,subvol=/@
32 27 254:0 /var/lib/x /mnt/bind rw - ext4 /dev/vda rw
33 27 254:0 /var/lib/x /mnt/bind2 rw - ext4 /dev/vda rw
34 27 8:1 / /media/anna/My\\040Stick rw - exfat /dev/sda1 rw
35 27 0:50 / /mnt/share rw - nfs4 server:/export rw
36 27 0:51 / /run/user/1000/doc rw - fuse.portal portal rw
37 27 8:17 / /mnt/win rw - fuseblk /dev/sdb1 rw
garbage line
38 27 x:y / /bad rw - ext4 /dev/x rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 12, "malformed lines are skipped");
        let root = &mounts[1];
        assert_eq!((root.major, root.minor), (254, 0));
        assert_eq!(root.mount_point, b"/");
        assert_eq!(root.fs_type, "ext4");
        assert_eq!(root.source, b"/dev/vda");
        // Optional fields before the separator are skipped.
        assert_eq!(mounts[3].fs_type, "vfat");
        assert_eq!(mounts[3].source, b"/dev/nvme0n1p1");
        assert_eq!(mounts[4].root, b"/@home");
        assert_eq!(mounts[8].mount_point, b"/media/anna/My Stick");
    }

    #[test]
    fn reports_real_filesystems_once() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let points: Vec<_> = reported(&mounts)
            .iter()
            .map(|m| String::from_utf8_lossy(&m.mount_point).into_owned())
            .collect();
        assert_eq!(
            points,
            [
                "/",
                "/boot/efi",
                "/home",
                "/media/anna/My Stick",
                "/mnt/win"
            ]
        );
    }

    #[test]
    fn unescape_leaves_odd_backslashes() {
        assert_eq!(unescape(b"a\\134b\\011c"), b"a\\b\tc");
        assert_eq!(unescape(b"a\\9xx\\"), b"a\\9xx\\");
        assert_eq!(unescape(b"\\777"), b"\\777");
        assert_eq!(unescape(b"\\377"), [0xff]);
    }

    #[test]
    fn user_names_are_redacted() {
        assert_eq!(
            redact_user_names("/media/anna/My Stick"),
            "/media/<user>/My Stick"
        );
        assert_eq!(
            redact_user_names("/run/media/ben/DATA"),
            "/run/media/<user>/DATA"
        );
        assert_eq!(redact_user_names("/home/carla"), "/home/<user>");
        assert_eq!(redact_user_names("/home"), "/home");
        assert_eq!(redact_user_names("/media/cdrom"), "/media/cdrom");
        assert_eq!(redact_user_names("/srv/media/x/y"), "/srv/media/x/y");
    }
}
