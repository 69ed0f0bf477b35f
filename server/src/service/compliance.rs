//! Compliance with the common IT standard, as reports read it: the
//! summary per county and school, one device's results, the failing
//! devices of a rule. Linting, applying and reading the standard itself
//! are in `service::standard`.
//!
//! Counties and schools named in a request must be known to the caller
//! ([`require_known`]); waivers are shown only to whoever may read devices
//! in a school they cover ([`WaiverReader`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schoolfleet_standard::{KnownTenants, WaiverInfo};

use super::access;
use super::{AppError, AppResult};
use crate::auth::{Permission, Principal, TenantRef};
use crate::compliance::{ComplianceError, Current};
use crate::state::AppState;
use crate::storage::{self, DeviceRecord, FailingDeviceRecord, Millis};

/// Waivers expiring within this many days are listed in the summary.
pub const EXPIRING_WITHIN_DAYS: i64 = 30;

impl From<ComplianceError> for AppError {
    fn from(err: ComplianceError) -> Self {
        match err {
            ComplianceError::Storage(e) => e.into(),
            ComplianceError::Corrupt(revision, why) => {
                tracing::error!(revision, error = %why, "stored standard does not compile");
                AppError::internal(format!("stored standard revision {revision} is corrupt"))
            }
            ComplianceError::Interrupted => AppError::unavailable("server shutting down"),
        }
    }
}

fn revision_arg(revision: u64) -> Option<i64> {
    (revision > 0).then(|| i64::try_from(revision).unwrap_or(i64::MAX))
}

/// The tenants and classes that exist, so that lint can catch a scope
/// naming a school that does not exist. With `principal`, only the
/// tenants it knows: to a county's coordinator another county's school
/// is as unknown as one that does not exist (apply, which needs the
/// whole cooperation, checks against all).
pub async fn known_tenants(
    state: &AppState,
    principal: Option<&Principal>,
) -> AppResult<KnownTenants> {
    let store = &state.store;
    let mut counties = Vec::new();
    for county in store.list_counties().await? {
        let known = match principal {
            None => true,
            Some(p) => {
                access::tenant_known(state, p, &TenantRef::County(county.id.clone())).await?
            }
        };
        if known {
            counties.push(county.id);
        }
    }
    let mut schools = Vec::new();
    for school in store.list_schools(None).await? {
        let target = TenantRef::school(&school.county_id, &school.id);
        let known = match principal {
            None => true,
            Some(p) => access::tenant_known(state, p, &target).await?,
        };
        if known {
            schools.push(school.id);
        }
    }
    Ok(KnownTenants {
        counties,
        schools,
        device_classes: store
            .list_device_classes()
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect(),
    })
}

/// A county or school named in a report request must be one the caller
/// knows; otherwise NOT_FOUND, as if it did not exist.
pub async fn require_known(
    state: &AppState,
    principal: &Principal,
    county: Option<&str>,
    school: Option<&str>,
) -> AppResult<()> {
    if let Some(c) = county
        && !access::tenant_known(state, principal, &TenantRef::County(c.to_owned())).await?
    {
        return Err(AppError::not_found(format!("county {c:?} not found")));
    }
    if let Some(s) = school {
        let found = state.store.get_school(s).await?;
        let known = match found {
            Some(found) => {
                access::tenant_known(
                    state,
                    principal,
                    &TenantRef::school(&found.county_id, &found.id),
                )
                .await?
            }
            None => false,
        };
        if !known {
            return Err(AppError::not_found(format!("school {s:?} not found")));
        }
    }
    Ok(())
}

/// The standard of `revision` (0: the current one), compiled.
pub async fn standard(state: &AppState, revision: u64) -> AppResult<Current> {
    state
        .compliance
        .standard(&state.store, revision_arg(revision))
        .await?
        .ok_or_else(|| match revision {
            0 => AppError::failed_precondition(
                "no IT standard applied yet: see `schoolfleet standard apply`",
            ),
            r => AppError::not_found(format!("standard revision {r} not found")),
        })
}

/// Who may read a waiver (its id, reason and expiry): whoever may read
/// devices in a school the waiver covers. A waiver covers the schools of its
/// scope (no scope or no list: any), narrowed to the schools of its listed
/// devices when it lists devices. Cooperation-wide readers read them all.
pub struct WaiverReader<'p> {
    principal: &'p Principal,
    /// Cooperation-wide: reads every waiver.
    pub all: bool,
    /// Every school with its county.
    schools: Vec<(String, String)>,
}

impl<'p> WaiverReader<'p> {
    pub async fn new(state: &AppState, principal: &'p Principal) -> AppResult<Self> {
        let all = principal.can(Permission::DeviceRead, &TenantRef::Cooperation);
        let schools = if all {
            Vec::new()
        } else {
            state
                .store
                .list_schools(None)
                .await?
                .into_iter()
                .map(|s| (s.county_id, s.id))
                .collect()
        };
        Ok(WaiverReader {
            principal,
            all,
            schools,
        })
    }

    /// May the caller read `waiver`, and does it cover a school inside
    /// `county`/`school` (when given)?
    pub async fn may_read(
        &self,
        state: &AppState,
        waiver: &WaiverInfo<'_>,
        county: Option<&str>,
        school: Option<&str>,
    ) -> AppResult<bool> {
        let in_scope = |c: &str, s: &str| {
            waiver.counties.is_none_or(|l| l.iter().any(|x| x == c))
                && waiver.schools.is_none_or(|l| l.iter().any(|x| x == s))
                && county.is_none_or(|x| x == c)
                && school.is_none_or(|x| x == s)
        };
        if self.all && county.is_none() && school.is_none() {
            return Ok(true);
        }
        let mut covered: Vec<(String, String)> = if self.all {
            // Cooperation-wide and asked about one tenant: every school
            // of the waiver's scope there.
            state
                .store
                .list_schools(None)
                .await?
                .into_iter()
                .map(|s| (s.county_id, s.id))
                .filter(|(c, s)| in_scope(c, s))
                .collect()
        } else {
            self.schools
                .iter()
                .filter(|(c, s)| in_scope(c, s))
                .cloned()
                .collect()
        };
        if !waiver.devices.is_empty() {
            let mut of_devices = Vec::new();
            for name in waiver.devices {
                let found = match state.store.get_device(name).await? {
                    Some(d) => vec![d],
                    None => state.store.find_devices_by_hostname(name).await?,
                };
                of_devices.extend(found.into_iter().map(|d| (d.county_id, d.school_id)));
            }
            covered.retain(|pair| of_devices.contains(pair));
        }
        Ok(covered.iter().any(|(c, s)| {
            self.principal
                .can(Permission::DeviceRead, &TenantRef::school(c, s))
        }))
    }
}

/// Devices and compliant devices of one county (school empty) or school.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantShare {
    pub county_id: String,
    /// Empty for the county's total.
    pub school_id: String,
    pub devices: u32,
    pub compliant: u32,
    /// The share a week ago from the daily snapshot; -1 when unknown.
    pub compliant_share_last_week: f64,
}

/// Devices per result of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRate {
    pub rule_id: String,
    pub title: String,
    pub mode: String,
    pub pass: u32,
    pub fail: u32,
    pub waived: u32,
    pub unknown: u32,
    pub not_applicable: u32,
}

/// A waiver the caller may read that expires soon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringWaiver {
    pub waiver_id: String,
    pub rule_id: String,
    pub expires: DateTime<Utc>,
    pub reason: String,
}

/// The compliance summary of the caller's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub revision: i64,
    /// Counties first (their totals), then schools.
    pub tenants: Vec<TenantShare>,
    /// In the standard's order.
    pub rules: Vec<RuleRate>,
    pub expiring_waivers: Vec<ExpiringWaiver>,
}

/// The summary of the caller's devices, optionally of one county or
/// school, against `revision` (0: current).
pub async fn summary(
    state: &AppState,
    principal: &Principal,
    county: Option<&str>,
    school: Option<&str>,
    revision: u64,
) -> AppResult<Summary> {
    require_known(state, principal, county, school).await?;
    let current = standard(state, revision).await?;
    let filter = principal.filter(Permission::DeviceRead);
    let in_scope =
        |c: &str, s: &str| county.is_none_or(|x| x == c) && school.is_none_or(|x| x == s);

    let schools: Vec<storage::SchoolCompliance> = state
        .store
        .school_compliance(current.revision, &filter)
        .await?
        .into_iter()
        .filter(|s| in_scope(&s.county_id, &s.school_id))
        .collect();
    let week_ago = (Utc::now() - chrono::TimeDelta::days(7))
        .format("%Y-%m-%d")
        .to_string();
    let last_week = state.store.compliance_snapshot(&week_ago).await?;
    let share = |rows: &mut dyn Iterator<Item = &storage::SchoolCompliance>| {
        let (devices, compliant) =
            rows.fold((0i64, 0i64), |(d, c), r| (d + r.devices, c + r.compliant));
        if devices == 0 {
            -1.0
        } else {
            compliant as f64 / devices as f64
        }
    };
    let mut tenants = Vec::new();
    let mut counties: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for s in &schools {
        let entry = counties.entry(&s.county_id).or_default();
        entry.0 += s.devices as u32;
        entry.1 += s.compliant as u32;
    }
    for (county_id, (devices, compliant)) in &counties {
        tenants.push(TenantShare {
            county_id: county_id.to_string(),
            school_id: String::new(),
            devices: *devices,
            compliant: *compliant,
            compliant_share_last_week: share(&mut last_week.iter().filter(|r| {
                r.county_id == *county_id && schools.iter().any(|s| s.school_id == r.school_id)
            })),
        });
    }
    for s in &schools {
        tenants.push(TenantShare {
            county_id: s.county_id.clone(),
            school_id: s.school_id.clone(),
            devices: s.devices as u32,
            compliant: s.compliant as u32,
            compliant_share_last_week: share(
                &mut last_week.iter().filter(|r| r.school_id == s.school_id),
            ),
        });
    }

    let counts = state
        .store
        .rule_status_counts(current.revision, &filter, county, school)
        .await?;
    let rules = current
        .standard
        .rules()
        .iter()
        .map(|rule| {
            let count = |status: &str| {
                counts
                    .iter()
                    .find(|c| c.rule_id == rule.id && c.status == status)
                    .map_or(0, |c| c.devices as u32)
            };
            RuleRate {
                rule_id: rule.id.clone(),
                title: rule.title.clone(),
                mode: rule.mode.as_str().to_owned(),
                pass: count("pass"),
                fail: count("fail"),
                waived: count("waived"),
                unknown: count("unknown"),
                not_applicable: count("not_applicable"),
            }
        })
        .collect();
    let now = Utc::now();
    let expiring_waivers = waivers(state, principal, &current, county, school, |expires| {
        expires > now && expires <= now + chrono::TimeDelta::days(EXPIRING_WITHIN_DAYS)
    })
    .await?;
    Ok(Summary {
        revision: current.revision,
        tenants,
        rules,
        expiring_waivers,
    })
}

/// The waivers of `current` the caller may read ([`WaiverReader`]) that
/// cover a school inside `county`/`school` and whose expiry `wanted`
/// accepts, in the standard's order. The one rule for gRPC and the portal.
pub async fn waivers(
    state: &AppState,
    principal: &Principal,
    current: &Current,
    county: Option<&str>,
    school: Option<&str>,
    wanted: impl Fn(DateTime<Utc>) -> bool,
) -> AppResult<Vec<ExpiringWaiver>> {
    let reader = WaiverReader::new(state, principal).await?;
    let mut out = Vec::new();
    for w in current.standard.waivers() {
        if wanted(w.expires) && reader.may_read(state, &w, county, school).await? {
            out.push(ExpiringWaiver {
                waiver_id: w.id.to_owned(),
                rule_id: w.rule_id.to_owned(),
                expires: w.expires,
                reason: w.reason.to_owned(),
            });
        }
    }
    Ok(out)
}

/// One rule's result on one device, with the rule's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    pub rule_id: String,
    pub title: String,
    pub severity: String,
    pub mode: String,
    /// `pass`, `fail`, `waived`, `unknown`, `not_applicable`.
    pub status: String,
    pub expected: String,
    pub actual: String,
    pub reason: String,
    pub waiver_id: String,
    pub evaluated_at: Millis,
    pub remediation: String,
    /// Does the rule count towards the device's compliance?
    pub counted: bool,
}

/// One device's compliance.
#[derive(Debug, Clone)]
pub struct DeviceCompliance {
    pub device: DeviceRecord,
    pub revision: i64,
    /// No counted rule fails or is unknown (and there are results).
    pub compliant: bool,
    /// In the standard's order.
    pub results: Vec<RuleOutcome>,
}

/// The results of one device (by id, host name or short id).
pub async fn device(
    state: &AppState,
    principal: &Principal,
    device: &str,
    revision: u64,
) -> AppResult<DeviceCompliance> {
    let device = access::visible_device(state, principal, device, Permission::DeviceRead).await?;
    let current = standard(state, revision).await?;
    let stored = state
        .store
        .list_compliance_results(&device.id, current.revision)
        .await?;
    let mut compliant = !stored.is_empty();
    // In the standard's own order, with each rule's words.
    let results = current
        .standard
        .rules()
        .iter()
        .filter_map(|rule| {
            let r = stored.iter().find(|r| r.rule_id == rule.id)?;
            if r.counted && matches!(r.status.as_str(), "fail" | "unknown") {
                compliant = false;
            }
            Some(RuleOutcome {
                rule_id: rule.id.clone(),
                title: rule.title.clone(),
                severity: rule.severity.as_str().to_owned(),
                mode: rule.mode.as_str().to_owned(),
                status: r.status.clone(),
                expected: r.expected.clone(),
                actual: r.actual.clone(),
                reason: r.reason.clone(),
                waiver_id: r.waiver_id.clone(),
                evaluated_at: r.evaluated_at,
                remediation: rule.remediation.clone().unwrap_or_default(),
                counted: rule.mode.counted(),
            })
        })
        .collect();
    Ok(DeviceCompliance {
        device,
        revision: current.revision,
        compliant,
        results,
    })
}

/// The caller's devices failing `rule_id`, with expected vs actual.
pub async fn failing(
    state: &AppState,
    principal: &Principal,
    rule_id: &str,
    county: Option<&str>,
    school: Option<&str>,
    revision: u64,
) -> AppResult<Vec<FailingDeviceRecord>> {
    require_known(state, principal, county, school).await?;
    let current = standard(state, revision).await?;
    let rule_id = rule_id.trim();
    if !current.standard.rules().iter().any(|r| r.id == rule_id) {
        return Err(AppError::not_found(format!(
            "rule {rule_id:?} is not in standard revision {}",
            current.revision
        )));
    }
    Ok(state
        .store
        .failing_devices(
            current.revision,
            rule_id,
            &principal.filter(Permission::DeviceRead),
            county,
            school,
        )
        .await?)
}
