//! `devices` and `device show|history|reports|retire|revoke|refresh`.

use std::collections::HashSet;

use anyhow::bail;
use chrono::{DateTime, Utc};
use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::{
    Device, DeviceDetail, DeviceRef, DeviceStatus, DiskMedia, GetDeviceRequest, Inventory,
    InventoryChange, InventoryReportSummary, ListDevicesRequest, ListInventoryChangesRequest,
    ListInventoryReportsRequest, Tristate,
};
use serde::Serialize;

use super::Context;
use crate::args::{DeviceCommand, DevicesArgs};
use crate::client::{Api, Reply};
use crate::output::{
    self, Column, Record, Section, Ui, col, gibibytes, gigabytes, time_opt, tristate,
    tristate_text, wide, yes_no,
};

/// Devices per page when listing; the CLI fetches all pages.
const PAGE_SIZE: u32 = 500;

/// Packages `device show` lists without `--software`.
const SOFTWARE_PREVIEW: usize = 20;

pub fn status_name(status: i32) -> &'static str {
    match DeviceStatus::try_from(status) {
        Ok(DeviceStatus::Active) => "active",
        Ok(DeviceStatus::Retired) => "retired",
        Ok(DeviceStatus::Revoked) => "revoked",
        _ => "unknown",
    }
}

fn media_name(media: i32) -> &'static str {
    match DiskMedia::try_from(media) {
        Ok(DiskMedia::Hdd) => "hdd",
        Ok(DiskMedia::Ssd) => "ssd",
        Ok(DiskMedia::Nvme) => "nvme",
        _ => "unknown",
    }
}

/// Hex digits of the short id: the server accepts them as a device name.
const SHORT_ID_LEN: usize = 8;

/// The last hex digits of a device id (its random part; a UUIDv7 begins
/// with the time, which devices enrolled together share).
pub fn short_id(id: &str) -> String {
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    hex[hex.len().saturating_sub(SHORT_ID_LEN)..].to_owned()
}

/// One line of `devices`.
#[derive(Debug, Serialize)]
pub struct DeviceRow {
    /// The end of the id: unique in practice, and accepted wherever a
    /// device is named (host names can repeat).
    pub short_id: String,
    pub hostname: String,
    pub status: &'static str,
    pub online: bool,
    pub school_id: String,
    pub device_class: String,
    pub os_name: String,
    pub os_version: String,
    pub last_seen: Option<String>,
    pub id: String,
    pub county_id: String,
    pub enrolled_at: Option<String>,
    pub inventory_at: Option<String>,
    pub vendor: String,
    pub model: String,
    pub serial_number: String,
    pub memory_total_bytes: u64,
    pub ip_addresses: Vec<String>,
    pub agent_version: String,
}

impl From<&Device> for DeviceRow {
    fn from(d: &Device) -> Self {
        Self {
            short_id: short_id(&d.id),
            hostname: d.hostname.clone(),
            status: status_name(d.status),
            online: d.online,
            school_id: d.school_id.clone(),
            device_class: d.device_class.clone(),
            os_name: d.os_name.clone(),
            os_version: d.os_version.clone(),
            last_seen: time_opt(d.last_seen.as_ref()),
            id: d.id.clone(),
            county_id: d.county_id.clone(),
            enrolled_at: time_opt(d.enrolled_at.as_ref()),
            inventory_at: time_opt(d.inventory_at.as_ref()),
            vendor: d.vendor.clone(),
            model: d.model.clone(),
            serial_number: d.serial_number.clone(),
            memory_total_bytes: d.memory_total_bytes,
            ip_addresses: d.ip_addresses.clone(),
            agent_version: d.agent_version.clone(),
        }
    }
}

impl Record for DeviceRow {
    const NOUN: &'static str = "devices";
    const COLUMNS: &'static [Column] = &[
        col("short_id", "ID"),
        col("hostname", "HOSTNAME"),
        col("status", "STATUS"),
        col("online", "ONLINE"),
        col("school_id", "SCHOOL"),
        col("device_class", "CLASS"),
        col("os_name", "OS"),
        col("os_version", "VERSION"),
        col("last_seen", "LAST SEEN"),
        wide("id", "DEVICE ID"),
        wide("county_id", "COUNTY"),
        wide("enrolled_at", "ENROLLED"),
        wide("inventory_at", "INVENTORY"),
        wide("vendor", "VENDOR"),
        wide("model", "MODEL"),
        wide("serial_number", "SERIAL"),
        wide("memory_total_bytes", "MEMORY BYTES"),
        wide("ip_addresses", "IP ADDRESSES"),
        wide("agent_version", "AGENT"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.short_id.clone(),
            self.hostname.clone(),
            self.status.to_owned(),
            yes_no(self.online),
            self.school_id.clone(),
            self.device_class.clone(),
            self.os_name.clone(),
            self.os_version.clone(),
            self.last_seen.clone().unwrap_or_default(),
            self.id.clone(),
            self.county_id.clone(),
            self.enrolled_at.clone().unwrap_or_default(),
            self.inventory_at.clone().unwrap_or_default(),
            self.vendor.clone(),
            self.model.clone(),
            self.serial_number.clone(),
            self.memory_total_bytes.to_string(),
            self.ip_addresses.join(" "),
            self.agent_version.clone(),
        ]
    }
}

/// The first page's request for `devices` with these filters.
pub fn list_request(args: &DevicesArgs) -> ListDevicesRequest {
    let online = if args.online {
        Tristate::Yes
    } else if args.offline {
        Tristate::No
    } else {
        Tristate::Unknown
    };
    ListDevicesRequest {
        county_id: args.county.clone().unwrap_or_default(),
        school_id: args.school.clone().unwrap_or_default(),
        device_class: args.class.clone().unwrap_or_default(),
        online: online as i32,
        seen_within_seconds: args.seen_within.map_or(0, |d| d.as_secs()),
        not_seen_for_seconds: args.not_seen_for.map_or(0, |d| d.as_secs()),
        include_retired: args.all,
        hostname_contains: args.host.clone().unwrap_or_default(),
        page_size: PAGE_SIZE,
        page_token: String::new(),
    }
}

pub async fn list(args: DevicesArgs, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    let devices = fetch_all(&api, list_request(&args)).await?;
    let rows: Vec<DeviceRow> = devices.iter().map(DeviceRow::from).collect();
    ui.list(&rows)?;
    Ok(())
}

/// Follows `next_page_token` until the server says there is no more.
pub async fn fetch_all(api: &Api, mut request: ListDevicesRequest) -> anyhow::Result<Vec<Device>> {
    let mut devices = Vec::new();
    let mut tokens = HashSet::new();
    loop {
        let page = api
            .devices()
            .list_devices(request.clone())
            .await
            .reply(api)?;
        devices.extend(page.devices);
        if page.next_page_token.is_empty() {
            return Ok(devices);
        }
        // A server bug must not turn into an endless loop.
        if !tokens.insert(page.next_page_token.clone()) {
            bail!("the server returned the same page token twice; stopping");
        }
        request.page_token = page.next_page_token;
    }
}

pub async fn run(cmd: DeviceCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    // Refuse before touching the network when nobody could confirm.
    if let DeviceCommand::Revoke { yes: false, .. } = cmd
        && !ui.interactive
    {
        bail!("refusing to revoke without confirmation: not a terminal; pass --yes");
    }
    if let DeviceCommand::Delete { yes: false, .. } = cmd
        && !ui.interactive
    {
        bail!("refusing to delete without confirmation: not a terminal; pass --yes");
    }
    let api = ctx.connect().await?;
    match cmd {
        DeviceCommand::Show { device, software } => {
            let detail = get(&api, &device).await?;
            let report = DeviceReport::new(&detail);
            let open_tickets = super::tickets::open_tickets_of(&api, &detail).await;
            match ui.format {
                output::OutputFormat::Json => {
                    let mut value = serde_json::to_value(&report)?;
                    if let (Some(map), Some(tickets)) = (value.as_object_mut(), &open_tickets) {
                        map.insert("open_tickets".into(), serde_json::to_value(tickets)?);
                    }
                    output::write_json(ui.out, &value)?
                }
                output::OutputFormat::Csv => {
                    bail!("`device show` prints sections; use --output table or json")
                }
                output::OutputFormat::Table => {
                    let limit = if software {
                        None
                    } else {
                        Some(SOFTWARE_PREVIEW)
                    };
                    ui.out
                        .write_all(report.render(Utc::now(), limit).as_bytes())?;
                    if let Some(tickets) = &open_tickets {
                        ui.out
                            .write_all(super::tickets::render_open(tickets).as_bytes())?;
                    }
                }
            }
        }
        DeviceCommand::History { device, limit } => {
            let request = ListInventoryChangesRequest { device, limit };
            let changes = api
                .devices()
                .list_inventory_changes(request)
                .await
                .reply(&api)?;
            let rows: Vec<ChangeRow> = changes.changes.iter().map(ChangeRow::from).collect();
            ui.list(&rows)?;
        }
        DeviceCommand::Reports { device, limit } => {
            let request = ListInventoryReportsRequest { device, limit };
            let reports = api
                .devices()
                .list_inventory_reports(request)
                .await
                .reply(&api)?;
            let rows: Vec<ReportRow> = reports.reports.iter().map(ReportRow::from).collect();
            ui.list(&rows)?;
        }
        DeviceCommand::Retire { device } => {
            let retired = api
                .devices()
                .retire_device(DeviceRef { device })
                .await
                .reply(&api)?;
            let row = DeviceRow::from(&retired);
            ui.one(&row, |out| {
                writeln!(
                    out,
                    "Retired {} (school {}). Enrolling its agent again (it proves itself with its key) or `enroll-token create --reinstall` reactivates it.",
                    for_terminal(&row.hostname),
                    for_terminal(&row.school_id)
                )
            })?;
        }
        DeviceCommand::Revoke { device, yes } => {
            // Resolve the name first and revoke by id: the person confirms
            // exactly the device that gets revoked.
            let detail = get(&api, &device).await?;
            let Some(target) = detail.device else {
                bail!("the server sent no device")
            };
            if !yes {
                let question = format!(
                    "Revoke {} (id {}, school {}, class {})? The device is refused until an admin deletes it.",
                    target.hostname, target.id, target.school_id, target.device_class
                );
                if !ui.confirm(&question)? {
                    bail!(
                        "aborted: {} was not revoked",
                        for_terminal(&target.hostname)
                    );
                }
            }
            let request = DeviceRef {
                device: target.id.clone(),
            };
            let revoked = api.devices().revoke_device(request).await.reply(&api)?;
            let row = DeviceRow::from(&revoked);
            ui.one(&row, |out| {
                writeln!(
                    out,
                    "Revoked {} (id {}). Its certificate is no longer accepted.",
                    for_terminal(&row.hostname),
                    for_terminal(&row.id)
                )
            })?;
        }
        DeviceCommand::Delete { device, yes } => {
            // Resolve the name first and delete by id, like revoke.
            let detail = get(&api, &device).await?;
            let Some(target) = detail.device else {
                bail!("the server sent no device")
            };
            if !yes {
                let question = format!(
                    "Delete {} (id {}, school {}) with its inventory, history and reports? This cannot be undone.",
                    target.hostname, target.id, target.school_id
                );
                if !ui.confirm(&question)? {
                    bail!(
                        "aborted: {} was not deleted",
                        for_terminal(&target.hostname)
                    );
                }
            }
            let answer = api
                .devices()
                .delete_device(DeviceRef {
                    device: target.id.clone(),
                })
                .await
                .reply(&api)?;
            ui.done(&format!(
                "Deleted {} (id {}).",
                for_terminal(&target.hostname),
                for_terminal(&answer.device_id)
            ))?;
        }
        DeviceCommand::Refresh { device } => {
            let name = device.clone();
            let answer = api
                .devices()
                .request_inventory(DeviceRef { device })
                .await
                .reply(&api)?;
            let name = for_terminal(&name);
            if answer.delivered {
                ui.done(&format!(
                    "Asked {name} for its inventory; see `schoolfleet device show {name}` in a minute."
                ))?;
            } else {
                ui.done(&format!(
                    "{name} is not connected to this server right now; it reports at its next connection."
                ))?;
            }
        }
        DeviceCommand::Adopt { device, replaces } => {
            let adopted = api
                .devices()
                .adopt_device(schoolfleet_proto::v1::AdoptDeviceRequest {
                    device: device.clone(),
                    replaces,
                })
                .await
                .reply(&api)?;
            let row = DeviceRow::from(&adopted);
            ui.one(&row, |out| {
                writeln!(
                    out,
                    "Device {} ({}) now carries the enrolment of {}; its id and history are kept. \
                     The agent reconnects as {}.",
                    for_terminal(&adopted.id),
                    for_terminal(&adopted.hostname),
                    for_terminal(&device),
                    for_terminal(&adopted.id),
                )
            })?;
        }
    }
    Ok(())
}

async fn get(api: &Api, device: &str) -> anyhow::Result<DeviceDetail> {
    let request = GetDeviceRequest {
        device: device.to_owned(),
    };
    api.devices().get_device(request).await.reply(api)
}

/// One line of `device history`.
#[derive(Debug, Serialize)]
pub struct ChangeRow {
    pub at: Option<String>,
    pub kind: String,
    pub subject: String,
    pub old_value: String,
    pub new_value: String,
    pub report_id: String,
}

impl From<&InventoryChange> for ChangeRow {
    fn from(c: &InventoryChange) -> Self {
        Self {
            at: time_opt(c.at.as_ref()),
            kind: c.kind.clone(),
            subject: c.subject.clone(),
            old_value: c.old_value.clone(),
            new_value: c.new_value.clone(),
            report_id: c.report_id.clone(),
        }
    }
}

impl Record for ChangeRow {
    const NOUN: &'static str = "inventory changes";
    const COLUMNS: &'static [Column] = &[
        col("at", "AT"),
        col("kind", "KIND"),
        col("subject", "SUBJECT"),
        col("old_value", "OLD"),
        col("new_value", "NEW"),
        wide("report_id", "REPORT"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.at.clone().unwrap_or_default(),
            self.kind.clone(),
            self.subject.clone(),
            self.old_value.clone(),
            self.new_value.clone(),
            self.report_id.clone(),
        ]
    }
}

/// One line of `device reports`.
#[derive(Debug, Serialize)]
pub struct ReportRow {
    pub report_id: String,
    pub collected_at: Option<String>,
    pub received_at: Option<String>,
    pub reason: String,
    pub content_hash: String,
}

impl From<&InventoryReportSummary> for ReportRow {
    fn from(r: &InventoryReportSummary) -> Self {
        Self {
            report_id: r.report_id.clone(),
            collected_at: time_opt(r.collected_at.as_ref()),
            received_at: time_opt(r.received_at.as_ref()),
            reason: r.reason.clone(),
            content_hash: r.content_hash.clone(),
        }
    }
}

impl Record for ReportRow {
    const NOUN: &'static str = "inventory reports";
    const COLUMNS: &'static [Column] = &[
        col("report_id", "REPORT"),
        col("collected_at", "COLLECTED"),
        col("received_at", "RECEIVED"),
        col("reason", "REASON"),
        wide("content_hash", "CONTENT HASH"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.report_id.clone(),
            self.collected_at.clone().unwrap_or_default(),
            self.received_at.clone().unwrap_or_default(),
            self.reason.clone(),
            self.content_hash.clone(),
        ]
    }
}

/// `device show`: the device and its inventory in sections. The same struct
/// is the JSON object, so table and JSON cannot drift apart.
#[derive(Debug, Serialize)]
pub struct DeviceReport {
    pub overview: Overview,
    pub operating_system: Option<OsView>,
    pub hardware: Option<HardwareView>,
    pub firmware: Option<FirmwareView>,
    pub disks: Vec<DiskView>,
    pub filesystems: Vec<FilesystemView>,
    pub network: Vec<NicView>,
    pub security: Option<SecurityView>,
    pub software: SoftwareView,
    pub collector_errors: Vec<CollectorErrorView>,
    pub windows11: Option<Windows11View>,
}

#[derive(Debug, Serialize)]
pub struct Overview {
    pub id: String,
    pub hostname: String,
    pub status: &'static str,
    pub online: bool,
    pub county_id: String,
    pub school_id: String,
    pub device_class: String,
    pub last_seen: Option<String>,
    pub enrolled_at: Option<String>,
    pub inventory_at: Option<String>,
    pub agent_version: String,
    /// The consent floor the agent enforces (`--consent-min`), as it
    /// reported it; empty when unknown.
    pub agent_consent_min: String,
    pub architecture: String,
    pub boot_time: Option<String>,
    pub last_update_time: Option<String>,
    /// Active Directory domain, or the workgroup (Windows).
    pub domain: String,
    pub workgroup: String,
    pub inventory_hash: String,
    /// False until the device sent its first inventory.
    pub has_inventory: bool,
}

#[derive(Debug, Serialize)]
pub struct OsView {
    pub family: String,
    pub name: String,
    pub version: String,
    pub edition: String,
    pub kernel_version: String,
    /// "23H2" and the like (Windows).
    pub display_version: String,
}

#[derive(Debug, Serialize)]
pub struct HardwareView {
    pub vendor: String,
    pub model: String,
    pub serial_number: String,
    pub system_uuid: String,
    pub bios_vendor: String,
    pub bios_version: String,
    pub bios_date: String,
    pub cpu_model: String,
    pub cpu_physical_cores: u32,
    pub cpu_logical_cores: u32,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct FirmwareView {
    pub boot_mode: String,
    /// `null` where the platform does not say.
    pub secure_boot: Option<bool>,
    pub tpm_present: bool,
    pub tpm_version: String,
    pub secure_boot_capable: Option<bool>,
}

/// Windows 11's minimum (Windows agents only).
#[derive(Debug, Serialize)]
pub struct Windows11View {
    pub ready: Option<bool>,
    pub tpm_2: Option<bool>,
    pub secure_boot_capable: Option<bool>,
    pub cpu_supported: Option<bool>,
    pub memory: Option<bool>,
    pub storage: Option<bool>,
    pub blockers: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DiskView {
    pub name: String,
    pub model: String,
    pub serial_number: String,
    pub size_bytes: u64,
    pub media: &'static str,
    pub removable: bool,
    pub system: bool,
}

#[derive(Debug, Serialize)]
pub struct FilesystemView {
    pub mount_point: String,
    pub device: String,
    pub fs_type: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub encrypted: bool,
    pub encryption: String,
}

#[derive(Debug, Serialize)]
pub struct NicView {
    pub name: String,
    pub mac_address: String,
    pub ip_addresses: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SecurityView {
    pub system_disk_encrypted: Option<bool>,
    pub antivirus: Vec<AntivirusView>,
}

#[derive(Debug, Serialize)]
pub struct AntivirusView {
    pub product: String,
    pub realtime_protection: Option<bool>,
    pub signatures_updated: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SoftwareView {
    pub count: usize,
    /// Sorted by name; always complete in JSON.
    pub packages: Vec<PackageView>,
}

#[derive(Debug, Serialize)]
pub struct PackageView {
    pub name: String,
    pub version: String,
    pub source: String,
    pub architecture: String,
    pub publisher: String,
    /// YYYY-MM-DD where the platform records it.
    pub install_date: String,
}

#[derive(Debug, Serialize)]
pub struct CollectorErrorView {
    pub collector: String,
    pub message: String,
}

impl DeviceReport {
    pub fn new(detail: &DeviceDetail) -> Self {
        let device = detail.device.clone().unwrap_or_default();
        let has_inventory = detail.inventory.is_some();
        let inv = detail.inventory.clone().unwrap_or_default();
        let Inventory {
            system,
            os,
            hardware,
            firmware,
            disks,
            filesystems,
            network_interfaces,
            software,
            security,
            collector_errors,
            windows11,
        } = inv;
        let system = system.unwrap_or_default();

        let mut packages: Vec<PackageView> = software
            .into_iter()
            .map(|p| PackageView {
                name: p.name,
                version: p.version,
                source: p.source,
                architecture: p.architecture,
                publisher: p.publisher,
                install_date: p.install_date,
            })
            .collect();
        packages.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then_with(|| a.version.cmp(&b.version))
        });

        Self {
            overview: Overview {
                agent_version: if device.agent_version.is_empty() {
                    system.agent_version.clone()
                } else {
                    device.agent_version.clone()
                },
                agent_consent_min: device.agent_consent_min.clone(),
                id: device.id,
                hostname: device.hostname,
                status: status_name(device.status),
                online: device.online,
                county_id: device.county_id,
                school_id: device.school_id,
                device_class: device.device_class,
                last_seen: time_opt(device.last_seen.as_ref()),
                enrolled_at: time_opt(device.enrolled_at.as_ref()),
                inventory_at: time_opt(device.inventory_at.as_ref()),
                architecture: system.architecture,
                boot_time: time_opt(system.boot_time.as_ref()),
                last_update_time: time_opt(system.last_update_time.as_ref()),
                domain: system.domain,
                workgroup: system.workgroup,
                inventory_hash: detail.inventory_hash.clone(),
                has_inventory,
            },
            operating_system: os.map(|o| OsView {
                family: o.family,
                name: o.name,
                version: o.version,
                edition: o.edition,
                kernel_version: o.kernel_version,
                display_version: o.display_version,
            }),
            hardware: hardware.map(|h| HardwareView {
                vendor: h.vendor,
                model: h.model,
                serial_number: h.serial_number,
                system_uuid: h.system_uuid,
                bios_vendor: h.bios_vendor,
                bios_version: h.bios_version,
                bios_date: h.bios_date,
                cpu_model: h.cpu_model,
                cpu_physical_cores: h.cpu_physical_cores,
                cpu_logical_cores: h.cpu_logical_cores,
                memory_total_bytes: h.memory_total_bytes,
                memory_available_bytes: h.memory_available_bytes,
            }),
            firmware: firmware.map(|f| FirmwareView {
                boot_mode: f.boot_mode,
                secure_boot: tristate(f.secure_boot),
                tpm_present: f.tpm_present,
                tpm_version: f.tpm_version,
                secure_boot_capable: tristate(f.secure_boot_capable),
            }),
            disks: disks
                .into_iter()
                .map(|d| DiskView {
                    media: media_name(d.media),
                    name: d.name,
                    model: d.model,
                    serial_number: d.serial_number,
                    size_bytes: d.size_bytes,
                    removable: d.removable,
                    system: d.system,
                })
                .collect(),
            filesystems: filesystems
                .into_iter()
                .map(|f| FilesystemView {
                    mount_point: f.mount_point,
                    device: f.device,
                    fs_type: f.fs_type,
                    total_bytes: f.total_bytes,
                    available_bytes: f.available_bytes,
                    encrypted: f.encrypted,
                    encryption: f.encryption,
                })
                .collect(),
            network: network_interfaces
                .into_iter()
                .map(|n| NicView {
                    name: n.name,
                    mac_address: n.mac_address,
                    ip_addresses: n.ip_addresses,
                })
                .collect(),
            security: security.map(|s| SecurityView {
                system_disk_encrypted: tristate(s.system_disk_encrypted),
                antivirus: s
                    .antivirus
                    .into_iter()
                    .map(|a| AntivirusView {
                        product: a.product,
                        realtime_protection: tristate(a.realtime_protection),
                        signatures_updated: time_opt(a.signatures_updated.as_ref()),
                    })
                    .collect(),
            }),
            software: SoftwareView {
                count: packages.len(),
                packages,
            },
            collector_errors: collector_errors
                .into_iter()
                .map(|e| CollectorErrorView {
                    collector: e.collector,
                    message: e.message,
                })
                .collect(),
            windows11: windows11.map(|w| Windows11View {
                ready: tristate(w.ready),
                tpm_2: tristate(w.tpm_2),
                secure_boot_capable: tristate(w.secure_boot_capable),
                cpu_supported: tristate(w.cpu_supported),
                memory: tristate(w.memory),
                storage: tristate(w.storage),
                blockers: w.blockers,
            }),
        }
    }

    /// The human form. `software_limit` caps the package list (`None` = all).
    /// Every value goes through `for_terminal` inside [`Section`].
    pub fn render(&self, now: DateTime<Utc>, software_limit: Option<usize>) -> String {
        let mut sections = vec![self.overview_section(now)];
        if !self.overview.has_inventory {
            let mut s = Section::new("Inventory");
            s.note("No inventory received yet.");
            sections.push(s);
            return join(&sections);
        }
        sections.push(self.os_section());
        sections.push(self.hardware_section());
        sections.push(self.firmware_section());
        sections.push(self.disks_section());
        sections.push(self.filesystems_section());
        sections.push(self.network_section());
        sections.push(self.security_section());
        if self.windows11.is_some() {
            sections.push(self.windows11_section());
        }
        sections.push(self.software_section(software_limit));
        sections.push(self.collector_errors_section());
        join(&sections)
    }

    fn overview_section(&self, now: DateTime<Utc>) -> Section {
        let o = &self.overview;
        let with_age = |t: &Option<String>| -> String {
            let parsed = t
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            match parsed {
                Some(p) => format!(
                    "{} ({})",
                    t.as_deref().unwrap_or_default(),
                    output::age(now, p.into())
                ),
                None => String::new(),
            }
        };
        let mut s = Section::new("Overview");
        s.field("Hostname", o.hostname.clone())
            .field("Id", o.id.clone())
            .field("Status", o.status)
            .field("Online", yes_no(o.online))
            .field("County", o.county_id.clone())
            .field("School", o.school_id.clone())
            .field("Class", o.device_class.clone())
            .field("Last seen", with_age(&o.last_seen))
            .field("Enrolled", with_age(&o.enrolled_at))
            .field("Inventory from", with_age(&o.inventory_at))
            .field("Agent version", o.agent_version.clone())
            .field(
                "Consent floor",
                if o.agent_consent_min.is_empty() {
                    "unknown (agent did not report one)".to_owned()
                } else {
                    format!("{} (agent --consent-min)", o.agent_consent_min)
                },
            )
            .field("Architecture", o.architecture.clone())
            .field("Booted", with_age(&o.boot_time))
            .field("Last update", with_age(&o.last_update_time))
            .field("Domain", o.domain.clone())
            .field("Workgroup", o.workgroup.clone());
        s
    }

    fn os_section(&self) -> Section {
        let mut s = Section::new("Operating system");
        match &self.operating_system {
            Some(os) => {
                s.field("Name", os.name.clone())
                    .field("Version", os.version.clone())
                    .field("Edition", os.edition.clone())
                    .field("Display version", os.display_version.clone())
                    .field("Family", os.family.clone())
                    .field("Kernel", os.kernel_version.clone());
            }
            None => {
                s.note(NOT_REPORTED);
            }
        }
        s
    }

    fn hardware_section(&self) -> Section {
        let mut s = Section::new("Hardware");
        let Some(h) = &self.hardware else {
            s.note(NOT_REPORTED);
            return s;
        };
        let bios = [h.bios_vendor.as_str(), h.bios_version.as_str()]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let bios = if h.bios_date.is_empty() || bios.is_empty() {
            bios
        } else {
            format!("{bios} ({})", h.bios_date)
        };
        let cores = match (h.cpu_physical_cores, h.cpu_logical_cores) {
            (0, 0) => String::new(),
            (p, l) if p == l || l == 0 => format!("{p} cores"),
            (0, l) => format!("{l} threads"),
            (p, l) => format!("{p} cores, {l} threads"),
        };
        let cpu = match (h.cpu_model.is_empty(), cores.is_empty()) {
            (false, false) => format!("{} ({cores})", h.cpu_model),
            (false, true) => h.cpu_model.clone(),
            (true, _) => cores,
        };
        let memory = match (
            gibibytes(h.memory_total_bytes),
            gibibytes(h.memory_available_bytes),
        ) {
            (total, avail) if !total.is_empty() && !avail.is_empty() => {
                format!("{total} ({avail} available)")
            }
            (total, _) => total,
        };
        s.field("Vendor", h.vendor.clone())
            .field("Model", h.model.clone())
            .field("Serial number", h.serial_number.clone())
            .field("System UUID", h.system_uuid.clone())
            .field("BIOS", bios)
            .field("CPU", cpu)
            .field("Memory", memory);
        s
    }

    fn firmware_section(&self) -> Section {
        let mut s = Section::new("Firmware");
        let Some(f) = &self.firmware else {
            s.note(NOT_REPORTED);
            return s;
        };
        let tpm = match (f.tpm_present, f.tpm_version.is_empty()) {
            (false, _) => "no".to_owned(),
            (true, true) => "yes".to_owned(),
            (true, false) => format!("yes, version {}", f.tpm_version),
        };
        s.field("Boot mode", f.boot_mode.to_uppercase())
            .field("Secure Boot", tristate_text(f.secure_boot))
            .field(
                "Secure Boot capable",
                match f.secure_boot_capable {
                    Some(_) => tristate_text(f.secure_boot_capable),
                    None => String::new(),
                },
            )
            .field("TPM", tpm);
        s
    }

    fn windows11_section(&self) -> Section {
        let mut s = Section::new("Windows 11 readiness");
        let Some(w) = &self.windows11 else {
            s.note(NOT_REPORTED);
            return s;
        };
        s.field("Ready", tristate_text(w.ready))
            .field("TPM 2.0", tristate_text(w.tpm_2))
            .field("Secure Boot capable", tristate_text(w.secure_boot_capable))
            .field("CPU supported", tristate_text(w.cpu_supported))
            .field("Memory (4 GB)", tristate_text(w.memory))
            .field("Storage (64 GB)", tristate_text(w.storage))
            .field("Blockers", w.blockers.join("; "));
        s
    }

    fn disks_section(&self) -> Section {
        let rows = self
            .disks
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    d.model.clone(),
                    d.serial_number.clone(),
                    gigabytes(d.size_bytes),
                    d.media.to_owned(),
                    yes_no(d.removable),
                    yes_no(d.system),
                ]
            })
            .collect();
        let mut s = Section::new("Disks");
        s.table(
            vec![
                "NAME",
                "MODEL",
                "SERIAL",
                "SIZE",
                "MEDIA",
                "REMOVABLE",
                "SYSTEM",
            ],
            rows,
        );
        s
    }

    fn filesystems_section(&self) -> Section {
        let rows = self
            .filesystems
            .iter()
            .map(|f| {
                let encrypted = match (f.encrypted, f.encryption.is_empty()) {
                    (false, _) => "no".to_owned(),
                    (true, true) => "yes".to_owned(),
                    (true, false) => format!("yes ({})", f.encryption),
                };
                vec![
                    f.mount_point.clone(),
                    f.device.clone(),
                    f.fs_type.clone(),
                    gigabytes(f.total_bytes),
                    gigabytes(f.available_bytes),
                    encrypted,
                ]
            })
            .collect();
        let mut s = Section::new("Filesystems");
        s.table(
            vec!["MOUNT", "DEVICE", "TYPE", "SIZE", "FREE", "ENCRYPTED"],
            rows,
        );
        s
    }

    fn network_section(&self) -> Section {
        let rows = self
            .network
            .iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    n.mac_address.clone(),
                    n.ip_addresses.join(" "),
                ]
            })
            .collect();
        let mut s = Section::new("Network");
        s.table(vec!["INTERFACE", "MAC", "ADDRESSES"], rows);
        s
    }

    fn security_section(&self) -> Section {
        let mut s = Section::new("Security");
        let Some(sec) = &self.security else {
            s.note(NOT_REPORTED);
            return s;
        };
        s.field(
            "System disk encrypted",
            tristate_text(sec.system_disk_encrypted),
        );
        if !sec.antivirus.is_empty() {
            let rows = sec
                .antivirus
                .iter()
                .map(|a| {
                    vec![
                        a.product.clone(),
                        tristate_text(a.realtime_protection),
                        a.signatures_updated.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            s.table(vec!["ANTIVIRUS", "REALTIME", "SIGNATURES UPDATED"], rows);
        }
        s
    }

    fn software_section(&self, limit: Option<usize>) -> Section {
        let count = self.software.count;
        let shown = limit.unwrap_or(count).min(count);
        let rows = self.software.packages[..shown]
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.version.clone(),
                    p.source.clone(),
                    p.architecture.clone(),
                ]
            })
            .collect();
        let noun = if count == 1 { "package" } else { "packages" };
        let mut s = Section::new(format!("Software ({count} {noun})"));
        s.table(vec!["NAME", "VERSION", "SOURCE", "ARCH"], rows);
        if shown < count {
            s.note(format!(
                "... and {} more; use --software to list all",
                count - shown
            ));
        }
        s
    }

    fn collector_errors_section(&self) -> Section {
        let rows = self
            .collector_errors
            .iter()
            .map(|e| vec![e.collector.clone(), e.message.clone()])
            .collect();
        let mut s = Section::new("Collector errors");
        s.table(vec!["COLLECTOR", "MESSAGE"], rows);
        s
    }
}

const NOT_REPORTED: &str = "(not reported; see collector errors)";

fn join(sections: &[Section]) -> String {
    sections
        .iter()
        .map(Section::render)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_a_short_id_that_is_the_end_of_the_id() {
        assert_eq!(short_id("0193f2c1-7a4b-7c3d-9e8f-0123456789ab"), "456789ab");
        let device = Device {
            id: "0193f2c1-7a4b-7c3d-9e8f-0123456789ab".into(),
            hostname: "kus012-pc07".into(),
            ..Default::default()
        };
        let row = DeviceRow::from(&device);
        let (titles, cells) = crate::output::table_of(std::slice::from_ref(&row));
        assert_eq!(titles[0], "ID");
        assert_eq!(cells[0][0], "456789ab");
    }
    use crate::output::assert_keys_match_columns;
    use prost_types::Timestamp;
    use schoolfleet_proto::v1::{
        CollectorError, Disk, Filesystem, Firmware, Hardware, NetworkInterface, OperatingSystem,
        SoftwarePackage, SystemInfo,
    };

    const NOW: i64 = 1_800_000_000;

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    fn device(hostname: &str) -> Device {
        Device {
            id: "0193a5e0-0000-7000-8000-000000000001".into(),
            hostname: hostname.into(),
            county_id: "kus".into(),
            school_id: "kus012".into(),
            device_class: "schueler-pc".into(),
            status: DeviceStatus::Active as i32,
            online: true,
            last_seen: ts(NOW - 300),
            enrolled_at: ts(NOW - 86400 * 30),
            inventory_at: ts(NOW - 3600),
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            memory_total_bytes: 8 << 30,
            ip_addresses: vec!["10.12.0.7".into(), "fe80::1".into()],
            agent_version: "0.1.0".into(),
            ..Default::default()
        }
    }

    fn detail(hostname: &str, packages: usize) -> DeviceDetail {
        DeviceDetail {
            device: Some(device(hostname)),
            inventory: Some(Inventory {
                system: Some(SystemInfo {
                    hostname: hostname.into(),
                    architecture: "x86_64".into(),
                    ..Default::default()
                }),
                os: Some(OperatingSystem {
                    family: "linux".into(),
                    name: "Debian GNU/Linux".into(),
                    version: "12".into(),
                    ..Default::default()
                }),
                hardware: Some(Hardware {
                    vendor: "Fujitsu".into(),
                    model: "ESPRIMO Q958".into(),
                    serial_number: "YM8K012345".into(),
                    cpu_model: "Intel Core i5-9500T".into(),
                    cpu_physical_cores: 6,
                    cpu_logical_cores: 6,
                    memory_total_bytes: 16 << 30,
                    ..Default::default()
                }),
                firmware: Some(Firmware {
                    boot_mode: "uefi".into(),
                    secure_boot: Tristate::Yes as i32,
                    tpm_present: true,
                    tpm_version: "2.0".into(),
                    ..Default::default()
                }),
                disks: vec![Disk {
                    name: "nvme0n1".into(),
                    model: "Samsung PM981".into(),
                    size_bytes: 256_060_514_304,
                    media: DiskMedia::Nvme as i32,
                    system: true,
                    ..Default::default()
                }],
                filesystems: vec![Filesystem {
                    mount_point: "/".into(),
                    device: "/dev/mapper/root".into(),
                    fs_type: "ext4".into(),
                    total_bytes: 250_000_000_000,
                    available_bytes: 100_000_000_000,
                    encrypted: true,
                    encryption: "luks".into(),
                }],
                network_interfaces: vec![NetworkInterface {
                    name: "eno1".into(),
                    mac_address: "00:19:99:aa:bb:cc".into(),
                    ip_addresses: vec!["10.12.0.7".into()],
                }],
                software: (0..packages)
                    .rev()
                    .map(|i| SoftwarePackage {
                        name: format!("pkg{i:03}"),
                        version: "1.0".into(),
                        source: "dpkg".into(),
                        ..Default::default()
                    })
                    .collect(),
                security: None,
                collector_errors: vec![CollectorError {
                    collector: "security".into(),
                    message: "not supported on linux".into(),
                }],
                ..Default::default()
            }),
            inventory_hash: "abc".into(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 0).unwrap()
    }

    #[test]
    fn show_renders_all_sections() {
        let text = DeviceReport::new(&detail("kus012-pc07", 25)).render(now(), Some(20));
        for heading in [
            "Overview\n",
            "Operating system\n",
            "Hardware\n",
            "Firmware\n",
            "Disks\n",
            "Filesystems\n",
            "Network\n",
            "Security\n",
            "Software (25 packages)\n",
            "Collector errors\n",
        ] {
            assert!(text.contains(heading), "missing {heading:?} in\n{text}");
        }
        assert!(
            text.contains("  Last seen:       2027-01-15T07:55:00Z (5 min ago)\n"),
            "{text}"
        );
        assert!(text.contains("  Memory:         16.0 GiB\n"), "{text}");
        assert!(
            text.contains("  CPU:            Intel Core i5-9500T (6 cores)\n"),
            "{text}"
        );
        assert!(
            text.contains("  Secure Boot:  yes\n  TPM:          yes, version 2.0\n"),
            "{text}"
        );
        assert!(
            text.contains("nvme0n1  Samsung PM981  -       256.1 GB  nvme   no         yes"),
            "{text}"
        );
        assert!(
            text.contains("/      /dev/mapper/root  ext4  250.0 GB  100.0 GB  yes (luks)"),
            "{text}"
        );
        // Sorted, first 20 only, with a hint.
        assert!(text.contains("pkg000") && text.contains("pkg019") && !text.contains("pkg020"));
        assert!(text.contains("... and 5 more; use --software to list all"));
        let all = DeviceReport::new(&detail("kus012-pc07", 25)).render(now(), None);
        assert!(all.contains("pkg024") && !all.contains("more; use --software"));
        assert!(text.contains("security   not supported on linux"), "{text}");
    }

    #[test]
    fn show_neutralises_hostile_strings() {
        let hostile = "pc\u{1b}]0;owned\u{7}\u{1b}[2J\u{202e}";
        let mut d = detail(hostile, 1);
        if let Some(inv) = d.inventory.as_mut() {
            inv.disks[0].model = format!("disk{hostile}");
            inv.software[0].name = format!("pkg{hostile}");
            inv.collector_errors[0].message = format!("err{hostile}");
        }
        let text = DeviceReport::new(&d).render(now(), None);
        for line in text.lines() {
            assert!(
                !line.chars().any(schoolfleet_proto::text::is_dangerous_char),
                "{line:?}"
            );
        }
        assert!(text.contains("pc\\x1b]0;owned\\x07\\x1b[2J\\u{202e}"));
    }

    #[test]
    fn show_windows_facts_and_readiness() {
        use schoolfleet_proto::v1::{Tristate, Windows11Readiness};
        let linux = DeviceReport::new(&detail("kus012-pc07", 1)).render(now(), None);
        assert!(!linux.contains("Windows 11"), "{linux}");
        assert!(!linux.contains("Secure Boot capable"), "{linux}");
        let mut d = detail("kus012-pc09", 1);
        if let Some(inv) = d.inventory.as_mut() {
            let os = inv.os.as_mut().unwrap();
            os.display_version = "23H2".into();
            inv.system.as_mut().unwrap().domain = "schule.kus.local".into();
            inv.firmware.as_mut().unwrap().secure_boot_capable = Tristate::Yes.into();
            inv.windows11 = Some(Windows11Readiness {
                ready: Tristate::No.into(),
                tpm_2: Tristate::No.into(),
                secure_boot_capable: Tristate::Yes.into(),
                cpu_supported: Tristate::Unknown.into(),
                memory: Tristate::Yes.into(),
                storage: Tristate::Yes.into(),
                blockers: vec!["TPM 1.2 statt 2.0".into()],
            });
        }
        let text = DeviceReport::new(&d).render(now(), None);
        let line = |label: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("no {label} in {text}"))
                .to_owned()
        };
        assert!(line("Display version").ends_with("23H2"));
        assert!(line("Domain").ends_with("schule.kus.local"));
        assert!(text.contains("Windows 11 readiness"), "{text}");
        assert!(line("Ready").ends_with("no"));
        assert!(line("CPU supported").ends_with("unknown"));
        assert!(line("Blockers").ends_with("TPM 1.2 statt 2.0"));
        let json = serde_json::to_value(DeviceReport::new(&d)).unwrap();
        assert_eq!(json["windows11"]["ready"], false);
        assert_eq!(json["windows11"]["cpu_supported"], serde_json::Value::Null);
        assert_eq!(json["operating_system"]["display_version"], "23H2");
    }

    #[test]
    fn show_without_inventory_says_so() {
        let d = DeviceDetail {
            device: Some(device("kus012-pc08")),
            inventory: None,
            inventory_hash: String::new(),
        };
        let text = DeviceReport::new(&d).render(now(), None);
        assert!(text.contains("No inventory received yet."), "{text}");
        assert!(!text.contains("Hardware"));
    }

    #[test]
    fn show_json_has_sections() {
        let report = DeviceReport::new(&detail("kus012-pc07", 3));
        let json = serde_json::to_value(&report).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = [
            "overview",
            "operating_system",
            "hardware",
            "firmware",
            "disks",
            "filesystems",
            "network",
            "security",
            "software",
            "collector_errors",
            "windows11",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        // A Linux device has no Windows 11 section.
        assert!(json["windows11"].is_null());
        assert_eq!(json["overview"]["hostname"], "kus012-pc07");
        assert_eq!(json["firmware"]["secure_boot"], true);
        assert_eq!(json["disks"][0]["media"], "nvme");
        assert_eq!(json["software"]["count"], 3);
        assert_eq!(json["software"]["packages"][0]["name"], "pkg000");
        assert!(json["security"].is_null());
        assert_eq!(json["hardware"]["memory_total_bytes"], 16u64 << 30);
    }

    #[test]
    fn device_rows_have_stable_keys() {
        let row = DeviceRow::from(&device("kus012-pc07"));
        assert_keys_match_columns(&row);
        assert_eq!(row.status, "active");
        let cells = row.cells();
        assert_eq!(cells[3], "yes");
        assert_eq!(cells[17], "10.12.0.7 fe80::1");
        assert_keys_match_columns(&ChangeRow::from(&InventoryChange::default()));
        assert_keys_match_columns(&ReportRow::from(&InventoryReportSummary::default()));
    }

    #[test]
    fn list_request_maps_filters() {
        let args = DevicesArgs {
            school: Some("kus012".into()),
            offline: true,
            not_seen_for: Some(std::time::Duration::from_secs(7 * 86400)),
            host: Some("pc0".into()),
            all: true,
            ..Default::default()
        };
        let r = list_request(&args);
        assert_eq!(r.school_id, "kus012");
        assert_eq!(r.online, Tristate::No as i32);
        assert_eq!(r.not_seen_for_seconds, 604_800);
        assert_eq!(r.seen_within_seconds, 0);
        assert!(r.include_retired);
        assert_eq!(r.hostname_contains, "pc0");
        assert_eq!(r.page_size, PAGE_SIZE);
        assert_eq!(
            list_request(&DevicesArgs::default()).online,
            Tristate::Unknown as i32
        );
    }

    /// A fake DeviceService on 127.0.0.1:0: two pages of devices, NOT_FOUND
    /// for any single device, and a record of the authorization headers.
    mod fake_server {
        use std::sync::{Arc, Mutex};

        use schoolfleet_proto::v1::device_service_server::{DeviceService, DeviceServiceServer};
        use schoolfleet_proto::v1::*;
        use tonic::{Request, Response, Status};

        #[derive(Default, Clone)]
        pub struct Fake {
            pub seen: Arc<Mutex<Vec<(String, ListDevicesRequest)>>>,
        }

        fn dev(name: &str) -> Device {
            Device {
                id: format!("id-{name}"),
                hostname: name.into(),
                ..Default::default()
            }
        }

        #[tonic::async_trait]
        impl DeviceService for Fake {
            async fn list_devices(
                &self,
                request: Request<ListDevicesRequest>,
            ) -> Result<Response<ListDevicesResponse>, Status> {
                let auth = request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let request = request.into_inner();
                self.seen.lock().unwrap().push((auth, request.clone()));
                let page = match request.page_token.as_str() {
                    "" => ListDevicesResponse {
                        devices: vec![dev("kus012-pc01"), dev("kus012-pc02")],
                        next_page_token: "p2".into(),
                    },
                    "p2" => ListDevicesResponse {
                        devices: vec![dev("kus012-pc03")],
                        next_page_token: String::new(),
                    },
                    // A buggy server that hands out the same token forever.
                    "loop" | "loop-start" => ListDevicesResponse {
                        devices: vec![],
                        next_page_token: "loop".into(),
                    },
                    other => return Err(Status::invalid_argument(format!("bad token {other}"))),
                };
                Ok(Response::new(page))
            }
            async fn get_device(
                &self,
                request: Request<GetDeviceRequest>,
            ) -> Result<Response<DeviceDetail>, Status> {
                Err(Status::not_found(format!(
                    "device {}",
                    request.into_inner().device
                )))
            }
            async fn retire_device(
                &self,
                _: Request<DeviceRef>,
            ) -> Result<Response<Device>, Status> {
                Err(Status::permission_denied(
                    "retiring needs technician@school:kus012",
                ))
            }
            async fn adopt_device(
                &self,
                _: Request<schoolfleet_proto::v1::AdoptDeviceRequest>,
            ) -> Result<Response<Device>, Status> {
                Err(Status::unimplemented("not needed here"))
            }
            async fn delete_device(
                &self,
                _: Request<DeviceRef>,
            ) -> Result<Response<schoolfleet_proto::v1::DeleteDeviceResponse>, Status> {
                Err(Status::unimplemented("not needed here"))
            }
            async fn revoke_device(
                &self,
                _: Request<DeviceRef>,
            ) -> Result<Response<Device>, Status> {
                Err(Status::unimplemented(""))
            }
            async fn list_inventory_changes(
                &self,
                _: Request<ListInventoryChangesRequest>,
            ) -> Result<Response<ListInventoryChangesResponse>, Status> {
                Err(Status::unimplemented(""))
            }
            async fn list_inventory_reports(
                &self,
                _: Request<ListInventoryReportsRequest>,
            ) -> Result<Response<ListInventoryReportsResponse>, Status> {
                Err(Status::unimplemented(""))
            }
            async fn request_inventory(
                &self,
                _: Request<DeviceRef>,
            ) -> Result<Response<RequestInventoryResponse>, Status> {
                Err(Status::unimplemented(""))
            }
        }

        /// Serves `fake` on a fresh port; returns a plain-HTTP channel to it.
        pub async fn start(fake: Fake) -> tonic::transport::Channel {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(DeviceServiceServer::new(fake))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn fetches_all_pages_with_the_bearer_token() {
        let fake = fake_server::Fake::default();
        let channel = fake_server::start(fake.clone()).await;
        let token = crate::profile::Secret::new("sft_t1_s3cr3t");
        let api = Api::from_channel(channel, &token, "https://fleet.test:7443").unwrap();

        let args = DevicesArgs {
            school: Some("kus012".into()),
            ..Default::default()
        };
        let devices = fetch_all(&api, list_request(&args)).await.unwrap();
        let names: Vec<&str> = devices.iter().map(|d| d.hostname.as_str()).collect();
        assert_eq!(names, ["kus012-pc01", "kus012-pc02", "kus012-pc03"]);

        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        for (auth, request) in &seen {
            assert_eq!(auth, "Bearer sft_t1_s3cr3t");
            assert_eq!(request.school_id, "kus012");
        }
        assert_eq!(seen[1].1.page_token, "p2");

        let looping = ListDevicesRequest {
            page_token: "loop-start".into(),
            ..Default::default()
        };
        let err = fetch_all(&api, looping).await.unwrap_err();
        assert!(err.to_string().contains("same page token"), "{err}");
    }

    #[tokio::test]
    async fn server_errors_read_clearly() {
        let channel = fake_server::start(fake_server::Fake::default()).await;
        let token = crate::profile::Secret::new("sft_t1_s3cr3t");
        let api = Api::from_channel(channel, &token, "https://fleet.test:7443").unwrap();

        let err = get(&api, "kus012-pc99").await.unwrap_err();
        assert_eq!(err.to_string(), "not found: device kus012-pc99");
        let err = api
            .devices()
            .retire_device(DeviceRef { device: "x".into() })
            .await
            .reply(&api)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "permission denied: retiring needs technician@school:kus012"
        );
    }
}
