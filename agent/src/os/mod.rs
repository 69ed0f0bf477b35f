//! The agent's one layer over the operating system, in the way std
//! organises `sys`: the rest of the agent calls these modules, and each
//! exists once per platform with the same names and signatures.
//!
//! - [`process`]: process trees (a Unix process group, a Windows Job Object
//!   with kill-on-close), exit codes, killing the whole tree.
//! - [`ipc`]: the local control endpoints (Unix sockets with file modes,
//!   named pipes with security descriptors) and who is calling.
//! - [`files`]: private state (mode 0700/0600, or a DACL for SYSTEM and
//!   Administrators only).
//! - [`machine`]: host name, uptime and the OS machine id.
//! - [`service`]: how the process is told to stop (signals, service control).
//! - `wts` (Windows only): the interactive user's session and a message box
//!   in it, for consent; `acl` (Windows only): a directory's SDDL, for cp.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{files, ipc, machine, process, service};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{acl, files, ipc, machine, process, service, wts};

/// Who may use a local control endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// agent.sock / the agent pipe: root (SYSTEM and Administrators) only.
    Owner,
    /// user.sock / the user pipe: every local (interactive) user, who may
    /// only list and end remote sessions.
    LocalUsers,
}

/// Who is on the other end of a control endpoint, as the OS says
/// (SO_PEERCRED, the pipe's client process id). A hint for the log, never
/// proof of anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<u32>,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: Option<u32>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        write!(f, "uid {} pid {}", show(self.uid), show(self.pid))
    }
}
