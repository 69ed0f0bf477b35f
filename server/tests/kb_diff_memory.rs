//! `kb diff` of two articles at the line limit must not take memory in
//! proportion to the product of their lengths (issue 9: four concurrent
//! diffs moved the server from 62 to 236 MB). Its own test binary, so that
//! the process's peak resident size is this diff's alone.

/// Peak resident set size of this process in KiB (Linux).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[test]
fn diff_at_the_line_limit_stays_small() {
    // 5,000 lines each (the server's limit), every line different, so no
    // common head or tail helps.
    let old: String = (0..5_000).map(|i| format!("alt Zeile {i}\n")).collect();
    let new: String = (0..5_000).map(|i| format!("neu Zeile {i}\n")).collect();
    let before = peak_rss_kib();
    let lines = schoolfleet_server::textdiff::line_diff(&old, &new);
    let grown = peak_rss_kib().saturating_sub(before);
    assert_eq!(lines.len(), 10_000);
    // The old table was 5,001 × 5,001 × 4 bytes = 100 MB.
    assert!(
        grown < 16 * 1024,
        "the diff grew the peak RSS by {grown} KiB"
    );
}
