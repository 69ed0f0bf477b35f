//! The common IT standard and compliance reports.

use crate::service::AppError;
use crate::service::compliance::{self as svc, WaiverReader};

use schoolfleet_proto::v1::compliance_service_server::ComplianceService;
use schoolfleet_proto::v1::*;
use schoolfleet_standard::{KnownTenants, Standard};
use tonic::{Request, Response, Status};

use super::{AppState, convert, require, storage_status};
use crate::auth::{Permission, Principal, TenantRef};
use crate::compliance::{ComplianceError, Current};
use crate::storage::{StandardVersionRecord, now_millis};

/// Standard files are small; this stops a mistaken upload of something else.
const MAX_STANDARD_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ComplianceApi(pub AppState);

fn compliance_status(err: ComplianceError) -> Status {
    AppError::from(err).into()
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
    async fn known_tenants(&self, principal: Option<&Principal>) -> Result<KnownTenants, Status> {
        Ok(svc::known_tenants(&self.0, principal).await?)
    }

    async fn standard(&self, revision: u64) -> Result<Current, Status> {
        Ok(svc::standard(&self.0, revision).await?)
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
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let (county, school) = (optional(&req.county_id), optional(&req.school_id));
        let summary = svc::summary(&self.0, &principal, county, school, req.revision).await?;
        Ok(Response::new(ComplianceSummaryResponse {
            revision: summary.revision as u64,
            tenants: summary
                .tenants
                .into_iter()
                .map(|t| TenantCompliance {
                    county_id: t.county_id,
                    school_id: t.school_id,
                    devices: t.devices,
                    compliant: t.compliant,
                    compliant_share_last_week: t.compliant_share_last_week,
                })
                .collect(),
            rules: summary
                .rules
                .into_iter()
                .map(|r| RulePassRate {
                    rule_id: r.rule_id,
                    title: r.title,
                    mode: r.mode,
                    pass: r.pass,
                    fail: r.fail,
                    waived: r.waived,
                    unknown: r.unknown,
                    not_applicable: r.not_applicable,
                })
                .collect(),
            expiring_waivers: summary
                .expiring_waivers
                .into_iter()
                .map(|w| ExpiringWaiver {
                    waiver_id: w.waiver_id,
                    rule_id: w.rule_id,
                    expires: Some(schoolfleet_proto::time::to_timestamp(w.expires)),
                    reason: w.reason,
                })
                .collect(),
        }))
    }

    async fn device_compliance(
        &self,
        request: Request<DeviceComplianceRequest>,
    ) -> Result<Response<DeviceComplianceResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let found = svc::device(&self.0, &principal, &req.device, req.revision).await?;
        Ok(Response::new(DeviceComplianceResponse {
            device_id: found.device.id,
            hostname: found.device.hostname,
            revision: found.revision as u64,
            compliant: found.compliant,
            results: found
                .results
                .into_iter()
                .map(|r| RuleResult {
                    rule_id: r.rule_id,
                    title: r.title,
                    severity: r.severity,
                    mode: r.mode,
                    status: r.status,
                    expected: r.expected,
                    actual: r.actual,
                    reason: r.reason,
                    waiver_id: r.waiver_id,
                    evaluated_at: convert::ts(r.evaluated_at),
                    remediation: r.remediation,
                    counted: r.counted,
                })
                .collect(),
        }))
    }

    async fn failing_devices(
        &self,
        request: Request<FailingDevicesRequest>,
    ) -> Result<Response<FailingDevicesResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let (county, school) = (optional(&req.county_id), optional(&req.school_id));
        let devices = svc::failing(
            &self.0,
            &principal,
            &req.rule_id,
            county,
            school,
            req.revision,
        )
        .await?
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
