//! The schoolfleet agent: a small daemon on every school PC.
//!
//! It keeps one outbound mTLS gRPC stream to the server and never listens on
//! a network port. Its local control socket (a Unix socket, not a port) is
//! for the person at the device.

pub mod identity;
pub mod inventory;
