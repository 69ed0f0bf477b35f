//! Host name, uptime and machine id on Windows.

/// The computer name.
pub fn host_name() -> String {
    sysinfo::System::host_name().unwrap_or_default()
}

/// Seconds since boot.
pub fn uptime_seconds() -> u64 {
    sysinfo::System::uptime()
}

/// `HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid`, raw: hash it before
/// it leaves the device. (Cloned images share it unless sysprepped.)
pub fn machine_id() -> Option<String> {
    let key = winreg::RegKey::predef(winreg::enums::HKEY_LOCAL_MACHINE)
        .open_subkey("SOFTWARE\\Microsoft\\Cryptography")
        .ok()?;
    let id: String = key.get_value("MachineGuid").ok()?;
    Some(id.trim().to_owned()).filter(|id| !id.is_empty())
}
