//! Version comparison, segment by segment, and version constraints.
//!
//! Package versions are not semver: dpkg has epochs and revisions
//! (`1:2.36.1-8+deb12u1`), Windows builds have four numbers
//! (`10.0.26100.2314`). Versions are split into runs of digits and runs of
//! letters; digit runs compare as numbers, letter runs as text, and a
//! missing segment is smaller than a present one.
//!
//! The comparison walks both strings lazily and never allocates, because the
//! standard evaluates it for every device and every software rule.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Number(&'a str),
    Text(&'a str),
}

/// Iterator over the segments of a version; separators only delimit.
struct Segments<'a> {
    text: &'a str,
    pos: usize,
}

fn segments(version: &str) -> Segments<'_> {
    Segments {
        text: version,
        pos: 0,
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = Segment<'a>;

    fn next(&mut self) -> Option<Segment<'a>> {
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() {
            let start = self.pos;
            if bytes[start].is_ascii_digit() {
                while self.pos < bytes.len() && bytes[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                return Some(Segment::Number(
                    self.text[start..self.pos].trim_start_matches('0'),
                ));
            } else if bytes[start].is_ascii_alphabetic() {
                while self.pos < bytes.len() && bytes[self.pos].is_ascii_alphabetic() {
                    self.pos += 1;
                }
                return Some(Segment::Text(&self.text[start..self.pos]));
            }
            // Separators (and any non-ASCII byte) only delimit segments.
            self.pos += 1;
        }
        None
    }
}

fn compare_segment(a: &Segment<'_>, b: &Segment<'_>) -> Ordering {
    match (a, b) {
        // Leading zeros are trimmed, so longer means larger.
        (Segment::Number(x), Segment::Number(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
        (Segment::Text(x), Segment::Text(y)) => {
            // Case-insensitive without allocating a lowercase copy.
            let xs = x.bytes().map(|c| c.to_ascii_lowercase());
            let ys = y.bytes().map(|c| c.to_ascii_lowercase());
            xs.cmp(ys)
        }
        // "1.0.1" > "1.0.beta": numbers rank above text.
        (Segment::Number(_), Segment::Text(_)) => Ordering::Greater,
        (Segment::Text(_), Segment::Number(_)) => Ordering::Less,
    }
}

/// Compares two version strings segment by segment (see the module docs).
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut sa, mut sb) = (segments(a), segments(b));
    loop {
        match (sa.next(), sb.next()) {
            (Some(x), Some(y)) => {
                let ord = compare_segment(&x, &y);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (None, None) => return Ordering::Equal,
        }
    }
}

/// A comparison operator of a version constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "=",
            Op::Ne => "!=",
        }
    }

    /// The operator whose truth is the opposite: used to word a failure
    /// ("115.0 < 140.0" for a failed ">=140.0").
    pub fn negated(self) -> Op {
        match self {
            Op::Ge => Op::Lt,
            Op::Gt => Op::Le,
            Op::Le => Op::Gt,
            Op::Lt => Op::Ge,
            Op::Eq => Op::Ne,
            Op::Ne => Op::Eq,
        }
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Ge => ord != Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
            Op::Le => ord != Ordering::Greater,
            Op::Lt => ord == Ordering::Less,
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `op version` term, e.g. `>=140.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub op: Op,
    pub version: String,
}

/// A version constraint: terms separated by commas, all of which must hold
/// (`">=128.0, <200"`). Parsed once when the standard is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub terms: Vec<Term>,
}

/// Why a constraint text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("empty version constraint")]
    Empty,
    #[error("version constraint term {0:?} has no operator (use >=, >, <=, <, = or !=)")]
    NoOperator(String),
    #[error("version constraint term {0:?} has no version with a digit")]
    NoVersion(String),
}

impl Constraint {
    /// Parses `">=140.0"` or `">=128, <200"`.
    pub fn parse(text: &str) -> Result<Constraint, ConstraintError> {
        let mut terms = Vec::new();
        for raw in text.split(',') {
            let term = raw.trim();
            if term.is_empty() {
                return Err(ConstraintError::Empty);
            }
            // Longest operators first so ">=" is not read as ">".
            let (op, rest) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!=", Op::Ne),
                ("==", Op::Eq),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(s, op)| term.strip_prefix(s).map(|rest| (*op, rest.trim())))
            .ok_or_else(|| ConstraintError::NoOperator(term.to_owned()))?;
            // A version without any digit ("latest", "") cannot be ordered
            // sensibly against real package versions.
            if !rest.bytes().any(|b| b.is_ascii_digit()) || rest.contains(char::is_whitespace) {
                return Err(ConstraintError::NoVersion(term.to_owned()));
            }
            terms.push(Term {
                op,
                version: rest.to_owned(),
            });
        }
        if terms.is_empty() {
            return Err(ConstraintError::Empty);
        }
        Ok(Constraint { terms })
    }

    /// The first term that `version` violates, or `None` when all hold.
    pub fn violated_by(&self, version: &str) -> Option<&Term> {
        self.terms
            .iter()
            .find(|t| !t.op.holds(compare(version, &t.version)))
    }

    pub fn matches(&self, version: &str) -> bool {
        self.violated_by(version).is_none()
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}{}", t.op, t.version)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn orders_real_versions() {
        assert_eq!(compare("115.0", "140.0"), Ordering::Less);
        assert_eq!(
            compare("10.0.26100.2314", "10.0.22631.4460"),
            Ordering::Greater
        );
        assert_eq!(compare("2.36.1-8", "2.36.1-10"), Ordering::Less);
        assert_eq!(compare("1.02", "1.2"), Ordering::Equal);
        assert_eq!(compare("24.8", "24.8.1"), Ordering::Less);
        assert_eq!(
            compare("3.0.15-1~deb12u1", "3.0.11-1~deb12u2"),
            Ordering::Greater
        );
        assert_eq!(compare("1.0.BETA", "1.0.beta"), Ordering::Equal);
    }

    #[test]
    fn parses_constraints() {
        let c = Constraint::parse(">=128.0, <200").unwrap();
        assert_eq!(c.to_string(), ">=128.0, <200");
        assert!(c.matches("140.0.2"));
        assert!(!c.matches("115.0"));
        assert_eq!(c.violated_by("201").unwrap().op, Op::Lt);
        assert_eq!(Constraint::parse("= 1.2").unwrap().terms[0].op, Op::Eq);
        assert_eq!(
            Constraint::parse("140"),
            Err(ConstraintError::NoOperator("140".into()))
        );
        assert_eq!(
            Constraint::parse(">=latest"),
            Err(ConstraintError::NoVersion(">=latest".into()))
        );
        assert_eq!(Constraint::parse(">=1,"), Err(ConstraintError::Empty));
        assert_eq!(Constraint::parse(""), Err(ConstraintError::Empty));
    }

    proptest! {
        #[test]
        fn is_antisymmetric(a in "[0-9a-zA-Z.+~-]{0,12}", b in "[0-9a-zA-Z.+~-]{0,12}") {
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        }

        #[test]
        fn is_reflexive(a in "\\PC{0,16}") {
            prop_assert_eq!(compare(&a, &a), Ordering::Equal);
        }

        #[test]
        fn is_transitive(a in "[0-9a-c.]{0,8}", b in "[0-9a-c.]{0,8}", c in "[0-9a-c.]{0,8}") {
            // Sort the three and check every pair agrees with the order.
            let mut v = [a, b, c];
            v.sort_by(|x, y| compare(x, y));
            prop_assert_ne!(compare(&v[0], &v[1]), Ordering::Greater);
            prop_assert_ne!(compare(&v[1], &v[2]), Ordering::Greater);
            prop_assert_ne!(compare(&v[0], &v[2]), Ordering::Greater);
        }

        #[test]
        fn numeric_tuples_compare_like_integers(a in proptest::collection::vec(0u32..100000, 1..5),
                                                b in proptest::collection::vec(0u32..100000, 1..5)) {
            let text = |v: &Vec<u32>| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
            prop_assert_eq!(compare(&text(&a), &text(&b)), a.cmp(&b));
        }

        #[test]
        fn constraint_agrees_with_compare(a in proptest::collection::vec(0u32..1000, 1..4),
                                          b in proptest::collection::vec(0u32..1000, 1..4)) {
            let text = |v: &Vec<u32>| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
            let c = Constraint::parse(&format!(">={}", text(&b))).unwrap();
            prop_assert_eq!(c.matches(&text(&a)), a >= b);
        }
    }
}
