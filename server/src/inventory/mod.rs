//! Validation and change detection of agent inventories: pure functions,
//! no storage, so the rules can be tested without a database.

pub mod diff;
pub mod programs;
pub mod stored;
pub mod validate;

pub use programs::{ProgramKey, Programs};
