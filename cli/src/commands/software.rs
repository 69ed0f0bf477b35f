//! `software search`: which devices have a package, optionally below a version.

use std::cmp::Ordering;

use schoolfleet_proto::v1::{SearchSoftwareRequest, SoftwareHit};
use serde::Serialize;

use super::Context;
use crate::args::SoftwareCommand;
use crate::client::Reply;
use crate::output::{Column, Record, Ui, col, wide};

#[derive(Debug, Serialize)]
pub struct HitRow {
    pub hostname: String,
    pub school_id: String,
    pub package_name: String,
    pub version: String,
    pub source: String,
    pub device_id: String,
}

impl From<&SoftwareHit> for HitRow {
    fn from(h: &SoftwareHit) -> Self {
        Self {
            hostname: h.hostname.clone(),
            school_id: h.school_id.clone(),
            package_name: h.package_name.clone(),
            version: h.version.clone(),
            source: h.source.clone(),
            device_id: h.device_id.clone(),
        }
    }
}

impl Record for HitRow {
    const NOUN: &'static str = "installations";
    const COLUMNS: &'static [Column] = &[
        col("hostname", "HOSTNAME"),
        col("school_id", "SCHOOL"),
        col("package_name", "PACKAGE"),
        col("version", "VERSION"),
        col("source", "SOURCE"),
        wide("device_id", "DEVICE ID"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.hostname.clone(),
            self.school_id.clone(),
            self.package_name.clone(),
            self.version.clone(),
            self.source.clone(),
            self.device_id.clone(),
        ]
    }
}

/// `--by-version`: how many devices run each version.
#[derive(Debug, Serialize)]
pub struct VersionRow {
    pub version: String,
    pub devices: u32,
}

impl Record for VersionRow {
    const NOUN: &'static str = "versions";
    const COLUMNS: &'static [Column] = &[col("version", "VERSION"), col("devices", "DEVICES")];
    fn cells(&self) -> Vec<String> {
        vec![self.version.clone(), self.devices.to_string()]
    }
}

pub async fn run(cmd: SoftwareCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let SoftwareCommand::Search {
        name,
        version_below,
        county,
        school,
        limit,
        by_version,
    } = cmd;
    let api = ctx.connect().await?;
    let request = SearchSoftwareRequest {
        name,
        version_below: version_below.unwrap_or_default(),
        county_id: county.unwrap_or_default(),
        school_id: school.unwrap_or_default(),
        limit,
    };
    let found = api.inventory().search_software(request).await.reply(&api)?;
    if by_version {
        let mut rows: Vec<VersionRow> = found
            .devices_per_version
            .into_iter()
            .map(|(version, devices)| VersionRow { version, devices })
            .collect();
        rows.sort_by(|a, b| compare_versions(&a.version, &b.version));
        ui.list(&rows)?;
    } else {
        let rows: Vec<HitRow> = found.hits.iter().map(HitRow::from).collect();
        ui.list(&rows)?;
        if limit > 0 && rows.len() >= limit as usize {
            ui.note(&format!(
                "showing the first {limit} hits; raise --limit for more"
            ))?;
        }
    }
    Ok(())
}

/// Orders versions segment by segment, for a readable `--by-version` list:
/// the same comparison the server uses for `--version-below`.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    schoolfleet_standard::version::compare(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::assert_keys_match_columns;

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["10.0", "9.2", "128.0.1", "9.10", "1.1.1w", "3.0.2", "9.2"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            ["1.1.1w", "3.0.2", "9.2", "9.2", "9.10", "10.0", "128.0.1"]
        );
        assert_eq!(compare_versions("1.2", "1.2.1"), Ordering::Less);
    }

    #[test]
    fn rows_have_stable_keys() {
        assert_keys_match_columns(&HitRow::from(&SoftwareHit {
            device_id: "d1".into(),
            hostname: "kus012-pc07".into(),
            school_id: "kus012".into(),
            package_name: "firefox-esr".into(),
            version: "115.0".into(),
            source: "dpkg".into(),
        }));
        assert_keys_match_columns(&VersionRow {
            version: "115.0".into(),
            devices: 3,
        });
    }
}
