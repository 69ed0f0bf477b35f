//! The data-protection rules on a checked spec, before anything is stored:
//! forward targets against the allow-list, exec secrets redacted.

use schoolfleet_proto::v1::SessionSpec;
use schoolfleet_proto::v1::session_spec::Kind as SpecKind;

use super::policy::CheckedSpec;
use super::{forward_policy, redact};
use crate::config::SessionsSection;
use crate::storage::DeviceRecord;

/// The spec as it may be stored, or why it is refused (PERMISSION_DENIED,
/// audited by the caller like every refused start).
pub fn guard_spec(
    config: &SessionsSection,
    device: &DeviceRecord,
    raw: Option<&SessionSpec>,
    spec: CheckedSpec,
) -> Result<CheckedSpec, String> {
    match raw.and_then(|s| s.kind.as_ref()) {
        Some(SpecKind::Forward(f)) => {
            forward_policy::check(
                config,
                &device.school_id,
                &device.device_class,
                &f.host,
                f.port,
            )?;
            Ok(spec)
        }
        Some(SpecKind::Exec(e)) => Ok(redact::spec(&redact::redactor(config), spec, e)),
        _ => Ok(spec),
    }
}
