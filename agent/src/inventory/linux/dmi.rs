//! Hardware identity from the SMBIOS/DMI tables the kernel exports.

use std::io::ErrorKind;
use std::path::Path;

use super::read_trimmed;
use crate::inventory::Errors;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Dmi {
    pub vendor: String,
    pub model: String,
    pub serial_number: String,
    pub system_uuid: String,
    pub bios_vendor: String,
    pub bios_version: String,
    pub bios_date: String,
}

/// Reads /sys/class/dmi/id. Machines without SMBIOS (many ARM boards, some
/// VMs) have no such directory, which is no error. product_serial and
/// product_uuid are readable by root only; a refusal is recorded, since the
/// serial is what identifies the device.
pub(crate) fn collect(dir: &Path, errors: &mut Errors) -> Dmi {
    let mut read = |field: &str| match read_trimmed(&dir.join(field)) {
        Ok(value) => value,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => {
            errors.record("dmi", format_args!("{field}: {e}"));
            String::new()
        }
    };
    Dmi {
        vendor: read("sys_vendor"),
        model: read("product_name"),
        serial_number: real_identifier(read("product_serial")),
        system_uuid: real_identifier(read("product_uuid")).to_ascii_lowercase(),
        bios_vendor: read("bios_vendor"),
        bios_version: read("bios_version"),
        bios_date: read("bios_date"),
    }
}

/// Empties the placeholders vendors leave in SMBIOS instead of a serial
/// number or UUID. Dozens of machines sharing "To Be Filled By O.E.M." must
/// not look like one device to the server.
fn real_identifier(value: String) -> String {
    const PLACEHOLDERS: &[&str] = &[
        "to be filled by o.e.m.",
        "default string",
        "system serial number",
        "not specified",
        "not applicable",
        "none",
        "n/a",
        "0123456789",
        "serial",
        "03000200-0400-0500-0006-000700080009",
    ];
    let lower = value.trim().to_ascii_lowercase();
    let all_same =
        |c: char| !lower.is_empty() && lower.chars().all(|x| x == c || x == '-' || x == ' ');
    if lower.is_empty() || PLACEHOLDERS.contains(&lower.as_str()) || all_same('0') || all_same('f')
    {
        String::new()
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_drops_placeholders() {
        let dir = tempfile::tempdir().unwrap();
        for (f, v) in [
            ("sys_vendor", "LENOVO\n"),
            ("product_name", "20L7S0JQ00\n"),
            ("product_serial", "To Be Filled By O.E.M.\n"),
            ("product_uuid", "4C4C4544-0042-3510-8052-B4C04F4E5A32\n"),
            ("bios_date", "03/15/2023\n"),
        ] {
            std::fs::write(dir.path().join(f), v).unwrap();
        }
        let mut errors = Errors::default();
        let dmi = collect(dir.path(), &mut errors);
        assert!(errors.into_vec().is_empty(), "absent files are no error");
        assert_eq!(dmi.vendor, "LENOVO");
        assert_eq!(dmi.model, "20L7S0JQ00");
        assert_eq!(dmi.serial_number, "");
        assert_eq!(dmi.system_uuid, "4c4c4544-0042-3510-8052-b4c04f4e5a32");
        assert_eq!(dmi.bios_date, "03/15/2023");
        assert_eq!(dmi.bios_version, "");
    }

    #[test]
    fn placeholder_identifiers() {
        assert_eq!(
            real_identifier("00000000-0000-0000-0000-000000000000".into()),
            ""
        );
        assert_eq!(
            real_identifier("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF".into()),
            ""
        );
        assert_eq!(real_identifier("Default string".into()), "");
        assert_eq!(real_identifier("PF2ABCDE".into()), "PF2ABCDE");
    }

    #[test]
    fn unreadable_field_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where a file is expected fails with an error other
        // than NotFound, as a permission problem would.
        std::fs::create_dir(dir.path().join("product_serial")).unwrap();
        let mut errors = Errors::default();
        collect(dir.path(), &mut errors);
        let errors = errors.into_vec();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].collector, "dmi");
        assert!(errors[0].message.starts_with("product_serial:"));
    }
}
