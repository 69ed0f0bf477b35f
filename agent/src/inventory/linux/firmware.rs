//! Boot firmware, Secure Boot and TPM, from sysfs.

use std::path::Path;

use schoolfleet_proto::v1::{Firmware, Tristate};

use super::read_trimmed;

/// EFI global variable GUID; the SecureBoot variable lives under it.
const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

pub(crate) fn collect(sys: &Path) -> Firmware {
    let efi = sys.join("firmware/efi");
    let uefi = efi.is_dir();
    let secure_boot = if uefi {
        secure_boot(&efi.join("efivars"))
    } else {
        Tristate::No
    };
    let (tpm_present, tpm_version) = tpm(sys);
    Firmware {
        boot_mode: if uefi { "uefi" } else { "bios" }.to_owned(),
        secure_boot: secure_boot.into(),
        tpm_present,
        tpm_version,
        // Not judged on Linux (Windows 11 readiness is a Windows question).
        secure_boot_capable: Tristate::Unknown.into(),
    }
}

/// Reads the SecureBoot EFI variable. Legacy BIOS boot has no Secure Boot
/// at all (handled by the caller); a UEFI without the variable does not
/// support it. Unknown only where efivarfs cannot be read.
fn secure_boot(efivars: &Path) -> Tristate {
    match std::fs::read(efivars.join(SECURE_BOOT_VAR)) {
        Ok(bytes) => parse_secure_boot(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // An empty directory means efivarfs is not mounted: we cannot tell.
            let mounted = std::fs::read_dir(efivars).is_ok_and(|mut d| d.next().is_some());
            if mounted {
                Tristate::No
            } else {
                Tristate::Unknown
            }
        }
        Err(_) => Tristate::Unknown,
    }
}

/// efivarfs files start with 4 bytes of attributes; the 5th is the value.
fn parse_secure_boot(bytes: &[u8]) -> Tristate {
    match bytes.get(4) {
        Some(1) => Tristate::Yes,
        Some(0) => Tristate::No,
        _ => Tristate::Unknown,
    }
}

/// TPM presence and major version. Kernels since 5.6 say the version in
/// tpm_version_major; older ones expose `caps` for TPM 1.2 only, and the
/// resource manager device (tpmrm) exists only for TPM 2.0.
fn tpm(sys: &Path) -> (bool, String) {
    let Some(dev) = std::fs::read_dir(sys.join("class/tpm")).ok().and_then(|d| {
        d.filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("tpm"))
            })
            .min()
    }) else {
        return (false, String::new());
    };
    let version = match read_trimmed(&dev.join("tpm_version_major")).as_deref() {
        Ok("2") => "2.0",
        Ok("1") => "1.2",
        _ if read_trimmed(&dev.join("caps")).is_ok_and(|c| c.contains("TCG version: 1.2")) => "1.2",
        _ if sys
            .join("class/tpmrm")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()) =>
        {
            "2.0"
        }
        _ => "",
    };
    (true, version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, content: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn secure_boot_variable() {
        assert_eq!(parse_secure_boot(&[6, 0, 0, 0, 1]), Tristate::Yes);
        assert_eq!(parse_secure_boot(&[6, 0, 0, 0, 0]), Tristate::No);
        assert_eq!(parse_secure_boot(&[6, 0]), Tristate::Unknown);
    }

    #[test]
    fn uefi_with_secure_boot_and_tpm2() {
        let sys = tempfile::tempdir().unwrap();
        write(
            &sys.path()
                .join("firmware/efi/efivars")
                .join(SECURE_BOOT_VAR),
            &[6, 0, 0, 0, 1],
        );
        write(&sys.path().join("class/tpm/tpm0/tpm_version_major"), b"2\n");
        let fw = collect(sys.path());
        assert_eq!(fw.boot_mode, "uefi");
        assert_eq!(fw.secure_boot(), Tristate::Yes);
        assert!(fw.tpm_present);
        assert_eq!(fw.tpm_version, "2.0");
    }

    #[test]
    fn uefi_without_efivarfs_is_unknown() {
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sys.path().join("firmware/efi/efivars")).unwrap();
        write(
            &sys.path().join("class/tpm/tpm0/caps"),
            b"Manufacturer: 0x49465800\nTCG version: 1.2\n",
        );
        let fw = collect(sys.path());
        assert_eq!(fw.secure_boot(), Tristate::Unknown);
        assert_eq!(fw.tpm_version, "1.2");
    }

    #[test]
    fn legacy_bios_without_tpm() {
        let sys = tempfile::tempdir().unwrap();
        let fw = collect(sys.path());
        assert_eq!(fw.boot_mode, "bios");
        assert_eq!(fw.secure_boot(), Tristate::No);
        assert!(!fw.tpm_present);
        assert_eq!(fw.tpm_version, "");
    }
}
