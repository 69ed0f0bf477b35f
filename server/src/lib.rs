//! The schoolfleet server.

pub mod auth;
pub mod config;
pub mod inventory;
pub mod pki;
pub mod storage;
