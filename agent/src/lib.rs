//! The schoolfleet agent: a small daemon on every school PC.
//!
//! It keeps one outbound mTLS gRPC stream to the server and never listens on
//! a network port. Its local control socket (a Unix socket, not a port) is
//! for the person or admin at the device.
//!
//! - [`enroll`]: one-time token in, device certificate out.
//! - [`runtime`]: the loop behind `schoolfleet-agent run`.
//! - [`inventory`]: collection behind a platform trait.
//! - [`spool`]: reports wait on disk until acknowledged.
//! - [`control`]: the local control socket.
//! - [`report`]: a service-desk ticket from this device.
//! - [`session`]: remote sessions (consent, shell, exec, forward, copy).
//! - [`os`]: everything that differs between Unix and Windows.

pub mod backoff;
pub mod control;
pub mod enroll;
pub mod identity;
pub mod inventory;
pub mod os;
pub mod report;
pub mod runtime;
pub mod session;
pub mod spool;

/// Default state directory: identity, spool and control socket.
#[cfg(unix)]
pub const DEFAULT_STATE_DIR: &str = "/var/lib/schoolfleet-agent";
/// Default state directory on Windows (SYSTEM and Administrators only).
#[cfg(windows)]
pub const DEFAULT_STATE_DIR: &str = "C:\\ProgramData\\schoolfleet\\agent";
