//! Copy channels on Windows: the same protocol as on Linux (`copy.rs`:
//! resumable, SHA-256 checked, a partial file with a secret name), with
//! Windows' own protection against swapped paths.
//!
//! The path is checked as text first (`winpath`), then every directory
//! from the transfer root down is opened with `FILE_FLAG_OPEN_REPARSE_POINT`
//! (a junction, symbolic link or mount point is opened itself, never
//! followed, and refused) and held open without `FILE_SHARE_DELETE` until
//! the copy ends, so none of them can be renamed or replaced by a junction
//! meanwhile: Windows' answer to `openat`. For uploads, every directory
//! from the root down must belong to SYSTEM, Administrators or
//! TrustedInstaller and be writable by nobody else (its SDDL, read through
//! the open handle). The default root, `C:\ProgramData\schoolfleet\transfer`,
//! is created by `run` with a protected DACL for SYSTEM and Administrators.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
use schoolfleet_proto::v1::{ChannelReady, Eof};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::channel::{ChannelIo, Finish, Input};
use super::winpath::{self, WinPath};

const CHUNK: usize = 128 * 1024;
const FILE_SHARE_READ: u32 = 0x1;
const FILE_SHARE_WRITE: u32 = 0x2;
const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;

#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// To the device (upload) or from it (download).
    pub upload: bool,
    pub path: String,
    /// Uploads: announced size and SHA-256 (lower-case hex).
    pub size: u64,
    pub sha256: String,
    /// Downloads: where to continue.
    pub offset: u64,
    pub max_file_bytes: u64,
}

/// A file name in a directory inside a transfer root, with every directory
/// from the root down held open (none can be renamed or replaced while
/// this lives).
#[derive(Debug)]
struct Resolved {
    _held: Vec<File>,
    dir: PathBuf,
    name: String,
    /// Metadata of the final component (not followed), if it exists.
    existing: Option<std::fs::Metadata>,
}

impl Resolved {
    fn file(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

fn is_reparse(meta: &std::fs::Metadata) -> bool {
    meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0
}

/// Opens a directory itself (never what a reparse point points to), so
/// that it cannot be renamed or deleted while the handle lives.
fn open_dir(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

fn to_path(path: &WinPath) -> PathBuf {
    PathBuf::from(path.display())
}

/// Checks `path` against `roots` and opens its directories (see the module
/// text). `write`: every directory must be trusted.
fn resolve(path: &str, roots: &[PathBuf], write: bool) -> Result<Resolved, String> {
    let parsed = winpath::parse(path).map_err(|e| e.to_string())?;
    let roots: Vec<WinPath> = roots
        .iter()
        .filter_map(|r| winpath::parse(&r.to_string_lossy()).ok())
        .collect();
    let roots_text = roots
        .iter()
        .map(WinPath::display)
        .collect::<Vec<_>>()
        .join(", ");
    let placed = winpath::place(&parsed, &roots)
        .ok_or_else(|| format!("{path} is outside the transfer roots ({roots_text})"))?;
    let mut held = Vec::new();
    // Above the root: no reparse point on the way (C:\ProgramData can be
    // written to by users, but not its existing subdirectories).
    let mut dir = WinPath {
        drive: placed.root.drive,
        parts: Vec::new(),
    };
    let check = |dir: &WinPath, held: &mut Vec<File>, judge_acl: bool| -> Result<(), String> {
        let shown = dir.display();
        let file = open_dir(&to_path(dir)).map_err(|e| format!("cannot open {shown}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        if is_reparse(&meta) {
            return Err(format!(
                "{shown} is a junction or symbolic link (reparse point); copies do not follow them"
            ));
        }
        if meta.file_attributes() & FILE_ATTRIBUTE_DIRECTORY == 0 {
            return Err(format!("{shown} is not a directory"));
        }
        if judge_acl {
            let sddl = crate::os::acl::sddl_of(&file)
                .map_err(|e| format!("cannot read the access list of {shown}: {e}"))?;
            if let Some(why) = winpath::untrusted_directory(&sddl) {
                return Err(format!(
                    "{shown} is not a safe place to write: {why} (uploads go only into directories that SYSTEM or Administrators own and nobody else can write to)"
                ));
            }
        }
        held.push(file);
        Ok(())
    };
    for part in &placed.root.parts {
        dir.parts.push(part.clone());
        let is_root = dir.parts.len() == placed.root.parts.len();
        check(&dir, &mut held, write && is_root)?;
    }
    for part in &placed.below {
        dir.parts.push(part.clone());
        check(&dir, &mut held, write)?;
    }
    let resolved = Resolved {
        _held: held,
        dir: to_path(&dir),
        name: placed.name.clone(),
        existing: None,
    };
    let existing = match std::fs::symlink_metadata(resolved.file()) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {path}: {e}")),
    };
    if existing.as_ref().is_some_and(is_reparse) {
        return Err(format!(
            "{path} is a symbolic link or junction (reparse point)"
        ));
    }
    Ok(Resolved {
        existing,
        ..resolved
    })
}

pub async fn run(request: &CopyRequest, roots: &[PathBuf], io: &mut ChannelIo) -> Finish {
    let path = request.path.clone();
    let roots = roots.to_vec();
    let write = request.upload;
    let resolved = match tokio::task::spawn_blocking(move || resolve(&path, &roots, write)).await {
        Ok(Ok(resolved)) => resolved,
        Ok(Err(message)) => return Finish::failed(message),
        Err(_) => return Finish::failed("path check failed"),
    };
    if request.upload {
        upload(request, resolved, io).await
    } else {
        download(request, resolved, io).await
    }
}

async fn download(request: &CopyRequest, resolved: Resolved, io: &mut ChannelIo) -> Finish {
    let path = &request.path;
    if resolved.existing.is_none() {
        return Finish::failed(format!("{path} does not exist"));
    }
    // Opened itself, never followed; others may read but not write meanwhile.
    let file = match OpenOptions::new()
        .read(true)
        .share_mode(FILE_SHARE_READ)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(resolved.file())
    {
        Ok(file) => file,
        Err(err) => return Finish::failed(format!("cannot open {path}: {err}")),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(err) => return Finish::failed(format!("cannot open {path}: {err}")),
    };
    if is_reparse(&meta) {
        return Finish::failed(format!(
            "{path} is a symbolic link or junction (reparse point)"
        ));
    }
    if !meta.is_file() {
        return Finish::failed(format!("{path} is not a regular file"));
    }
    let size = meta.len();
    if size > request.max_file_bytes {
        return Finish::failed(format!(
            "{path} has {size} bytes, above the limit of {} bytes",
            request.max_file_bytes
        ));
    }
    if request.offset > size {
        return Finish::failed(format!(
            "offset {} is beyond the end of {path} ({size} bytes)",
            request.offset
        ));
    }
    let offset = request.offset;
    let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<(File, String)> {
        let mut file = file;
        let mut hasher = Sha256::new();
        std::io::copy(&mut (&mut file).take(size), &mut hasher)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok((file, hex::encode(hasher.finalize())))
    })
    .await;
    let (file, sha256) = match hashed {
        Ok(Ok(pair)) => pair,
        Ok(Err(err)) => return Finish::failed(format!("cannot read {path}: {err}")),
        Err(_) => return Finish::failed(format!("cannot read {path}")),
    };
    if !io
        .send(DeviceBody::Ready(ChannelReady {
            size,
            sha256,
            offset,
        }))
        .await
    {
        return Finish::Gone;
    }
    let mut file = tokio::fs::File::from_std(file).take(size - offset);
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            biased;
            input = io.next_input() => match input {
                Input::Eof | Input::Resize(_) => {}
                Input::Data(_) => return Finish::protocol("input on a download"),
                other => return Finish::stopped(other),
            },
            read = file.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => {
                    if !io.send(DeviceBody::Output(buf[..n].to_vec())).await {
                        return Finish::Gone;
                    }
                }
                Err(err) => return Finish::failed(format!("cannot read {path}: {err}")),
            },
        }
    }
    if !io.send(DeviceBody::Eof(Eof {})).await {
        return Finish::Gone;
    }
    Finish::Exit(0)
}

/// `.<name>.<tag>.sfpart`, the tag keyed with a secret of this process (as
/// on Linux: nobody can know the name in advance).
fn partial_name(name: &str, sha256: &str) -> String {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(rand::random);
    let mut hasher = Sha256::new();
    hasher.update(key);
    hasher.update((name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(sha256.as_bytes());
    format!(".{name}.{}.sfpart", hex::encode(&hasher.finalize()[..12]))
}

/// The partial file to resume, or a new one. Anything else in its place
/// (a directory, a reparse point) is removed first; nobody but SYSTEM and
/// Administrators can create files in these directories.
fn open_partial(path: &Path) -> std::io::Result<File> {
    let existing = OpenOptions::new()
        .read(true)
        .write(true)
        .share_mode(0)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path);
    match existing {
        Ok(file) => {
            let meta = file.metadata()?;
            if meta.is_file() && !is_reparse(&meta) {
                return Ok(file);
            }
            drop(file);
            if meta.is_dir() && !is_reparse(&meta) {
                std::fs::remove_dir(path)?;
            } else {
                std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .share_mode(0)
        .open(path)
}

async fn upload(request: &CopyRequest, resolved: Resolved, io: &mut ChannelIo) -> Finish {
    let path = &request.path;
    if request.size > request.max_file_bytes {
        return Finish::failed(format!(
            "{} bytes is above the limit of {} bytes",
            request.size, request.max_file_bytes
        ));
    }
    if resolved.existing.as_ref().is_some_and(|m| !m.is_file()) {
        return Finish::failed(format!("{path} exists and is not a regular file"));
    }
    let partial = resolved
        .dir
        .join(partial_name(&resolved.name, &request.sha256));
    let size = request.size;
    let partial_for_task = partial.clone();
    let prepared = tokio::task::spawn_blocking(move || -> std::io::Result<(File, Sha256, u64)> {
        let mut file = open_partial(&partial_for_task)?;
        let mut have = file.metadata()?.len();
        if have > size {
            file.set_len(0)?;
            have = 0;
        }
        let mut hasher = Sha256::new();
        std::io::copy(&mut (&mut file).take(have), &mut hasher)?;
        file.seek(SeekFrom::Start(have))?;
        Ok((file, hasher, have))
    })
    .await;
    let (file, mut hasher, mut written) = match prepared {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(err)) => return Finish::failed(format!("cannot prepare {path}: {err}")),
        Err(_) => return Finish::failed(format!("cannot prepare {path}")),
    };
    if !io
        .send(DeviceBody::Ready(ChannelReady {
            size,
            sha256: request.sha256.clone(),
            offset: written,
        }))
        .await
    {
        return Finish::Gone;
    }
    let mut file = tokio::fs::File::from_std(file);
    loop {
        match io.next_input().await {
            Input::Data(data) => {
                if written + data.len() as u64 > size {
                    drop(file);
                    let _ = std::fs::remove_file(&partial);
                    return Finish::failed(format!(
                        "more bytes than the announced {size} for {path}"
                    ));
                }
                if let Err(err) = file.write_all(&data).await {
                    return Finish::failed(format!("cannot write {path}: {err}"));
                }
                hasher.update(&data);
                written += data.len() as u64;
            }
            Input::Eof => break,
            Input::Resize(_) => {}
            other => {
                // Keep the partial file: the next attempt resumes from it.
                let _ = file.flush().await;
                return Finish::stopped(other);
            }
        }
    }
    if written != size {
        drop(file);
        let _ = std::fs::remove_file(&partial);
        return Finish::failed(format!("{path}: received {written} of {size} bytes"));
    }
    let digest = hex::encode(hasher.finalize());
    if digest != request.sha256 {
        drop(file);
        let _ = std::fs::remove_file(&partial);
        return Finish::failed(format!(
            "checksum mismatch for {path}: expected {}, got {digest}",
            request.sha256
        ));
    }
    if let Err(err) = async {
        file.flush().await?;
        file.sync_all().await
    }
    .await
    {
        return Finish::failed(format!("cannot write {path}: {err}"));
    }
    drop(file);
    // MoveFileEx with REPLACE_EXISTING; the directories are still held.
    if let Err(err) = std::fs::rename(&partial, resolved.file()) {
        return Finish::failed(format!("cannot move the file into place at {path}: {err}"));
    }
    tracing::info!(path = %resolved.file().display(), bytes = size, "upload stored");
    Finish::Exit(0)
}
