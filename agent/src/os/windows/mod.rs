//! Windows implementation of the OS layer.
//!
//! Checked here by cross-compiling (`cargo clippy --target
//! x86_64-pc-windows-gnu`); what only a real Windows can show (Job Object
//! limits, pipe DACLs, ACLs set by icacls) is named in ARCHITECTURE.md.

pub mod acl;
pub mod files;
pub mod ipc;
pub mod machine;
pub mod process;
pub mod service;
pub mod wts;
