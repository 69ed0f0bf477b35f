//! Output formats: aligned tables and sections for people, JSON and CSV for
//! scripts and spreadsheets.
//!
//! Every string that came from an agent is hostile until proven otherwise
//! (host names, package names, disk models, ...). The rules:
//!
//! * table and section output passes every cell through
//!   [`schoolfleet_proto::text::for_terminal`] inside [`render_table`] and
//!   [`Section`], so no caller can forget it;
//! * JSON is written by serde_json, which escapes control characters;
//! * CSV passes every cell through `for_terminal` too and guards against
//!   spreadsheet formula injection (see [`csv_field`]).
//!
//! List rows are small serde structs (one per command, in `commands/`), not
//! the generated proto types, so the JSON keys stay stable when the wire
//! format grows.

use std::borrow::Cow;
use std::io::{self, BufRead, Write};

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use schoolfleet_proto::text::for_terminal;
use serde::Serialize;
use unicode_width::UnicodeWidthStr;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    // No doc comments on the variants: clap would turn them into a long
    // "possible values" list in every command's help.
    #[default]
    Table,
    Json,
    Csv,
}

/// One column of a list: its JSON/CSV key and its table title.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Also the JSON key of the row struct's field.
    pub key: &'static str,
    pub title: &'static str,
    /// False for wide columns that only CSV carries (the table stays readable).
    pub in_table: bool,
}

/// A column shown in table and CSV.
pub const fn col(key: &'static str, title: &'static str) -> Column {
    Column {
        key,
        title,
        in_table: true,
    }
}

/// A column shown in CSV (and JSON) only.
pub const fn wide(key: &'static str, title: &'static str) -> Column {
    Column {
        key,
        title,
        in_table: false,
    }
}

/// A row of a list. `Serialize` gives the JSON object; `COLUMNS` and
/// `cells` give table and CSV, in the same order.
pub trait Record: Serialize {
    /// Plural noun for "no devices found".
    const NOUN: &'static str;
    const COLUMNS: &'static [Column];
    /// One raw (not yet neutralised) string per column.
    fn cells(&self) -> Vec<String>;
    /// The cells for CSV, where numbers must stay numbers (`85.7`, not
    /// `85.7 %`) and a missing value is an empty cell, not `-`.
    fn csv_cells(&self) -> Vec<String> {
        self.cells()
    }
}

/// Where output goes, and how to ask the user. Commands write only through
/// this, so tests can capture everything.
pub struct Ui<'a> {
    pub format: OutputFormat,
    pub out: &'a mut dyn Write,
    /// Notes and prompts; never data.
    pub err: &'a mut dyn Write,
    pub input: &'a mut dyn BufRead,
    /// Whether `input` is a terminal a person can answer on.
    pub interactive: bool,
}

impl Ui<'_> {
    /// Prints a list in the chosen format.
    pub fn list<R: Record>(&mut self, rows: &[R]) -> io::Result<()> {
        match self.format {
            OutputFormat::Json => write_json(self.out, &rows),
            OutputFormat::Csv => write_csv(self.out, rows),
            OutputFormat::Table if rows.is_empty() => {
                writeln!(self.err, "no {} found", R::NOUN)
            }
            OutputFormat::Table => {
                let (titles, rows) = table_of(rows);
                self.out.write_all(render_table(&titles, &rows).as_bytes())
            }
        }
    }

    /// Prints one object: JSON as an object, CSV as a one-row list, and for
    /// the table format whatever `human` writes.
    pub fn one<R: Record>(
        &mut self,
        row: &R,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        match self.format {
            OutputFormat::Json => write_json(self.out, row),
            OutputFormat::Csv => write_csv(self.out, std::slice::from_ref(row)),
            OutputFormat::Table => human(self.out),
        }
    }

    /// Reports a finished action that returns nothing to print: on stdout for
    /// the table format, on stderr for JSON and CSV (their stdout stays data).
    pub fn done(&mut self, message: &str) -> io::Result<()> {
        let target: &mut dyn Write = if self.format == OutputFormat::Table {
            self.out
        } else {
            self.err
        };
        writeln!(target, "{}", for_terminal(message))
    }

    /// A note for the person at the terminal (stderr), e.g. "no devices found".
    pub fn note(&mut self, message: &str) -> io::Result<()> {
        writeln!(self.err, "{}", for_terminal(message))
    }

    /// Asks a yes/no question; only "y"/"yes" count as yes. Refuses to ask
    /// when nobody can answer: a script must say `--yes` explicitly.
    pub fn confirm(&mut self, question: &str) -> anyhow::Result<bool> {
        if !self.interactive {
            anyhow::bail!("refusing to continue without confirmation: not a terminal; pass --yes");
        }
        self.out.flush()?;
        write!(self.err, "{} [y/N] ", for_terminal(question))?;
        self.err.flush()?;
        let mut answer = String::new();
        self.input.read_line(&mut answer)?;
        Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
    }
}

pub(crate) fn table_of<R: Record>(rows: &[R]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let keep: Vec<bool> = R::COLUMNS.iter().map(|c| c.in_table).collect();
    let titles = R::COLUMNS
        .iter()
        .filter(|c| c.in_table)
        .map(|c| c.title)
        .collect();
    let rows = rows
        .iter()
        .map(|r| {
            r.cells()
                .into_iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(c, _)| c)
                .collect()
        })
        .collect();
    (titles, rows)
}

/// Pretty JSON plus a newline.
pub fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Width of a string on a terminal: "ü" is one column, "漢" two.
pub fn display_width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Renders aligned columns separated by two spaces, with a title row.
/// Every cell is neutralised with `for_terminal` first (and measured after
/// that, so the escapes it adds keep the alignment); empty cells show "-".
/// The last column is not padded, so lines carry no trailing blanks.
pub fn render_table(titles: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |cell: &str| -> String {
        if cell.is_empty() {
            "-".to_owned()
        } else {
            for_terminal(cell).into_owned()
        }
    };
    let mut grid: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    grid.push(titles.iter().map(|t| t.to_string()).collect());
    grid.extend(rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()));

    let columns = titles.len();
    let mut widths = vec![0; columns];
    for row in &grid {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(display_width(cell));
        }
    }

    let mut text = String::new();
    for row in &grid {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < columns {
                line.extend(std::iter::repeat_n(' ', widths[i] - display_width(cell)));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Writes a header row of keys and one line per row, CRLF line ends as
/// RFC 4180 asks.
pub fn write_csv<R: Record>(out: &mut dyn Write, rows: &[R]) -> io::Result<()> {
    let header: Vec<Cow<'_, str>> = R::COLUMNS.iter().map(|c| csv_field(c.key)).collect();
    write!(out, "{}\r\n", header.join(","))?;
    for row in rows {
        let cells = row.csv_cells();
        let fields: Vec<Cow<'_, str>> = cells.iter().map(|c| csv_field(c)).collect();
        write!(out, "{}\r\n", fields.join(","))?;
    }
    Ok(())
}

/// One CSV field, made safe for both parsers and spreadsheets:
///
/// 1. Control characters and bidi overrides become visible escapes
///    (`for_terminal`), so a hostile value cannot break lines or fool a
///    terminal that shows the file.
/// 2. Formula injection guard: Excel, LibreOffice Calc and Google Sheets run
///    a cell that starts with `=`, `+`, `-` or `@` as a formula (e.g. an
///    agent reporting the package name `=HYPERLINK(...)` or `@SUM(...)`).
///    Such a value gets a leading single quote, which spreadsheets treat as
///    "this is text" (OWASP's CSV injection advice). A plain number
///    (`-5`, `12.5`) and a lone `-` are no formula and stay as they are.
/// 3. RFC 4180 quoting: a field with a comma, double quote, CR or LF is
///    enclosed in double quotes, inner double quotes doubled.
pub fn csv_field(value: &str) -> Cow<'_, str> {
    let mut text = for_terminal(value);
    if text.starts_with(['=', '+', '-', '@']) && !is_plain_number(&text) && text != "-" {
        text = Cow::Owned(format!("'{text}"));
    }
    if text.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        text
    }
}

/// `-12`, `3.5`: digits with an optional minus and one decimal point.
fn is_plain_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// A titled block of "Label: value" lines and/or a small table, as used by
/// `device show`.
#[derive(Debug, Default)]
pub struct Section {
    title: String,
    fields: Vec<(String, String)>,
    table: Option<(Vec<&'static str>, Vec<Vec<String>>)>,
    notes: Vec<String>,
}

impl Section {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// Adds "label: value"; empty values are skipped.
    pub fn field(&mut self, label: &str, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        if !value.is_empty() {
            self.fields.push((label.to_owned(), value));
        }
        self
    }

    pub fn table(&mut self, titles: Vec<&'static str>, rows: Vec<Vec<String>>) -> &mut Self {
        self.table = Some((titles, rows));
        self
    }

    pub fn note(&mut self, text: impl Into<String>) -> &mut Self {
        self.notes.push(text.into());
        self
    }

    /// Renders the section; values are neutralised with `for_terminal`.
    pub fn render(&self) -> String {
        let mut text = format!("{}\n", self.title);
        let width = self
            .fields
            .iter()
            .map(|(l, _)| display_width(l))
            .max()
            .unwrap_or(0);
        for (label, value) in &self.fields {
            let pad = " ".repeat(width - display_width(label));
            text.push_str(&format!("  {label}:{pad}  {}\n", for_terminal(value)));
        }
        if let Some((titles, rows)) = &self.table {
            if rows.is_empty() {
                text.push_str("  (none)\n");
            } else {
                for line in render_table(titles, rows).lines() {
                    text.push_str(&format!("  {line}\n"));
                }
            }
        }
        for note in &self.notes {
            text.push_str(&format!("  {}\n", for_terminal(note)));
        }
        if self.fields.is_empty() && self.table.is_none() && self.notes.is_empty() {
            text.push_str("  (none)\n");
        }
        text
    }
}

/// RFC 3339 in UTC to the second, e.g. `2026-11-28T10:57:03Z`; `None` (JSON
/// `null`) when missing or out of range.
pub fn time_opt(t: Option<&prost_types::Timestamp>) -> Option<String> {
    schoolfleet_proto::time::opt_from_timestamp(t).map(rfc3339)
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// "just now", "5 min ago", "3 h ago", "12 days ago", "in 6 days".
pub fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    let (amount, future) = (secs.unsigned_abs(), secs < 0);
    let span = match amount {
        0..60 => return "just now".to_owned(),
        60..3600 => format!("{} min", amount / 60),
        3600..86400 => format!("{} h", amount / 3600),
        _ => format!("{} days", amount / 86400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// Decimal gigabytes with one decimal, as disk vendors count: "512.1 GB".
pub fn gigabytes(bytes: u64) -> String {
    if bytes == 0 {
        String::new()
    } else {
        format!("{:.1} GB", bytes as f64 / 1e9)
    }
}

/// Binary gibibytes with one decimal, as memory is counted: "15.5 GiB".
pub fn gibibytes(bytes: u64) -> String {
    if bytes == 0 {
        String::new()
    } else {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    }
}

/// "1 device", "2 devices": a count with its noun.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// Tristate from the wire: `Some(true)`, `Some(false)` or unknown.
pub fn tristate(value: i32) -> Option<bool> {
    use schoolfleet_proto::v1::Tristate;
    match Tristate::try_from(value) {
        Ok(Tristate::Yes) => Some(true),
        Ok(Tristate::No) => Some(false),
        _ => None,
    }
}

pub fn tristate_text(value: Option<bool>) -> String {
    match value {
        Some(b) => yes_no(b),
        None => "unknown".to_owned(),
    }
}

/// Test helper: the JSON object of `row` has exactly the keys of
/// `R::COLUMNS`, in the same order, and `cells` has one value per column.
#[cfg(test)]
pub fn assert_keys_match_columns<R: Record>(row: &R) {
    let json = serde_json::to_string(row).unwrap();
    // Keys in serialisation order: parse with a map that keeps order is not
    // available without serde_json's preserve_order, so read the keys of the
    // flat object by position.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let object = value.as_object().expect("a row serialises as an object");
    let mut keys: Vec<(usize, &str)> = object
        .keys()
        .map(|k| {
            (
                json.find(&format!("\"{k}\":")).expect("key in text"),
                k.as_str(),
            )
        })
        .collect();
    keys.sort();
    let keys: Vec<&str> = keys.into_iter().map(|(_, k)| k).collect();
    let columns: Vec<&str> = R::COLUMNS.iter().map(|c| c.key).collect();
    assert_eq!(keys, columns, "JSON keys and columns of {}", R::NOUN);
    assert_eq!(row.cells().len(), R::COLUMNS.len(), "cells of {}", R::NOUN);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        hostname: String,
        school_id: String,
        note: String,
    }

    impl Record for Row {
        const NOUN: &'static str = "rows";
        const COLUMNS: &'static [Column] = &[
            col("hostname", "HOSTNAME"),
            col("school_id", "SCHOOL"),
            wide("note", "NOTE"),
        ];
        fn cells(&self) -> Vec<String> {
            vec![
                self.hostname.clone(),
                self.school_id.clone(),
                self.note.clone(),
            ]
        }
    }

    fn row(hostname: &str, school: &str, note: &str) -> Row {
        Row {
            hostname: hostname.into(),
            school_id: school.into(),
            note: note.into(),
        }
    }

    fn capture(format: OutputFormat, rows: &[Row]) -> (String, String) {
        let (mut out, mut err, mut input) = (Vec::new(), Vec::new(), io::empty());
        let mut ui = Ui {
            format,
            out: &mut out,
            err: &mut err,
            input: &mut input,
            interactive: false,
        };
        ui.list(rows).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn table_aligns_by_display_width() {
        let rows = [
            row("Schüler-PC-Ü1", "kus012", ""),
            row("lehrer", "kl003", ""),
            row("x", "", ""),
        ];
        let (out, _) = capture(OutputFormat::Table, &rows);
        assert_eq!(
            out,
            "HOSTNAME       SCHOOL\n\
             Schüler-PC-Ü1  kus012\n\
             lehrer         kl003\n\
             x              -\n"
        );
        // The second column starts at the same display column on every line.
        let starts: Vec<usize> = out
            .lines()
            .map(|l| display_width(&l[..l.rfind("  ").unwrap() + 2]))
            .collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{starts:?}");
    }

    #[test]
    fn table_counts_wide_and_combining_characters() {
        // "u" + combining diaeresis is one column; CJK is two.
        let out = render_table(
            &["A", "B"],
            &[
                vec!["u\u{308}".into(), "1".into()],
                vec!["漢".into(), "2".into()],
            ],
        );
        assert_eq!(out, "A   B\nu\u{308}   1\n漢  2\n");
    }

    #[test]
    fn table_neutralises_hostile_hostname() {
        let hostile = "pc01\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}exe.gpj";
        let (out, _) = capture(OutputFormat::Table, &[row(hostile, "kus012", "")]);
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{202e}'));
        assert!(
            out.contains("pc01\\x1b]0;pwned\\x07\\x1b[2J\\u{202e}exe.gpj  kus012\n"),
            "{out}"
        );
        // The title row is padded to the escaped (visible) width.
        let first = out.lines().next().unwrap();
        assert_eq!(
            first.find("SCHOOL"),
            out.lines().nth(1).unwrap().find("kus012")
        );
    }

    #[test]
    fn empty_table_says_so_on_stderr() {
        let (out, err) = capture(OutputFormat::Table, &[]);
        assert_eq!(out, "");
        assert_eq!(err, "no rows found\n");
        let (out, _) = capture(OutputFormat::Json, &[]);
        assert_eq!(out, "[]\n");
        let (out, _) = capture(OutputFormat::Csv, &[]);
        assert_eq!(out, "hostname,school_id,note\r\n");
    }

    #[test]
    fn csv_quotes_and_guards_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("Müller, Jörg"), "\"Müller, Jörg\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("a=b"), "a=b");
        // Numbers and a lone dash are no formulas.
        assert_eq!(csv_field("-"), "-");
        assert_eq!(csv_field("-5"), "-5");
        assert_eq!(csv_field("-12.5"), "-12.5");
        assert_eq!(csv_field("-1.2.3"), "'-1.2.3");
        assert_eq!(csv_field("-.5"), "'-.5");
        // Line breaks and escapes become visible text, so one row stays one line.
        assert_eq!(csv_field("a\nb\u{1b}[31m"), "a\\x0ab\\x1b[31m");
    }

    #[test]
    fn csv_has_header_crlf_and_all_columns() {
        let (out, _) = capture(
            OutputFormat::Csv,
            &[
                row("Grundschule Höheinöd", "kus012", "=cmd|' /C calc'!A0"),
                row("b,c", "", ""),
            ],
        );
        assert_eq!(
            out,
            "hostname,school_id,note\r\n\
             Grundschule Höheinöd,kus012,'=cmd|' /C calc'!A0\r\n\
             \"b,c\",,\r\n"
        );
    }

    #[test]
    fn json_is_an_array_with_snake_case_keys() {
        let (out, _) = capture(OutputFormat::Json, &[row("pc\u{1b}1", "kus012", "ä")]);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let obj = value.as_array().unwrap()[0].as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys, ["hostname", "note", "school_id"]);
        assert_eq!(obj["hostname"], "pc\u{1b}1");
        // serde_json escapes the control character; the umlaut stays UTF-8.
        assert!(out.contains("pc\\u001b1") && out.contains("\"ä\""), "{out}");
    }

    #[test]
    fn confirm_refuses_without_a_terminal_and_reads_answers() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = io::Cursor::new(b"yes\n".to_vec());
        let mut ui = Ui {
            format: OutputFormat::Table,
            out: &mut out,
            err: &mut err,
            input: &mut input,
            interactive: false,
        };
        assert!(
            ui.confirm("Revoke?")
                .unwrap_err()
                .to_string()
                .contains("--yes")
        );
        ui.interactive = true;
        assert!(ui.confirm("Revoke?").unwrap());
        assert!(!ui.confirm("Revoke?").unwrap(), "end of input counts as no");
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "Revoke? [y/N] Revoke? [y/N] "
        );
    }

    #[test]
    fn section_renders_labels_aligned_and_neutralised() {
        let mut s = Section::new("Overview");
        s.field("Hostname", "pc\u{1b}[2J")
            .field("Größe", "1")
            .field("Empty", "");
        assert_eq!(
            s.render(),
            "Overview\n  Hostname:  pc\\x1b[2J\n  Größe:     1\n"
        );
    }

    #[test]
    fn ages_and_sizes() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let ago = |s: i64| age(now, now - chrono::Duration::seconds(s));
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(300), "5 min ago");
        assert_eq!(ago(7200), "2 h ago");
        assert_eq!(ago(86400 * 12), "12 days ago");
        assert_eq!(ago(-86400 * 6), "in 6 days");
        assert_eq!(gibibytes(16 * (1 << 30)), "16.0 GiB");
        assert_eq!(gigabytes(512_110_190_592), "512.1 GB");
        assert_eq!(gigabytes(0), "");
    }
}
