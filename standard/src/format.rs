//! The serde types of a standard file (`schema = "schoolfleet-standard/v1"`).
//!
//! These types mirror the file one to one and stay dumb: checking what serde
//! cannot (duplicate ids, regexes, references) is [`mod@crate::lint`]'s job, and
//! turning them into something fast to evaluate is [`crate::compile`]'s.
//! Every table denies unknown fields, so a typo such as `ram_gb` is an
//! error with a line number instead of a silently ignored rule.
//! Identifiers that lint must point at are [`Spanned`], so errors about them
//! carry the position in the file.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

/// The only schema this crate reads. A new incompatible format gets a new
/// string, so an old server refuses a file it would misread.
pub const SCHEMA: &str = "schoolfleet-standard/v1";

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standard {
    pub schema: Spanned<String>,
    pub standard: Meta,
    /// Counties the file talks about, id → name. When present, scopes may
    /// only name these counties.
    #[serde(default)]
    pub counties: BTreeMap<String, Spanned<String>>,
    /// Device classes the rules may name, id → description.
    #[serde(default)]
    pub device_classes: BTreeMap<String, DeviceClass>,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<Rule>>,
    #[serde(default, rename = "waiver")]
    pub waivers: Vec<Spanned<Waiver>>,
    #[serde(default)]
    pub lifecycle: Lifecycle,
}

/// `[standard]`: which standard and which version of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub id: String,
    /// `MAJOR.MINOR.PATCH` by convention: major = stricter, minor = new rule,
    /// patch = wording. Not enforced; compared segment-wise if needed.
    pub version: String,
    pub valid_from: Option<Spanned<Datetime>>,
    pub supersedes: Option<String>,
    pub approved_by: Option<String>,
    pub changelog: Option<String>,
}

/// One device class as registered on the server (`schueler-pc`, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceClass {
    pub label: String,
    /// Laptops that leave the school; informative only.
    #[serde(default)]
    pub mobile: bool,
}

/// `[defaults]`: what a rule gets when it does not say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default = "Severity::default_value")]
    pub severity: Severity,
    #[serde(default = "Mode::default_value")]
    pub mode: Mode,
    pub applies_to: Option<Spanned<Scope>>,
    /// An inventory older than this many days is too old to judge by:
    /// inventory-based rules become `unknown` (default 30).
    #[serde(default = "default_stale_days")]
    pub stale_after_days: u32,
}

fn default_stale_days() -> u32 {
    30
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            severity: Severity::Mittel,
            mode: Mode::Pflicht,
            applies_to: None,
            stale_after_days: default_stale_days(),
        }
    }
}

/// How bad a failure is; used for sorting and reports, not for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Kritisch,
    Hoch,
    Mittel,
    Niedrig,
    Info,
}

impl Severity {
    fn default_value() -> Self {
        Severity::Mittel
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Kritisch => "kritisch",
            Severity::Hoch => "hoch",
            Severity::Mittel => "mittel",
            Severity::Niedrig => "niedrig",
            Severity::Info => "info",
        }
    }
}

/// Whether a rule counts towards the compliance quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Mandatory: counted.
    Pflicht,
    /// Recommended: counted separately from mandatory rules.
    Empfehlung,
    /// Watched: evaluated and reported, never counted. New rules start here
    /// so coordinators see their effect before they bite.
    Beobachten,
}

impl Mode {
    fn default_value() -> Self {
        Mode::Pflicht
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Pflicht => "pflicht",
            Mode::Empfehlung => "empfehlung",
            Mode::Beobachten => "beobachten",
        }
    }

    /// `beobachten` rules are reported but never counted.
    pub fn counted(self) -> bool {
        !matches!(self, Mode::Beobachten)
    }
}

/// Which devices a rule or waiver is about. A missing list or `["*"]`
/// means all; the lists combine with AND.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub counties: Option<Vec<String>>,
    pub schools: Option<Vec<String>>,
    pub device_classes: Option<Vec<String>>,
    /// OS families (`windows`, `linux`, `macos`) from the inventory. A rule
    /// limited to families is `unknown` for a device without inventory.
    pub os_families: Option<Vec<String>>,
}

/// One `[[rule]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: Spanned<String>,
    pub title: String,
    pub severity: Option<Severity>,
    pub mode: Option<Mode>,
    pub applies_to: Option<Spanned<Scope>>,
    pub check: Spanned<Check>,
    pub remediation: Option<String>,
    /// Where a threshold comes from (a law, a vendor requirement, ...).
    pub source: Option<String>,
    /// Knowledge-base article id with the detailed instructions.
    pub kb: Option<String>,
    /// Open a service-desk ticket for each failing device (one per device
    /// and rule), resolved by itself when the device passes again.
    #[serde(default)]
    pub auto_ticket: bool,
}

/// What a rule checks. `check = { type = "hardware_min", ram_gib = 8 }`.
///
/// Fields inside a check cannot carry spans (serde buffers internally
/// tagged enums), so lint reports problems in them at the `check` line,
/// or at the exact text when it can find it there.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    HardwareMin {
        ram_gib: Option<f64>,
        /// RAM the OS reports is a little below what is installed; this
        /// many percent below the minimum still passes (default 5).
        tolerance_pct: Option<f64>,
        cpu_cores: Option<u32>,
        /// Decimal gigabytes, as disks are sold.
        system_disk_gb: Option<u64>,
        system_disk_media: Option<Vec<DiskMediaName>>,
    },
    Firmware {
        uefi: Option<bool>,
        secure_boot: Option<bool>,
        tpm_min: Option<String>,
    },
    Os {
        family: String,
        /// Regex on the OS name (`^Debian`, `^(Microsoft )?Windows 11`).
        name: Option<String>,
        /// Allowed editions, compared without case. Empty = any.
        editions: Option<Vec<String>>,
        min_version: Option<String>,
    },
    OsLifecycle {
        /// Passing devices within this many days of the end get a note.
        warn_days_before_end: Option<u32>,
    },
    UpdateAge {
        max_days: u32,
    },
    InventoryAge {
        max_days: u32,
    },
    DiskEncryption {
        /// Allowed methods (`luks`, `bitlocker`); empty = any.
        methods: Option<Vec<String>>,
    },
    Antivirus {
        #[serde(default = "default_true")]
        realtime: bool,
        signature_max_age_days: Option<u32>,
        /// OS families whose agents report antivirus; a device of such a
        /// family with no antivirus fails, others are `unknown`.
        required_on: Option<Vec<String>>,
    },
    SoftwareRequired {
        any_of: Vec<SoftwareSpec>,
    },
    SoftwareForbidden {
        name: String,
        version: Option<String>,
    },
    Hostname {
        regex: String,
        max_len: Option<usize>,
    },
}

fn default_true() -> bool {
    true
}

impl Check {
    /// The `type` string, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Check::HardwareMin { .. } => "hardware_min",
            Check::Firmware { .. } => "firmware",
            Check::Os { .. } => "os",
            Check::OsLifecycle { .. } => "os_lifecycle",
            Check::UpdateAge { .. } => "update_age",
            Check::InventoryAge { .. } => "inventory_age",
            Check::DiskEncryption { .. } => "disk_encryption",
            Check::Antivirus { .. } => "antivirus",
            Check::SoftwareRequired { .. } => "software_required",
            Check::SoftwareForbidden { .. } => "software_forbidden",
            Check::Hostname { .. } => "hostname",
        }
    }
}

/// One alternative of `software_required`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftwareSpec {
    /// Regex on the package name.
    pub name: String,
    /// Constraint such as `">=140.0"` or `">=128, <200"`.
    pub version: Option<String>,
}

/// Disk media as the agent reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskMediaName {
    Hdd,
    Ssd,
    Nvme,
}

impl DiskMediaName {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskMediaName::Hdd => "hdd",
            DiskMediaName::Ssd => "ssd",
            DiskMediaName::Nvme => "nvme",
        }
    }
}

/// One `[[waiver]]`: a rule does not count as failed for some devices until
/// a date.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    pub id: Spanned<String>,
    pub rule: Spanned<String>,
    pub scope: Option<Spanned<Scope>>,
    /// Device ids or host names.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Required, like `approved_by` and `ticket`; defaulted here so that
    /// lint reports every missing one at once instead of one per run.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub approved_by: String,
    #[serde(default)]
    pub ticket: String,
    pub granted: Option<Spanned<Datetime>>,
    /// First day on which the waiver no longer applies (00:00 UTC).
    pub expires: Option<Spanned<Datetime>>,
}

/// `[lifecycle]`: end-of-support tables, inline so a standard is one file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    #[serde(default)]
    pub os: Vec<Spanned<OsLifecycle>>,
}

/// One OS release and its end of support.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsLifecycle {
    pub family: String,
    /// A label for people ("Windows 10 22H2", "Debian 12").
    pub product: String,
    /// Regex on the OS name, for families where the version alone is
    /// ambiguous (Debian 12 vs. Ubuntu 12.04).
    pub name: Option<String>,
    /// The OS version starts with this text. The longest match wins, so
    /// `10.0.19045` can be more specific than `10.0`.
    pub version_prefix: String,
    pub end_of_support: Spanned<Datetime>,
}
