//! Lint: every problem in a standard file, each with a line and column.
//!
//! Coordinators edit the file by hand, so a message without a line number
//! is nearly useless to them. Lint and [`crate::Standard::compile`] run the
//! same code (`compile::build`): a file that lints clean always
//! compiles, and a file that compiles never has lint errors.

use std::fmt;
use std::ops::Range;

use crate::compile::build;

/// One problem, at a 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LintError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for LintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Tenants and classes that exist on the server. An empty list means "do
/// not check": lint then works offline on a laptop without server access.
#[derive(Debug, Clone, Default)]
pub struct KnownTenants {
    pub counties: Vec<String>,
    pub schools: Vec<String>,
    pub device_classes: Vec<String>,
}

/// Lints a standard file. An empty result means it compiles.
pub fn lint(text: &str, known: &KnownTenants) -> Vec<LintError> {
    match build(text, known) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

/// Byte offsets → line and column.
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset at which each line starts.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// 1-based line and character column of a byte offset. Offsets past
    /// the end or inside a character are clamped, never a panic.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    /// Where a piece of text (a regex, a version) sits inside a span: used
    /// for fields inside `check`, which carry no span of their own.
    pub(crate) fn find_in(&self, span: &Range<usize>, needle: &str) -> usize {
        if needle.is_empty() {
            return span.start;
        }
        self.text
            .get(span.clone())
            .and_then(|s| s.find(needle))
            .map_or(span.start, |i| span.start + i)
    }

    pub(crate) fn error(&self, offset: usize, message: impl Into<String>) -> LintError {
        let (line, column) = self.position(offset);
        LintError {
            line,
            column,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let idx = LineIndex::new("ab\nüx\n");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(3), (2, 1));
        assert_eq!(idx.position(5), (2, 2)); // after the two-byte ü
        assert_eq!(idx.position(4), (2, 1)); // inside ü: clamped, no panic
        assert_eq!(idx.position(999), (3, 1));
    }
}
