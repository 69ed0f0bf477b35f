//! Compiling a standard: parse, check everything lint checks, and build
//! the form that evaluation uses.
//!
//! Everything that costs time is done here once: regexes are compiled,
//! version constraints parsed, `*` scopes resolved, rule defaults merged and
//! waivers attached to their rules, so evaluating 100,000 devices does no
//! parsing at all.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use chrono::{DateTime, NaiveDate, Utc};
use regex::{Regex, RegexBuilder};
use schoolfleet_proto::v1::DiskMedia;
use toml::Spanned;
use toml::value::Datetime;

use crate::format::{self, Check, Mode, SCHEMA, Scope, Severity, Standard};
use crate::lint::{KnownTenants, LineIndex, LintError};
use crate::software::{PackagePattern, SoftwareIndex};
use crate::version::Constraint;

/// OS families the agents report.
pub const OS_FAMILIES: &[&str] = &["windows", "linux", "macos"];

/// Host-name and package patterns are short; a pattern that compiles to
/// more than this is a mistake (or an attack on the server's memory).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A standard ready for evaluation.
#[derive(Debug, Clone)]
pub struct CompiledStandard {
    pub id: String,
    pub version: String,
    pub valid_from: Option<NaiveDate>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) waivers: Vec<CompiledWaiver>,
    pub(crate) lifecycle: Vec<CompiledLifecycle>,
    /// Inventory older than this is too old to judge by.
    pub(crate) stale_after: chrono::Duration,
    /// Every package pattern of every rule, for one pass per device.
    pub(crate) software: SoftwareIndex,
}

impl CompiledStandard {
    /// The rules in file order, for listings and reports.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    pub fn waiver_count(&self) -> usize {
        self.waivers.len()
    }

    /// Every waiver, for reports.
    pub fn waivers(&self) -> impl Iterator<Item = WaiverInfo<'_>> {
        self.waivers.iter().map(|w| WaiverInfo {
            id: &w.id,
            rule_id: &w.rule_id,
            expires: w.expires,
            reason: &w.reason,
            counties: w.scope.as_ref().and_then(|s| s.counties.as_deref()),
            schools: w.scope.as_ref().and_then(|s| s.schools.as_deref()),
            devices: &w.devices,
        })
    }

    /// When the waiver with this id stops applying.
    pub fn waiver_expires(&self, id: &str) -> Option<DateTime<Utc>> {
        self.waivers.iter().find(|w| w.id == id).map(|w| w.expires)
    }
}

/// A waiver as reports show it.
#[derive(Debug, Clone, Copy)]
pub struct WaiverInfo<'s> {
    pub id: &'s str,
    pub rule_id: &'s str,
    /// The first instant the waiver no longer applies.
    pub expires: DateTime<Utc>,
    pub reason: &'s str,
    /// The counties and schools of the waiver's scope (`None`: any), and
    /// its device list (host names or ids; empty: every device in scope).
    /// The server decides from these who may read the waiver.
    pub counties: Option<&'s [String]>,
    pub schools: Option<&'s [String]>,
    pub devices: &'s [String],
}

/// One rule with its defaults applied.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub mode: Mode,
    pub remediation: Option<String>,
    pub kb: Option<String>,
    pub source: Option<String>,
    /// Open a ticket per failing device (see `format::Rule::auto_ticket`).
    pub auto_ticket: bool,
    pub(crate) scope: CompiledScope,
    pub(crate) check: CompiledCheck,
    /// The expected value, worded once.
    pub(crate) expected: String,
    /// Indexes into `CompiledStandard::waivers` for this rule.
    pub(crate) waivers: Vec<usize>,
}

impl CompiledRule {
    /// The check type (`hardware_min`, ...).
    pub fn check_type(&self) -> &'static str {
        self.check.type_name()
    }
}

/// A scope with `*` and missing lists resolved to "any" (`None`).
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledScope {
    pub(crate) counties: Option<Vec<String>>,
    pub(crate) schools: Option<Vec<String>>,
    pub(crate) device_classes: Option<Vec<String>>,
    pub(crate) os_families: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub(crate) struct RamMin {
    pub(crate) gib: f64,
    /// The threshold after tolerance, in bytes.
    pub(crate) min_bytes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct SoftwareAlt {
    pub(crate) name: PackagePattern,
    pub(crate) version: Option<Constraint>,
}

#[derive(Debug, Clone)]
pub(crate) enum CompiledCheck {
    HardwareMin {
        ram: Option<RamMin>,
        cpu_cores: Option<u32>,
        system_disk_gb: Option<u64>,
        media: Option<Vec<DiskMedia>>,
    },
    Firmware {
        uefi: Option<bool>,
        secure_boot: Option<bool>,
        tpm_min: Option<String>,
    },
    Os {
        family: String,
        name: Option<Regex>,
        editions: Vec<String>,
        min_version: Option<String>,
    },
    OsLifecycle {
        warn_days: u32,
    },
    UpdateAge {
        max_days: u32,
    },
    InventoryAge {
        max_days: u32,
    },
    DiskEncryption {
        methods: Vec<String>,
    },
    Antivirus {
        realtime: bool,
        signature_max_age_days: Option<u32>,
        required_on: Vec<String>,
    },
    SoftwareRequired {
        any_of: Vec<SoftwareAlt>,
    },
    SoftwareForbidden {
        name: PackagePattern,
        version: Option<Constraint>,
    },
    Hostname {
        regex: Regex,
        max_len: Option<usize>,
    },
}

impl CompiledCheck {
    fn type_name(&self) -> &'static str {
        match self {
            CompiledCheck::HardwareMin { .. } => "hardware_min",
            CompiledCheck::Firmware { .. } => "firmware",
            CompiledCheck::Os { .. } => "os",
            CompiledCheck::OsLifecycle { .. } => "os_lifecycle",
            CompiledCheck::UpdateAge { .. } => "update_age",
            CompiledCheck::InventoryAge { .. } => "inventory_age",
            CompiledCheck::DiskEncryption { .. } => "disk_encryption",
            CompiledCheck::Antivirus { .. } => "antivirus",
            CompiledCheck::SoftwareRequired { .. } => "software_required",
            CompiledCheck::SoftwareForbidden { .. } => "software_forbidden",
            CompiledCheck::Hostname { .. } => "hostname",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledWaiver {
    pub(crate) id: String,
    pub(crate) scope: Option<CompiledScope>,
    pub(crate) devices: Vec<String>,
    pub(crate) granted: Option<DateTime<Utc>>,
    pub(crate) expires: DateTime<Utc>,
    /// For reports ("waivers expiring within 30 days").
    pub(crate) rule_id: String,
    pub(crate) reason: String,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledLifecycle {
    pub(crate) family: String,
    pub(crate) product: String,
    pub(crate) name: Option<Regex>,
    pub(crate) version_prefix: String,
    pub(crate) end_of_support: NaiveDate,
}

impl Standard {
    /// Parses, lints and compiles a standard file. The errors are exactly
    /// what [`fn@crate::lint`] reports (tenants are not checked here; use
    /// [`Standard::compile_with`] for that).
    pub fn compile(text: &str) -> Result<CompiledStandard, Vec<LintError>> {
        build(text, &KnownTenants::default())
    }

    /// Like [`Standard::compile`], also checking scopes against the tenants
    /// and device classes that exist on the server.
    pub fn compile_with(
        text: &str,
        known: &KnownTenants,
    ) -> Result<CompiledStandard, Vec<LintError>> {
        build(text, known)
    }
}

/// Collects errors while compiling, so one run reports all of them.
struct Ctx<'t, 'k> {
    idx: LineIndex<'t>,
    known: &'k KnownTenants,
    errors: Vec<LintError>,
    counties: BTreeSet<String>,
    classes: BTreeSet<String>,
}

impl Ctx<'_, '_> {
    fn err(&mut self, offset: usize, message: impl Into<String>) {
        let e = self.idx.error(offset, message);
        self.errors.push(e);
    }

    fn regex(&mut self, pattern: &str, span: &Range<usize>, what: &str) -> Option<Regex> {
        match RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(re) => Some(re),
            Err(e) => {
                let at = self.idx.find_in(span, pattern);
                // The regex crate's message spans several lines with a
                // caret diagram; the last line says what is wrong.
                let detail = e.to_string();
                let detail = detail.lines().last().unwrap_or("invalid").trim();
                let detail = detail.strip_prefix("error: ").unwrap_or(detail);
                self.err(at, format!("invalid regex in {what} {pattern:?}: {detail}"));
                None
            }
        }
    }

    fn constraint(&mut self, text: &str, span: &Range<usize>, what: &str) -> Option<Constraint> {
        match Constraint::parse(text) {
            Ok(c) => Some(c),
            Err(e) => {
                let at = self.idx.find_in(span, text);
                self.err(at, format!("bad version constraint in {what}: {e}"));
                None
            }
        }
    }

    fn family(&mut self, family: &str, span: &Range<usize>, what: &str) {
        if !OS_FAMILIES.contains(&family) {
            let at = self.idx.find_in(span, family);
            self.err(
                at,
                format!(
                    "unknown OS family {family:?} in {what} (known: {})",
                    OS_FAMILIES.join(", ")
                ),
            );
        }
    }

    /// Checks a scope's names and resolves `*`.
    fn scope(&mut self, scope: &Spanned<Scope>, what: &str) -> CompiledScope {
        let span = scope.span();
        let s = scope.get_ref();
        let counties = self.list(s.counties.as_ref(), &span, what, "counties", |c, name| {
            (c.counties.is_empty() || c.counties.contains(name))
                && (c.known.counties.is_empty() || c.known.counties.iter().any(|k| k == name))
        });
        let schools = self.list(s.schools.as_ref(), &span, what, "schools", |c, name| {
            c.known.schools.is_empty() || c.known.schools.iter().any(|k| k == name)
        });
        let device_classes = self.list(
            s.device_classes.as_ref(),
            &span,
            what,
            "device_classes",
            |c, name| {
                (c.classes.is_empty() || c.classes.contains(name))
                    && (c.known.device_classes.is_empty()
                        || c.known.device_classes.iter().any(|k| k == name))
            },
        );
        let os_families = self.list(
            s.os_families.as_ref(),
            &span,
            what,
            "os_families",
            |_, name| OS_FAMILIES.contains(&name),
        );
        CompiledScope {
            counties,
            schools,
            device_classes,
            os_families,
        }
    }

    fn list(
        &mut self,
        list: Option<&Vec<String>>,
        span: &Range<usize>,
        what: &str,
        key: &str,
        known: impl Fn(&Self, &str) -> bool,
    ) -> Option<Vec<String>> {
        let list = list?;
        if list.is_empty() {
            self.err(
                span.start,
                format!("{what}: empty {key} list matches nothing; leave it out to mean all"),
            );
            return Some(Vec::new());
        }
        if list.iter().any(|x| x == "*") {
            return None;
        }
        for name in list {
            if !known(self, name) {
                let at = self.idx.find_in(span, &format!("\"{name}\""));
                let singular = match key {
                    "counties" => "county",
                    "schools" => "school",
                    "device_classes" => "device class",
                    _ => "OS family",
                };
                self.err(at, format!("{what}: unknown {singular} {name:?}"));
            }
        }
        Some(list.clone())
    }

    fn date(&mut self, value: &Spanned<Datetime>, what: &str) -> Option<NaiveDate> {
        let d = value.get_ref();
        let date = d
            .date
            .filter(|_| d.time.is_none() && d.offset.is_none())
            .and_then(|date| {
                NaiveDate::from_ymd_opt(
                    i32::from(date.year),
                    u32::from(date.month),
                    u32::from(date.day),
                )
            });
        if date.is_none() {
            self.err(
                value.span().start,
                format!("{what} must be a plain date such as 2026-08-31"),
            );
        }
        date
    }
}

fn midnight_utc(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Merges a rule's scope over the defaults' scope, key by key.
fn merge_scope(default: &CompiledScope, rule: CompiledScope, rule_has: &Scope) -> CompiledScope {
    CompiledScope {
        counties: if rule_has.counties.is_some() {
            rule.counties
        } else {
            default.counties.clone()
        },
        schools: if rule_has.schools.is_some() {
            rule.schools
        } else {
            default.schools.clone()
        },
        device_classes: if rule_has.device_classes.is_some() {
            rule.device_classes
        } else {
            default.device_classes.clone()
        },
        os_families: if rule_has.os_families.is_some() {
            rule.os_families
        } else {
            default.os_families.clone()
        },
    }
}

/// Where the key an error names really is. Errors inside tables that
/// serde buffers (the internally tagged `check`, and every table nested
/// below it such as `[[rule.check.any_of]]`) carry the span of the
/// outer table only, so they would point at its header (or, without a
/// span, at line 1); the coordinator must be sent to the line to edit.
/// Looks from the start of `span` (which may be the header alone) for
/// `key =` of an unknown field, or for `= value` of a value of the wrong
/// type; the first one after the header is the one serde tripped on.
fn key_offset(text: &str, span: &std::ops::Range<usize>, message: &str) -> Option<usize> {
    let region = text.get(span.start..)?;
    let quoted = |open: char, close: char| {
        let start = message.find(open)? + open.len_utf8();
        let len = message[start..].find(close)?;
        Some(&message[start..start + len])
    };
    let mut at = span.start;
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let key = quoted('`', '`').filter(|_| rest.starts_with('`'))?;
        for line in region.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if let Some(after) = trimmed.strip_prefix(key)
                && after.trim_start().starts_with('=')
            {
                return Some(at + (line.len() - trimmed.len()));
            }
            at += line.len();
        }
        return None;
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        // `string "acht"` or `integer `5``: the literal as written.
        let literal = if rest.starts_with("string ") {
            format!("\"{}\"", quoted('"', '"')?)
        } else {
            quoted('`', '`')?.to_owned()
        };
        for line in region.split_inclusive('\n') {
            if let Some(eq) = line.find('=') {
                let value = line[eq + 1..].trim_start();
                if value.starts_with(&literal) {
                    let key = line.len() - line.trim_start().len();
                    return Some(at + key);
                }
            }
            at += line.len();
        }
    }
    None
}

/// The one implementation behind [`crate::lint`] and [`Standard::compile`].
pub(crate) fn build(text: &str, known: &KnownTenants) -> Result<CompiledStandard, Vec<LintError>> {
    let idx = LineIndex::new(text);
    let file: Standard = match toml::from_str(text) {
        Ok(file) => file,
        Err(e) => {
            let message = e.message().trim().to_owned();
            let span = e.span().unwrap_or(0..text.len());
            let offset = key_offset(text, &span, &message).unwrap_or(span.start);
            return Err(vec![idx.error(offset, message)]);
        }
    };
    let mut cx = Ctx {
        idx,
        known,
        errors: Vec::new(),
        counties: file.counties.keys().cloned().collect(),
        classes: file.device_classes.keys().cloned().collect(),
    };

    if file.schema.get_ref() != SCHEMA {
        cx.err(
            file.schema.span().start,
            format!("schema is {:?}, expected {SCHEMA:?}", file.schema.get_ref()),
        );
    }
    let valid_from = file
        .standard
        .valid_from
        .as_ref()
        .and_then(|d| cx.date(d, "standard.valid_from"));
    for (county, name) in &file.counties {
        if !known.counties.is_empty() && !known.counties.contains(county) {
            cx.err(
                name.span().start,
                format!("[counties]: unknown county {county:?}"),
            );
        }
    }

    let default_scope = match &file.defaults.applies_to {
        Some(s) => cx.scope(s, "defaults.applies_to"),
        None => CompiledScope::default(),
    };

    let lifecycle = compile_lifecycle(&mut cx, &file.lifecycle);

    let mut rules = Vec::with_capacity(file.rules.len());
    let mut rule_ids: HashMap<String, usize> = HashMap::new();
    for rule in &file.rules {
        let r = rule.get_ref();
        let id = r.id.get_ref();
        let what = format!("rule {id}");
        if id.trim().is_empty() {
            cx.err(r.id.span().start, "rule id is empty");
        }
        let (line, _) = cx.idx.position(r.id.span().start);
        if let Some(first) = rule_ids.insert(id.clone(), line) {
            rule_ids.insert(id.clone(), first);
            cx.err(
                r.id.span().start,
                format!("duplicate rule id {id:?} (first defined on line {first})"),
            );
        }
        let scope = match &r.applies_to {
            Some(s) => {
                let own = cx.scope(s, &what);
                merge_scope(&default_scope, own, s.get_ref())
            }
            None => default_scope.clone(),
        };
        let Some(check) = compile_check(&mut cx, &r.check, &what, lifecycle.is_empty()) else {
            continue;
        };
        let expected = crate::eval::expected_text(&check);
        rules.push(CompiledRule {
            id: id.clone(),
            title: r.title.clone(),
            severity: r.severity.unwrap_or(file.defaults.severity),
            mode: r.mode.unwrap_or(file.defaults.mode),
            remediation: r.remediation.clone(),
            kb: r.kb.clone(),
            source: r.source.clone(),
            auto_ticket: r.auto_ticket,
            scope,
            check,
            expected,
            waivers: Vec::new(),
        });
    }

    let mut waivers = Vec::with_capacity(file.waivers.len());
    let mut waiver_ids: HashMap<String, usize> = HashMap::new();
    for waiver in &file.waivers {
        let w = waiver.get_ref();
        let id = w.id.get_ref();
        let what = format!("waiver {id}");
        let (line, _) = cx.idx.position(w.id.span().start);
        if let Some(first) = waiver_ids.insert(id.clone(), line) {
            waiver_ids.insert(id.clone(), first);
            cx.err(
                w.id.span().start,
                format!("duplicate waiver id {id:?} (first defined on line {first})"),
            );
        }
        let rule_index = rules.iter().position(|r| &r.id == w.rule.get_ref());
        if rule_index.is_none() && !rule_ids.contains_key(w.rule.get_ref()) {
            cx.err(
                w.rule.span().start,
                format!(
                    "{what} names rule {:?}, which does not exist",
                    w.rule.get_ref()
                ),
            );
        }
        for (field, value, example) in [
            ("reason", &w.reason, "reason = \"Altgeräte ohne TPM 2.0\""),
            (
                "approved_by",
                &w.approved_by,
                "approved_by = \"Koordination Schul-IT\"",
            ),
            ("ticket", &w.ticket, "ticket = \"SUP-4711\""),
        ] {
            if value.trim().is_empty() {
                cx.err(
                    waiver.span().start,
                    format!("{what} has no {field} (required: {example})"),
                );
            }
        }
        let scope = w.scope.as_ref().map(|s| cx.scope(s, &what));
        if w.scope.is_none() && w.devices.is_empty() {
            cx.err(
                waiver.span().start,
                format!("{what} has neither scope nor devices; it would waive the rule everywhere"),
            );
        }
        let granted = w
            .granted
            .as_ref()
            .and_then(|d| cx.date(d, &format!("{what}: granted")));
        let expires = match &w.expires {
            Some(d) => cx.date(d, &format!("{what}: expires")),
            None => {
                cx.err(
                    waiver.span().start,
                    format!("{what} has no expiry date (expires = YYYY-MM-DD)"),
                );
                None
            }
        };
        if let (Some(g), Some(e), Some(span)) = (granted, expires, w.expires.as_ref())
            && e <= g
        {
            cx.err(
                span.span().start,
                format!("{what} expires {e} on or before it is granted ({g})"),
            );
        }
        if let (Some(rule_index), Some(expires)) = (rule_index, expires) {
            rules[rule_index].waivers.push(waivers.len());
            waivers.push(CompiledWaiver {
                id: id.clone(),
                scope,
                devices: w.devices.clone(),
                granted: granted.map(midnight_utc),
                expires: midnight_utc(expires),
                rule_id: rules[rule_index].id.clone(),
                reason: w.reason.clone(),
            });
        }
    }

    if !cx.errors.is_empty() {
        let mut errors = cx.errors;
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(errors);
    }
    let mut rules = rules;
    let mut patterns: Vec<&mut PackagePattern> = Vec::new();
    for rule in &mut rules {
        match &mut rule.check {
            CompiledCheck::SoftwareRequired { any_of } => {
                patterns.extend(any_of.iter_mut().map(|alt| &mut alt.name));
            }
            CompiledCheck::SoftwareForbidden { name, .. } => patterns.push(name),
            _ => {}
        }
    }
    let software = SoftwareIndex::new(&mut patterns);
    Ok(CompiledStandard {
        id: file.standard.id,
        version: file.standard.version,
        valid_from,
        rules,
        waivers,
        lifecycle,
        software,
        stale_after: chrono::Duration::days(i64::from(file.defaults.stale_after_days)),
    })
}

fn compile_lifecycle(cx: &mut Ctx<'_, '_>, table: &format::Lifecycle) -> Vec<CompiledLifecycle> {
    let mut out = Vec::with_capacity(table.os.len());
    for entry in &table.os {
        let span = entry.span();
        let e = entry.get_ref();
        let what = format!("lifecycle entry {:?}", e.product);
        cx.family(&e.family, &span, &what);
        let name = match &e.name {
            Some(p) => cx.regex(p, &span, &what),
            None => None,
        };
        let Some(end) = cx.date(&e.end_of_support, &format!("{what}: end_of_support")) else {
            continue;
        };
        out.push(CompiledLifecycle {
            family: e.family.clone(),
            product: e.product.clone(),
            name,
            version_prefix: e.version_prefix.clone(),
            end_of_support: end,
        });
    }
    out
}

fn media(m: format::DiskMediaName) -> DiskMedia {
    match m {
        format::DiskMediaName::Hdd => DiskMedia::Hdd,
        format::DiskMediaName::Ssd => DiskMedia::Ssd,
        format::DiskMediaName::Nvme => DiskMedia::Nvme,
    }
}

fn compile_check(
    cx: &mut Ctx<'_, '_>,
    check: &Spanned<Check>,
    what: &str,
    no_lifecycle: bool,
) -> Option<CompiledCheck> {
    let span = check.span();
    let errors_before = cx.errors.len();
    let compiled = match check.get_ref() {
        Check::HardwareMin {
            ram_gib,
            tolerance_pct,
            cpu_cores,
            system_disk_gb,
            system_disk_media,
        } => {
            if ram_gib.is_none()
                && cpu_cores.is_none()
                && system_disk_gb.is_none()
                && system_disk_media.is_none()
            {
                cx.err(
                    span.start,
                    format!("{what}: hardware_min needs ram_gib, cpu_cores, system_disk_gb or system_disk_media"),
                );
            }
            let tolerance = tolerance_pct.unwrap_or(5.0);
            if !(0.0..=50.0).contains(&tolerance) {
                cx.err(
                    span.start,
                    format!("{what}: tolerance_pct must be between 0 and 50"),
                );
            }
            let ram = match ram_gib {
                Some(g) if g.is_finite() && *g > 0.0 && *g < 1.0e6 => Some(RamMin {
                    gib: *g,
                    // Truncation is fine: a byte either way does not matter.
                    min_bytes: (g * (1.0 - tolerance / 100.0) * GIB) as u64,
                }),
                Some(_) => {
                    cx.err(
                        span.start,
                        format!("{what}: ram_gib must be a positive number"),
                    );
                    None
                }
                None => None,
            };
            if system_disk_media.as_ref().is_some_and(Vec::is_empty) {
                cx.err(span.start, format!("{what}: system_disk_media is empty"));
            }
            CompiledCheck::HardwareMin {
                ram,
                cpu_cores: *cpu_cores,
                system_disk_gb: *system_disk_gb,
                media: system_disk_media
                    .as_ref()
                    .map(|v| v.iter().copied().map(media).collect()),
            }
        }
        Check::Firmware {
            uefi,
            secure_boot,
            tpm_min,
        } => {
            if uefi.is_none() && secure_boot.is_none() && tpm_min.is_none() {
                cx.err(
                    span.start,
                    format!("{what}: firmware needs uefi, secure_boot or tpm_min"),
                );
            }
            if let Some(t) = tpm_min {
                cx.constraint(&format!(">={t}"), &span, what);
            }
            CompiledCheck::Firmware {
                uefi: *uefi,
                secure_boot: *secure_boot,
                tpm_min: tpm_min.clone(),
            }
        }
        Check::Os {
            family,
            name,
            editions,
            min_version,
        } => {
            cx.family(family, &span, what);
            let name = match name {
                Some(p) => cx.regex(p, &span, what),
                None => None,
            };
            if let Some(v) = min_version {
                cx.constraint(&format!(">={v}"), &span, what);
            }
            CompiledCheck::Os {
                family: family.clone(),
                name,
                editions: editions.clone().unwrap_or_default(),
                min_version: min_version.clone(),
            }
        }
        Check::OsLifecycle {
            warn_days_before_end,
        } => {
            if no_lifecycle {
                cx.err(
                    span.start,
                    format!("{what}: os_lifecycle needs [[lifecycle.os]] entries in this file"),
                );
            }
            CompiledCheck::OsLifecycle {
                warn_days: warn_days_before_end.unwrap_or(0),
            }
        }
        Check::UpdateAge { max_days } => CompiledCheck::UpdateAge {
            max_days: *max_days,
        },
        Check::InventoryAge { max_days } => CompiledCheck::InventoryAge {
            max_days: *max_days,
        },
        Check::DiskEncryption { methods } => CompiledCheck::DiskEncryption {
            methods: methods
                .iter()
                .flatten()
                .map(|m| m.to_ascii_lowercase())
                .collect(),
        },
        Check::Antivirus {
            realtime,
            signature_max_age_days,
            required_on,
        } => {
            let required_on = required_on
                .clone()
                .unwrap_or_else(|| vec!["windows".to_owned()]);
            for f in &required_on {
                cx.family(f, &span, what);
            }
            CompiledCheck::Antivirus {
                realtime: *realtime,
                signature_max_age_days: *signature_max_age_days,
                required_on,
            }
        }
        Check::SoftwareRequired { any_of } => {
            if any_of.is_empty() {
                cx.err(span.start, format!("{what}: any_of is empty"));
            }
            let mut alts = Vec::with_capacity(any_of.len());
            for alt in any_of {
                let name = cx.regex(&alt.name, &span, what);
                let version = match &alt.version {
                    Some(v) => cx.constraint(v, &span, what),
                    None => None,
                };
                if let Some(name) = name {
                    alts.push(SoftwareAlt {
                        name: PackagePattern::new(name),
                        version,
                    });
                }
            }
            CompiledCheck::SoftwareRequired { any_of: alts }
        }
        Check::SoftwareForbidden { name, version } => {
            let re = cx.regex(name, &span, what);
            let version = match version {
                Some(v) => cx.constraint(v, &span, what),
                None => None,
            };
            CompiledCheck::SoftwareForbidden {
                name: PackagePattern::new(re?),
                version,
            }
        }
        Check::Hostname { regex, max_len } => CompiledCheck::Hostname {
            regex: cx.regex(regex, &span, what)?,
            max_len: *max_len,
        },
    };
    (cx.errors.len() == errors_before).then_some(compiled)
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
