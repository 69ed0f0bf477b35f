//! Evaluating a compiled standard against one device.
//!
//! Evaluation is pure: the time comes in with the facts (`facts.now`), never
//! from the clock, so a report can be recomputed for any day and tests can
//! walk a waiver past its expiry. Missing or stale data gives `Unknown`,
//! never `Pass`: a device that stopped reporting must not look compliant.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use schoolfleet_proto::v1::{DiskMedia, Inventory, Tristate};

use crate::compile::{CompiledCheck, CompiledRule, CompiledScope, CompiledStandard};
use crate::format::{Mode, Severity};
use crate::software::{PackagePattern, SoftwareMatches};
use crate::version::compare;

/// Protobuf timestamps as seconds and nanoseconds; the macro spares a
/// dependency on prost-types just to name the type.
macro_rules! timestamp {
    ($ts:expr) => {
        $ts.and_then(|ts| {
            let nanos = u32::try_from(ts.nanos).ok()?;
            DateTime::from_timestamp(ts.seconds, nanos)
        })
    };
}

/// What evaluation knows about one device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceFacts<'a> {
    pub device_id: &'a str,
    /// The registered host name; the inventory's is used when this is empty.
    pub hostname: &'a str,
    pub county_id: &'a str,
    pub school_id: &'a str,
    pub device_class: &'a str,
    /// The current inventory, `None` when the device never reported one.
    pub inventory: Option<&'a Inventory>,
    /// When that inventory was received (or last confirmed unchanged).
    pub inventory_at: Option<DateTime<Utc>>,
    /// The time to judge at. Injected so results are reproducible.
    pub now: DateTime<Utc>,
}

/// The outcome of one rule for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pass,
    Fail,
    /// Failed, but a waiver in force covers it.
    Waived,
    /// The rule's scope does not include this device.
    NotApplicable,
    /// Data missing, stale or inconclusive. Never counts as a pass.
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Waived => "waived",
            Status::NotApplicable => "not_applicable",
            Status::Unknown => "unknown",
        }
    }
}

/// A text of a result: fixed texts are not allocated, which matters
/// 3,000,000 times per fleet run.
pub type Text = Cow<'static, str>;

/// One rule's result. Ids and the expected value borrow from the compiled
/// standard, and fixed texts are static, so most results allocate little.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleResult<'s> {
    pub rule_id: &'s str,
    pub status: Status,
    pub expected: &'s str,
    pub actual: Text,
    pub reason: Text,
    pub waiver_id: Option<&'s str>,
    pub severity: Severity,
    pub mode: Mode,
    /// False for `beobachten` rules: reported, never in the quota.
    pub counted: bool,
}

/// A check's verdict before scope and waivers are applied.
struct Verdict {
    status: Status,
    actual: Text,
    reason: Text,
}

impl Verdict {
    fn pass(actual: impl Into<Text>) -> Verdict {
        Verdict {
            status: Status::Pass,
            actual: actual.into(),
            reason: Text::Borrowed(""),
        }
    }
    fn fail(actual: impl Into<Text>, reason: impl Into<Text>) -> Verdict {
        Verdict {
            status: Status::Fail,
            actual: actual.into(),
            reason: reason.into(),
        }
    }
    fn unknown(reason: impl Into<Text>) -> Verdict {
        Verdict {
            status: Status::Unknown,
            actual: Text::Borrowed(""),
            reason: reason.into(),
        }
    }
}

impl CompiledStandard {
    /// Evaluates every rule for one device, in file order.
    pub fn evaluate<'s>(&'s self, facts: &DeviceFacts<'_>) -> Vec<RuleResult<'s>> {
        let mut out = Vec::with_capacity(self.rules.len());
        self.evaluate_into(facts, &mut out);
        out
    }

    /// Like [`CompiledStandard::evaluate`], appending to a reused vector so
    /// a fleet-wide run allocates the vector once.
    pub fn evaluate_into<'s>(&'s self, facts: &DeviceFacts<'_>, out: &mut Vec<RuleResult<'s>>) {
        // Staleness is the same for every rule: work it out once.
        let data = self.data_state(facts);
        // So is which program matches which package pattern: one pass over
        // the programs for all software rules.
        let software = match &data {
            Ok(inv) if !self.software.is_empty() => self.software.matches(&inv.software),
            _ => SoftwareMatches::default(),
        };
        let cx = Context {
            facts,
            data: &data,
            software: &software,
        };
        for rule in &self.rules {
            out.push(self.evaluate_rule(rule, &cx));
        }
    }

    fn data_state<'a>(&self, facts: &DeviceFacts<'a>) -> Result<&'a Inventory, Text> {
        let inv = facts
            .inventory
            .ok_or(Text::Borrowed("no inventory received"))?;
        let at = facts
            .inventory_at
            .ok_or(Text::Borrowed("time of the inventory unknown"))?;
        let age = facts.now - at;
        if age > self.stale_after {
            return Err(Text::Owned(format!(
                "inventory {} days old > {} days, too old to judge",
                age.num_days(),
                self.stale_after.num_days()
            )));
        }
        Ok(inv)
    }

    fn evaluate_rule<'s>(&'s self, rule: &'s CompiledRule, cx: &Context<'_>) -> RuleResult<'s> {
        let Context { facts, data, .. } = *cx;
        let result = |status, actual, reason| RuleResult {
            rule_id: &rule.id,
            status,
            expected: &rule.expected,
            actual,
            reason,
            waiver_id: None,
            severity: rule.severity,
            mode: rule.mode,
            counted: rule.mode.counted(),
        };
        if let Some(why) = out_of_scope(&rule.scope, facts) {
            return result(Status::NotApplicable, Text::Borrowed(""), Text::Owned(why));
        }
        // OS-family scoping needs an inventory, even a stale one: the
        // family of a PC does not change between reports.
        let family = facts
            .inventory
            .and_then(|inv| family_scope(&rule.scope, inv));
        let verdict = match (family, &rule.check, data) {
            (Some(v), _, _) if v.status == Status::NotApplicable => v,
            // The one check that judges missing data itself.
            (_, CompiledCheck::InventoryAge { max_days }, _) => inventory_age(*max_days, facts),
            (_, _, Err(why)) => Verdict::unknown(why.clone()),
            (Some(v), _, Ok(_)) => v,
            (None, check, Ok(inv)) => self.check(check, inv, cx),
        };
        let mut r = result(verdict.status, verdict.actual, verdict.reason);
        if r.status == Status::Fail
            && let Some(w) = self.waiver_for(rule, facts)
        {
            r.status = Status::Waived;
            r.waiver_id = Some(w);
        }
        r
    }

    fn waiver_for<'s>(&'s self, rule: &CompiledRule, facts: &DeviceFacts<'_>) -> Option<&'s str> {
        rule.waivers.iter().map(|&i| &self.waivers[i]).find_map(|w| {
            let in_force = facts.now < w.expires && w.granted.is_none_or(|g| facts.now >= g);
            let listed = w.devices.is_empty()
                || w.devices
                    .iter()
                    .any(|d| d == facts.device_id || (!facts.hostname.is_empty() && d == facts.hostname));
            let scoped = w.scope.as_ref().is_none_or(|s| {
                out_of_scope(s, facts).is_none()
                    && facts
                        .inventory
                        .is_none_or(|inv| !matches!(family_scope(s, inv), Some(v) if v.status == Status::NotApplicable))
            });
            (in_force && listed && scoped).then_some(w.id.as_str())
        })
    }

    fn check(&self, check: &CompiledCheck, inv: &Inventory, cx: &Context<'_>) -> Verdict {
        let facts = cx.facts;
        match check {
            CompiledCheck::HardwareMin {
                ram,
                cpu_cores,
                system_disk_gb,
                media,
            } => hardware_min(
                ram.as_ref(),
                *cpu_cores,
                *system_disk_gb,
                media.as_deref(),
                inv,
            ),
            CompiledCheck::Firmware {
                uefi,
                secure_boot,
                tpm_min,
            } => firmware(*uefi, *secure_boot, tpm_min.as_deref(), inv),
            CompiledCheck::Os {
                family,
                name,
                editions,
                min_version,
            } => os(family, name.as_ref(), editions, min_version.as_deref(), inv),
            CompiledCheck::OsLifecycle { warn_days } => {
                self.os_lifecycle(*warn_days, inv, facts.now)
            }
            CompiledCheck::UpdateAge { max_days } => update_age(*max_days, inv, facts.now),
            // Handled before the inventory is needed.
            CompiledCheck::InventoryAge { max_days } => inventory_age(*max_days, facts),
            CompiledCheck::DiskEncryption { methods } => disk_encryption(methods, inv),
            CompiledCheck::Antivirus {
                realtime,
                signature_max_age_days,
                required_on,
            } => antivirus(
                *realtime,
                *signature_max_age_days,
                required_on,
                inv,
                facts.now,
            ),
            CompiledCheck::SoftwareRequired { any_of } => {
                software_required(any_of, inv, cx.software)
            }
            CompiledCheck::SoftwareForbidden { name, version } => {
                software_forbidden(name, version.as_ref(), inv, cx.software)
            }
            CompiledCheck::Hostname { regex, max_len } => hostname(regex, *max_len, inv, facts),
        }
    }

    fn os_lifecycle(&self, warn_days: u32, inv: &Inventory, now: DateTime<Utc>) -> Verdict {
        let Some(os) = inv.os.as_ref().filter(|o| !o.family.is_empty()) else {
            return Verdict::unknown("operating system not reported");
        };
        let entry = self
            .lifecycle
            .iter()
            .filter(|e| {
                e.family.eq_ignore_ascii_case(&os.family)
                    && os.version.starts_with(&e.version_prefix)
                    && e.name.as_ref().is_none_or(|re| re.is_match(&os.name))
            })
            .max_by_key(|e| e.version_prefix.len());
        let Some(entry) = entry else {
            return Verdict::unknown(format!(
                "{} {} is not in the lifecycle table",
                os.name, os.version
            ));
        };
        let actual = format!(
            "{} ({}), end of support {}",
            entry.product, os.version, entry.end_of_support
        );
        let today = now.date_naive();
        if today >= entry.end_of_support {
            let reason = format!(
                "{} end of support {} passed {} days ago",
                entry.product,
                entry.end_of_support,
                (today - entry.end_of_support).num_days()
            );
            return Verdict::fail(actual, reason);
        }
        let left = (entry.end_of_support - today).num_days();
        let mut v = Verdict::pass(actual);
        if left <= i64::from(warn_days) {
            v.reason = format!("end of support in {left} days").into();
        }
        v
    }
}

/// What every rule of one device's evaluation shares.
#[derive(Clone, Copy)]
struct Context<'a> {
    facts: &'a DeviceFacts<'a>,
    data: &'a Result<&'a Inventory, Text>,
    software: &'a SoftwareMatches,
}

/// Why a device is outside a scope (county, school, class), if it is.
fn out_of_scope(scope: &CompiledScope, facts: &DeviceFacts<'_>) -> Option<String> {
    let miss = |list: &Option<Vec<String>>, value: &str| {
        list.as_ref().is_some_and(|l| !l.iter().any(|x| x == value))
    };
    if miss(&scope.counties, facts.county_id) {
        return Some(format!("county {} not in scope", facts.county_id));
    }
    if miss(&scope.schools, facts.school_id) {
        return Some(format!("school {} not in scope", facts.school_id));
    }
    if miss(&scope.device_classes, facts.device_class) {
        return Some(format!("device class {} not in scope", facts.device_class));
    }
    None
}

/// OS-family scoping needs the inventory; `None` means in scope.
fn family_scope(scope: &CompiledScope, inv: &Inventory) -> Option<Verdict> {
    let families = scope.os_families.as_ref()?;
    let family = inv.os.as_ref().map_or("", |o| o.family.as_str());
    if family.is_empty() {
        return Some(Verdict::unknown("OS family not reported"));
    }
    if families.iter().any(|f| f.eq_ignore_ascii_case(family)) {
        None
    } else {
        Some(Verdict {
            status: Status::NotApplicable,
            actual: Text::Borrowed(""),
            reason: format!("OS family {family} not in scope").into(),
        })
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn collector_failed(inv: &Inventory, names: &[&str]) -> bool {
    inv.collector_errors
        .iter()
        .any(|e| names.contains(&e.collector.as_str()))
}

/// Joins the parts of a multi-part check with "; ".
fn push_part(buf: &mut String, part: std::fmt::Arguments<'_>) {
    if !buf.is_empty() {
        buf.push_str("; ");
    }
    // Writing to a String cannot fail.
    let _ = buf.write_fmt(part);
}

/// Sums up parts: any failure fails, else any unknown is unknown.
struct Parts {
    actual: String,
    failures: String,
    unknowns: String,
}

impl Parts {
    fn new() -> Parts {
        Parts {
            actual: String::new(),
            failures: String::new(),
            unknowns: String::new(),
        }
    }
    fn finish(self) -> Verdict {
        if !self.failures.is_empty() {
            Verdict::fail(self.actual, self.failures)
        } else if !self.unknowns.is_empty() {
            Verdict {
                status: Status::Unknown,
                actual: self.actual.into(),
                reason: self.unknowns.into(),
            }
        } else {
            Verdict::pass(self.actual)
        }
    }
}

fn hardware_min(
    ram: Option<&crate::compile::RamMin>,
    cpu_cores: Option<u32>,
    system_disk_gb: Option<u64>,
    media: Option<&[DiskMedia]>,
    inv: &Inventory,
) -> Verdict {
    let mut p = Parts::new();
    let hw = inv.hardware.as_ref();
    if let Some(ram) = ram {
        match hw.map_or(0, |h| h.memory_total_bytes) {
            0 => push_part(&mut p.unknowns, format_args!("RAM not reported")),
            bytes => {
                let gib = bytes as f64 / GIB;
                push_part(&mut p.actual, format_args!("RAM {gib:.1} GiB"));
                if bytes < ram.min_bytes {
                    push_part(
                        &mut p.failures,
                        format_args!("RAM {gib:.1} GiB < {} GiB", ram.gib),
                    );
                }
            }
        }
    }
    if let Some(min) = cpu_cores {
        match hw.map_or(0, |h| h.cpu_physical_cores) {
            0 => push_part(&mut p.unknowns, format_args!("CPU cores not reported")),
            n => {
                push_part(&mut p.actual, format_args!("CPU {n} cores"));
                if n < min {
                    push_part(&mut p.failures, format_args!("CPU {n} cores < {min} cores"));
                }
            }
        }
    }
    if system_disk_gb.is_some() || media.is_some() {
        match inv.disks.iter().find(|d| d.system) {
            None => push_part(&mut p.unknowns, format_args!("system disk not reported")),
            Some(disk) => {
                if let Some(min) = system_disk_gb {
                    let gb = disk.size_bytes / 1_000_000_000;
                    push_part(&mut p.actual, format_args!("system disk {gb} GB"));
                    if disk.size_bytes < min.saturating_mul(1_000_000_000) {
                        push_part(
                            &mut p.failures,
                            format_args!("system disk {gb} GB < {min} GB"),
                        );
                    }
                }
                if let Some(allowed) = media {
                    let m = disk.media();
                    if m == DiskMedia::Unknown {
                        push_part(
                            &mut p.unknowns,
                            format_args!("system disk type not reported"),
                        );
                    } else {
                        push_part(&mut p.actual, format_args!("system disk {}", media_name(m)));
                        if !allowed.contains(&m) {
                            push_part(
                                &mut p.failures,
                                format_args!(
                                    "system disk {}, expected {}",
                                    media_name(m),
                                    media_list(allowed)
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    p.finish()
}

fn media_name(m: DiskMedia) -> &'static str {
    match m {
        DiskMedia::Hdd => "hdd",
        DiskMedia::Ssd => "ssd",
        DiskMedia::Nvme => "nvme",
        DiskMedia::Unknown => "unknown",
    }
}

fn media_list(list: &[DiskMedia]) -> String {
    list.iter()
        .map(|m| media_name(*m))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn firmware(
    uefi: Option<bool>,
    secure_boot: Option<bool>,
    tpm_min: Option<&str>,
    inv: &Inventory,
) -> Verdict {
    let mut p = Parts::new();
    let Some(fw) = inv.firmware.as_ref() else {
        return Verdict::unknown("firmware not reported");
    };
    if let Some(want) = uefi {
        let mode = fw.boot_mode.to_ascii_lowercase();
        if mode != "uefi" && mode != "bios" {
            push_part(&mut p.unknowns, format_args!("boot mode not reported"));
        } else {
            push_part(&mut p.actual, format_args!("boot mode {mode}"));
            if (mode == "uefi") != want {
                let expected = if want { "uefi" } else { "bios" };
                push_part(
                    &mut p.failures,
                    format_args!("boot mode {mode}, expected {expected}"),
                );
            }
        }
    }
    if let Some(want) = secure_boot {
        match fw.secure_boot() {
            Tristate::Unknown => push_part(
                &mut p.unknowns,
                format_args!("Secure Boot state not reported"),
            ),
            state => {
                let on = state == Tristate::Yes;
                let text = if on { "on" } else { "off" };
                push_part(&mut p.actual, format_args!("Secure Boot {text}"));
                if on != want {
                    push_part(
                        &mut p.failures,
                        format_args!(
                            "Secure Boot {text}, expected {}",
                            if want { "on" } else { "off" }
                        ),
                    );
                }
            }
        }
    }
    if let Some(min) = tpm_min {
        if !fw.tpm_present {
            // The agent cannot tell "no TPM" from "TPM hidden" where the
            // firmware collector failed.
            if collector_failed(inv, &["firmware", "tpm"]) {
                push_part(&mut p.unknowns, format_args!("TPM state not reported"));
            } else {
                push_part(&mut p.actual, format_args!("no TPM"));
                push_part(&mut p.failures, format_args!("no TPM, expected TPM {min}"));
            }
        } else if fw.tpm_version.is_empty() {
            push_part(&mut p.unknowns, format_args!("TPM version not reported"));
        } else {
            push_part(&mut p.actual, format_args!("TPM {}", fw.tpm_version));
            if compare(&fw.tpm_version, min).is_lt() {
                push_part(
                    &mut p.failures,
                    format_args!("TPM {} < {min}", fw.tpm_version),
                );
            }
        }
    }
    p.finish()
}

fn os(
    family: &str,
    name: Option<&regex::Regex>,
    editions: &[String],
    min_version: Option<&str>,
    inv: &Inventory,
) -> Verdict {
    let Some(os) = inv.os.as_ref().filter(|o| !o.family.is_empty()) else {
        return Verdict::unknown("operating system not reported");
    };
    let actual = if os.edition.is_empty() {
        format!("{} ({}) {}", os.name, os.family, os.version)
    } else {
        format!("{} ({}, {}) {}", os.name, os.family, os.edition, os.version)
    };
    if !os.family.eq_ignore_ascii_case(family) {
        let reason = format!("OS family {}, expected {family}", os.family);
        return Verdict::fail(actual, reason);
    }
    if let Some(re) = name
        && !re.is_match(&os.name)
    {
        let reason = format!("OS name {:?} does not match {}", os.name, re.as_str());
        return Verdict::fail(actual, reason);
    }
    if !editions.is_empty() {
        if os.edition.is_empty() {
            return Verdict::unknown("OS edition not reported");
        }
        if !editions.iter().any(|e| e.eq_ignore_ascii_case(&os.edition)) {
            let reason = format!("edition {} not in {}", os.edition, editions.join(", "));
            return Verdict::fail(actual, reason);
        }
    }
    if let Some(min) = min_version {
        if os.version.is_empty() {
            return Verdict::unknown("OS version not reported");
        }
        if compare(&os.version, min).is_lt() {
            let reason = format!("OS version {} < {min}", os.version);
            return Verdict::fail(actual, reason);
        }
    }
    Verdict::pass(actual)
}

fn update_age(max_days: u32, inv: &Inventory, now: DateTime<Utc>) -> Verdict {
    let Some(at) = timestamp!(
        inv.system
            .as_ref()
            .and_then(|s| s.last_update_time.as_ref())
    ) else {
        return Verdict::unknown("time of the last update not reported");
    };
    let days = (now - at).num_days();
    let actual = format!("last update {days} days ago ({})", at.date_naive());
    if days > i64::from(max_days) {
        let reason = format!("last update {days} days ago > {max_days} days");
        return Verdict::fail(actual, reason);
    }
    Verdict::pass(actual)
}

/// The one check that judges the absence of data: a device that never
/// reported, or stopped reporting, fails it.
fn inventory_age(max_days: u32, facts: &DeviceFacts<'_>) -> Verdict {
    let Some(at) = facts.inventory_at.filter(|_| facts.inventory.is_some()) else {
        return Verdict::fail("no inventory", "no inventory received");
    };
    let days = (facts.now - at).num_days();
    let actual = format!("inventory {days} days old ({})", at.date_naive());
    if days > i64::from(max_days) {
        let reason = format!("inventory {days} days old > {max_days} days");
        return Verdict::fail(actual, reason);
    }
    Verdict::pass(actual)
}

fn is_system_mount(mount: &str) -> bool {
    mount == "/" || mount.eq_ignore_ascii_case("c:") || mount.eq_ignore_ascii_case("c:\\")
}

fn disk_encryption(methods: &[String], inv: &Inventory) -> Verdict {
    let root = inv
        .filesystems
        .iter()
        .find(|f| is_system_mount(&f.mount_point));
    let state = inv
        .security
        .as_ref()
        .map_or(Tristate::Unknown, |s| s.system_disk_encrypted());
    let encrypted = match state {
        Tristate::Yes => true,
        Tristate::No => false,
        Tristate::Unknown => match root {
            Some(fs) if fs.encrypted => true,
            _ => return Verdict::unknown("encryption of the system disk not reported"),
        },
    };
    if !encrypted {
        return Verdict::fail("system disk not encrypted", "system disk not encrypted");
    }
    let method = root.map_or("", |fs| fs.encryption.as_str());
    if methods.is_empty() {
        return Verdict::pass(if method.is_empty() {
            Text::Borrowed("system disk encrypted")
        } else {
            Text::Owned(format!("system disk encrypted ({method})"))
        });
    }
    if method.is_empty() {
        return Verdict::unknown("encryption method of the system disk not reported");
    }
    let actual = format!("system disk encrypted ({method})");
    if methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
        Verdict::pass(actual)
    } else {
        let reason = format!("encrypted with {method}, expected {}", methods.join(" or "));
        Verdict::fail(actual, reason)
    }
}

fn antivirus(
    realtime: bool,
    signature_max_age_days: Option<u32>,
    required_on: &[String],
    inv: &Inventory,
    now: DateTime<Utc>,
) -> Verdict {
    let family = inv.os.as_ref().map_or("", |o| o.family.as_str());
    let products = inv.security.as_ref().map_or(&[][..], |s| &s.antivirus[..]);
    if products.is_empty() {
        if required_on.iter().any(|f| f.eq_ignore_ascii_case(family)) {
            return Verdict::fail("no antivirus", "no antivirus reported");
        }
        // Linux and macOS agents do not report antivirus at all: absence
        // says nothing, so it is unknown rather than a failure.
        return Verdict::unknown(format!(
            "antivirus not reported on {}",
            if family.is_empty() {
                "this platform"
            } else {
                family
            }
        ));
    }
    let mut p = Parts::new();
    for av in products {
        let mut failure = String::new();
        let mut unknown = String::new();
        if realtime {
            match av.realtime_protection() {
                Tristate::Yes => {}
                Tristate::No => push_part(
                    &mut failure,
                    format_args!("{}: realtime protection off", av.product),
                ),
                Tristate::Unknown => push_part(
                    &mut unknown,
                    format_args!("{}: realtime protection not reported", av.product),
                ),
            }
        }
        if let Some(max) = signature_max_age_days {
            match timestamp!(av.signatures_updated.as_ref()) {
                None => push_part(
                    &mut unknown,
                    format_args!("{}: signature date not reported", av.product),
                ),
                Some(at) => {
                    let days = (now - at).num_days();
                    if days > i64::from(max) {
                        push_part(
                            &mut failure,
                            format_args!("{}: signatures {days} days old > {max} days", av.product),
                        );
                    }
                }
            }
        }
        push_part(&mut p.actual, format_args!("{}", av.product));
        if failure.is_empty() && unknown.is_empty() {
            // One product that is fully in order is enough.
            return Verdict::pass(p.actual);
        }
        if !failure.is_empty() {
            push_part(&mut p.failures, format_args!("{failure}"));
        } else {
            push_part(&mut p.unknowns, format_args!("{unknown}"));
        }
    }
    p.finish()
}

fn software_required(
    any_of: &[crate::compile::SoftwareAlt],
    inv: &Inventory,
    matches: &SoftwareMatches,
) -> Verdict {
    if inv.software.is_empty() {
        return Verdict::unknown("software list not reported");
    }
    // The first installed package that matches a name but not its
    // version, for the message.
    let mut too_old: Option<(&str, &str, String)> = None;
    for alt in any_of {
        for pkg in matches.packages(&alt.name).map(|i| &inv.software[i]) {
            match alt
                .version
                .as_ref()
                .and_then(|c| c.violated_by(&pkg.version))
            {
                None => return Verdict::pass(format!("{} {}", pkg.name, pkg.version)),
                Some(term) => {
                    if too_old.is_none() {
                        let why = format!("{} {}", term.op.negated(), term.version);
                        too_old = Some((&pkg.name, &pkg.version, why));
                    }
                }
            }
        }
    }
    if collector_failed(inv, &["software"]) {
        return Verdict::unknown("software list incomplete (collector error)");
    }
    match too_old {
        Some((name, version, why)) => Verdict::fail(
            format!("{name} {version}"),
            format!("{name} {version} {why}"),
        ),
        None => Verdict::fail("not installed", "none of the required packages installed"),
    }
}

fn software_forbidden(
    name: &PackagePattern,
    version: Option<&crate::version::Constraint>,
    inv: &Inventory,
    matches: &SoftwareMatches,
) -> Verdict {
    if inv.software.is_empty() {
        return Verdict::unknown("software list not reported");
    }
    let hit = matches
        .packages(name)
        .map(|i| &inv.software[i])
        .find(|p| version.is_none_or(|c| c.matches(&p.version)));
    if let Some(pkg) = hit {
        let actual = format!("{} {}", pkg.name, pkg.version);
        let reason = format!("{actual} installed");
        return Verdict::fail(actual, reason);
    }
    if collector_failed(inv, &["software"]) {
        return Verdict::unknown("software list incomplete (collector error)");
    }
    Verdict::pass("not installed")
}

fn hostname(
    regex: &regex::Regex,
    max_len: Option<usize>,
    inv: &Inventory,
    facts: &DeviceFacts<'_>,
) -> Verdict {
    let name = if facts.hostname.is_empty() {
        inv.system.as_ref().map_or("", |s| s.hostname.as_str())
    } else {
        facts.hostname
    };
    if name.is_empty() {
        return Verdict::unknown("host name not reported");
    }
    let actual = name.to_owned();
    if let Some(max) = max_len {
        let len = name.chars().count();
        if len > max {
            let reason = format!("host name {name:?} has {len} characters > {max}");
            return Verdict::fail(actual, reason);
        }
    }
    if !regex.is_match(name) {
        let reason = format!("host name {name:?} does not match {}", regex.as_str());
        return Verdict::fail(actual, reason);
    }
    Verdict::pass(actual)
}

/// Words the expected value of a check once, at compile time.
pub(crate) fn expected_text(check: &CompiledCheck) -> String {
    let mut s = String::new();
    match check {
        CompiledCheck::HardwareMin {
            ram,
            cpu_cores,
            system_disk_gb,
            media,
        } => {
            if let Some(r) = ram {
                push_part(&mut s, format_args!("RAM >= {} GiB", r.gib));
            }
            if let Some(c) = cpu_cores {
                push_part(&mut s, format_args!("CPU >= {c} cores"));
            }
            if let Some(d) = system_disk_gb {
                push_part(&mut s, format_args!("system disk >= {d} GB"));
            }
            if let Some(m) = media {
                push_part(&mut s, format_args!("system disk {}", media_list(m)));
            }
        }
        CompiledCheck::Firmware {
            uefi,
            secure_boot,
            tpm_min,
        } => {
            if let Some(u) = uefi {
                push_part(
                    &mut s,
                    format_args!("boot mode {}", if *u { "uefi" } else { "bios" }),
                );
            }
            if let Some(b) = secure_boot {
                push_part(
                    &mut s,
                    format_args!("Secure Boot {}", if *b { "on" } else { "off" }),
                );
            }
            if let Some(t) = tpm_min {
                push_part(&mut s, format_args!("TPM >= {t}"));
            }
        }
        CompiledCheck::Os {
            family,
            name,
            editions,
            min_version,
        } => {
            push_part(&mut s, format_args!("OS family {family}"));
            if let Some(re) = name {
                push_part(&mut s, format_args!("name matching {}", re.as_str()));
            }
            if !editions.is_empty() {
                push_part(&mut s, format_args!("edition {}", editions.join(" or ")));
            }
            if let Some(v) = min_version {
                push_part(&mut s, format_args!("version >= {v}"));
            }
        }
        CompiledCheck::OsLifecycle { .. } => s.push_str("OS within vendor support"),
        CompiledCheck::UpdateAge { max_days } => {
            push_part(&mut s, format_args!("last update <= {max_days} days ago"));
        }
        CompiledCheck::InventoryAge { max_days } => {
            push_part(&mut s, format_args!("inventory <= {max_days} days old"));
        }
        CompiledCheck::DiskEncryption { methods } => {
            s.push_str("system disk encrypted");
            if !methods.is_empty() {
                let _ = write!(s, " ({})", methods.join(" or "));
            }
        }
        CompiledCheck::Antivirus {
            realtime,
            signature_max_age_days,
            ..
        } => {
            s.push_str("antivirus");
            if *realtime {
                s.push_str(" with realtime protection");
            }
            if let Some(d) = signature_max_age_days {
                let _ = write!(s, ", signatures <= {d} days old");
            }
        }
        CompiledCheck::SoftwareRequired { any_of } => {
            for (i, alt) in any_of.iter().enumerate() {
                if i > 0 {
                    s.push_str(" or ");
                }
                s.push_str(alt.name.as_str());
                if let Some(c) = &alt.version {
                    let _ = write!(s, " {c}");
                }
            }
        }
        CompiledCheck::SoftwareForbidden { name, version } => {
            let _ = write!(s, "no {}", name.as_str());
            if let Some(c) = version {
                let _ = write!(s, " {c}");
            }
        }
        CompiledCheck::Hostname { regex, max_len } => {
            let _ = write!(s, "host name matching {}", regex.as_str());
            if let Some(m) = max_len {
                let _ = write!(s, ", at most {m} characters");
            }
        }
    }
    s
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
