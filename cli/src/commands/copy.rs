//! `cp SRC DST`: one file to or from a device, resumable, checked with
//! SHA-256 at the receiving end.
//!
//! Downloads land in `DST.sfpart` and are renamed into place only after size
//! and checksum match, so a half-copied file never carries the real name.
//! A broken channel is retried in the same session, resuming from what has
//! arrived (the agent keeps an upload's partial file likewise).

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::{ClientFrame, CopyDirection, CopySpec, session_spec};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::Context;
use super::shell;
use crate::args::{CopyLocation, CpArgs, PurposeArgs};
use crate::client::Api;
use crate::output::Ui;
use crate::session::{self, Attach, Attacher, ChannelFailure, Event, FailureKind};

/// Retries of a broken channel within one session.
pub const RETRIES: usize = 3;

/// Bytes per upload frame (the protocol allows 256 KiB).
const UPLOAD_CHUNK: usize = 128 * 1024;
const _: () = assert!(
    UPLOAD_CHUNK <= crate::session::MAX_FRAME_BYTES,
    "input frames must fit the protocol's frame limit"
);

/// Suffix of a download in progress.
pub const PARTIAL_SUFFIX: &str = ".sfpart";

pub async fn run(args: CpArgs, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let purpose = PurposeArgs {
        reason: args.reason.clone(),
        ticket: args.ticket.clone(),
        otp: args.otp.clone(),
    };
    match (args.src, args.dst) {
        (CopyLocation::Local(src), CopyLocation::Remote { device, path }) => {
            upload(&src, &device, &path, &purpose, ctx, ui).await
        }
        (CopyLocation::Remote { device, path }, CopyLocation::Local(dst)) => {
            download(&device, &path, &dst, &purpose, ctx, ui).await
        }
        (CopyLocation::Local(_), CopyLocation::Local(_)) => {
            bail!("one side must be on a device: DEVICE:/path")
        }
        (CopyLocation::Remote { .. }, CopyLocation::Remote { .. }) => {
            bail!("copying from one device to another is not supported: copy to this machine first")
        }
    }
}

/// Where on the device an upload goes: `DEVICE:/dir/` (or `DEVICE:C:\dir\`)
/// takes the local name.
pub fn upload_target(remote: &str, local: &Path) -> anyhow::Result<String> {
    let windows = crate::args::is_drive_path(remote);
    if !(remote.ends_with('/') || windows && remote.ends_with('\\')) {
        return Ok(remote.to_owned());
    }
    let name = local.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        anyhow::anyhow!("{} has no file name to use on the device", local.display())
    })?;
    Ok(format!("{remote}{name}"))
}

/// Where a download goes: DST itself, or DST/<remote base name> when DST is
/// a directory (or ends with `/`). The base name comes from the command
/// line, but `.`/`..`/empty would still escape or clobber DST.
pub fn download_target(dst: &Path, remote_path: &str) -> anyhow::Result<PathBuf> {
    let into_directory = dst.is_dir() || dst.as_os_str().to_string_lossy().ends_with('/');
    if !into_directory {
        return Ok(dst.to_path_buf());
    }
    // A Windows device's path (`C:\dir\file`) separates with both.
    let name = if crate::args::is_drive_path(remote_path) {
        remote_path.rsplit(['/', '\\']).next()
    } else {
        remote_path.rsplit('/').next()
    }
    .unwrap_or("");
    if name.is_empty() || name == "." || name == ".." {
        bail!(
            "{remote_path:?} does not end in a file name; name the local file, e.g. {}",
            dst.join("datei").display()
        );
    }
    Ok(dst.join(name))
}

/// `target` + `.sfpart`.
pub fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

/// Size and SHA-256 (hex) of a file.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((size, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

async fn upload(
    src: &Path,
    device: &str,
    remote: &str,
    purpose: &PurposeArgs,
    ctx: &Context,
    ui: &mut Ui<'_>,
) -> anyhow::Result<()> {
    let metadata =
        std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
    if !metadata.is_file() {
        bail!("{} is not a regular file", src.display());
    }
    let remote = upload_target(remote, src)?;
    let owned = src.to_path_buf();
    let (size, sha256) = tokio::task::spawn_blocking(move || hash_file(&owned))
        .await?
        .with_context(|| format!("cannot read {}", src.display()))?;

    let api = Api::connect_for_sessions(&ctx.profile()?).await?;
    let kind = session_spec::Kind::Copy(CopySpec {
        direction: CopyDirection::ToDevice as i32,
        path: remote.clone(),
        size,
        sha256: sha256.clone(),
    });
    let session = shell::start(&api, device, purpose, kind, ui).await?;
    check_limit(size, session.started.max_file_bytes)?;
    let attacher = Attacher {
        api: api.clone(),
        session_id: session.id().to_owned(),
    };
    let mut progress = Progress::new(size, io::stderr().is_terminal());
    let mut retries = Retries::default();
    let result = loop {
        match upload_attempt(&attacher, src, size, &mut progress, api.server()).await {
            Ok(()) => break Ok(()),
            Err(failure) => {
                if let Err(failure) = retries.again(failure, ui.err).await {
                    break Err(failure);
                }
            }
        }
    };
    progress.finish();
    result?;
    ui.done(&format!(
        "Copied {} to {}:{} ({size} bytes, sha256 {sha256}).",
        src.display(),
        device,
        remote
    ))?;
    Ok(())
}

async fn download(
    device: &str,
    remote: &str,
    dst: &Path,
    purpose: &PurposeArgs,
    ctx: &Context,
    ui: &mut Ui<'_>,
) -> anyhow::Result<()> {
    let target = download_target(dst, remote)?;
    let partial = partial_path(&target);
    let api = Api::connect_for_sessions(&ctx.profile()?).await?;
    let kind = session_spec::Kind::Copy(CopySpec {
        direction: CopyDirection::FromDevice as i32,
        path: remote.to_owned(),
        size: 0,
        sha256: String::new(),
    });
    let session = shell::start(&api, device, purpose, kind, ui).await?;
    let attacher = Attacher {
        api: api.clone(),
        session_id: session.id().to_owned(),
    };
    let limit = session.started.max_file_bytes;
    let mut progress = Progress::new(0, io::stderr().is_terminal());
    let mut seen_sha = None;
    let mut retries = Retries::default();
    let result = loop {
        let attempt = download_attempt(
            &attacher,
            &partial,
            &target,
            limit,
            &mut seen_sha,
            &mut progress,
            api.server(),
        );
        match attempt.await {
            Ok(done) => break Ok(done),
            Err(failure) => {
                if let Err(failure) = retries.again(failure, ui.err).await {
                    break Err(failure);
                }
            }
        }
    };
    progress.finish();
    let (size, sha256) = result?;
    ui.done(&format!(
        "Copied {}:{} to {} ({size} bytes, sha256 {}).",
        device,
        remote,
        target.display(),
        for_terminal(&sha256)
    ))?;
    Ok(())
}

/// Refuses a size above the session's limit (0 = the server sent none).
pub fn check_limit(size: u64, max_file_bytes: u64) -> anyhow::Result<()> {
    if max_file_bytes > 0 && size > max_file_bytes {
        bail!("the file has {size} bytes; the server allows at most {max_file_bytes}");
    }
    Ok(())
}

/// Counts retries of broken channels: at most [`RETRIES`] after the first
/// attempt, with a short growing pause.
#[derive(Debug, Default)]
pub struct Retries {
    done: usize,
}

impl Retries {
    /// `Ok` when another attempt should follow `failure`; else the failure.
    pub async fn again(
        &mut self,
        failure: ChannelFailure,
        err: &mut dyn Write,
    ) -> Result<(), ChannelFailure> {
        if !failure.is_retryable() || self.done >= RETRIES {
            return Err(failure);
        }
        self.done += 1;
        let _ = writeln!(
            err,
            "\n{failure}; resuming (retry {} of {RETRIES}) …",
            self.done
        );
        tokio::time::sleep(Duration::from_millis(500 * self.done as u64)).await;
        Ok(())
    }
}

fn failed(message: impl Into<String>) -> ChannelFailure {
    ChannelFailure {
        kind: FailureKind::Failed,
        message: message.into(),
    }
}

fn local_io(what: &str, path: &Path, e: io::Error) -> ChannelFailure {
    failed(format!("{what} {}: {e}", path.display()))
}

/// One upload channel: the device says where to continue, we send the rest
/// and `eof`, the device checks size and SHA-256.
pub async fn upload_attempt(
    attacher: &impl Attach,
    src: &Path,
    size: u64,
    progress: &mut Progress,
    server: &str,
) -> Result<(), ChannelFailure> {
    let mut channel = attacher
        .attach(0)
        .await
        .map_err(|e| ChannelFailure::broken(format!("{e:#}")))?;
    let offset = loop {
        match session::next_event(&mut channel.frames, server).await {
            Event::Ready(ready) => break ready.offset,
            Event::Failed(failure) => return Err(failure),
            Event::Exit(code) => {
                return Err(failed(format!(
                    "the device ended the copy early (exit {code})"
                )));
            }
            _ => {}
        }
    };
    if offset > size {
        return Err(failed(format!(
            "the device already has {offset} bytes of a {size}-byte file"
        )));
    }
    let mut file = tokio::fs::File::open(src)
        .await
        .map_err(|e| local_io("cannot read", src, e))?;
    file.seek(io::SeekFrom::Start(offset))
        .await
        .map_err(|e| local_io("cannot read", src, e))?;
    progress.set(size, offset);

    let mut buf = vec![0u8; UPLOAD_CHUNK];
    // The next frame to send, kept across loop turns: a device frame that
    // arrives meanwhile must not make us drop file bytes.
    let mut pending: Option<(ClientFrame, usize)> = None;
    let mut file_done = false;
    loop {
        if pending.is_none() && !file_done {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| local_io("cannot read", src, e))?;
            file_done = n == 0;
            pending = Some(if n == 0 {
                (session::eof_frame(), 0)
            } else {
                (session::input_frame(buf[..n].to_vec()), n)
            });
        }
        tokio::select! {
            permit = channel.input.reserve(), if pending.is_some() => match permit {
                Ok(permit) => {
                    if let Some((frame, n)) = pending.take() {
                        permit.send(frame);
                        progress.advance(n as u64);
                    }
                }
                // The channel is over: its last frame says why.
                Err(_) => {
                    pending = None;
                    file_done = true;
                }
            },
            event = session::next_event(&mut channel.frames, server) => {
                if let Some(result) = final_upload_event(event) {
                    return result;
                }
            }
        }
    }
}

fn final_upload_event(event: Event) -> Option<Result<(), ChannelFailure>> {
    match event {
        Event::Exit(0) => Some(Ok(())),
        Event::Exit(code) => Some(Err(failed(format!(
            "the device refused the file (exit {code})"
        )))),
        Event::Failed(failure) => Some(Err(failure)),
        _ => None,
    }
}

/// One download channel, continuing `partial` from its length. Returns size
/// and SHA-256 once `target` is in place.
pub async fn download_attempt(
    attacher: &impl Attach,
    partial: &Path,
    target: &Path,
    max_file_bytes: u64,
    seen_sha: &mut Option<String>,
    progress: &mut Progress,
    server: &str,
) -> Result<(u64, String), ChannelFailure> {
    let have = match tokio::fs::metadata(partial).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(local_io("cannot read", partial, e)),
    };
    let mut channel = attacher
        .attach(have)
        .await
        .map_err(|e| ChannelFailure::broken(format!("{e:#}")))?;
    let ready = loop {
        match session::next_event(&mut channel.frames, server).await {
            Event::Ready(ready) => break ready,
            Event::Failed(failure) => return Err(failure),
            Event::Exit(code) => {
                return Err(failed(format!(
                    "the device ended the copy early (exit {code})"
                )));
            }
            _ => {}
        }
    };
    check_limit(ready.size, max_file_bytes).map_err(|e| failed(e.to_string()))?;
    let sha = ready.sha256.to_ascii_lowercase();
    // The file changed on the device since the last attempt of this run:
    // what we have belongs to the old version.
    if seen_sha.as_ref().is_some_and(|seen| *seen != sha) || have > ready.size {
        *seen_sha = Some(sha);
        remove_partial(partial).await?;
        return Err(ChannelFailure::broken(
            "the file changed on the device; starting over",
        ));
    }
    *seen_sha = Some(sha.clone());
    if ready.offset > have {
        return Err(ChannelFailure {
            kind: FailureKind::Protocol,
            message: format!(
                "asked to continue at {have}, the device continues at {}",
                ready.offset
            ),
        });
    }

    let mut file = open_partial(partial).await?;
    // The device may start earlier than asked; drop what it will resend.
    file.set_len(ready.offset)
        .await
        .map_err(|e| local_io("cannot write", partial, e))?;
    let mut hasher = hash_prefix(partial, ready.offset).await?;
    file.seek(io::SeekFrom::Start(ready.offset))
        .await
        .map_err(|e| local_io("cannot write", partial, e))?;
    let mut received = ready.offset;
    progress.set(ready.size, received);

    loop {
        match session::next_event(&mut channel.frames, server).await {
            Event::Output(bytes) => {
                received += bytes.len() as u64;
                if received > ready.size {
                    drop(file);
                    remove_partial(partial).await?;
                    return Err(failed(format!(
                        "the device sent more than the {} bytes it announced",
                        ready.size
                    )));
                }
                hasher.update(&bytes);
                file.write_all(&bytes)
                    .await
                    .map_err(|e| local_io("cannot write", partial, e))?;
                progress.advance(bytes.len() as u64);
            }
            Event::Eof | Event::Ready(_) | Event::Stderr(_) => {}
            Event::Exit(0) => break,
            Event::Exit(code) => {
                return Err(failed(format!("the device ended the copy (exit {code})")));
            }
            Event::Failed(failure) => {
                // Keep what arrived: the next attempt continues from it.
                let _ = file.flush().await;
                return Err(failure);
            }
        }
    }

    file.flush()
        .await
        .map_err(|e| local_io("cannot write", partial, e))?;
    file.sync_all()
        .await
        .map_err(|e| local_io("cannot write", partial, e))?;
    drop(file);
    let actual = hex::encode(hasher.finalize());
    if received != ready.size || actual != sha {
        remove_partial(partial).await?;
        return Err(failed(format!(
            "checksum mismatch: got {received} bytes with sha256 {actual}, the device announced {} bytes with sha256 {sha}; the partial file was deleted",
            ready.size
        )));
    }
    tokio::fs::rename(partial, target)
        .await
        .map_err(|e| local_io("cannot rename the download to", target, e))?;
    Ok((ready.size, sha))
}

async fn open_partial(partial: &Path) -> Result<tokio::fs::File, ChannelFailure> {
    let mut options = tokio::fs::OpenOptions::new();
    options.create(true).write(true).read(true);
    #[cfg(unix)]
    {
        // Private until complete: it may be a log full of personal data.
        options.mode(0o600);
        // Never through a symlink: in a shared directory (/tmp) someone else
        // could plant `NAME.sfpart` pointing at one of the admin's files, which
        // would then be cut and overwritten with the device's bytes.
        options.custom_flags(libc::O_NOFOLLOW);
    }
    // Windows: the profile's directories are the user's own; still, never
    // write through a symlink or junction planted at the partial name.
    #[cfg(windows)]
    if std::fs::symlink_metadata(partial).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(local_io(
            "refusing to write through a link at",
            partial,
            std::io::Error::other("it is a symbolic link"),
        ));
    }
    options
        .open(partial)
        .await
        .map_err(|e| local_io("cannot write", partial, e))
}

/// SHA-256 state over the first `len` bytes of `path`, so a resumed
/// download is checked as a whole.
async fn hash_prefix(path: &Path, len: u64) -> Result<Sha256, ChannelFailure> {
    let mut hasher = Sha256::new();
    if len == 0 {
        return Ok(hasher);
    }
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| local_io("cannot read", path, e))?
        .take(len);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| local_io("cannot read", path, e))?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buf[..n]);
    }
}

async fn remove_partial(partial: &Path) -> Result<(), ChannelFailure> {
    match tokio::fs::remove_file(partial).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(local_io("cannot delete", partial, e)),
    }
}

/// "12.0 MiB / 100.0 MiB (12%)" on stderr, at most a few times a second,
/// only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    total: u64,
    done: u64,
    shown: Option<Instant>,
}

impl Progress {
    pub fn new(total: u64, enabled: bool) -> Self {
        Self {
            enabled,
            total,
            done: 0,
            shown: None,
        }
    }

    fn set(&mut self, total: u64, done: u64) {
        self.total = total;
        self.done = done;
        self.show(false);
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        self.show(false);
    }

    fn show(&mut self, force: bool) {
        if !self.enabled {
            return;
        }
        let due = self
            .shown
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(200));
        if force || due {
            self.shown = Some(Instant::now());
            eprint!("\r{}", progress_text(self.done, self.total));
        }
    }

    fn finish(&mut self) {
        if self.enabled && self.shown.is_some() {
            self.show(true);
            eprintln!();
        }
    }
}

pub fn progress_text(done: u64, total: u64) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let percent = (done.saturating_mul(100)).checked_div(total).unwrap_or(100);
    format!("{:.1} MiB / {:.1} MiB ({percent}%)", mib(done), mib(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Channel, fake};
    use schoolfleet_proto::v1::{ChannelErrorCode, ClientFrame, DeviceFrame, client_frame};
    use std::sync::{Arc, Mutex};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// A device with one file that can break a channel after some bytes.
    #[derive(Clone)]
    struct FakeDevice {
        state: Arc<Mutex<DeviceState>>,
    }

    struct DeviceState {
        /// Download: the file on the device. Upload: what arrived so far.
        file: Vec<u8>,
        /// Per attempt: break the channel after this many bytes.
        breaks: Vec<usize>,
        /// Offsets the CLI asked for, per attempt.
        asked: Vec<u64>,
        /// Upload: the size and hash the agent checks at eof.
        expect: Option<(u64, String)>,
        /// Download: announce this hash instead of the real one.
        lie_about_sha: bool,
    }

    impl FakeDevice {
        fn new(file: Vec<u8>, breaks: Vec<usize>) -> Self {
            Self {
                state: Arc::new(Mutex::new(DeviceState {
                    file,
                    breaks,
                    asked: Vec::new(),
                    expect: None,
                    lie_about_sha: false,
                })),
            }
        }
    }

    type Push = mpsc::Sender<Result<DeviceFrame, tonic::Status>>;

    impl Attach for FakeDevice {
        async fn attach(&self, offset: u64) -> anyhow::Result<Channel> {
            let (push, frames) = mpsc::channel(8);
            let (input, sent) = mpsc::channel(8);
            let state = self.state.clone();
            let break_after = {
                let mut s = state.lock().unwrap();
                s.asked.push(offset);
                if s.breaks.is_empty() {
                    usize::MAX
                } else {
                    s.breaks.remove(0)
                }
            };
            tokio::spawn(serve(state, offset, break_after, push, sent));
            Ok(Channel {
                input,
                frames: Box::pin(ReceiverStream::new(frames)),
            })
        }
    }

    async fn serve(
        state: Arc<Mutex<DeviceState>>,
        offset: u64,
        break_after: usize,
        push: Push,
        mut sent: mpsc::Receiver<ClientFrame>,
    ) {
        let upload = state.lock().unwrap().expect.clone();
        match upload {
            None => {
                let (file, lie) = {
                    let s = state.lock().unwrap();
                    (s.file.clone(), s.lie_about_sha)
                };
                let announced = if lie { sha(b"other") } else { sha(&file) };
                let _ = push
                    .send(Ok(fake::ready(file.len() as u64, &announced, offset)))
                    .await;
                let rest = &file[offset as usize..];
                let mut sent_bytes = 0;
                for chunk in rest.chunks(1000) {
                    if sent_bytes + chunk.len() > break_after {
                        let cut = break_after - sent_bytes;
                        let _ = push.send(Ok(fake::output(&chunk[..cut]))).await;
                        let _ = push.send(Err(tonic::Status::unavailable("reset"))).await;
                        return;
                    }
                    sent_bytes += chunk.len();
                    let _ = push.send(Ok(fake::output(chunk))).await;
                }
                let _ = push.send(Ok(fake::eof())).await;
                let _ = push.send(Ok(fake::exit(0))).await;
            }
            Some((size, expected_sha)) => {
                let have = state.lock().unwrap().file.len() as u64;
                let _ = push.send(Ok(fake::ready(0, "", have))).await;
                let mut got = 0;
                while let Some(frame) = sent.recv().await {
                    match frame.body {
                        Some(client_frame::Body::Input(bytes)) => {
                            let take = bytes.len().min(break_after - got);
                            state.lock().unwrap().file.extend_from_slice(&bytes[..take]);
                            got += take;
                            // Chatter while receiving: the CLI must keep
                            // sending without losing a chunk.
                            let _ = push.send(Ok(fake::stderr(b"."))).await;
                            if got >= break_after {
                                let _ = push.send(Err(tonic::Status::unavailable("reset"))).await;
                                return;
                            }
                        }
                        Some(client_frame::Body::Eof(_)) => {
                            let file = state.lock().unwrap().file.clone();
                            let ok = file.len() as u64 == size && sha(&file) == expected_sha;
                            let last = if ok {
                                fake::exit(0)
                            } else {
                                state.lock().unwrap().file.clear();
                                fake::error(ChannelErrorCode::Failed, "checksum mismatch")
                            };
                            let _ = push.send(Ok(last)).await;
                            return;
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Downloads with retries like `cp` does; returns the result and stderr.
    async fn download_with_retries(
        device: &FakeDevice,
        target: &Path,
    ) -> (Result<(u64, String), ChannelFailure>, String) {
        let partial = partial_path(target);
        let (mut seen, mut progress) = (None, Progress::new(0, false));
        let mut retries = Retries::default();
        let mut err = Vec::new();
        let result = loop {
            let attempt =
                download_attempt(device, &partial, target, 0, &mut seen, &mut progress, "s");
            match attempt.await {
                Ok(done) => break Ok(done),
                Err(failure) => {
                    if let Err(failure) = retries.again(failure, &mut err).await {
                        break Err(failure);
                    }
                }
            }
        };
        (result, String::from_utf8(err).unwrap())
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn download_resumes_after_breaks_and_checks_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("report.txt");
        let partial = partial_path(&target);
        let file = content(10_500);
        let device = FakeDevice::new(file.clone(), vec![4_200, 3_000]);
        let (result, ui_err) = download_with_retries(&device, &target).await;
        let result = result.unwrap();
        assert_eq!(result, (10_500, sha(&file)));
        assert_eq!(std::fs::read(&target).unwrap(), file);
        assert!(!partial.exists());
        assert_eq!(device.state.lock().unwrap().asked, [0, 4_200, 7_200]);
        assert_eq!(ui_err.matches("resuming").count(), 2, "{ui_err}");
    }

    #[tokio::test]
    async fn download_resumes_from_an_existing_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.bin");
        let file = content(5_000);
        std::fs::write(partial_path(&target), &file[..1_234]).unwrap();
        let device = FakeDevice::new(file.clone(), vec![]);
        let mut progress = Progress::new(0, false);
        download_attempt(
            &device,
            &partial_path(&target),
            &target,
            0,
            &mut None,
            &mut progress,
            "s",
        )
        .await
        .unwrap();
        assert_eq!(device.state.lock().unwrap().asked, [1_234]);
        assert_eq!(std::fs::read(&target).unwrap(), file);
    }

    #[tokio::test]
    async fn download_with_wrong_hash_is_deleted_not_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.bin");
        let device = FakeDevice::new(content(3_000), vec![]);
        device.state.lock().unwrap().lie_about_sha = true;
        let mut progress = Progress::new(0, false);
        let failure = download_attempt(
            &device,
            &partial_path(&target),
            &target,
            0,
            &mut None,
            &mut progress,
            "s",
        )
        .await
        .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Failed);
        assert!(failure.message.contains("checksum mismatch"), "{failure}");
        assert!(!target.exists() && !partial_path(&target).exists());
    }

    #[tokio::test]
    async fn download_does_not_write_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("authorized_keys");
        std::fs::write(&victim, b"ssh-ed25519 AAAA admin\n").unwrap();
        let target = dir.path().join("syslog");
        std::os::unix::fs::symlink(&victim, partial_path(&target)).unwrap();
        let device = FakeDevice::new(content(3_000), vec![]);
        let mut progress = Progress::new(0, false);
        let result = download_attempt(
            &device,
            &partial_path(&target),
            &target,
            0,
            &mut None,
            &mut progress,
            "s",
        )
        .await;
        assert!(result.is_err(), "{result:?}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"ssh-ed25519 AAAA admin\n");
        assert!(!target.exists());
    }

    #[tokio::test]
    async fn download_above_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("big.iso");
        let device = FakeDevice::new(content(2_000), vec![]);
        let mut progress = Progress::new(0, false);
        let failure = download_attempt(
            &device,
            &partial_path(&target),
            &target,
            1_000,
            &mut None,
            &mut progress,
            "s",
        )
        .await
        .unwrap_err();
        assert!(!failure.is_retryable());
        assert!(failure.message.contains("at most 1000"), "{failure}");
        assert!(!target.exists());
    }

    #[tokio::test(start_paused = true)]
    async fn upload_resumes_where_the_device_says() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("setup.sh");
        let file = content(600_000);
        std::fs::write(&src, &file).unwrap();
        let (size, hash) = hash_file(&src).unwrap();
        assert_eq!((size, hash.clone()), (600_000, sha(&file)));
        let device = FakeDevice::new(Vec::new(), vec![200_000]);
        device.state.lock().unwrap().expect = Some((size, hash));
        let mut progress = Progress::new(size, false);
        let (mut retries, mut err) = (Retries::default(), Vec::new());
        loop {
            match upload_attempt(&device, &src, size, &mut progress, "s").await {
                Ok(()) => break,
                Err(failure) => retries.again(failure, &mut err).await.unwrap(),
            }
        }
        let err = String::from_utf8(err).unwrap();
        assert_eq!(device.state.lock().unwrap().file, file);
        assert!(err.contains("resuming (retry 1 of 3)"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_three() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.bin");
        let device = FakeDevice::new(content(10_000), vec![100, 100, 100, 100, 100]);
        let (result, err) = download_with_retries(&device, &target).await;
        assert!(result.is_err());
        assert_eq!(device.state.lock().unwrap().asked.len(), 1 + RETRIES);
        assert_eq!(err.matches("resuming").count(), RETRIES);
        // What arrived stays for the next run.
        assert_eq!(std::fs::metadata(partial_path(&target)).unwrap().len(), 400);
    }

    #[test]
    fn download_targets_and_refused_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            download_target(d, "/var/tmp/report.txt").unwrap(),
            d.join("report.txt")
        );
        assert_eq!(
            download_target(&d.join("x.txt"), "/var/tmp/report.txt").unwrap(),
            d.join("x.txt")
        );
        for bad in ["/tmp/..", "/tmp/.", "/tmp/"] {
            let err = download_target(d, bad).unwrap_err().to_string();
            assert!(err.contains("does not end in a file name"), "{bad}: {err}");
        }
        // `..` as a base name never reaches the file system, whatever DST is.
        assert!(download_target(Path::new("newdir/"), "/tmp/..").is_err());
        assert_eq!(partial_path(&d.join("a.txt")), d.join("a.txt.sfpart"));
    }

    #[test]
    fn upload_into_a_directory_keeps_the_name() {
        assert_eq!(
            upload_target("/tmp/", Path::new("dir/setup.sh")).unwrap(),
            "/tmp/setup.sh"
        );
        assert_eq!(
            upload_target("/tmp/x.sh", Path::new("setup.sh")).unwrap(),
            "/tmp/x.sh"
        );
        // A Windows device's directory, with either separator.
        let transfer = r"C:\ProgramData\schoolfleet\transfer\";
        assert_eq!(
            upload_target(transfer, Path::new("dir/setup.msi")).unwrap(),
            format!("{transfer}setup.msi")
        );
        assert_eq!(
            upload_target("D:/Daten/", Path::new("a.txt")).unwrap(),
            "D:/Daten/a.txt"
        );
        // On a Linux device a backslash is part of a name.
        assert_eq!(
            upload_target("/tmp/a\\", Path::new("b")).unwrap(),
            "/tmp/a\\"
        );
    }

    #[test]
    fn download_from_a_windows_path_takes_its_base_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            download_target(d, r"C:\ProgramData\schoolfleet\transfer\setup.log").unwrap(),
            d.join("setup.log")
        );
        assert_eq!(
            download_target(d, "C:/Temp/b.txt").unwrap(),
            d.join("b.txt")
        );
        for bad in [r"C:\Temp\..", r"C:\Temp\"] {
            assert!(download_target(d, bad).is_err(), "{bad}");
        }
        // A Linux device's file name may contain a backslash.
        assert_eq!(download_target(d, "/tmp/a\\b").unwrap(), d.join("a\\b"));
    }

    #[test]
    fn limits_and_progress_text() {
        assert!(check_limit(10, 0).is_ok());
        assert!(check_limit(10, 10).is_ok());
        assert!(check_limit(11, 10).is_err());
        assert_eq!(
            progress_text(12 * 1024 * 1024, 100 * 1024 * 1024),
            "12.0 MiB / 100.0 MiB (12%)"
        );
    }
}
