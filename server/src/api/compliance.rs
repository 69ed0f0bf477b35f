//! The common IT standard and compliance reports.

use crate::service::access;
use std::collections::BTreeMap;

use schoolfleet_proto::v1::compliance_service_server::ComplianceService;
use schoolfleet_proto::v1::*;
use schoolfleet_standard::{KnownTenants, Standard, WaiverInfo};
use tonic::{Request, Response, Status};

use super::{AppState, convert, require, storage_status};
use crate::auth::{Permission, Principal, TenantRef};
use crate::compliance::{ComplianceError, Current};
use crate::storage::{self, StandardVersionRecord, now_millis};

/// Standard files are small; this stops a mistaken upload of something else.
const MAX_STANDARD_BYTES: usize = 1024 * 1024;
/// Waivers expiring within this many days are listed in the summary.
const EXPIRING_WITHIN_DAYS: i64 = 30;

#[derive(Debug, Clone)]
pub struct ComplianceApi(pub AppState);

fn compliance_status(err: ComplianceError) -> Status {
    match err {
        ComplianceError::Storage(e) => storage_status(e),
        ComplianceError::Corrupt(revision, why) => {
            tracing::error!(revision, error = %why, "stored standard does not compile");
            Status::internal(format!("stored standard revision {revision} is corrupt"))
        }
        ComplianceError::Interrupted => Status::unavailable("server shutting down"),
    }
}

/// The standard's text with only the waivers in `keep`. The file is
/// written anew (comments and layout of the original are lost), with a
/// note saying so.
fn without_waivers(content: &str, keep: &[String]) -> Result<String, Status> {
    let mut table: toml::Table = toml::from_str(content).map_err(|e| {
        tracing::error!(error = %e, "stored standard does not parse");
        Status::internal("stored standard does not parse")
    })?;
    if let Some(toml::Value::Array(waivers)) = table.get_mut("waiver") {
        waivers.retain(|w| {
            w.get("id")
                .and_then(toml::Value::as_str)
                .is_some_and(|id| keep.iter().any(|k| k == id))
        });
        if waivers.is_empty() {
            table.remove("waiver");
        }
    }
    let body = toml::to_string(&table).map_err(|e| {
        tracing::error!(error = %e, "cannot write the standard");
        Status::internal("cannot write the standard")
    })?;
    Ok(format!(
        "# Waivers of schools outside your scope are left out of this copy.\n\n{body}"
    ))
}

fn optional(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty()).then_some(text)
}

fn revision_arg(revision: u64) -> Option<i64> {
    (revision > 0).then(|| i64::try_from(revision).unwrap_or(i64::MAX))
}

fn version_message(v: &StandardVersionRecord, with_content: bool) -> StandardVersion {
    StandardVersion {
        revision: v.revision.max(0) as u64,
        standard_id: v.standard_id.clone(),
        version: v.version.clone(),
        applied_by: v.applied_by.clone(),
        applied_at: convert::ts(v.applied_at),
        content: if with_content {
            v.content.clone()
        } else {
            String::new()
        },
        rules: v.rules.clamp(0, u32::MAX as i64) as u32,
        waivers: v.waivers.clamp(0, u32::MAX as i64) as u32,
    }
}

impl ComplianceApi {
    /// The tenants and classes that exist, so that lint can catch a scope
    /// naming a school that does not exist. With `principal`, only the
    /// tenants it knows: to a county's coordinator another county's school
    /// is as unknown as one that does not exist (apply, which needs the
    /// whole cooperation, checks against all).
    async fn known_tenants(&self, principal: Option<&Principal>) -> Result<KnownTenants, Status> {
        let state = &self.0;
        let store = &state.store;
        let mut counties = Vec::new();
        for county in store.list_counties().await.map_err(storage_status)? {
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
        for school in store.list_schools(None).await.map_err(storage_status)? {
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
                .await
                .map_err(storage_status)?
                .into_iter()
                .map(|c| c.id)
                .collect(),
        })
    }

    /// A county or school named in a report request must be one the caller
    /// knows; otherwise NOT_FOUND, as if it did not exist.
    async fn require_known(
        &self,
        principal: &Principal,
        county: Option<&str>,
        school: Option<&str>,
    ) -> Result<(), Status> {
        let state = &self.0;
        if let Some(c) = county
            && !access::tenant_known(state, principal, &TenantRef::County(c.to_owned())).await?
        {
            return Err(Status::not_found(format!("county {c:?} not found")));
        }
        if let Some(s) = school {
            let found = state.store.get_school(s).await.map_err(storage_status)?;
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
                return Err(Status::not_found(format!("school {s:?} not found")));
            }
        }
        Ok(())
    }

    async fn standard(&self, revision: u64) -> Result<Current, Status> {
        self.0
            .compliance
            .standard(&self.0.store, revision_arg(revision))
            .await
            .map_err(compliance_status)?
            .ok_or_else(|| match revision {
                0 => Status::failed_precondition(
                    "no IT standard applied yet: see `schoolfleet standard apply`",
                ),
                r => Status::not_found(format!("standard revision {r} not found")),
            })
    }
}

/// Who may read a waiver (its id, reason and expiry): whoever may read
/// devices in a school the waiver covers. A waiver covers the schools of its
/// scope (no scope or no list: any), narrowed to the schools of its listed
/// devices when it lists devices. Cooperation-wide readers read them all.
struct WaiverReader<'p> {
    principal: &'p Principal,
    all: bool,
    /// Every school with its county.
    schools: Vec<(String, String)>,
}

impl<'p> WaiverReader<'p> {
    async fn new(state: &AppState, principal: &'p Principal) -> Result<Self, Status> {
        let all = principal.can(Permission::DeviceRead, &TenantRef::Cooperation);
        let schools = if all {
            Vec::new()
        } else {
            state
                .store
                .list_schools(None)
                .await
                .map_err(storage_status)?
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
    async fn may_read(
        &self,
        state: &AppState,
        waiver: &WaiverInfo<'_>,
        county: Option<&str>,
        school: Option<&str>,
    ) -> Result<bool, Status> {
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
                .await
                .map_err(storage_status)?
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
                let found = match state.store.get_device(name).await.map_err(storage_status)? {
                    Some(d) => vec![d],
                    None => state
                        .store
                        .find_devices_by_hostname(name)
                        .await
                        .map_err(storage_status)?,
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

#[tonic::async_trait]
impl ComplianceService for ComplianceApi {
    async fn lint_standard(
        &self,
        request: Request<LintStandardRequest>,
    ) -> Result<Response<LintStandardResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let content = request.into_inner().content;
        if content.len() > MAX_STANDARD_BYTES {
            return Err(Status::invalid_argument(
                "standard file is larger than 1 MiB",
            ));
        }
        let known = self.known_tenants(Some(&principal)).await?;
        let problems = schoolfleet_standard::lint(&content, &known)
            .into_iter()
            .map(|e| LintProblem {
                line: e.line as u32,
                column: e.column as u32,
                message: e.message,
            })
            .collect();
        Ok(Response::new(LintStandardResponse { problems }))
    }

    async fn apply_standard(
        &self,
        request: Request<ApplyStandardRequest>,
    ) -> Result<Response<ApplyStandardResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        // One common standard for every school network: only a
        // cooperation-wide coordinator or admin changes it.
        require(
            &principal,
            Permission::StandardManage,
            &TenantRef::Cooperation,
        )?;
        let content = request.into_inner().content;
        if content.len() > MAX_STANDARD_BYTES {
            return Err(Status::invalid_argument(
                "standard file is larger than 1 MiB",
            ));
        }
        let known = self.known_tenants(None).await?;
        let compiled = Standard::compile_with(&content, &known).map_err(|errors| {
            let lines: Vec<String> = errors.iter().take(20).map(ToString::to_string).collect();
            Status::invalid_argument(format!(
                "the standard has {} problem(s):\n{}",
                errors.len(),
                lines.join("\n")
            ))
        })?;
        let record = state
            .store
            .insert_standard_version(&StandardVersionRecord {
                revision: 0,
                standard_id: compiled.id.clone(),
                version: compiled.version.clone(),
                content,
                rules: compiled.rules().len() as i64,
                waivers: compiled.waiver_count() as i64,
                applied_by: principal.name.clone(),
                applied_at: now_millis(),
            })
            .await
            .map_err(storage_status)?;
        let current = self.standard(record.revision.max(0) as u64).await?;
        let evaluated = state
            .compliance
            .evaluate_fleet(&state.store, &current, chrono::Utc::now())
            .await
            .map_err(compliance_status)?;
        state
            .audit(
                &principal.actor(),
                "standard.apply",
                &format!("standard:{}@{}", record.standard_id, record.version),
                None,
                "ok",
                format!("revision={} devices={evaluated}", record.revision),
            )
            .await;
        Ok(Response::new(ApplyStandardResponse {
            version: Some(version_message(&record, false)),
            devices_evaluated: evaluated as u32,
        }))
    }

    async fn list_standard_versions(
        &self,
        request: Request<ListStandardVersionsRequest>,
    ) -> Result<Response<ListStandardVersionsResponse>, Status> {
        self.0.principal(&request).await?;
        let versions = self
            .0
            .store
            .list_standard_versions()
            .await
            .map_err(storage_status)?
            .iter()
            .map(|v| version_message(v, false))
            .collect();
        Ok(Response::new(ListStandardVersionsResponse { versions }))
    }

    async fn get_standard(
        &self,
        request: Request<GetStandardRequest>,
    ) -> Result<Response<StandardVersion>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let revision = request.into_inner().revision;
        let record = state
            .store
            .get_standard_version(revision_arg(revision))
            .await
            .map_err(storage_status)?
            .ok_or_else(|| Status::not_found("no such standard revision"))?;
        let mut message = version_message(&record, true);
        // The rules are common to the cooperation; the waivers belong to
        // the tenants they cover. Whoever may not read them all gets the
        // file without the others.
        let reader = WaiverReader::new(state, &principal).await?;
        if !reader.all {
            let current = self.standard(record.revision.max(0) as u64).await?;
            let mut readable = Vec::new();
            for waiver in current.standard.waivers() {
                if reader.may_read(state, &waiver, None, None).await? {
                    readable.push(waiver.id.to_owned());
                }
            }
            if readable.len() < current.standard.waiver_count() {
                message.content = without_waivers(&record.content, &readable)?;
                message.waivers = readable.len() as u32;
            }
        }
        Ok(Response::new(message))
    }

    async fn compliance_summary(
        &self,
        request: Request<ComplianceSummaryRequest>,
    ) -> Result<Response<ComplianceSummaryResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let (county, school) = (optional(&req.county_id), optional(&req.school_id));
        self.require_known(&principal, county, school).await?;
        let current = self.standard(req.revision).await?;
        let filter = principal.filter(Permission::DeviceRead);
        let in_scope =
            |c: &str, s: &str| county.is_none_or(|x| x == c) && school.is_none_or(|x| x == s);

        let schools: Vec<storage::SchoolCompliance> = state
            .store
            .school_compliance(current.revision, &filter)
            .await
            .map_err(storage_status)?
            .into_iter()
            .filter(|s| in_scope(&s.county_id, &s.school_id))
            .collect();
        let week_ago = (chrono::Utc::now() - chrono::TimeDelta::days(7))
            .format("%Y-%m-%d")
            .to_string();
        let last_week = state
            .store
            .compliance_snapshot(&week_ago)
            .await
            .map_err(storage_status)?;
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
            tenants.push(TenantCompliance {
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
            tenants.push(TenantCompliance {
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
            .await
            .map_err(storage_status)?;
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
                RulePassRate {
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
        let now = chrono::Utc::now();
        let reader = WaiverReader::new(state, &principal).await?;
        let mut expiring_waivers = Vec::new();
        for w in current.standard.waivers() {
            let soon =
                w.expires > now && w.expires <= now + chrono::TimeDelta::days(EXPIRING_WITHIN_DAYS);
            if soon && reader.may_read(state, &w, county, school).await? {
                expiring_waivers.push(ExpiringWaiver {
                    waiver_id: w.id.to_owned(),
                    rule_id: w.rule_id.to_owned(),
                    expires: Some(schoolfleet_proto::time::to_timestamp(w.expires)),
                    reason: w.reason.to_owned(),
                });
            }
        }
        Ok(Response::new(ComplianceSummaryResponse {
            revision: current.revision as u64,
            tenants,
            rules,
            expiring_waivers,
        }))
    }

    async fn device_compliance(
        &self,
        request: Request<DeviceComplianceRequest>,
    ) -> Result<Response<DeviceComplianceResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let device =
            access::visible_device(state, &principal, &req.device, Permission::DeviceRead).await?;
        let current = self.standard(req.revision).await?;
        let stored = state
            .store
            .list_compliance_results(&device.id, current.revision)
            .await
            .map_err(storage_status)?;
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
                Some(RuleResult {
                    rule_id: rule.id.clone(),
                    title: rule.title.clone(),
                    severity: rule.severity.as_str().to_owned(),
                    mode: rule.mode.as_str().to_owned(),
                    status: r.status.clone(),
                    expected: r.expected.clone(),
                    actual: r.actual.clone(),
                    reason: r.reason.clone(),
                    waiver_id: r.waiver_id.clone(),
                    evaluated_at: convert::ts(r.evaluated_at),
                    remediation: rule.remediation.clone().unwrap_or_default(),
                    counted: rule.mode.counted(),
                })
            })
            .collect();
        Ok(Response::new(DeviceComplianceResponse {
            device_id: device.id,
            hostname: device.hostname,
            revision: current.revision as u64,
            compliant,
            results,
        }))
    }

    async fn failing_devices(
        &self,
        request: Request<FailingDevicesRequest>,
    ) -> Result<Response<FailingDevicesResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let (county, school) = (optional(&req.county_id), optional(&req.school_id));
        self.require_known(&principal, county, school).await?;
        let current = self.standard(req.revision).await?;
        let rule_id = req.rule_id.trim();
        if !current.standard.rules().iter().any(|r| r.id == rule_id) {
            return Err(Status::not_found(format!(
                "rule {rule_id:?} is not in standard revision {}",
                current.revision
            )));
        }
        let devices = state
            .store
            .failing_devices(
                current.revision,
                rule_id,
                &principal.filter(Permission::DeviceRead),
                county,
                school,
            )
            .await
            .map_err(storage_status)?
            .into_iter()
            .map(|d| FailingDevice {
                device_id: d.device_id,
                hostname: d.hostname,
                county_id: d.county_id,
                school_id: d.school_id,
                expected: d.expected,
                actual: d.actual,
                reason: d.reason,
            })
            .collect();
        Ok(Response::new(FailingDevicesResponse { devices }))
    }
}
