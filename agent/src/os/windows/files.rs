//! Private state on Windows: the state directory gets an explicit,
//! protected DACL (SYSTEM and Administrators, full control, inherited by
//! everything created inside), so keys and tokens never get the default
//! inherited ACL of `C:\ProgramData`, which lets Users read.

use std::path::{Path, PathBuf};

/// SYSTEM and BUILTIN\Administrators, by SID so that localised Windows
/// (German group names) needs no lookup.
const OWNERS: [&str; 2] = ["*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F"];

/// Creates `dir` (and its parents), makes Administrators its owner and
/// replaces its DACL with one for SYSTEM and Administrators only,
/// inheritance from the parent removed. The owner matters: users may
/// create folders in `C:\ProgramData`, and one who made this directory
/// before the agent would otherwise stay its owner and could rewrite the
/// DACL at will.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    icacls_run(dir, &["/setowner", "*S-1-5-32-544"])?;
    let mut grant = vec!["/inheritance:r", "/grant:r"];
    grant.extend(OWNERS);
    icacls_run(dir, &grant)
}

fn icacls_run(dir: &Path, args: &[&str]) -> std::io::Result<()> {
    let status = std::process::Command::new(icacls())
        .arg(dir)
        .args(args)
        .arg("/q")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "icacls {} could not make {} private ({status})",
            args.first().copied().unwrap_or_default(),
            dir.display()
        )));
    }
    Ok(())
}

/// icacls from the system directory, never through PATH.
fn icacls() -> PathBuf {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\Windows".into());
    PathBuf::from(root).join("System32").join("icacls.exe")
}
