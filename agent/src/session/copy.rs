//! Copy channels: a file inside the transfer roots, either way, resumable
//! and checked with SHA-256.
//!
//! Downloads announce size and SHA-256 in `ready`, then send the bytes from
//! the requested offset. Uploads go to a partial file beside the target
//! (`.<name>.<secret tag>.sfpart`, mode 0600, created with O_EXCL); `ready.offset` says how
//! much of it is already there, and on `eof` the agent checks size and
//! SHA-256, fsyncs and renames it into place.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};
use schoolfleet_proto::v1::device_frame::Body as DeviceBody;
use schoolfleet_proto::v1::{ChannelReady, Eof};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::channel::{ChannelIo, Finish, Input};
use super::paths::{self, Resolved, file_type};

const CHUNK: usize = 128 * 1024;

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

pub async fn run(request: &CopyRequest, roots: &[PathBuf], io: &mut ChannelIo) -> Finish {
    let path = request.path.clone();
    let roots_owned = roots.to_vec();
    let access = if request.upload {
        paths::Access::Write
    } else {
        paths::Access::Read
    };
    let resolved = match tokio::task::spawn_blocking(move || {
        paths::resolve(&path, &roots_owned, access)
    })
    .await
    {
        Ok(Ok(resolved)) => resolved,
        Ok(Err(err)) => return Finish::failed(err.to_string()),
        Err(_) => return Finish::failed("path check failed"),
    };
    if request.upload {
        upload(request, resolved, io).await
    } else {
        download(request, resolved, io).await
    }
}

fn open_error(path: &str, err: Errno) -> Finish {
    match err {
        Errno::ELOOP => Finish::failed(format!("{path} is a symbolic link")),
        Errno::ENOENT => Finish::failed(format!("{path} does not exist")),
        other => Finish::failed(format!(
            "cannot open {path}: {}",
            std::io::Error::from(other)
        )),
    }
}

async fn download(request: &CopyRequest, resolved: Resolved, io: &mut ChannelIo) -> Finish {
    let path = &request.path;
    // O_NONBLOCK: opening a FIFO must not hang; regular files ignore it.
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = match openat(
        &resolved.dir,
        resolved.name.as_os_str(),
        flags,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(err) => return open_error(path, err),
    };
    let stat = match fstat(&fd) {
        Ok(stat) => stat,
        Err(err) => return open_error(path, err),
    };
    if file_type(&stat) != SFlag::S_IFREG {
        return Finish::failed(format!("{path} is not a regular file"));
    }
    let size = stat.st_size as u64;
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
    // Hashing a large file blocks: off the async thread.
    let hashed =
        tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, String)> {
            let mut file = std::fs::File::from(fd);
            let mut hasher = Sha256::new();
            let mut limited = (&mut file).take(size);
            std::io::copy(&mut limited, &mut hasher)?;
            file.seek(SeekFrom::Start(offset))?;
            Ok((file, hex::encode(hasher.finalize())))
        })
        .await;
    let (file, sha256) = match hashed {
        Ok(Ok(pair)) => pair,
        Ok(Err(err)) => return Finish::failed(format!("cannot read {path}: {err}")),
        Err(_) => return Finish::failed(format!("cannot read {path}")),
    };
    let ready = ChannelReady {
        size,
        sha256,
        offset,
    };
    if !io.send(DeviceBody::Ready(ready)).await {
        return Finish::Gone;
    }
    // Never more than announced, even if the file grows meanwhile.
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

/// `.<name>.<tag>.sfpart`: one partial file per target and content. The
/// tag is keyed with a secret of this agent process, so nobody else can
/// know the name in advance and plant a file there; the agent itself finds
/// it again to resume an upload.
pub fn partial_name(name: &OsString, sha256: &str) -> OsString {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(rand::random);
    partial_name_with_key(key, name, sha256)
}

pub fn partial_name_with_key(key: &[u8; 32], name: &OsString, sha256: &str) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    let mut hasher = Sha256::new();
    hasher.update(key);
    hasher.update((name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(sha256.as_bytes());
    let tag = hex::encode(&hasher.finalize()[..12]);
    let mut partial = OsString::from(".");
    partial.push(name);
    partial.push(format!(".{tag}.sfpart"));
    partial
}

/// Opens the partial file to resume it, or creates it with O_EXCL. One
/// that is not ours alone (a stranger's file, a hard link, a symlink) is
/// removed and created afresh, so the file that is later renamed into
/// place belongs to the agent and nobody else can change it.
fn open_partial(dir: &OwnedFd, partial: &OsString) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let mode = Mode::from_bits_truncate(0o600);
    let create = || {
        openat(
            dir,
            partial.as_os_str(),
            flags | OFlag::O_CREAT | OFlag::O_EXCL,
            mode,
        )
    };
    match openat(dir, partial.as_os_str(), flags, Mode::empty()) {
        Ok(fd) => {
            let stat = fstat(&fd)?;
            let ours = stat.st_uid == nix::unistd::geteuid().as_raw()
                && stat.st_nlink == 1
                && file_type(&stat) == SFlag::S_IFREG
                && stat.st_mode & 0o077 == 0;
            if ours {
                return Ok(fd);
            }
        }
        Err(Errno::ENOENT) => return create(),
        // A symlink (ELOOP) or something else in the way: replace it.
        Err(_) => {}
    }
    unlinkat(dir, partial.as_os_str(), UnlinkatFlags::NoRemoveDir)?;
    create()
}

async fn upload(request: &CopyRequest, resolved: Resolved, io: &mut ChannelIo) -> Finish {
    let path = &request.path;
    if request.size > request.max_file_bytes {
        return Finish::failed(format!(
            "{} bytes is above the limit of {} bytes",
            request.size, request.max_file_bytes
        ));
    }
    // The target keeps its mode when it exists and is ours; a new file is
    // private. A stranger's file (planted in /tmp, say) lends no mode: the
    // upload becomes the agent's, and its mode bits (world-writable,
    // setuid) would then apply to a root-owned file.
    let ours = |stat: &nix::sys::stat::FileStat| stat.st_uid == nix::unistd::geteuid().as_raw();
    let mode = match &resolved.existing {
        Some(stat) if file_type(stat) == SFlag::S_IFREG && ours(stat) => stat.st_mode & 0o7777,
        Some(stat) if file_type(stat) == SFlag::S_IFREG => 0o600,
        Some(_) => return Finish::failed(format!("{path} exists and is not a regular file")),
        None => 0o600,
    };
    let partial = partial_name(&resolved.name, &request.sha256);
    if partial.len() > 255 {
        return Finish::failed(format!("the file name of {path} is too long"));
    }
    let fd = match open_partial(&resolved.dir, &partial) {
        Ok(fd) => fd,
        Err(err) => return open_error(path, err),
    };
    let size = request.size;
    // Resume: hash what is already there; a partial file longer than the
    // announced size cannot be this content, so start over.
    let prepared =
        tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, Sha256, u64)> {
            let mut file = std::fs::File::from(fd);
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
    let ready = ChannelReady {
        size,
        sha256: request.sha256.clone(),
        offset: written,
    };
    if !io.send(DeviceBody::Ready(ready)).await {
        return Finish::Gone;
    }
    let mut file = tokio::fs::File::from_std(file);
    let discard = |dir: &OwnedFd| {
        let _ = unlinkat(dir, partial.as_os_str(), UnlinkatFlags::NoRemoveDir);
    };
    loop {
        match io.next_input().await {
            Input::Data(data) => {
                if written + data.len() as u64 > size {
                    discard(&resolved.dir);
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
        discard(&resolved.dir);
        return Finish::failed(format!("{path}: received {written} of {size} bytes"));
    }
    let digest = hex::encode(hasher.finalize());
    if digest != request.sha256 {
        discard(&resolved.dir);
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
    let file = file.into_std().await;
    let placed = fchmod(&file, Mode::from_bits_truncate(mode))
        .and_then(|()| {
            renameat(
                &resolved.dir,
                partial.as_os_str(),
                &resolved.dir,
                resolved.name.as_os_str(),
            )
        })
        .and_then(|()| fsync(&resolved.dir));
    if let Err(err) = placed {
        return Finish::failed(format!(
            "cannot move the file into place at {path}: {}",
            std::io::Error::from(err)
        ));
    }
    tracing::info!(path = %resolved.path.display(), bytes = size, "upload stored");
    Finish::Exit(0)
}

#[cfg(test)]
mod tests;
