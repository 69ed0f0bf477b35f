//! `schoolfleet-agent report "Beamer zeigt kein Bild"`: open a service-desk
//! ticket for this device, authenticated by its certificate, with a small
//! snapshot of the machine's state. The snapshot holds no personal data:
//! host name, OS, uptime, free disk space and the inventory hash.

use std::path::Path;
use std::time::Duration;

use schoolfleet_proto::transport::{self, ChannelOptions, ServerTrust};
use schoolfleet_proto::v1::agent_service_client::AgentServiceClient;
use schoolfleet_proto::v1::{Inventory, ReportProblemRequest};

use crate::identity::{AgentIdentity, IdentityError};
use crate::inventory;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot reach the server: {0}")]
    Transport(#[from] transport::TransportError),
    #[error("the server refused the report: {0}")]
    Refused(String),
    #[error("inventory collection failed: {0}")]
    Collect(String),
}

/// The snapshot part of a report, from one inventory.
pub fn snapshot(inv: &Inventory, title: &str, description: &str) -> ReportProblemRequest {
    let system = inv.system.clone().unwrap_or_default();
    let os = inv.os.clone().unwrap_or_default();
    // Free space of the root (or system) filesystem, else of the first one.
    let disk_free_bytes = inv
        .filesystems
        .iter()
        .find(|f| f.mount_point == "/" || f.mount_point.eq_ignore_ascii_case("C:\\"))
        .or_else(|| inv.filesystems.first())
        .map(|f| f.available_bytes)
        .unwrap_or_default();
    ReportProblemRequest {
        title: title.to_owned(),
        description: description.to_owned(),
        hostname: system.hostname,
        os: format!("{} {}", os.name, os.version).trim().to_owned(),
        uptime_seconds: system.uptime_seconds,
        disk_free_bytes,
        inventory_hash: inventory::content_hash(inv),
    }
}

/// Sends the report; returns the ticket key (e.g. `SUP-1042`).
pub async fn report(
    state_dir: &Path,
    title: &str,
    description: &str,
) -> Result<String, ReportError> {
    let identity = AgentIdentity::load(state_dir)?;
    let collected = tokio::task::spawn_blocking(|| inventory::current_platform().collect())
        .await
        .map_err(|e| ReportError::Collect(e.to_string()))?;
    let request = snapshot(&collected, title, description);
    let options = ChannelOptions {
        request_timeout: Some(Duration::from_secs(30)),
        ..ChannelOptions::default()
    };
    let channel = transport::connect(
        &identity.server_url,
        ServerTrust::CaPem(identity.ca_pem.clone()),
        Some(identity.client_identity()),
        options,
    )
    .await?;
    let answer = AgentServiceClient::new(channel)
        .report_problem(request)
        .await
        .map_err(|status| ReportError::Refused(status.message().to_owned()))?;
    Ok(answer.into_inner().ticket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolfleet_proto::v1::{Filesystem, OperatingSystem, SystemInfo};

    #[test]
    fn snapshot_takes_facts_only() {
        let inv = Inventory {
            system: Some(SystemInfo {
                hostname: "kus012-sp0101".into(),
                uptime_seconds: 42,
                ..Default::default()
            }),
            os: Some(OperatingSystem {
                name: "Debian GNU/Linux".into(),
                version: "12".into(),
                ..Default::default()
            }),
            filesystems: vec![
                Filesystem {
                    mount_point: "/boot".into(),
                    available_bytes: 1,
                    ..Default::default()
                },
                Filesystem {
                    mount_point: "/".into(),
                    available_bytes: 5_000,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let r = snapshot(&inv, "Beamer zeigt kein Bild", "");
        assert_eq!(r.hostname, "kus012-sp0101");
        assert_eq!(r.os, "Debian GNU/Linux 12");
        assert_eq!(r.uptime_seconds, 42);
        assert_eq!(r.disk_free_bytes, 5_000);
        assert_eq!(r.inventory_hash.len(), 64);
    }
}
