//! Local control endpoints on Windows: named pipes whose security
//! descriptor encodes the audience. The agent pipe is for SYSTEM and
//! Administrators only; the user pipe also lets interactive users (`IU`)
//! read and write (they may only list and end sessions: the agent checks
//! each request). Network logons are denied on both.

use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::{Listener as PipeListener, Stream as PipeStream};
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::{Listener as _, Stream as _};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::windows::local_socket::ListenerOptionsExt;
use interprocess::os::windows::security_descriptor::SecurityDescriptor;

use super::super::{Audience, Peer};

pub type Stream = PipeStream;

/// The security descriptor (SDDL) for an audience: a protected DACL, deny
/// network logons first, then allow.
pub fn sddl(audience: Audience) -> &'static str {
    match audience {
        Audience::Owner => "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)",
        Audience::LocalUsers => "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;IU)",
    }
}

/// `\\.\pipe\schoolfleet-<name>-<8 hex of the state directory>`: one agent
/// per state directory, as with Unix sockets.
pub fn endpoint(state_dir: &Path, name: &str) -> PathBuf {
    use sha2::Digest;
    let tag = hex::encode(&sha2::Sha256::digest(state_dir.to_string_lossy().as_bytes())[..4]);
    PathBuf::from(format!(r"\\.\pipe\schoolfleet-{name}-{tag}"))
}

pub struct Listener {
    listener: PipeListener,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    pub fn bind(path: &Path, audience: Audience) -> std::io::Result<Listener> {
        let wide = widestring::U16CString::from_str(sddl(audience))
            .map_err(|_| std::io::Error::other("security descriptor contains NUL"))?;
        let descriptor = SecurityDescriptor::deserialize(&wide)?;
        let name = path.to_fs_name::<GenericFilePath>()?;
        let listener = ListenerOptions::new()
            .name(name)
            .security_descriptor(descriptor)
            .create_tokio()?;
        Ok(Listener { listener })
    }

    /// The next connection and the client's process id.
    pub async fn accept(&mut self) -> std::io::Result<(Stream, Peer)> {
        let stream = self.listener.accept().await?;
        let peer = Peer {
            uid: None,
            pid: stream.peer_creds().ok().and_then(|c| c.pid()),
        };
        Ok((stream, peer))
    }
}

/// Named pipes have no non-blocking write here: a refused client just
/// sees the pipe close.
pub fn try_write(_stream: &Stream, _bytes: &[u8]) {}

pub async fn connect(path: &Path) -> std::io::Result<Stream> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    Stream::connect(name).await
}

/// Pipes vanish with their last handle.
pub fn remove(_path: &Path) {}
