//! Transfer roots: copy sessions may only touch files inside them.
//!
//! The path comes from the server and is untrusted. The parent directory
//! is canonicalised (symbolic links resolved) and must lie inside a root;
//! then it is opened again one component at a time from the root with
//! O_NOFOLLOW, so a directory swapped for a symlink after the check cannot
//! lead outside. The final component must not be a symlink; callers open
//! it relative to the directory handle with O_NOFOLLOW.
//!
//! For writing, every directory below the root must belong to the agent's
//! user and be writable by nobody else (sticky directories excepted, where
//! others cannot replace the agent's files): in a directory a pupil owns,
//! the pupil could swap an uploaded script before the admin runs it.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

/// Longest path accepted (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{0} is not an absolute path")]
    NotAbsolute(String),
    #[error("the path is longer than {MAX_PATH} bytes")]
    TooLong,
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("{0} does not name a file")]
    NoFileName(String),
    #[error("{path} is outside the transfer roots ({roots})")]
    Outside { path: String, roots: String },
    #[error("{0} is a symbolic link")]
    Symlink(String),
    #[error(
        "{dir} is not a safe place to write: {why} (uploads go only into directories that belong to root and nobody else can write to)"
    )]
    Untrusted { dir: String, why: String },
    #[error("cannot open the directory of {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A file name inside an opened directory within a transfer root.
#[derive(Debug)]
pub struct Resolved {
    /// The parent directory, opened without following symlinks.
    pub dir: OwnedFd,
    pub name: OsString,
    /// Canonical parent joined with the name, for messages and logs.
    pub path: PathBuf,
    /// lstat of the final component, when it exists.
    pub existing: Option<FileStat>,
}

/// What the caller will do with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Every directory below the root must be trusted (see the module text).
    Write,
}

pub fn resolve(path: &str, roots: &[PathBuf], access: Access) -> Result<Resolved, PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute(path.to_owned()));
    }
    let outside = || PathError::Outside {
        path: path.to_owned(),
        roots: roots_text(roots),
    };
    let p = Path::new(path);
    let name = match p.file_name() {
        Some(name) if !path.ends_with('/') => name.to_owned(),
        _ => return Err(PathError::NoFileName(path.to_owned())),
    };
    let parent = p
        .parent()
        .ok_or_else(|| PathError::NoFileName(path.to_owned()))?;
    let canonical = std::fs::canonicalize(parent).map_err(|source| PathError::Directory {
        path: path.to_owned(),
        source,
    })?;
    let (root, rest) = roots
        .iter()
        .filter_map(|root| std::fs::canonicalize(root).ok())
        .find_map(|root| {
            let rest = canonical.strip_prefix(&root).ok()?.to_owned();
            Some((root, rest))
        })
        .ok_or_else(outside)?;

    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = open(&root, dir_flags, Mode::empty()).map_err(|e| PathError::Directory {
        path: path.to_owned(),
        source: e.into(),
    })?;
    let mut below = root.clone();
    for component in rest.components() {
        let Component::Normal(part) = component else {
            return Err(outside());
        };
        // ELOOP/ENOTDIR here means the tree changed under us: refuse.
        dir = openat(&dir, part, dir_flags, Mode::empty()).map_err(|_| outside())?;
        below.push(part);
        if access == Access::Write {
            let stat = fstat(&dir).map_err(|e| PathError::Directory {
                path: path.to_owned(),
                source: e.into(),
            })?;
            if let Some(why) = untrusted_directory(&stat, nix::unistd::geteuid().as_raw()) {
                return Err(PathError::Untrusted {
                    dir: below.display().to_string(),
                    why,
                });
            }
        }
    }
    let existing = match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => Some(stat),
        Err(nix::errno::Errno::ENOENT) => None,
        Err(e) => {
            return Err(PathError::Directory {
                path: path.to_owned(),
                source: e.into(),
            });
        }
    };
    if let Some(stat) = &existing
        && file_type(stat) == SFlag::S_IFLNK
    {
        return Err(PathError::Symlink(path.to_owned()));
    }
    Ok(Resolved {
        dir,
        path: canonical.join(&name),
        name,
        existing,
    })
}

/// Why a directory is not safe to write into for the agent running as
/// `uid`, or `None` when it is: owned by `uid`, and not writable by group
/// or others unless sticky.
pub fn untrusted_directory(stat: &FileStat, uid: u32) -> Option<String> {
    if stat.st_uid != uid {
        return Some(format!("it belongs to uid {}", stat.st_uid));
    }
    let sticky = stat.st_mode & 0o1000 != 0;
    if stat.st_mode & 0o022 != 0 && !sticky {
        return Some(format!(
            "others can write to it (mode {:o}, no sticky bit)",
            stat.st_mode & 0o7777
        ));
    }
    None
}

pub fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// "/tmp, /var/tmp" for messages.
pub fn roots_text(roots: &[PathBuf]) -> String {
    roots
        .iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(base.path().join("secret")).unwrap();
        std::fs::write(base.path().join("secret/key"), b"x").unwrap();
        let roots = vec![root.clone()];
        (base, root, roots)
    }

    #[test]
    fn inside_a_root_resolves() {
        let (_base, root, roots) = setup();
        let path = root.join("sub/file.txt");
        let resolved = resolve(path.to_str().unwrap(), &roots, Access::Read).unwrap();
        assert_eq!(resolved.name, "file.txt");
        assert!(resolved.existing.is_none());
        assert_eq!(
            resolved.path,
            std::fs::canonicalize(root.join("sub"))
                .unwrap()
                .join("file.txt")
        );
    }

    #[test]
    fn dot_dot_escape_is_refused() {
        let (_base, root, roots) = setup();
        let path = format!("{}/sub/../../secret/key", root.display());
        let err = resolve(&path, &roots, Access::Read).unwrap_err();
        assert!(matches!(err, PathError::Outside { .. }), "{err}");
        assert!(err.to_string().contains("is outside the transfer roots ("));
        // A path ending in ".." names no file.
        let err = resolve(&format!("{}/sub/..", root.display()), &roots, Access::Read).unwrap_err();
        assert!(matches!(err, PathError::NoFileName(_)), "{err}");
    }

    #[test]
    fn symlinked_directory_escape_is_refused() {
        let (base, root, roots) = setup();
        symlink(base.path().join("secret"), root.join("link")).unwrap();
        let path = format!("{}/link/key", root.display());
        let err = resolve(&path, &roots, Access::Read).unwrap_err();
        assert!(matches!(err, PathError::Outside { .. }), "{err}");
    }

    #[test]
    fn symlink_as_final_component_is_refused() {
        let (base, root, roots) = setup();
        symlink(base.path().join("secret/key"), root.join("innocent")).unwrap();
        let path = format!("{}/innocent", root.display());
        let err = resolve(&path, &roots, Access::Read).unwrap_err();
        assert!(matches!(err, PathError::Symlink(_)), "{err}");
        // Even a symlink that points inside the root is refused.
        std::fs::write(root.join("real"), b"y").unwrap();
        symlink(root.join("real"), root.join("alias")).unwrap();
        let err = resolve(&format!("{}/alias", root.display()), &roots, Access::Read).unwrap_err();
        assert!(matches!(err, PathError::Symlink(_)), "{err}");
    }

    #[test]
    fn relative_and_malformed_paths_are_refused() {
        let (_base, _root, roots) = setup();
        assert!(matches!(
            resolve("tmp/x", &roots, Access::Read),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            resolve("", &roots, Access::Read),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            resolve("/tmp/a\0b", &roots, Access::Read),
            Err(PathError::Nul)
        ));
        let long = format!("/{}", "a".repeat(MAX_PATH));
        assert!(matches!(
            resolve(&long, &roots, Access::Read),
            Err(PathError::TooLong)
        ));
        assert!(matches!(
            resolve("/etc/passwd", &roots, Access::Read),
            Err(PathError::Outside { .. })
        ));
    }

    #[test]
    fn the_root_itself_is_not_a_file_inside_it() {
        let (_base, root, roots) = setup();
        let err = resolve(root.to_str().unwrap(), &roots, Access::Read).unwrap_err();
        assert!(matches!(err, PathError::Outside { .. }), "{err}");
        let err = resolve(&format!("{}/", root.display()), &roots, Access::Read).unwrap_err();
        assert!(matches!(err, PathError::NoFileName(_)), "{err}");
    }

    #[test]
    fn uploads_refuse_directories_that_others_control() {
        use std::os::unix::fs::PermissionsExt;
        let (_base, root, roots) = setup();
        // World-writable without the sticky bit: anyone can swap the file.
        let open = root.join("offen");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = format!("{}/treiber.sh", open.display());
        let err = resolve(&path, &roots, Access::Write).unwrap_err();
        assert!(matches!(err, PathError::Untrusted { .. }), "{err}");
        assert!(err.to_string().contains("no sticky bit"), "{err}");
        // Reading from there is still fine.
        resolve(&path, &roots, Access::Read).unwrap();
        // Group-writable is the same danger.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(resolve(&path, &roots, Access::Write).is_err());
        // Sticky and world-writable (like /tmp) is fine: others cannot
        // replace the agent's files there.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        resolve(&path, &roots, Access::Write).unwrap();
        // A deeper private directory below an untrusted one is refused too.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir(open.join("tief")).unwrap();
        std::fs::set_permissions(open.join("tief"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let deep = format!("{}/tief/x", open.display());
        assert!(resolve(&deep, &roots, Access::Write).is_err());
        // The plain private directory is fine.
        resolve(&format!("{}/sub/ok", root.display()), &roots, Access::Write).unwrap();
    }

    #[test]
    fn uploads_refuse_a_directory_owned_by_another_user() {
        let (_base, root, roots) = setup();
        let pupil = root.join("x");
        std::fs::create_dir(&pupil).unwrap();
        // The check itself, for any uid: a directory of uid 1000 is not ours.
        let stat = nix::sys::stat::stat(&pupil).unwrap();
        let why = untrusted_directory(&stat, stat.st_uid + 1).unwrap();
        assert!(why.contains("belongs to uid"), "{why}");
        if !nix::unistd::geteuid().is_root() {
            // chown needs root; in CI (root) the end-to-end path must run.
            assert!(
                std::env::var_os("CI").is_none(),
                "this test needs root in CI"
            );
            return;
        }
        std::os::unix::fs::chown(&pupil, Some(1000), Some(1000)).unwrap();
        let path = format!("{}/treiber.sh", pupil.display());
        let err = resolve(&path, &roots, Access::Write).unwrap_err();
        assert!(err.to_string().contains("belongs to uid 1000"), "{err}");
    }
}
