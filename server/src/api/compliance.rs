//! The common IT standard and compliance reports: the adapter of
//! `ComplianceService` over `service::standard` (lint, apply, versions)
//! and `service::compliance` (the reports).

use crate::service::compliance as svc;
use crate::service::standard;

use schoolfleet_proto::v1::compliance_service_server::ComplianceService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert};
use crate::storage::StandardVersionRecord;

#[derive(Debug, Clone)]
pub struct ComplianceApi(pub AppState);

fn optional(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty()).then_some(text)
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

#[tonic::async_trait]
impl ComplianceService for ComplianceApi {
    async fn lint_standard(
        &self,
        request: Request<LintStandardRequest>,
    ) -> Result<Response<LintStandardResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let content = request.into_inner().content;
        let problems = standard::lint(&self.0, &principal, &content)
            .await?
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
        let principal = self.0.principal(&request).await?;
        let content = request.into_inner().content;
        let applied = standard::apply(&self.0, &principal, content).await?;
        Ok(Response::new(ApplyStandardResponse {
            version: Some(version_message(&applied.version, false)),
            devices_evaluated: applied.devices_evaluated as u32,
        }))
    }

    async fn list_standard_versions(
        &self,
        request: Request<ListStandardVersionsRequest>,
    ) -> Result<Response<ListStandardVersionsResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let versions = standard::versions(&self.0, &principal)
            .await?
            .iter()
            .map(|v| version_message(v, false))
            .collect();
        Ok(Response::new(ListStandardVersionsResponse { versions }))
    }

    async fn get_standard(
        &self,
        request: Request<GetStandardRequest>,
    ) -> Result<Response<StandardVersion>, Status> {
        let principal = self.0.principal(&request).await?;
        let revision = request.into_inner().revision;
        let record = standard::file(&self.0, &principal, revision).await?;
        Ok(Response::new(version_message(&record, true)))
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
