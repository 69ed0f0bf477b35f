//! The counties' common IT standard as code.
//!
//! A standard is one TOML file (`schema = "schoolfleet-standard/v1"`, see
//! `standard/README.md`) that coordinators read and edit. This crate:
//! - [`mod@format`]: the serde types of the file;
//! - [`lint()`]: every problem in the file, each with its line number;
//! - [`Standard::compile`]: the same checks, then regexes, constraints and
//!   scopes prepared once so evaluation of a whole fleet is fast;
//! - [`CompiledStandard::evaluate`]: one device's inventory against every
//!   rule, with the time passed in rather than read from the clock;
//! - [`version`]: segment-wise version comparison (dpkg, Windows builds).

#![forbid(unsafe_code)]

pub mod compile;
pub mod eval;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod lint;
pub mod parallel;
pub mod reasons;
mod software;
pub mod version;

pub use compile::{CompiledRule, CompiledStandard, WaiverInfo};
pub use eval::{DeviceFacts, RuleResult, Status};
pub use format::{Mode, SCHEMA, Severity, Standard};
pub use lint::{KnownTenants, LintError, lint};
