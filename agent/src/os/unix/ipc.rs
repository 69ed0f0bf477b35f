//! Local control endpoints on Unix: sockets in the state directory whose
//! file mode says who may connect (0600 root only, 0666 every local user).

use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::super::{Audience, Peer};

pub type Stream = UnixStream;

/// `<state_dir>/<name>.sock`.
pub fn endpoint(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("{name}.sock"))
}

#[derive(Debug)]
pub struct Listener {
    listener: UnixListener,
}

impl Listener {
    /// Binds `path` (replacing a stale socket) with the mode for `audience`.
    pub fn bind(path: &Path, audience: Audience) -> std::io::Result<Listener> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        let mode = match audience {
            Audience::Owner => 0o600,
            Audience::LocalUsers => 0o666,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(Listener { listener })
    }

    /// The next connection and who made it (SO_PEERCRED).
    pub async fn accept(&mut self) -> std::io::Result<(Stream, Peer)> {
        let (stream, _) = self.listener.accept().await?;
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer {
                uid: Some(cred.uid()),
                pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
            },
            Err(_) => Peer::default(),
        };
        Ok((stream, peer))
    }
}

/// Writes what fits without waiting (the peer may never read).
pub fn try_write(stream: &Stream, bytes: &[u8]) {
    let _ = stream.try_write(bytes);
}

pub async fn connect(path: &Path) -> std::io::Result<Stream> {
    UnixStream::connect(path).await
}

/// Removes the endpoint when the agent stops.
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}
