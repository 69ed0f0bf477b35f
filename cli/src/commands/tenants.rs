//! `county`, `school` and `class`: the tenant tree of the cooperation.

use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::{
    County, CreateCountyRequest, CreateDeviceClassRequest, CreateSchoolRequest, DeviceClass,
    ListCountiesRequest, ListDeviceClassesRequest, ListSchoolsRequest, School,
};
use serde::Serialize;

use super::Context;
use crate::args::{ClassCommand, CountyCommand, SchoolCommand};
use crate::client::Reply;
use crate::output::{self, Column, Record, Ui, col};

#[derive(Debug, Serialize)]
pub struct CountyRow {
    pub id: String,
    pub name: String,
    pub created_at: Option<String>,
}

impl From<&County> for CountyRow {
    fn from(c: &County) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            created_at: output::time_opt(c.created_at.as_ref()),
        }
    }
}

impl Record for CountyRow {
    const NOUN: &'static str = "counties";
    const COLUMNS: &'static [Column] = &[
        col("id", "ID"),
        col("name", "NAME"),
        col("created_at", "CREATED"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.created_at.clone().unwrap_or_default(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct SchoolRow {
    pub id: String,
    pub county_id: String,
    pub name: String,
    pub created_at: Option<String>,
}

impl From<&School> for SchoolRow {
    fn from(s: &School) -> Self {
        Self {
            id: s.id.clone(),
            county_id: s.county_id.clone(),
            name: s.name.clone(),
            created_at: output::time_opt(s.created_at.as_ref()),
        }
    }
}

impl Record for SchoolRow {
    const NOUN: &'static str = "schools";
    const COLUMNS: &'static [Column] = &[
        col("id", "ID"),
        col("county_id", "COUNTY"),
        col("name", "NAME"),
        col("created_at", "CREATED"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.county_id.clone(),
            self.name.clone(),
            self.created_at.clone().unwrap_or_default(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct ClassRow {
    pub id: String,
    pub label: String,
}

impl From<&DeviceClass> for ClassRow {
    fn from(c: &DeviceClass) -> Self {
        Self {
            id: c.id.clone(),
            label: c.label.clone(),
        }
    }
}

impl Record for ClassRow {
    const NOUN: &'static str = "device classes";
    const COLUMNS: &'static [Column] = &[col("id", "ID"), col("label", "LABEL")];
    fn cells(&self) -> Vec<String> {
        vec![self.id.clone(), self.label.clone()]
    }
}

pub async fn county(cmd: CountyCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        CountyCommand::Add { id, name } => {
            let county = api
                .tenants()
                .create_county(CreateCountyRequest { id, name })
                .await
                .reply(&api)?;
            let row = CountyRow::from(&county);
            ui.one(&row, |out| {
                writeln!(
                    out,
                    "Created county {} ({}).",
                    for_terminal(&row.id),
                    for_terminal(&row.name)
                )
            })?;
        }
        CountyCommand::List => {
            let list = api
                .tenants()
                .list_counties(ListCountiesRequest {})
                .await
                .reply(&api)?;
            let rows: Vec<CountyRow> = list.counties.iter().map(CountyRow::from).collect();
            ui.list(&rows)?;
        }
    }
    Ok(())
}

pub async fn school(cmd: SchoolCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        SchoolCommand::Add { id, county, name } => {
            let request = CreateSchoolRequest {
                id,
                county_id: county,
                name,
            };
            let school = api.tenants().create_school(request).await.reply(&api)?;
            let row = SchoolRow::from(&school);
            ui.one(&row, |out| {
                writeln!(
                    out,
                    "Created school {} ({}) in county {}.",
                    for_terminal(&row.id),
                    for_terminal(&row.name),
                    for_terminal(&row.county_id)
                )
            })?;
        }
        SchoolCommand::List { county } => {
            let request = ListSchoolsRequest {
                county_id: county.unwrap_or_default(),
            };
            let list = api.tenants().list_schools(request).await.reply(&api)?;
            let rows: Vec<SchoolRow> = list.schools.iter().map(SchoolRow::from).collect();
            ui.list(&rows)?;
        }
    }
    Ok(())
}

pub async fn class(cmd: ClassCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        ClassCommand::Add { id, label } => {
            let request = CreateDeviceClassRequest { id, label };
            let class = api
                .tenants()
                .create_device_class(request)
                .await
                .reply(&api)?;
            let row = ClassRow::from(&class);
            ui.one(&row, |out| {
                writeln!(
                    out,
                    "Created device class {} ({}).",
                    for_terminal(&row.id),
                    for_terminal(&row.label)
                )
            })?;
        }
        ClassCommand::List => {
            let list = api
                .tenants()
                .list_device_classes(ListDeviceClassesRequest {})
                .await
                .reply(&api)?;
            let rows: Vec<ClassRow> = list.device_classes.iter().map(ClassRow::from).collect();
            ui.list(&rows)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::assert_keys_match_columns;

    #[test]
    fn rows_have_stable_keys() {
        let county = County {
            id: "kus".into(),
            name: "Landkreis Kusel".into(),
            created_at: None,
        };
        assert_keys_match_columns(&CountyRow::from(&county));
        let school = School {
            id: "kus012".into(),
            county_id: "kus".into(),
            name: "Grundschule Schönenberg-Kübelberg".into(),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
        };
        let row = SchoolRow::from(&school);
        assert_keys_match_columns(&row);
        assert_eq!(row.created_at.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_keys_match_columns(&ClassRow::from(&DeviceClass {
            id: "schueler-pc".into(),
            label: "Schüler-PC".into(),
        }));
    }
}
