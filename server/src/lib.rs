//! The schoolfleet server: enrolment and device identity (mTLS), inventory,
//! tenants and the audit log, over tonic gRPC with sqlx storage.
//!
//! `main.rs` is thin; tests start the server in-process with
//! [`server::prepare`] and [`server::run`] on a listener bound to port 0.

pub mod agents;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod compliance;
pub mod config;
pub mod heartbeats;
pub mod ingest;
pub mod inventory;
pub mod keyring;
pub mod limits;
pub mod listener;
pub mod pki;
pub mod retention;
pub mod server;
pub mod service;
pub mod sessions;
pub mod state;
pub mod storage;
pub mod textdiff;
pub mod web;
/// Moved to `schoolfleet-standard`; re-exported so existing paths keep working.
pub use schoolfleet_standard::version;
pub mod webhooks;
