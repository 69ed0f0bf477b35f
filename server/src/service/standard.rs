//! The common IT standard itself: linting and applying a file, its
//! versions, and reading one version (without the waivers the caller may
//! not read).

use schoolfleet_standard::{LintError, Standard};

use super::access::require;
use super::compliance::{WaiverReader, known_tenants, standard};
use super::{AppError, AppResult};
use crate::auth::{Permission, Principal, TenantRef};
use crate::state::AppState;
use crate::storage::{StandardVersionRecord, now_millis};

/// Standard files are small; this stops a mistaken upload of something else.
pub const MAX_STANDARD_BYTES: usize = 1024 * 1024;

fn check_size(content: &str) -> AppResult<()> {
    if content.len() > MAX_STANDARD_BYTES {
        return Err(AppError::invalid("standard file is larger than 1 MiB"));
    }
    Ok(())
}

fn revision_arg(revision: u64) -> Option<i64> {
    (revision > 0).then(|| i64::try_from(revision).unwrap_or(i64::MAX))
}

/// The problems of a standard file, checked against the tenants the
/// caller knows (another county's school is as unknown as a missing one).
pub async fn lint(
    state: &AppState,
    principal: &Principal,
    content: &str,
) -> AppResult<Vec<LintError>> {
    check_size(content)?;
    let known = known_tenants(state, Some(principal)).await?;
    Ok(schoolfleet_standard::lint(content, &known))
}

/// A new revision of the standard and how many devices were evaluated
/// against it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: StandardVersionRecord,
    pub devices_evaluated: usize,
}

/// Stores a new revision and evaluates the fleet against it. One common
/// standard for every school network: only a cooperation-wide
/// StandardManage changes it. A file with problems is INVALID with the
/// first 20 of them, one per line.
pub async fn apply(state: &AppState, principal: &Principal, content: String) -> AppResult<Applied> {
    require(
        principal,
        Permission::StandardManage,
        &TenantRef::Cooperation,
    )?;
    check_size(&content)?;
    let known = known_tenants(state, None).await?;
    let compiled = Standard::compile_with(&content, &known).map_err(|errors| {
        let lines: Vec<String> = errors.iter().take(20).map(ToString::to_string).collect();
        AppError::invalid(format!(
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
        .await?;
    let current = standard(state, record.revision.max(0) as u64).await?;
    let evaluated = state
        .compliance
        .evaluate_fleet(&state.store, &current, chrono::Utc::now())
        .await?;
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
    Ok(Applied {
        version: record,
        devices_evaluated: evaluated,
    })
}

/// Every stored revision (with its file), oldest first. The standard is
/// common to the cooperation: every authenticated caller reads the list.
pub async fn versions(
    state: &AppState,
    _principal: &Principal,
) -> AppResult<Vec<StandardVersionRecord>> {
    Ok(state.store.list_standard_versions().await?)
}

/// One revision (0: the latest) with its file. The rules are common to the
/// cooperation; the waivers belong to the tenants they cover. Whoever may
/// not read them all gets the file without the others (rewritten, see
/// [`without_waivers`]) and the count of those left.
pub async fn file(
    state: &AppState,
    principal: &Principal,
    revision: u64,
) -> AppResult<StandardVersionRecord> {
    let mut record = state
        .store
        .get_standard_version(revision_arg(revision))
        .await?
        .ok_or_else(|| AppError::not_found("no such standard revision"))?;
    let reader = WaiverReader::new(state, principal).await?;
    if !reader.all {
        let current = standard(state, record.revision.max(0) as u64).await?;
        let mut readable = Vec::new();
        for waiver in current.standard.waivers() {
            if reader.may_read(state, &waiver, None, None).await? {
                readable.push(waiver.id.to_owned());
            }
        }
        if readable.len() < current.standard.waiver_count() {
            record.content = without_waivers(&record.content, &readable)?;
            record.waivers = readable.len() as i64;
        }
    }
    Ok(record)
}

/// The standard's text with only the waivers in `keep`. The file is
/// written anew (comments and layout of the original are lost), with a
/// note saying so.
fn without_waivers(content: &str, keep: &[String]) -> AppResult<String> {
    let mut table: toml::Table = toml::from_str(content).map_err(|e| {
        tracing::error!(error = %e, "stored standard does not parse");
        AppError::internal("stored standard does not parse")
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
        AppError::internal("cannot write the standard")
    })?;
    Ok(format!(
        "# Waivers of schools outside your scope are left out of this copy.\n\n{body}"
    ))
}
