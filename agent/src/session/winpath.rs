//! Windows paths and directory ACLs for copy sessions, as pure functions
//! (tested on every platform; the file system side is `copy_windows.rs`).
//!
//! A path from the server is untrusted. It must be an absolute path with
//! a drive letter; everything that Windows would quietly reinterpret is
//! refused before it reaches the file system: `..`, `.`, empty
//! components, alternate data streams (`a.txt:stream`), device names
//! (`NUL`, `COM1.txt`), names ending in a dot or space (Windows strips
//! them, so `a.txt.` is `a.txt`), UNC and `\\?\` paths.
//!
//! Uploads need every directory from the transfer root down to belong to
//! SYSTEM, Administrators or TrustedInstaller and be writable by nobody
//! else (checked in the directory's SDDL): the Windows form of the rule
//! that Linux applies with file modes.

/// Longest path accepted, in bytes (as on Linux).
pub const MAX_PATH: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WinPathError {
    #[error("{0} is not an absolute Windows path with a drive letter (C:\\...)")]
    NotAbsolute(String),
    #[error("the path is longer than {MAX_PATH} bytes")]
    TooLong,
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("{0} does not name a file")]
    NoFileName(String),
    #[error("{path}: {part:?} is not allowed in a path ({why})")]
    BadComponent {
        path: String,
        part: String,
        why: &'static str,
    },
}

/// An absolute path as a drive letter (upper case) and its components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinPath {
    pub drive: char,
    pub parts: Vec<String>,
}

impl WinPath {
    /// `C:\a\b`.
    pub fn display(&self) -> String {
        let mut text = format!("{}:\\", self.drive);
        text.push_str(&self.parts.join("\\"));
        text
    }

    /// Whether `self` is `root` or lies below it (Windows compares names
    /// without regard to case).
    pub fn starts_with(&self, root: &WinPath) -> bool {
        self.drive == root.drive
            && self.parts.len() >= root.parts.len()
            && self
                .parts
                .iter()
                .zip(&root.parts)
                .all(|(a, b)| a.to_lowercase() == b.to_lowercase())
    }
}

const DEVICE_NAMES: &[&str] = &["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

/// Parses `C:\dir\file` (or with `/`); `C:\` alone is the drive.
pub fn parse(path: &str) -> Result<WinPath, WinPathError> {
    if path.len() > MAX_PATH {
        return Err(WinPathError::TooLong);
    }
    if path.contains('\0') {
        return Err(WinPathError::Nul);
    }
    let bytes = path.as_bytes();
    if bytes.len() < 3
        || !bytes[0].is_ascii_alphabetic()
        || bytes[1] != b':'
        || !matches!(bytes[2], b'\\' | b'/')
    {
        return Err(WinPathError::NotAbsolute(path.to_owned()));
    }
    let drive = char::from(bytes[0].to_ascii_uppercase());
    let rest = &path[3..];
    let mut parts = Vec::new();
    if !rest.is_empty() {
        for part in rest.split(['\\', '/']) {
            check_component(path, part)?;
            parts.push(part.to_owned());
        }
    }
    Ok(WinPath { drive, parts })
}

fn check_component(path: &str, part: &str) -> Result<(), WinPathError> {
    let bad = |why: &'static str| WinPathError::BadComponent {
        path: path.to_owned(),
        part: part.to_owned(),
        why,
    };
    if part.is_empty() {
        return Err(bad("empty, or a doubled separator"));
    }
    if part == "." || part == ".." {
        return Err(bad("relative component"));
    }
    if part
        .chars()
        .any(|c| c < ' ' || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*'))
    {
        return Err(bad("reserved character or alternate data stream"));
    }
    if part.ends_with('.') || part.ends_with(' ') {
        return Err(bad("Windows strips a trailing dot or space"));
    }
    // `NUL`, `nul.txt`, `COM1.log`: the device, whatever directory it is in.
    let stem = part
        .split('.')
        .next()
        .unwrap_or(part)
        .trim_end()
        .to_ascii_uppercase();
    let numbered = |prefix: &str| {
        stem.strip_prefix(prefix).is_some_and(|n| {
            (n.len() == 1 && n.as_bytes()[0].is_ascii_digit()) || matches!(n, "¹" | "²" | "³")
        })
    };
    if DEVICE_NAMES.contains(&stem.as_str()) || numbered("COM") || numbered("LPT") {
        return Err(bad("a device name"));
    }
    Ok(())
}

/// A file inside one of `roots`: the root it is in, the directories from
/// the root to the file's parent, and the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub root: WinPath,
    /// Components below the root, up to the parent directory.
    pub below: Vec<String>,
    pub name: String,
}

/// Where `path` lies among `roots`, or `None` when outside all of them
/// (the root itself is not a file inside it).
pub fn place(path: &WinPath, roots: &[WinPath]) -> Option<Placed> {
    let (name, parent) = path.parts.split_last()?;
    let parent = WinPath {
        drive: path.drive,
        parts: parent.to_vec(),
    };
    let root = roots
        .iter()
        .filter(|root| parent.starts_with(root))
        .max_by_key(|root| root.parts.len())?;
    Some(Placed {
        root: root.clone(),
        below: parent.parts[root.parts.len()..].to_vec(),
        name: name.clone(),
    })
}

/// SIDs that may own and write to an upload directory: SYSTEM,
/// Administrators, TrustedInstaller, and OWNER RIGHTS (which stands for
/// the owner, checked separately).
const TRUSTED: &[&str] = &[
    "SY",
    "S-1-5-18",
    "BA",
    "S-1-5-32-544",
    "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464",
    "OW",
    "S-1-3-4",
];

/// Rights that let someone put, replace or remove entries in a directory,
/// or change who may: FILE_ADD_FILE, FILE_ADD_SUBDIRECTORY,
/// FILE_DELETE_CHILD, DELETE, WRITE_DAC, WRITE_OWNER, GENERIC_ALL,
/// GENERIC_WRITE.
const WRITE_MASK: u32 =
    0x2 | 0x4 | 0x40 | 0x1_0000 | 0x4_0000 | 0x8_0000 | 0x1000_0000 | 0x4000_0000;

/// Why a directory with this security descriptor (SDDL with owner and
/// DACL) is not safe to upload into, or `None` when it is.
pub fn untrusted_directory(sddl: &str) -> Option<String> {
    let owner = section(sddl, 'O');
    match owner {
        Some(owner) if TRUSTED.contains(&owner) && owner != "OW" && owner != "S-1-3-4" => {}
        Some(owner) => return Some(format!("it belongs to {owner}")),
        None => return Some("its owner is unknown".to_owned()),
    }
    let Some(dacl) = section(sddl, 'D') else {
        return Some("it has no access list".to_owned());
    };
    if dacl.starts_with("NO_ACCESS_CONTROL") {
        return Some("it has no access control (everyone may write)".to_owned());
    }
    for ace in dacl.split('(').skip(1) {
        let ace = ace.trim_end_matches(')');
        let fields: Vec<&str> = ace.split(';').collect();
        if fields.len() < 6 {
            return Some(format!("an access entry cannot be read: ({ace})"));
        }
        let (kind, flags, rights, trustee) = (fields[0], fields[1], fields[2], fields[5]);
        // Deny entries only take away; inherit-only entries do not apply
        // to the directory itself (only to what is created in it later,
        // which is checked when it is a directory on the way).
        if !matches!(kind, "A" | "OA") || has_flag(flags, "IO") {
            continue;
        }
        if rights_mask(rights) & WRITE_MASK != 0 && !TRUSTED.contains(&trustee) {
            return Some(format!(
                "{} may write to it ({rights})",
                trustee_name(trustee)
            ));
        }
    }
    None
}

/// The text after `X:` up to the next section (`O:`, `G:`, `D:`, `S:`).
fn section(sddl: &str, key: char) -> Option<&str> {
    let mut depth = 0usize;
    let bytes = sddl.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && i > 0 => {
                let k = char::from(bytes[i - 1]);
                if start.is_some() && matches!(k, 'O' | 'G' | 'D' | 'S') {
                    return start.map(|s| &sddl[s..i - 1]);
                }
                if k == key {
                    start = Some(i + 1);
                }
            }
            _ => {}
        }
    }
    start.map(|s| &sddl[s..])
}

fn has_flag(flags: &str, flag: &str) -> bool {
    flags.as_bytes().chunks(2).any(|f| f == flag.as_bytes())
}

/// An SDDL rights string as a mask: hex (`0x1301bf`) or two-letter
/// tokens. Unknown tokens count as everything: better a refused upload
/// than a missed writer.
pub fn rights_mask(rights: &str) -> u32 {
    if let Some(hex) = rights
        .strip_prefix("0x")
        .or_else(|| rights.strip_prefix("0X"))
    {
        return u32::from_str_radix(hex, 16).unwrap_or(u32::MAX);
    }
    rights
        .as_bytes()
        .chunks(2)
        .map(|token| match token {
            b"GA" => 0x1000_0000,
            b"GR" => 0x8000_0000,
            b"GW" => 0x4000_0000,
            b"GX" => 0x2000_0000,
            b"RC" => 0x2_0000,
            b"SD" => 0x1_0000,
            b"WD" => 0x4_0000,
            b"WO" => 0x8_0000,
            b"CC" => 0x1,
            b"DC" => 0x2,
            b"LC" => 0x4,
            b"SW" => 0x8,
            b"RP" => 0x10,
            b"WP" => 0x20,
            b"DT" => 0x40,
            b"LO" => 0x80,
            b"CR" => 0x100,
            b"FA" => 0x1F_01FF,
            b"FR" => 0x12_0089,
            b"FW" => 0x12_0116,
            b"FX" => 0x12_00A0,
            _ => u32::MAX,
        })
        .fold(0, |mask, bits| mask | bits)
}

fn trustee_name(sid: &str) -> String {
    let name = match sid {
        "BU" => "Users",
        "AU" => "Authenticated Users",
        "WD" => "Everyone",
        "IU" => "interactive users",
        "BG" => "Guests",
        "AN" => "anonymous",
        "CO" => "CREATOR OWNER",
        "DU" => "Domain Users",
        _ => return sid.to_owned(),
    };
    format!("{name} ({sid})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> WinPath {
        parse(text).unwrap()
    }

    #[test]
    fn absolute_drive_paths_parse() {
        let path = p(r"c:\ProgramData\schoolfleet\transfer\setup.msi");
        assert_eq!(path.drive, 'C');
        assert_eq!(
            path.parts,
            ["ProgramData", "schoolfleet", "transfer", "setup.msi"]
        );
        assert_eq!(
            path.display(),
            r"C:\ProgramData\schoolfleet\transfer\setup.msi"
        );
        assert_eq!(p("D:/Daten/a.txt").parts, ["Daten", "a.txt"]);
        assert_eq!(p(r"C:\").parts, Vec::<String>::new());
        // Umlauts are names like any other.
        assert_eq!(p(r"C:\Schüler\Größe.txt").parts[1], "Größe.txt");
    }

    #[test]
    fn what_windows_would_reinterpret_is_refused() {
        for bad in [
            "relative\\a",
            "C:relative",
            "\\\\server\\share\\a",
            "\\\\?\\C:\\a",
            "\\\\.\\PhysicalDrive0",
            "/tmp/a",
            "",
        ] {
            assert!(
                matches!(parse(bad), Err(WinPathError::NotAbsolute(_))),
                "{bad}"
            );
        }
        for (bad, why) in [
            (r"C:\a\..\Windows\x", "relative"),
            (r"C:\a\.\x", "relative"),
            (r"C:\a\\x", "empty"),
            (r"C:\a\x.txt:stream", "data stream"),
            (r"C:\a\x?.txt", "reserved"),
            (r"C:\a\x.txt.", "trailing"),
            (r"C:\a\x.txt ", "trailing"),
            (r"C:\a\NUL", "device"),
            (r"C:\a\nul.txt", "device"),
            (r"C:\a\COM1.log", "device"),
            (r"C:\a\lpt9", "device"),
            (r"C:\a\CONIN$", "device"),
            ("C:\\a\\b\u{7}c", "reserved"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(&err, WinPathError::BadComponent { why: w, .. } if w.contains(why)),
                "{bad}: {err}"
            );
        }
        // Names that merely start like devices are fine.
        parse(r"C:\a\CONFIG.txt").unwrap();
        parse(r"C:\a\COM10").unwrap();
        parse(r"C:\a\console.log").unwrap();
        assert!(matches!(
            parse(&format!("C:\\{}", "a".repeat(MAX_PATH))),
            Err(WinPathError::TooLong)
        ));
        assert!(matches!(parse("C:\\a\0b"), Err(WinPathError::Nul)));
    }

    #[test]
    fn placement_in_roots_ignores_case_and_refuses_outside() {
        let roots = [p(r"C:\ProgramData\schoolfleet\transfer")];
        let placed = place(
            &p(r"c:\programdata\SCHOOLFLEET\Transfer\treiber\x.msi"),
            &roots,
        )
        .unwrap();
        assert_eq!(placed.below, ["treiber"]);
        assert_eq!(placed.name, "x.msi");
        assert_eq!(
            place(&p(r"C:\ProgramData\schoolfleet\transfer\a.txt"), &roots)
                .unwrap()
                .below,
            Vec::<String>::new()
        );
        for outside in [
            r"C:\ProgramData\schoolfleet\transfer",
            r"C:\ProgramData\schoolfleet\agent\device.key",
            r"C:\ProgramData\schoolfleet\transfer2\a",
            r"D:\ProgramData\schoolfleet\transfer\a",
            r"C:\Windows\System32\drivers\etc\hosts",
        ] {
            assert_eq!(place(&p(outside), &roots), None, "{outside}");
        }
    }

    #[test]
    fn directories_that_only_system_and_admins_control_are_trusted() {
        // What the agent's icacls call leaves on the transfer root.
        let own = "O:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";
        assert_eq!(untrusted_directory(own), None);
        // With a group section and hex rights, as Windows prints them.
        let hex = "O:BAG:SYD:PAI(A;OICI;0x1f01ff;;;SY)(A;OICI;0x1f01ff;;;BA)(A;OICI;0x1200a9;;;BU)";
        assert_eq!(untrusted_directory(hex), None, "Users may read and list");
        // Creator owner's entry only applies to what is created inside.
        let co = "O:SYD:AI(A;OICIIO;GA;;;CO)(A;OICI;FA;;;SY)";
        assert_eq!(untrusted_directory(co), None);
        // A deny entry takes away, never adds.
        let deny = "O:SYD:P(D;OICI;FA;;;BU)(A;OICI;FA;;;SY)";
        assert_eq!(untrusted_directory(deny), None);
    }

    #[test]
    fn directories_that_users_can_write_to_are_refused() {
        // C:\Users\Public: interactive users may add files.
        let public =
            "O:SYG:SYD:PAI(A;OICIIO;GA;;;CO)(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1301bf;;;IU)";
        let why = untrusted_directory(public).unwrap();
        assert!(why.contains("interactive users (IU) may write"), "{why}");
        // C:\ProgramData lets Users create subdirectories (CC is list for
        // files, DC is add subdirectory... in hex: 0x4 = add subdirectory).
        assert!(untrusted_directory("O:SYD:(A;CI;0x100004;;;BU)(A;OICI;FA;;;SY)").is_some());
        assert!(
            untrusted_directory("O:SYD:(A;;FW;;;WD)")
                .unwrap()
                .contains("Everyone (WD)")
        );
        assert!(untrusted_directory("O:SYD:(A;;GA;;;AU)").is_some());
        assert!(
            untrusted_directory("O:SYD:(A;;WD;;;BU)").is_some(),
            "WRITE_DAC"
        );
        // Owned by someone else: the owner may always change the DACL.
        let pupil = "O:S-1-5-21-1-2-3-1001D:P(A;OICI;FA;;;SY)";
        assert_eq!(
            untrusted_directory(pupil).unwrap(),
            "it belongs to S-1-5-21-1-2-3-1001"
        );
        // No DACL at all means everyone may do everything.
        assert!(
            untrusted_directory("O:SYD:NO_ACCESS_CONTROL")
                .unwrap()
                .contains("no access control")
        );
        assert!(untrusted_directory("O:SY").is_some());
        assert!(untrusted_directory("").is_some());
        // Unknown rights are taken as everything.
        assert!(untrusted_directory("O:SYD:(A;;ZZ;;;BU)").is_some());
        assert!(
            untrusted_directory("O:SYD:(A;;FA)").is_some(),
            "broken entry"
        );
    }

    #[test]
    fn rights_masks() {
        assert_eq!(rights_mask("FA"), 0x1F01FF);
        assert_eq!(rights_mask("0x1200a9"), 0x1200a9);
        assert_eq!(rights_mask("GRGX"), 0xA000_0000);
        assert_eq!(rights_mask("0xzz"), u32::MAX);
        assert_eq!(rights_mask("FR") & WRITE_MASK, 0);
        assert_ne!(rights_mask("FW") & WRITE_MASK, 0);
    }
}
