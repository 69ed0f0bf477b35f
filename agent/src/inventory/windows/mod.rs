//! Windows inventory: the registry (software, OS) and WMI (hardware,
//! security), in the same model as Linux so that one standard file checks
//! both. The parsers are pure and tested everywhere; the collector
//! compiles on Windows only.

pub mod parse;

#[cfg(windows)]
mod collect;
#[cfg(windows)]
pub use collect::WindowsPlatform;
