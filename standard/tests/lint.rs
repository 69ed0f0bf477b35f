//! Lint: each problem is reported at the line a coordinator has to edit.

use schoolfleet_standard::{KnownTenants, LintError, Standard, lint};

/// A small valid standard. Line numbers below refer to this text.
const BASE: &str = r#"schema = "schoolfleet-standard/v1"
[standard]
id = "t"
version = "1.0.0"
valid_from = 2025-11-01
[counties]
kus = "Landkreis Kusel"
[device_classes]
schueler-pc = { label = "Schüler-PC" }
[[rule]]
id = "R1"
title = "RAM"
check = { type = "hardware_min", ram_gib = 8 }
[[rule]]
id = "R2"
title = "Name"
applies_to = { device_classes = ["schueler-pc"], schools = ["kus012"] }
check = { type = "hostname", regex = "^kus[0-9]{3}-" }
[[rule]]
id = "R3"
title = "Browser"
check = { type = "software_required", any_of = [
  { name = "^Firefox", version = ">=140.0" },
  { name = "^Chromium" } ] }
[[waiver]]
id = "W1"
rule = "R1"
devices = ["kus012-sp0101"]
reason = "Altgerät"
approved_by = "Koordination"
ticket = "SUP-1"
granted = 2025-11-03
expires = 2026-08-31
"#;

fn errors(text: &str) -> Vec<LintError> {
    lint(text, &KnownTenants::default())
}

/// Replaces one exact piece of BASE and returns the single error.
fn single(from: &str, to: &str) -> LintError {
    assert!(BASE.contains(from), "test bug: {from:?} not in BASE");
    let text = BASE.replacen(from, to, 1);
    let mut errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.remove(0)
}

fn assert_at(e: &LintError, line: usize, needle: &str) {
    assert_eq!(e.line, line, "{e}");
    assert!(e.message.contains(needle), "{e} lacks {needle:?}");
}

#[test]
fn base_is_clean() {
    assert_eq!(errors(BASE), vec![]);
    Standard::compile(BASE).unwrap();
}

#[test]
fn toml_syntax_error() {
    let e = single("title = \"Name\"", "title = \"Name");
    assert_at(&e, 16, "");
}

#[test]
fn wrong_schema() {
    let e = single("schoolfleet-standard/v1", "schul-it-standard/v1");
    assert_at(&e, 1, "expected \"schoolfleet-standard/v1\"");
    assert_eq!(e.column, 10);
}

#[test]
fn missing_schema() {
    let text = BASE.replacen("schema = \"schoolfleet-standard/v1\"\n", "", 1);
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("schema"), "{errs:?}");
}

#[test]
fn duplicate_rule_id() {
    let e = single("id = \"R2\"", "id = \"R1\"");
    assert_at(
        &e,
        15,
        "duplicate rule id \"R1\" (first defined on line 11)",
    );
}

#[test]
fn unknown_check_type() {
    let e = single("type = \"hostname\"", "type = \"host_name\"");
    assert_at(&e, 18, "unknown variant `host_name`");
}

#[test]
fn unknown_check_field() {
    let e = single("ram_gib = 8", "ram_gb = 8");
    assert_at(&e, 13, "unknown field `ram_gb`");
}

#[test]
fn unknown_rule_field() {
    let e = single("title = \"RAM\"", "title = \"RAM\"\nseverty = \"hoch\"");
    assert_at(&e, 13, "unknown field `severty`");
}

#[test]
fn unknown_severity() {
    let e = single(
        "title = \"RAM\"",
        "title = \"RAM\"\nseverity = \"sehr hoch\"",
    );
    assert_at(&e, 13, "unknown variant `sehr hoch`");
}

#[test]
fn unknown_device_class() {
    let e = single("[\"schueler-pc\"]", "[\"schueler-pcs\"]");
    assert_at(&e, 17, "unknown device class \"schueler-pcs\"");
    assert_eq!(e.column, 34);
}

#[test]
fn unknown_county_in_scope() {
    let e = single("schools = [\"kus012\"]", "counties = [\"kl\"]");
    assert_at(&e, 17, "unknown county \"kl\"");
}

#[test]
fn unknown_school_when_tenants_are_known() {
    let known = KnownTenants {
        schools: vec!["kus001".into()],
        ..Default::default()
    };
    let errs = lint(BASE, &known);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_at(&errs[0], 17, "unknown school \"kus012\"");
    // Empty lists mean "do not check".
    assert_eq!(lint(BASE, &KnownTenants::default()), vec![]);
}

#[test]
fn county_table_checked_against_known_tenants() {
    let known = KnownTenants {
        counties: vec!["don".into()],
        ..Default::default()
    };
    let errs = lint(BASE, &known);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_at(&errs[0], 7, "unknown county \"kus\"");
}

#[test]
fn invalid_regex() {
    let e = single("^kus[0-9]{3}-", "^kus[0-9]{3-");
    assert_at(&e, 18, "invalid regex in rule R2");
}

#[test]
fn invalid_regex_on_a_continuation_line() {
    // The check starts on line 22; the bad pattern is on line 24.
    let e = single("^Chromium", "^Chromium(");
    assert_at(&e, 24, "invalid regex in rule R3 \"^Chromium(\"");
}

#[test]
fn bad_version_constraint() {
    let e = single(">=140.0", "140.0");
    assert_at(&e, 23, "has no operator");
    let e = single(">=140.0", ">=latest");
    assert_at(&e, 23, "no version with a digit");
}

#[test]
fn waiver_for_unknown_rule() {
    let e = single("rule = \"R1\"", "rule = \"R9\"");
    assert_at(&e, 27, "names rule \"R9\", which does not exist");
}

#[test]
fn waiver_expiry_before_grant() {
    let e = single("expires = 2026-08-31", "expires = 2025-08-31");
    assert_at(
        &e,
        33,
        "expires 2025-08-31 on or before it is granted (2025-11-03)",
    );
}

#[test]
fn waiver_without_expiry() {
    let e = single("expires = 2026-08-31\n", "");
    assert_at(&e, 25, "has no expiry date");
}

#[test]
fn waiver_expiry_with_time_is_refused() {
    let e = single("expires = 2026-08-31", "expires = 2026-08-31T10:00:00");
    assert_at(&e, 33, "must be a plain date");
}

#[test]
fn waiver_without_scope_or_devices() {
    let e = single("devices = [\"kus012-sp0101\"]\n", "");
    assert_at(&e, 25, "neither scope nor devices");
}

#[test]
fn duplicate_waiver_id() {
    let text = format!(
        "{BASE}[[waiver]]\nid = \"W1\"\nrule = \"R2\"\ndevices = [\"x\"]\nreason = \"r\"\napproved_by = \"a\"\nticket = \"t\"\nexpires = 2026-01-01\n"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_at(
        &errs[0],
        35,
        "duplicate waiver id \"W1\" (first defined on line 26)",
    );
}

#[test]
fn empty_scope_list() {
    let e = single("schools = [\"kus012\"]", "schools = []");
    assert_at(&e, 17, "empty schools list matches nothing");
}

#[test]
fn unknown_os_family() {
    let e = single(
        "check = { type = \"hardware_min\", ram_gib = 8 }",
        "check = { type = \"os\", family = \"windoze\" }",
    );
    assert_at(&e, 13, "unknown OS family \"windoze\"");
}

#[test]
fn os_lifecycle_without_table() {
    let e = single(
        "check = { type = \"hardware_min\", ram_gib = 8 }",
        "check = { type = \"os_lifecycle\" }",
    );
    assert_at(&e, 13, "needs [[lifecycle.os]]");
}

#[test]
fn empty_hardware_min() {
    let e = single("ram_gib = 8", "tolerance_pct = 5");
    assert_at(&e, 13, "hardware_min needs");
}

#[test]
fn several_errors_are_all_reported_in_line_order() {
    let text = BASE
        .replacen("id = \"R2\"", "id = \"R1\"", 1)
        .replacen("^kus[0-9]{3}-", "(", 1)
        .replacen("rule = \"R1\"", "rule = \"R9\"", 1);
    let lines: Vec<usize> = errors(&text).iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![15, 18, 27]);
}

#[test]
fn display_names_line_and_column() {
    let e = single("id = \"R2\"", "id = \"R1\"");
    assert!(
        e.to_string()
            .starts_with("line 15, column 6: duplicate rule id")
    );
}

/// Tables below the internally tagged `check` carry only the span of
/// `[rule.check]`; the error must still point at the key to edit.
#[test]
fn errors_in_deeply_nested_tables_point_at_their_key() {
    // BASE has 33 lines; the extra text starts at line 34.
    let nested = "[[rule]]\nid = \"R9\"\ntitle = \"t\"\n[rule.check]\n\
                  type = \"software_required\"\n[[rule.check.any_of]]\nname = \"^Firefox\"\n\
                  [[rule.check.any_of]]\nnamez = \"^Chromium\"\n";
    let errs = errors(&format!("{BASE}{nested}"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_at(&errs[0], 42, "unknown field `namez`");
    assert_eq!(errs[0].column, 1);
    let wrong_type = "[[rule]]\nid = \"R9\"\ntitle = \"t\"\n[rule.check]\n\
                      type = \"hardware_min\"\ncpu_cores = 4\n  ram_gib = \"acht\"\n";
    let errs = errors(&format!("{BASE}{wrong_type}"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_at(&errs[0], 40, "invalid type");
    assert_eq!(errs[0].column, 3, "at the key, after the indentation");
    // What has no key of its own stays at the table's header.
    let missing = "[[rule]]\nid = \"R9\"\ntitle = \"t\"\n[rule.check]\nram_gib = 8\n";
    let errs = errors(&format!("{BASE}{missing}"));
    assert_at(&errs[0], 37, "missing field `type`");
}

/// A waiver's reason, approver and ticket are required, and lint names
/// every missing one in the same run.
#[test]
fn waivers_report_every_missing_field_at_once() {
    let text = BASE
        .replacen("reason = \"Altgerät\"\n", "", 1)
        .replacen("approved_by = \"Koordination\"\n", "", 1)
        .replacen("ticket = \"SUP-1\"\n", "", 1)
        .replacen("expires = 2026-08-31\n", "", 1);
    let errs = errors(&text);
    let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(errs.len(), 4, "{messages:#?}");
    for field in ["reason", "approved_by", "ticket", "expiry date"] {
        assert!(
            messages
                .iter()
                .any(|m| m.contains(&format!("has no {field}"))),
            "{field} missing from {messages:#?}"
        );
    }
    // All at the waiver's header, where the fields belong.
    assert!(errs.iter().all(|e| e.line == 25), "{errs:#?}");
    // Blank counts as missing.
    let e = single("ticket = \"SUP-1\"", "ticket = \"  \"");
    assert_at(&e, 25, "has no ticket");
}
