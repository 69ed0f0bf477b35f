//! Package-name patterns, matched for all software rules in one pass over a
//! device's programs.
//!
//! A fleet run tests every software pattern against every installed
//! program: 10 patterns × 300 programs × 100,000 devices. Almost all
//! patterns are anchored literals (`^Mozilla Firefox`, `^(µ|u)Torrent`), and
//! almost every program fails them on its first bytes. So the literal
//! prefixes of all patterns go into one byte trie; each program name walks
//! it once (usually one or two bytes deep), and only the patterns whose
//! prefix it reaches run their regex. Patterns without a finite set of
//! literal prefixes (unanchored, `(?i)` with too many variants) are tested
//! on every program, as before.

use regex::Regex;
use regex_syntax::hir::Look;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use schoolfleet_proto::v1::SoftwarePackage;

/// A package-name regex with its number in the standard's
/// [`SoftwareIndex`].
#[derive(Debug, Clone)]
pub(crate) struct PackagePattern {
    regex: Regex,
    pub(crate) id: usize,
}

impl PackagePattern {
    /// The id is assigned when the standard's index is built.
    pub(crate) fn new(regex: Regex) -> Self {
        PackagePattern { regex, id: 0 }
    }

    pub(crate) fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

/// The literal texts one of which every match of `pattern` starts with, if
/// the pattern is anchored at the start and that set is finite and free of
/// the empty string. `^(µ|u)Torrent` gives `µTorrent` and `uTorrent`;
/// `^Microsoft Office .*20(16|19)` gives `Microsoft Office `.
pub(crate) fn literal_prefixes(pattern: &str) -> Option<Vec<Vec<u8>>> {
    // The same syntax options as `regex::Regex::new`.
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return None;
    }
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix);
    let seq = extractor.extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    Some(literals.iter().map(|l| l.as_bytes().to_vec()).collect())
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Children by next byte; few per node, so a short list.
    edges: Vec<(u8, u32)>,
    /// Patterns one of whose prefixes ends at this node.
    ends: Vec<u32>,
}

/// Every package pattern of a standard, prepared for one pass per device.
#[derive(Debug, Clone)]
pub(crate) struct SoftwareIndex {
    regexes: Vec<Regex>,
    /// Byte trie of the literal prefixes; node 0 is the root.
    trie: Vec<Node>,
    /// The root's children by first byte (0: none), since nearly every
    /// program name leaves the trie right there.
    first: Box<[u32; 256]>,
    /// Patterns with no usable prefix: tested against every program.
    always: Vec<u32>,
}

impl SoftwareIndex {
    /// Numbers the patterns in the order given (`PackagePattern::id`).
    pub(crate) fn new(patterns: &mut [&mut PackagePattern]) -> SoftwareIndex {
        let mut index = SoftwareIndex {
            regexes: Vec::with_capacity(patterns.len()),
            trie: vec![Node::default()],
            first: Box::new([0; 256]),
            always: Vec::new(),
        };
        for (id, pattern) in patterns.iter_mut().enumerate() {
            pattern.id = id;
            index.regexes.push(pattern.regex.clone());
            let id = id as u32;
            match literal_prefixes(pattern.regex.as_str()) {
                None => index.always.push(id),
                Some(prefixes) => {
                    for prefix in prefixes {
                        index.insert(&prefix, id);
                    }
                }
            }
        }
        index
    }

    fn insert(&mut self, prefix: &[u8], id: u32) {
        let mut node = 0usize;
        for &b in prefix {
            node = match self.trie[node].edges.iter().find(|(e, _)| *e == b) {
                Some(&(_, next)) => next as usize,
                None => {
                    let next = self.trie.len();
                    self.trie.push(Node::default());
                    self.trie[node].edges.push((b, next as u32));
                    next
                }
            };
        }
        if !self.trie[node].ends.contains(&id) {
            self.trie[node].ends.push(id);
        }
        for &(b, next) in &self.trie[0].edges {
            self.first[usize::from(b)] = next;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.regexes.is_empty()
    }

    /// Which patterns match which of `software`, in one pass.
    pub(crate) fn matches(&self, software: &[SoftwarePackage]) -> SoftwareMatches {
        let mut pairs = Vec::new();
        let mut candidates: Vec<u32> = Vec::new();
        for (pkg, p) in software.iter().enumerate() {
            let name = p.name.as_str();
            candidates.clear();
            let bytes = name.as_bytes();
            let mut node = match bytes.first() {
                Some(&b) => self.first[usize::from(b)] as usize,
                None => 0,
            };
            if node != 0 {
                candidates.extend_from_slice(&self.trie[node].ends);
                for &b in &bytes[1..] {
                    match self.trie[node].edges.iter().find(|(e, _)| *e == b) {
                        Some(&(_, next)) => node = next as usize,
                        None => break,
                    }
                    candidates.extend_from_slice(&self.trie[node].ends);
                }
            }
            candidates.extend_from_slice(&self.always);
            if candidates.is_empty() {
                continue;
            }
            candidates.sort_unstable();
            candidates.dedup();
            for &id in &candidates {
                if self.regexes[id as usize].is_match(name) {
                    pairs.push((id, pkg as u32));
                }
            }
        }
        // Sorted by pattern, then by package: each pattern's packages are
        // one run in the order the device listed them.
        pairs.sort_unstable();
        SoftwareMatches { pairs }
    }
}

/// The result of [`SoftwareIndex::matches`] for one device.
#[derive(Debug, Default)]
pub(crate) struct SoftwareMatches {
    pairs: Vec<(u32, u32)>,
}

impl SoftwareMatches {
    /// Indexes of the packages that `pattern` matches, in inventory order.
    pub(crate) fn packages(&self, pattern: &PackagePattern) -> impl Iterator<Item = usize> + '_ {
        let id = pattern.id as u32;
        let start = self.pairs.partition_point(|&(p, _)| p < id);
        self.pairs[start..]
            .iter()
            .take_while(move |&&(p, _)| p == id)
            .map(|&(_, pkg)| pkg as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefixes(pattern: &str) -> Option<Vec<String>> {
        literal_prefixes(pattern).map(|v| {
            let mut v: Vec<String> = v
                .into_iter()
                .map(|b| String::from_utf8(b).unwrap())
                .collect();
            v.sort();
            v
        })
    }

    #[test]
    fn literal_prefixes_of_real_patterns() {
        let some = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // Redundant but correct: the trie reaches both at the same node.
        assert_eq!(
            prefixes("^Mozilla Firefox( ESR)?"),
            some(&["Mozilla Firefox", "Mozilla Firefox ESR"])
        );
        assert_eq!(
            prefixes("^Microsoft Office .*20(16|19)"),
            some(&["Microsoft Office "])
        );
        assert_eq!(prefixes("^(µ|u)Torrent"), some(&["uTorrent", "µTorrent"]));
        assert_eq!(
            prefixes("^(openssl|libssl3)$"),
            some(&["libssl3", "openssl"])
        );
        assert_eq!(
            prefixes("^(Microsoft )?Windows 11"),
            some(&["Microsoft Windows 11", "Windows 11"])
        );
        // Unicode `\\d` is too large a class to spell out.
        assert_eq!(prefixes("^a\\.b\\d"), some(&["a.b"]));
        // Not anchored in every branch, not anchored at all, or a branch
        // that may match the empty string: no prefilter.
        assert_eq!(prefixes("^a|b"), None);
        // Found by the property test once: an escaped parenthesis does not
        // open a group, so `|` here is at the top level.
        assert_eq!(prefixes("^ \\(|a?"), None);
        assert_eq!(prefixes("^0()|"), None);
        assert_eq!(prefixes("Firefox"), None);
        assert_eq!(prefixes("^a?"), None);
        assert_eq!(prefixes("(?m)^Java"), None);
        assert_eq!(prefixes("^.*Java"), None);
    }

    fn index_of(patterns: &[Regex]) -> SoftwareIndex {
        let mut owned: Vec<PackagePattern> =
            patterns.iter().cloned().map(PackagePattern::new).collect();
        let mut refs: Vec<&mut PackagePattern> = owned.iter_mut().collect();
        SoftwareIndex::new(&mut refs)
    }

    fn packages(names: &[String]) -> Vec<SoftwarePackage> {
        names
            .iter()
            .map(|n| SoftwarePackage {
                name: n.clone(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn one_pass_finds_every_match_in_order() {
        let patterns: Vec<Regex> = ["^(µ|u)Torrent", "^Java 8", "TeamViewer", "^Java"]
            .iter()
            .map(|p| Regex::new(p).unwrap())
            .collect();
        let index = index_of(&patterns);
        let names: Vec<String> = [
            "Java 8 Update 401",
            "µTorrent",
            "Jav",
            "TeamViewer 15",
            "uTorrent Web",
            "Java 17",
            "Old TeamViewer",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = index.matches(&packages(&names));
        let mut owned: Vec<PackagePattern> =
            patterns.iter().cloned().map(PackagePattern::new).collect();
        for (i, p) in owned.iter_mut().enumerate() {
            p.id = i;
        }
        let got: Vec<Vec<usize>> = owned.iter().map(|p| m.packages(p).collect()).collect();
        assert_eq!(got, vec![vec![1, 4], vec![0], vec![3, 6], vec![0, 5]]);
    }

    proptest! {
        /// The one-pass prefilter never changes the answer of the regexes.
        #[test]
        fn index_agrees_with_the_regexes(
            raw in prop::collection::vec("\\^?(\\(\\?i\\))?[A-Za-zµ0-9 .*+?|()\\\\-]{0,10}", 1..5),
            names in prop::collection::vec("[A-Za-zµ0-9 .+()-]{0,14}", 0..8),
        ) {
            let patterns: Vec<Regex> = raw.iter().filter_map(|p| Regex::new(p).ok()).collect();
            let index = index_of(&patterns);
            let m = index.matches(&packages(&names));
            for (id, re) in patterns.iter().enumerate() {
                let mut p = PackagePattern::new(re.clone());
                p.id = id;
                let got: Vec<usize> = m.packages(&p).collect();
                let want: Vec<usize> = names
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| re.is_match(n))
                    .map(|(i, _)| i)
                    .collect();
                prop_assert_eq!(got, want, "pattern {:?}", re.as_str());
            }
        }
    }
}
