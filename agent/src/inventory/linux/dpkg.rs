//! Installed Debian packages, read from dpkg's own database.
//!
//! Parsing /var/lib/dpkg/status directly costs a few milliseconds; spawning
//! `dpkg-query` would cost a process and more CPU than the whole rest of the
//! collection.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use schoolfleet_proto::v1::SoftwarePackage;

pub(crate) const STATUS_FILE: &str = "/var/lib/dpkg/status";
pub(crate) const INFO_DIR: &str = "/var/lib/dpkg/info";

/// Parses dpkg's status database (deb822 paragraphs) into installed packages.
///
/// A package counts as installed when the third word of its `Status` field
/// is `installed`, whatever the selection (`install`, `hold`, and also
/// `deinstall`/`purge` for packages selected for removal but still on disk),
/// or when it is only waiting for triggers (`triggers-awaited`,
/// `triggers-pending`): its files are in place, and counting it avoids
/// packages flickering out of the inventory while an upgrade runs.
///
/// This is what `dpkg-query -W -f='${db:Status-Abbrev}'` shows as `?i`, `?W`
/// and `?t`. `dpkg-query -W` without a filter lists more: packages removed
/// but not purged (`rc`, state config-files) and half-installed or unpacked
/// ones. On a clean machine where every package is `ii` the counts agree.
///
/// Publisher stays empty: dpkg's Maintainer field names individual Debian
/// developers, not a vendor.
#[cfg(test)]
pub(crate) fn parse_status(text: &str) -> Vec<SoftwarePackage> {
    let mut packages = Vec::new();
    parse_into(text, &mut packages);
    packages
}

/// [`parse_status`], read paragraph by paragraph: the whole file (about
/// 700 KB for 900 packages) in one buffer was the collection's largest
/// allocation, and glibc then keeps the collecting thread's arena grown to
/// that size, resident in the idle agent (about 0.8 MiB of its RSS).
pub(crate) fn read_status(mut reader: impl io::BufRead) -> io::Result<Vec<SoftwarePackage>> {
    let mut packages = Vec::new();
    let mut paragraph = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let end = reader.read_until(b'\n', &mut line)? == 0;
        if !end && !line.trim_ascii().is_empty() {
            // Continuation lines (Description, Conffiles, ...) are skipped
            // by the parser anyway: no need to keep them.
            if !line.starts_with(b" ") && !line.starts_with(b"\t") {
                paragraph.extend_from_slice(&line);
            }
            continue;
        }
        parse_into(&String::from_utf8_lossy(&paragraph), &mut packages);
        paragraph.clear();
        if end {
            return Ok(packages);
        }
    }
}

fn parse_into(text: &str, packages: &mut Vec<SoftwarePackage>) {
    let mut current = Paragraph::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            current.finish(packages);
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Continuation of a multi-line field (Description, Conffiles, ...).
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        // deb822 field names are case-insensitive.
        if key.eq_ignore_ascii_case("Package") {
            // A missing blank line must not merge two packages into one.
            if !current.name.is_empty() {
                current.finish(packages);
            }
            current.name = value;
        } else if key.eq_ignore_ascii_case("Status") {
            current.status = value;
        } else if key.eq_ignore_ascii_case("Version") {
            current.version = value;
        } else if key.eq_ignore_ascii_case("Architecture") {
            current.architecture = value;
        }
    }
    current.finish(packages);
}

#[derive(Default)]
struct Paragraph<'a> {
    name: &'a str,
    status: &'a str,
    version: &'a str,
    architecture: &'a str,
}

impl Paragraph<'_> {
    fn finish(&mut self, out: &mut Vec<SoftwarePackage>) {
        let p = std::mem::take(self);
        if p.name.is_empty() || !is_installed(p.status) {
            return;
        }
        out.push(SoftwarePackage {
            name: p.name.to_owned(),
            version: p.version.to_owned(),
            source: "dpkg".to_owned(),
            architecture: p.architecture.to_owned(),
            publisher: String::new(),
            // dpkg keeps no install date per package.
            install_date: String::new(),
        });
    }
}

fn is_installed(status: &str) -> bool {
    matches!(
        status.split_whitespace().nth(2),
        Some("installed" | "triggers-awaited" | "triggers-pending")
    )
}

/// When packages were last installed or upgraded: the newest modification
/// time of dpkg's per-package file lists (`info/*.list`).
///
/// dpkg writes a package's `.list` afresh whenever it unpacks that package,
/// so the newest one is the last time any software was installed or
/// upgraded — the question "when was this machine last patched?". The
/// alternatives answer other questions: `dpkg.log` and `status` also change
/// on removals and on mere selection changes (`apt-mark hold`), and apt's
/// `update-success-stamp` records only that package lists were downloaded.
pub(crate) fn last_change(info_dir: &Path) -> io::Result<Option<SystemTime>> {
    let mut newest = None;
    for entry in std::fs::read_dir(info_dir)? {
        let Ok(entry) = entry else { continue };
        if !entry.file_name().as_encoded_bytes().ends_with(b".list") {
            continue;
        }
        if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
            newest = newest.max(Some(modified));
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Architecture: amd64
Version: 5.2.15-2+b7
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 .
 Package: not-a-package
 Status: install ok installed

Package: libc6
Status: hold ok installed
Architecture: i386
Multi-Arch: same
Version: 2.36-9+deb12u9
Conffiles:
 /etc/ld.so.conf.d/x86_64-linux-gnu.conf d4e7a7b88a71b5ffd9e2644e71a0cfab

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: half
Status: install reinstreq half-installed
Architecture: amd64
Version: 2.0-1

Package: upgrading
Status: install ok triggers-pending
Architecture: all
Version: 3:1.2-3

Package: going-away
Status: deinstall ok installed
Architecture: amd64
Version: 0.9
Package: no-blank-line-before-this-one
";

    #[test]
    fn parses_installed_packages_only() {
        let packages = parse_status(STATUS);
        let names: Vec<_> = packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "libc6", "upgrading", "going-away"]);
        let libc = &packages[1];
        assert_eq!(libc.version, "2.36-9+deb12u9");
        assert_eq!(libc.architecture, "i386");
        assert_eq!(libc.source, "dpkg");
        assert_eq!(packages[2].version, "3:1.2-3");
    }

    #[test]
    fn reading_paragraph_by_paragraph_agrees_with_parsing_the_whole() {
        for text in [
            STATUS,
            "Package: a\r\nStatus: install ok installed\r\nVersion: 1\r\n\r\nPackage: b\nStatus: install ok installed",
            "",
            "\n\n",
        ] {
            let read = read_status(text.as_bytes()).unwrap();
            assert_eq!(read, parse_status(text));
        }
    }

    #[test]
    fn multi_line_description_is_not_parsed_as_fields() {
        let packages = parse_status(STATUS);
        assert!(!packages.iter().any(|p| p.name == "not-a-package"));
    }

    #[test]
    fn tolerates_crlf_and_missing_trailing_newline() {
        let text = "Package: a\r\nStatus: install ok installed\r\nVersion: 1\r\n\r\nPackage: b\nStatus: install ok installed";
        let packages = parse_status(text);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].version, "1");
    }

    #[test]
    fn last_change_takes_newest_list_file() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("a.list");
        let new = dir.path().join("b.list");
        let other = dir.path().join("c.md5sums");
        for p in [&old, &new, &other] {
            std::fs::write(p, "").unwrap();
        }
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let t1 = t0 + std::time::Duration::from_secs(60);
        let t2 = t1 + std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(t0)
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&new)
            .unwrap()
            .set_modified(t1)
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(t2)
            .unwrap();
        assert_eq!(last_change(dir.path()).unwrap(), Some(t1));
    }
}
