//! The schoolfleet server.

pub mod inventory;
pub mod pki;
