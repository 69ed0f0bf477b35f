//! Durable, private file writes, shared by server, agent and CLI for keys,
//! tokens and spooled reports.
//!
//! The file is created under a temporary name with its final mode (so a key
//! is never readable by others, not even briefly), written, fsynced, moved
//! into place, and the directory is fsynced so the move survives a power
//! cut.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// What to do when the destination already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it atomically (rename).
    Replace,
    /// Fail with `AlreadyExists` (hard link): never overwrite, e.g. a CA key
    /// another process created a moment ago.
    Keep,
}

pub fn write_durably(
    path: &Path,
    contents: &[u8],
    mode: u32,
    existing: Existing,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:016x}",
        name.to_string_lossy(),
        std::process::id(),
        rand_suffix()
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        match existing {
            Existing::Replace => fs::rename(&tmp, path),
            Existing::Keep => fs::hard_link(&tmp, path).and_then(|()| fs::remove_file(&tmp)),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    #[cfg(unix)]
    fs::File::open(dir).and_then(|d| d.sync_all())?;
    Ok(())
}

/// A cheap unique suffix for temporary names (no crypto needed: the name
/// only has to differ between concurrent writers).
fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_replaces_or_keeps() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_durably(&path, b"one", 0o600, Existing::Keep).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = write_durably(&path, b"two", 0o600, Existing::Keep).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_durably(&path, b"three", 0o600, Existing::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
