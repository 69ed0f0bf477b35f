//! A device's programs as they are compared and stored: sorted keys
//! borrowed from the inventory that holds them.

use schoolfleet_proto::v1::SoftwarePackage;

/// A program as the history compares it: source, name, architecture and
/// version, borrowed from wherever the inventory is held.
pub type ProgramKey<'a> = [&'a str; 4];

/// A device's programs sorted by source, name, architecture and version,
/// each once (a report may list one twice). Sorted lists are compared in
/// one pass, without building an index of either side.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Programs<'a>(Vec<ProgramKey<'a>>);

impl<'a> Programs<'a> {
    pub fn new(mut keys: Vec<ProgramKey<'a>>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        Self(keys)
    }

    pub fn of(packages: &'a [SoftwarePackage]) -> Self {
        Self::new(
            packages
                .iter()
                .map(|p| [&*p.source, &*p.name, &*p.architecture, &*p.version])
                .collect(),
        )
    }

    pub fn as_slice(&self) -> &[ProgramKey<'a>] {
        &self.0
    }
}
