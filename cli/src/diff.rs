//! A line diff for `standard diff` (and other text versions): the longest
//! common subsequence of lines, printed with ` `, `-` and `+` prefixes.
//! Quadratic in the number of lines, which is fine for files of a few
//! hundred lines written by people.

/// Lines in both inputs are unchanged; the rest are removed or added.
pub fn lines(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_removed_added_and_kept_lines() {
        let old = "a\nb\nc\n";
        let new = "a\nc\nd\n";
        assert_eq!(lines(old, new), "  a\n- b\n  c\n+ d\n");
    }

    #[test]
    fn identical_texts_have_no_changes() {
        let text = "version = \"2025.2.0\"\n[[rule]]\n";
        assert!(lines(text, text).lines().all(|l| l.starts_with("  ")));
    }
}
