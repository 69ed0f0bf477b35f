//! Unix (Linux first) implementation of the OS layer.

pub mod files;
pub mod ipc;
pub mod machine;
pub mod process;
pub mod service;
