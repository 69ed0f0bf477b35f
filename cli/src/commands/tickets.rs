//! `ticket ...`: the service desk from the command line.

use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::*;
use serde::Serialize;

use super::Context;
use crate::args::TicketCommand;
use crate::client::{Api, Reply};
use crate::output::{Column, Record, Section, Ui, col, time_opt, wide};

#[derive(Debug, Serialize)]
pub struct TicketRow {
    pub key: String,
    pub status: String,
    pub priority: String,
    pub county_id: String,
    pub school_id: String,
    pub assignee: String,
    pub title: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub category: String,
    pub reporter: String,
    pub device_ids: String,
}

impl From<&Ticket> for TicketRow {
    fn from(t: &Ticket) -> Self {
        Self {
            key: t.key.clone(),
            status: t.status.clone(),
            priority: t.priority.clone(),
            county_id: t.county_id.clone(),
            school_id: t.school_id.clone(),
            assignee: t.assignee.clone(),
            title: t.title.clone(),
            created_at: time_opt(t.created_at.as_ref()),
            updated_at: time_opt(t.updated_at.as_ref()),
            category: t.category.clone(),
            reporter: t.reporter.clone(),
            device_ids: t.device_ids.join(" "),
        }
    }
}

impl Record for TicketRow {
    const NOUN: &'static str = "tickets";
    const COLUMNS: &'static [Column] = &[
        col("key", "TICKET"),
        col("status", "STATUS"),
        col("priority", "PRIORITY"),
        col("county_id", "COUNTY"),
        col("school_id", "SCHOOL"),
        col("assignee", "ASSIGNEE"),
        col("title", "TITLE"),
        wide("created_at", "CREATED"),
        wide("updated_at", "UPDATED"),
        wide("category", "CATEGORY"),
        wide("reporter", "REPORTER"),
        wide("device_ids", "DEVICES"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.key.clone(),
            self.status.clone(),
            self.priority.clone(),
            self.county_id.clone(),
            self.school_id.clone(),
            self.assignee.clone(),
            self.title.clone(),
            self.created_at.clone().unwrap_or_default(),
            self.updated_at.clone().unwrap_or_default(),
            self.category.clone(),
            self.reporter.clone(),
            self.device_ids.clone(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct TimelineRow {
    pub at: Option<String>,
    pub kind: String,
    pub actor: String,
    pub text: String,
}

/// One readable line for a timeline entry.
pub fn timeline_text(e: &TimelineEntry) -> String {
    match e.kind.as_str() {
        "created" => "opened".into(),
        "comment" => e.body.clone(),
        "status" | "assignee" => {
            let arrow = format!(
                "{} -> {}",
                if e.old_value.is_empty() {
                    "-"
                } else {
                    &e.old_value
                },
                if e.new_value.is_empty() {
                    "-"
                } else {
                    &e.new_value
                }
            );
            if e.body.is_empty() {
                arrow
            } else {
                format!("{arrow}: {}", e.body)
            }
        }
        "device" => format!("linked device {} ({})", e.body, e.device_id),
        "article" => format!("linked article {} ({})", e.body, e.new_value),
        "inventory" => {
            let values = match (e.old_value.is_empty(), e.new_value.is_empty()) {
                (true, false) => e.new_value.clone(),
                (false, true) => e.old_value.clone(),
                _ => format!("{} -> {}", e.old_value, e.new_value),
            };
            format!("{} {} {values}", e.change_kind, e.subject)
        }
        "compliance" => format!(
            "{} {} -> {} ({})",
            e.subject, e.old_value, e.new_value, e.body
        ),
        "session" => {
            let mut text = format!("remote {} session {}: {}", e.change_kind, e.subject, e.body);
            text += &format!(" ({}", e.new_value);
            if let Some(code) = e.exit_code {
                text += &format!(", exit {code}");
            }
            if let Some(ended) = time_opt(e.ended_at.as_ref()) {
                text += &format!(", ended {ended}");
            }
            text + ")"
        }
        // Kinds added later still show something.
        _ => [e.body.as_str(), e.new_value.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

impl Record for TimelineRow {
    const NOUN: &'static str = "timeline entries";
    const COLUMNS: &'static [Column] = &[
        col("at", "AT"),
        col("kind", "KIND"),
        col("actor", "BY"),
        col("text", "WHAT"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.at.clone().unwrap_or_default(),
            self.kind.clone(),
            self.actor.clone(),
            self.text.clone(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct SearchRow {
    pub kind: String,
    pub id: String,
    pub county_id: String,
    pub title: String,
}

impl Record for SearchRow {
    const NOUN: &'static str = "hits";
    const COLUMNS: &'static [Column] = &[
        col("kind", "KIND"),
        col("id", "ID"),
        col("county_id", "COUNTY"),
        col("title", "TITLE"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.kind.clone(),
            self.id.clone(),
            self.county_id.clone(),
            self.title.clone(),
        ]
    }
}

pub async fn search(
    api: &Api,
    query: String,
    include_articles: bool,
    limit: u32,
    ui: &mut Ui<'_>,
) -> anyhow::Result<()> {
    let found = api
        .tickets()
        .search(SearchRequest {
            query,
            include_articles,
            limit,
        })
        .await
        .reply(api)?;
    let rows: Vec<SearchRow> = found
        .hits
        .into_iter()
        .map(|h| SearchRow {
            kind: h.kind,
            id: h.id,
            county_id: h.county_id,
            title: h.title,
        })
        .collect();
    ui.list(&rows)?;
    Ok(())
}

/// The human form of `ticket show`.
pub fn render(detail: &TicketDetail) -> String {
    let mut text = String::new();
    if let Some(t) = &detail.ticket {
        // Section titles are printed as given: neutralise here.
        let mut s = Section::new(for_terminal(&format!("{} {}", t.key, t.title)));
        s.field("Status", t.status.clone())
            .field("Priority", t.priority.clone())
            .field("Category", t.category.clone())
            .field("County", t.county_id.clone())
            .field("School", t.school_id.clone())
            .field("Assignee", t.assignee.clone())
            .field("Reporter", t.reporter.clone())
            .field("Devices", t.device_ids.join(", "))
            .field(
                "Created",
                time_opt(t.created_at.as_ref()).unwrap_or_default(),
            )
            .field("Closed", time_opt(t.closed_at.as_ref()).unwrap_or_default());
        for line in t.description.lines() {
            s.note(line.to_owned());
        }
        text.push_str(&s.render());
        text.push('\n');
    }
    let mut s = Section::new("Timeline");
    s.table(
        vec!["AT", "KIND", "BY", "WHAT"],
        detail
            .timeline
            .iter()
            .map(|e| {
                vec![
                    time_opt(e.at.as_ref()).unwrap_or_default(),
                    e.kind.clone(),
                    e.actor.clone(),
                    timeline_text(e),
                ]
            })
            .collect(),
    );
    text.push_str(&s.render());
    text
}

fn one(ui: &mut Ui<'_>, ticket: &Ticket, message: &str) -> anyhow::Result<()> {
    let row = TicketRow::from(ticket);
    ui.one(&row, |out| writeln!(out, "{}", for_terminal(message)))?;
    Ok(())
}

pub async fn run(cmd: TicketCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        TicketCommand::New {
            title,
            description,
            devices,
            county,
            school,
            priority,
            category,
        } => {
            let t = api
                .tickets()
                .create_ticket(CreateTicketRequest {
                    title,
                    description,
                    devices,
                    county_id: county.unwrap_or_default(),
                    school_id: school.unwrap_or_default(),
                    priority,
                    category: category.unwrap_or_default(),
                })
                .await
                .reply(&api)?;
            let place = if t.school_id.is_empty() {
                &t.county_id
            } else {
                &t.school_id
            };
            one(ui, &t, &format!("Opened {} ({place}): {}", t.key, t.title))?;
        }
        TicketCommand::List {
            statuses,
            county,
            school,
            device,
            assignee,
            mine,
            limit,
        } => {
            let list = api
                .tickets()
                .list_tickets(ListTicketsRequest {
                    statuses,
                    county_id: county.unwrap_or_default(),
                    school_id: school.unwrap_or_default(),
                    device: device.unwrap_or_default(),
                    assignee: assignee.unwrap_or_default(),
                    mine,
                    limit,
                })
                .await
                .reply(&api)?;
            let rows: Vec<TicketRow> = list.tickets.iter().map(TicketRow::from).collect();
            ui.list(&rows)?;
        }
        TicketCommand::Show { ticket } => {
            let detail = api
                .tickets()
                .get_ticket(TicketRef { ticket })
                .await
                .reply(&api)?;
            match ui.format {
                crate::output::OutputFormat::Table => {
                    ui.out.write_all(render(&detail).as_bytes())?
                }
                crate::output::OutputFormat::Json => {
                    #[derive(Serialize)]
                    struct Shown {
                        ticket: Option<TicketRow>,
                        description: String,
                        timeline: Vec<TimelineRow>,
                    }
                    let shown = Shown {
                        ticket: detail.ticket.as_ref().map(TicketRow::from),
                        description: detail
                            .ticket
                            .as_ref()
                            .map(|t| t.description.clone())
                            .unwrap_or_default(),
                        timeline: detail.timeline.iter().map(timeline_row).collect(),
                    };
                    crate::output::write_json(ui.out, &shown)?;
                }
                crate::output::OutputFormat::Csv => {
                    // The timeline is the list part of a ticket.
                    let rows: Vec<TimelineRow> = detail.timeline.iter().map(timeline_row).collect();
                    ui.list(&rows)?;
                }
            }
        }
        TicketCommand::Comment { ticket, text } => {
            let t = api
                .tickets()
                .comment_ticket(CommentTicketRequest { ticket, body: text })
                .await
                .reply(&api)?;
            one(ui, &t, &format!("Commented on {}", t.key))?;
        }
        TicketCommand::Assign { ticket, user, none } => {
            let assignee = if none {
                String::new()
            } else {
                user.unwrap_or_default()
            };
            let t = api
                .tickets()
                .assign_ticket(AssignTicketRequest { ticket, assignee })
                .await
                .reply(&api)?;
            let who = if t.assignee.is_empty() {
                "nobody"
            } else {
                &t.assignee
            };
            one(ui, &t, &format!("{} is assigned to {who}", t.key))?;
        }
        TicketCommand::Status {
            ticket,
            status,
            note,
        } => {
            let t = api
                .tickets()
                .set_ticket_status(SetTicketStatusRequest {
                    ticket,
                    status,
                    note: note.unwrap_or_default(),
                })
                .await
                .reply(&api)?;
            one(ui, &t, &format!("{} is {}", t.key, t.status))?;
        }
        TicketCommand::LinkDevice { ticket, device } => {
            let t = api
                .tickets()
                .link_ticket_device(LinkTicketDeviceRequest { ticket, device })
                .await
                .reply(&api)?;
            one(
                ui,
                &t,
                &format!("{} now concerns {} device(s)", t.key, t.device_ids.len()),
            )?;
        }
        TicketCommand::Search {
            query,
            articles,
            limit,
        } => search(&api, query, articles, limit, ui).await?,
    }
    Ok(())
}

/// Open tickets of the device for `device show`; `None` when the server
/// cannot say (an older server, or no ticket permission), so that the
/// inventory is still shown.
pub async fn open_tickets_of(api: &Api, detail: &DeviceDetail) -> Option<Vec<TicketRow>> {
    let device = detail.device.as_ref()?.id.clone();
    let list = api
        .tickets()
        .list_device_tickets(DeviceTicketsRequest { device })
        .await
        .ok()?
        .into_inner();
    Some(list.tickets.iter().map(TicketRow::from).collect())
}

/// The "Open tickets" section of `device show`.
pub fn render_open(tickets: &[TicketRow]) -> String {
    let mut s = Section::new(format!("Open tickets ({})", tickets.len()));
    if tickets.is_empty() {
        s.note("none");
    } else {
        s.table(
            vec!["TICKET", "STATUS", "ASSIGNEE", "TITLE"],
            tickets
                .iter()
                .map(|t| {
                    vec![
                        t.key.clone(),
                        t.status.clone(),
                        t.assignee.clone(),
                        t.title.clone(),
                    ]
                })
                .collect(),
        );
    }
    format!("\n{}", s.render())
}

fn timeline_row(e: &TimelineEntry) -> TimelineRow {
    TimelineRow {
        at: time_opt(e.at.as_ref()),
        kind: e.kind.clone(),
        actor: e.actor.clone(),
        text: timeline_text(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::assert_keys_match_columns;

    #[test]
    fn rows_match_their_columns() {
        assert_keys_match_columns(&TicketRow::from(&Ticket::default()));
        assert_keys_match_columns(&timeline_row(&TimelineEntry::default()));
        assert_keys_match_columns(&SearchRow {
            kind: String::new(),
            id: String::new(),
            county_id: String::new(),
            title: String::new(),
        });
    }

    #[test]
    fn show_renders_the_timeline_and_neutralises_escapes() {
        let detail = TicketDetail {
            ticket: Some(Ticket {
                key: "SUP-1042".into(),
                title: "Beamer\u{1b}[2J".into(),
                status: "open".into(),
                ..Default::default()
            }),
            timeline: vec![
                TimelineEntry {
                    kind: "comment".into(),
                    actor: "user:anna".into(),
                    body: "Kabel geprüft".into(),
                    ..Default::default()
                },
                TimelineEntry {
                    kind: "inventory".into(),
                    change_kind: "software_installed".into(),
                    subject: "firefox-esr".into(),
                    new_value: "140.1".into(),
                    ..Default::default()
                },
            ],
        };
        let text = render(&detail);
        assert!(text.contains("SUP-1042"), "{text}");
        assert!(text.contains("Kabel geprüft"), "{text}");
        assert!(
            text.contains("software_installed firefox-esr 140.1"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
