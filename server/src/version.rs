//! Version comparison, segment by segment.
//!
//! Package versions are not semver: dpkg has epochs and revisions
//! (`1:2.36.1-8+deb12u1`), Windows builds have four numbers
//! (`10.0.26100.2314`). Versions are split into runs of digits and runs of
//! letters; digit runs compare as numbers, letter runs as text, and a
//! missing segment is smaller than a present one.

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Number(&'a str),
    Text(&'a str),
}

fn segments(version: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let bytes = version.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i].is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Segment::Number(version[start..i].trim_start_matches('0')));
        } else if bytes[i].is_ascii_alphabetic() {
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Segment::Text(&version[start..i]));
        } else {
            // Separators only delimit segments.
            i += 1;
        }
    }
    out
}

fn compare_segment(a: &Segment<'_>, b: &Segment<'_>) -> Ordering {
    match (a, b) {
        // Leading zeros are trimmed, so longer means larger.
        (Segment::Number(x), Segment::Number(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
        (Segment::Text(x), Segment::Text(y)) => x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()),
        // "1.0.1" > "1.0.beta": numbers rank above text.
        (Segment::Number(_), Segment::Text(_)) => Ordering::Greater,
        (Segment::Text(_), Segment::Number(_)) => Ordering::Less,
    }
}

pub fn compare(a: &str, b: &str) -> Ordering {
    let (sa, sb) = (segments(a), segments(b));
    for (x, y) in sa.iter().zip(sb.iter()) {
        let ord = compare_segment(x, y);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    sa.len().cmp(&sb.len())
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
    }

    proptest! {
        #[test]
        fn is_antisymmetric(a in "[0-9a-z.+~-]{0,12}", b in "[0-9a-z.+~-]{0,12}") {
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        }

        #[test]
        fn numeric_tuples_compare_like_integers(a in proptest::collection::vec(0u32..100000, 1..5),
                                                b in proptest::collection::vec(0u32..100000, 1..5)) {
            let text = |v: &Vec<u32>| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
            prop_assert_eq!(compare(&text(&a), &text(&b)), a.cmp(&b));
        }
    }
}
