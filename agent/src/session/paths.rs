//! Transfer roots: copy sessions may only touch files inside them.
//!
//! The path comes from the server and is untrusted. The parent directory
//! is canonicalised (symbolic links resolved) and must lie inside a root;
//! then it is opened again one component at a time from the root with
//! O_NOFOLLOW, so a directory swapped for a symlink after the check cannot
//! lead outside. The final component must not be a symlink; callers open
//! it relative to the directory handle with O_NOFOLLOW.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};

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

pub fn resolve(path: &str, roots: &[PathBuf]) -> Result<Resolved, PathError> {
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
    for component in rest.components() {
        let Component::Normal(part) = component else {
            return Err(outside());
        };
        // ELOOP/ENOTDIR here means the tree changed under us: refuse.
        dir = openat(&dir, part, dir_flags, Mode::empty()).map_err(|_| outside())?;
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
        let resolved = resolve(path.to_str().unwrap(), &roots).unwrap();
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
        let err = resolve(&path, &roots).unwrap_err();
        assert!(matches!(err, PathError::Outside { .. }), "{err}");
        assert!(err.to_string().contains("is outside the transfer roots ("));
        // A path ending in ".." names no file.
        let err = resolve(&format!("{}/sub/..", root.display()), &roots).unwrap_err();
        assert!(matches!(err, PathError::NoFileName(_)), "{err}");
    }

    #[test]
    fn symlinked_directory_escape_is_refused() {
        let (base, root, roots) = setup();
        symlink(base.path().join("secret"), root.join("link")).unwrap();
        let path = format!("{}/link/key", root.display());
        let err = resolve(&path, &roots).unwrap_err();
        assert!(matches!(err, PathError::Outside { .. }), "{err}");
    }

    #[test]
    fn symlink_as_final_component_is_refused() {
        let (base, root, roots) = setup();
        symlink(base.path().join("secret/key"), root.join("innocent")).unwrap();
        let path = format!("{}/innocent", root.display());
        let err = resolve(&path, &roots).unwrap_err();
        assert!(matches!(err, PathError::Symlink(_)), "{err}");
        // Even a symlink that points inside the root is refused.
        std::fs::write(root.join("real"), b"y").unwrap();
        symlink(root.join("real"), root.join("alias")).unwrap();
        let err = resolve(&format!("{}/alias", root.display()), &roots).unwrap_err();
        assert!(matches!(err, PathError::Symlink(_)), "{err}");
    }

    #[test]
    fn relative_and_malformed_paths_are_refused() {
        let (_base, _root, roots) = setup();
        assert!(matches!(
            resolve("tmp/x", &roots),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(
            resolve("", &roots),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(resolve("/tmp/a\0b", &roots), Err(PathError::Nul)));
        let long = format!("/{}", "a".repeat(MAX_PATH));
        assert!(matches!(resolve(&long, &roots), Err(PathError::TooLong)));
        assert!(matches!(
            resolve("/etc/passwd", &roots),
            Err(PathError::Outside { .. })
        ));
    }

    #[test]
    fn the_root_itself_is_not_a_file_inside_it() {
        let (_base, root, roots) = setup();
        let err = resolve(root.to_str().unwrap(), &roots).unwrap_err();
        assert!(matches!(err, PathError::Outside { .. }), "{err}");
        let err = resolve(&format!("{}/", root.display()), &roots).unwrap_err();
        assert!(matches!(err, PathError::NoFileName(_)), "{err}");
    }
}
