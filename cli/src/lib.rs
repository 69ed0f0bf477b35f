//! The `schoolfleet` CLI: a thin client of the admin gRPC services.
//!
//! `main.rs` only parses the command line and calls [`run`]; everything else
//! lives in modules so tests (and the end-to-end tests of the workspace) can
//! drive the CLI in-process with captured output.
//!
//! * [`args`]: command-line syntax and help texts (clap derive)
//! * [`profile`]: the saved profile and the flag > env > file precedence
//! * [`client`]: TLS channel with pinned CA, bearer-token interceptor, error messages
//! * [`output`]: table / JSON / CSV, sections, terminal-escape neutralisation
//! * [`commands`]: one module per command group
//! * [`session`]: starting remote sessions and attaching channels (shell, exec, forward, cp)
//! * [`terminal`]: raw mode with a guard that restores the admin's terminal
//! * [`exit`]: exit codes of `shell` and `exec` (the remote status, 255 for session errors)

pub mod args;
pub mod client;
pub mod commands;
pub mod diff;
pub mod exit;
pub mod output;
pub mod profile;
pub mod session;
pub mod terminal;

pub use commands::run;
