//! The portal's data access, in one place. Each function takes the
//! caller's `Principal` and does exactly the checks the gRPC handlers do:
//! objects are found through the service layer's access module
//! (`service::access::visible_device`/`visible_ticket`), lists through
//! `Principal::filter`, single tenants through `Principal::can`. Nothing
//! here decides permissions by role names: only by `Permission`s on
//! tenants. As domain functions land in `service/`, these become calls to
//! them.

use std::collections::BTreeMap;

use prost::Message;

use super::PageError;
use crate::auth::{Permission, Principal, TenantRef};
use crate::compliance::Current;
use crate::service::access::{self, ticket_tenant};
use crate::service::input::multiline_text;
use crate::state::AppState;
use crate::storage::{
    self, DeviceQuery, DeviceRecord, KbArticle, Millis, NewTicket, SessionQuery, SessionRecord,
    TicketChange, TicketQuery, TicketRecord, TimelineEntry, now_millis, parse_ticket_key,
};

/// Longest problem text a teacher may send.
const MAX_REPORT_TEXT: usize = 5_000;

/// Problem categories a teacher chooses from (id, German label).
pub const REPORT_CATEGORIES: [(&str, &str); 6] = [
    ("hardware", "Gerät defekt (Hardware)"),
    ("software", "Programm funktioniert nicht"),
    ("netzwerk", "Kein Netz / WLAN"),
    ("drucker", "Drucken / Beamer"),
    ("anmeldung", "Anmeldung / Passwort"),
    ("sonstiges", "Sonstiges"),
];

pub fn category_label(id: &str) -> &str {
    REPORT_CATEGORIES
        .iter()
        .find(|(c, _)| *c == id)
        .map_or(id, |(_, label)| label)
}

pub struct Data<'a> {
    pub app: &'a AppState,
    pub principal: &'a Principal,
}

impl<'a> Data<'a> {
    pub fn new(app: &'a AppState, principal: &'a Principal) -> Self {
        Data { app, principal }
    }

    fn can_anywhere(&self, permission: Permission) -> bool {
        !self.principal.filter(permission).is_empty()
    }

    // --- what the caller may use at all (navigation) ---

    pub fn may_report(&self) -> bool {
        self.can_anywhere(Permission::TicketReport)
    }
    pub fn may_read_devices(&self) -> bool {
        self.can_anywhere(Permission::DeviceRead)
    }
    pub fn may_read_tickets(&self) -> bool {
        self.can_anywhere(Permission::TicketRead)
    }
    pub fn may_read_teacher_articles(&self) -> bool {
        self.principal.can_anywhere(Permission::KbReadTeachers)
            || self.principal.can_anywhere(Permission::KbRead)
    }

    /// Counties the caller may read devices in (for the county selectors).
    pub async fn counties(&self) -> Result<Vec<storage::County>, PageError> {
        let filter = self.principal.filter(Permission::DeviceRead);
        Ok(self
            .app
            .store
            .list_counties()
            .await?
            .into_iter()
            .filter(|c| filter.all || filter.counties.contains(&c.id))
            .collect())
    }

    /// Schools the caller may read devices in.
    pub async fn schools(&self, county: Option<&str>) -> Result<Vec<storage::School>, PageError> {
        Ok(self
            .app
            .store
            .list_schools(county)
            .await?
            .into_iter()
            .filter(|s| {
                self.principal.can(
                    Permission::DeviceRead,
                    &TenantRef::school(&s.county_id, &s.id),
                )
            })
            .collect())
    }

    /// The school, if the caller may read its devices; NOT_FOUND otherwise.
    pub async fn school(&self, id: &str) -> Result<storage::School, PageError> {
        self.app
            .store
            .get_school(id)
            .await?
            .filter(|s| {
                self.principal.can(
                    Permission::DeviceRead,
                    &TenantRef::school(&s.county_id, &s.id),
                )
            })
            .ok_or(PageError::NotFound)
    }

    /// A county given in a query must be one the caller reads devices in.
    pub fn require_county(&self, county: Option<&str>) -> Result<(), PageError> {
        match county {
            Some(c)
                if !self
                    .principal
                    .can(Permission::DeviceRead, &TenantRef::County(c.into())) =>
            {
                // A school-level reader may still look at its county's
                // pages, narrowed to its schools by every query's filter.
                let filter = self.principal.filter(Permission::DeviceRead);
                if filter.schools.is_empty() {
                    return Err(PageError::NotFound);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    // --- teachers: report a problem ---

    /// Devices of the caller's schools whose host name contains `query`
    /// (rooms are part of the host names: `r204-pc03`).
    pub async fn report_devices(&self, query: &str) -> Result<Vec<DeviceRecord>, PageError> {
        let query = query.trim();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let filter = self.principal.filter(Permission::TicketReport);
        if filter.is_empty() {
            return Err(PageError::Denied);
        }
        Ok(self
            .app
            .store
            .list_devices(&DeviceQuery {
                filter,
                hostname_contains: Some(query.to_owned()),
                limit: 50,
                now: now_millis(),
                ..Default::default()
            })
            .await?
            .into_iter()
            .filter(|d| self.may_report_on(d))
            .collect())
    }

    fn may_report_on(&self, d: &DeviceRecord) -> bool {
        self.principal.can(
            Permission::TicketReport,
            &TenantRef::school(&d.county_id, &d.school_id),
        )
    }

    /// Opens a ticket for a device of the caller's school.
    pub async fn report_problem(
        &self,
        device_id: &str,
        category: &str,
        text: &str,
    ) -> Result<TicketRecord, PageError> {
        let device = self
            .app
            .store
            .get_device(device_id.trim())
            .await?
            .filter(|d| self.may_report_on(d) && d.status == "active")
            .ok_or(PageError::NotFound)?;
        if !REPORT_CATEGORIES.iter().any(|(c, _)| *c == category) {
            return Err(PageError::Invalid(
                "Bitte wählen Sie eine Kategorie.".into(),
            ));
        }
        let description =
            multiline_text("Beschreibung", text, MAX_REPORT_TEXT, true).map_err(|_| {
                PageError::Invalid(format!(
                    "Die Beschreibung ist zu lang (höchstens {MAX_REPORT_TEXT} Zeichen) oder \
                     enthält Steuerzeichen."
                ))
            })?;
        if description.is_empty() {
            return Err(PageError::Invalid(
                "Bitte beschreiben Sie das Problem.".into(),
            ));
        }
        let first_line: String = description
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(80)
            .collect();
        let title = format!("{}: {first_line}", device.hostname);
        let now = now_millis();
        let ticket = TicketRecord {
            id: uuid::Uuid::now_v7().to_string(),
            number: 0,
            title: schoolfleet_proto::text::clean(&title, 200).value,
            description,
            status: "new".into(),
            priority: "normal".into(),
            category: category.to_owned(),
            county_id: device.county_id.clone(),
            school_id: Some(device.school_id.clone()),
            assignee_id: None,
            reporter: self.principal.actor(),
            created_at: now,
            updated_at: now,
            closed_at: None,
        };
        let created = self
            .app
            .store
            .create_ticket(&NewTicket {
                ticket,
                device_ids: vec![device.id.clone()],
                created_note: "über das Portal gemeldet".into(),
                announce: crate::webhooks::ticket_created(&self.app.config),
            })
            .await?;
        self.app
            .audit(
                &self.principal.actor(),
                "ticket.create",
                &format!("ticket:{}", created.key()),
                Some(&created.county_id),
                "ok",
                "devices=1 via=portal".into(),
            )
            .await;
        Ok(created)
    }

    /// The caller's own reports, newest first.
    pub async fn my_tickets(&self) -> Result<Vec<TicketRecord>, PageError> {
        let filter = self.principal.filter(Permission::TicketReport);
        if filter.is_empty() {
            return Err(PageError::Denied);
        }
        let me = self.principal.actor();
        Ok(self
            .app
            .store
            .list_tickets(&TicketQuery {
                filter,
                limit: 5000,
                ..Default::default()
            })
            .await?
            .into_iter()
            .filter(|t| t.reporter == me)
            .collect())
    }

    /// One of the caller's own reports with the part of its timeline a
    /// reporter sees (comments and status, not inventory or sessions).
    pub async fn my_ticket(
        &self,
        key: &str,
    ) -> Result<(TicketRecord, Vec<storage::TicketEventRecord>), PageError> {
        let number = parse_ticket_key(key).ok_or(PageError::NotFound)?;
        let me = self.principal.actor();
        let ticket = self
            .app
            .store
            .get_ticket(number)
            .await?
            .filter(|t| {
                t.reporter == me
                    && self
                        .principal
                        .can(Permission::TicketReport, &ticket_tenant(t))
            })
            .ok_or(PageError::NotFound)?;
        let events = self
            .app
            .store
            .ticket_timeline(&ticket.id)
            .await?
            .into_iter()
            .filter_map(|e| match e {
                TimelineEntry::Event(e)
                    if matches!(e.kind.as_str(), "created" | "comment" | "status") =>
                {
                    Some(e)
                }
                _ => None,
            })
            .collect();
        Ok((ticket, events))
    }

    /// The reporter answers on their own ticket.
    pub async fn answer_my_ticket(&self, key: &str, text: &str) -> Result<TicketRecord, PageError> {
        let (ticket, _) = self.my_ticket(key).await?;
        self.comment(&ticket, text).await?;
        Ok(ticket)
    }

    async fn comment(&self, ticket: &TicketRecord, text: &str) -> Result<(), PageError> {
        let body = multiline_text("Kommentar", text, 20_000, true).map_err(|_| {
            PageError::Invalid("Der Kommentar ist zu lang oder enthält Steuerzeichen.".into())
        })?;
        if body.is_empty() {
            return Err(PageError::Invalid("Der Kommentar ist leer.".into()));
        }
        self.app
            .store
            .apply_ticket_change(&TicketChange {
                ticket_id: ticket.id.clone(),
                at: now_millis(),
                actor: self.principal.actor(),
                kind: "comment".into(),
                body,
                ..Default::default()
            })
            .await?;
        self.app
            .audit(
                &self.principal.actor(),
                "ticket.comment",
                &format!("ticket:{}", ticket.key()),
                Some(&ticket.county_id),
                "ok",
                "via=portal".into(),
            )
            .await;
        Ok(())
    }

    // --- the knowledge base for teachers ---

    /// Published articles marked for teachers, newest change first. Team
    /// articles only for callers who read the whole knowledge base.
    pub async fn teacher_articles(&self) -> Result<Vec<KbArticle>, PageError> {
        if !self.may_read_teacher_articles() {
            return Err(PageError::Denied);
        }
        Ok(self
            .app
            .store
            .list_articles_changed(0, 1000)
            .await?
            .into_iter()
            .filter(|a| a.visibility == "teachers" && a.published_at.is_some())
            .collect())
    }

    pub async fn article(&self, id: &str) -> Result<KbArticle, PageError> {
        let article = self
            .app
            .store
            .get_article(id.trim())
            .await?
            .ok_or(PageError::NotFound)?;
        let team_reader = self.principal.can_anywhere(Permission::KbRead);
        let teacher_article = article.visibility == "teachers" && article.published_at.is_some();
        if team_reader || (teacher_article && self.may_read_teacher_articles()) {
            Ok(article)
        } else {
            Err(PageError::NotFound)
        }
    }

    // --- compliance ---

    pub async fn standard(&self) -> Result<Option<Current>, PageError> {
        self.app
            .compliance
            .standard(&self.app.store, None)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "portal: cannot load the standard");
                PageError::Unavailable
            })
    }

    /// Compliance per school (devices, compliant) the caller may read,
    /// narrowed to `county`/`school`.
    pub async fn school_compliance(
        &self,
        revision: i64,
        county: Option<&str>,
        school: Option<&str>,
    ) -> Result<Vec<storage::SchoolCompliance>, PageError> {
        Ok(self
            .app
            .store
            .school_compliance(revision, &self.principal.filter(Permission::DeviceRead))
            .await?
            .into_iter()
            .filter(|s| {
                county.is_none_or(|c| c == s.county_id) && school.is_none_or(|x| x == s.school_id)
            })
            .collect())
    }

    pub async fn rule_counts(
        &self,
        revision: i64,
        county: Option<&str>,
        school: Option<&str>,
    ) -> Result<Vec<storage::RuleStatusCount>, PageError> {
        Ok(self
            .app
            .store
            .rule_status_counts(
                revision,
                &self.principal.filter(Permission::DeviceRead),
                county,
                school,
            )
            .await?)
    }

    /// Devices per rule and result in each school the caller reads, in
    /// one query.
    pub async fn rule_counts_by_school(
        &self,
        revision: i64,
        county: Option<&str>,
    ) -> Result<Vec<storage::SchoolRuleStatusCount>, PageError> {
        Ok(self
            .app
            .store
            .rule_status_counts_by_school(
                revision,
                &self.principal.filter(Permission::DeviceRead),
                county,
            )
            .await?)
    }

    /// Failing devices per rule and reason text, all rules in one query.
    pub async fn failure_reason_counts(
        &self,
        revision: i64,
        county: Option<&str>,
    ) -> Result<Vec<storage::RuleReasonCount>, PageError> {
        Ok(self
            .app
            .store
            .failure_reason_counts(
                revision,
                &self.principal.filter(Permission::DeviceRead),
                county,
            )
            .await?)
    }

    pub async fn failing_devices(
        &self,
        revision: i64,
        rule: &str,
        county: Option<&str>,
        school: Option<&str>,
    ) -> Result<Vec<storage::FailingDeviceRecord>, PageError> {
        Ok(self
            .app
            .store
            .failing_devices(
                revision,
                rule,
                &self.principal.filter(Permission::DeviceRead),
                county,
                school,
            )
            .await?)
    }

    /// The daily snapshots of `from..=to` (`YYYY-MM-DD`), one query, only
    /// schools the caller reads devices in, narrowed to `county`/`school`.
    pub async fn snapshots(
        &self,
        from: &str,
        to: &str,
        county: Option<&str>,
        school: Option<&str>,
    ) -> Result<Vec<storage::DailySchoolCompliance>, PageError> {
        Ok(self
            .app
            .store
            .compliance_snapshots_between(from, to)
            .await?
            .into_iter()
            .filter(|r| {
                self.principal.can(
                    Permission::DeviceRead,
                    &TenantRef::school(&r.county_id, &r.school_id),
                ) && county.is_none_or(|c| c == r.county_id)
                    && school.is_none_or(|s| s == r.school_id)
            })
            .collect())
    }

    /// Compliant share per day (day, devices, compliant) over the daily
    /// snapshots of `from..=to`, only schools the caller reads.
    pub async fn trend(
        &self,
        county: Option<&str>,
        school: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, i64, i64)>, PageError> {
        let mut days: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for r in self.snapshots(from, to, county, school).await? {
            let day = days.entry(r.day).or_default();
            day.0 += r.devices;
            day.1 += r.compliant;
        }
        Ok(days
            .into_iter()
            .filter(|(_, (devices, _))| *devices > 0)
            .map(|(day, (devices, compliant))| (day, devices, compliant))
            .collect())
    }

    /// The standard's waivers the caller may read, narrowed to the county
    /// or school, soonest expiry first: the service layer's rule
    /// (`service::compliance::waivers`, as `compliance summary`).
    pub async fn waivers(
        &self,
        current: &Current,
        county: Option<&str>,
        school: Option<&str>,
    ) -> Result<Vec<crate::service::compliance::ExpiringWaiver>, PageError> {
        let mut out = crate::service::compliance::waivers(
            self.app,
            self.principal,
            current,
            county,
            school,
            |_| true,
        )
        .await?;
        out.sort_by_key(|w| w.expires);
        Ok(out)
    }

    // --- consent (school leads) ---

    /// The consent policies of a school the caller may see.
    pub async fn consent_policies(
        &self,
        school: &str,
    ) -> Result<Vec<storage::ConsentPolicyRecord>, PageError> {
        Ok(crate::service::consent::policies(self.app, self.principal, Some(school)).await?)
    }

    /// The school lead's floors of a school the caller may see, and the
    /// device classes (for the form).
    pub async fn consent_floors(
        &self,
        school: &storage::School,
    ) -> Result<(Vec<storage::ConsentFloorRecord>, Vec<storage::DeviceClass>), PageError> {
        if !self.principal.can(
            Permission::TenantRead,
            &TenantRef::school(&school.county_id, &school.id),
        ) {
            return Err(PageError::NotFound);
        }
        Ok((
            self.app.store.consent_floors(&school.id).await?,
            self.app.store.list_device_classes().await?,
        ))
    }

    /// May the caller set the school's consent policy?
    pub fn may_set_consent(&self, school: &storage::School) -> bool {
        self.principal.can(
            Permission::ConsentManage,
            &TenantRef::school(&school.county_id, &school.id),
        )
    }

    /// Sets a consent policy: the same service function as gRPC.
    pub async fn set_consent(
        &self,
        school: &str,
        device_class: &str,
        consent: &str,
    ) -> Result<storage::ConsentPolicyRecord, PageError> {
        Ok(crate::service::consent::set_policy(
            self.app,
            self.principal,
            school,
            device_class,
            consent,
        )
        .await?)
    }

    // --- devices ---

    pub async fn devices(
        &self,
        county: Option<&str>,
        school: Option<&str>,
    ) -> Result<Vec<DeviceRecord>, PageError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .app
                .store
                .list_devices(&DeviceQuery {
                    filter: self.principal.filter(Permission::DeviceRead),
                    county_id: county.map(str::to_owned),
                    school_id: school.map(str::to_owned),
                    now: now_millis(),
                    online_window_ms: self.app.config.agents.online_window.as_millis() as i64,
                    after: after.clone(),
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            let last = page.last().map(|d| (d.hostname.clone(), d.id.clone()));
            let done = page.len() < 1000;
            all.extend(page);
            if done || all.len() >= 20_000 {
                break;
            }
            after = last;
        }
        Ok(all)
    }

    pub async fn device(&self, key: &str) -> Result<DeviceRecord, PageError> {
        Ok(access::visible_device(self.app, self.principal, key, Permission::DeviceRead).await?)
    }

    pub async fn inventory(
        &self,
        device: &DeviceRecord,
    ) -> Result<Option<schoolfleet_proto::v1::Inventory>, PageError> {
        let Some(stored) = self.app.store.get_inventory(&device.id).await? else {
            return Ok(None);
        };
        Ok(schoolfleet_proto::v1::Inventory::decode(stored.inventory.as_slice()).ok())
    }

    /// The inventories of many devices, a page of the fleet per query
    /// (not one query per device); only those in `devices`.
    pub async fn inventories(
        &self,
        devices: &[DeviceRecord],
    ) -> Result<BTreeMap<String, schoolfleet_proto::v1::Inventory>, PageError> {
        let wanted: std::collections::BTreeSet<&str> =
            devices.iter().map(|d| d.id.as_str()).collect();
        let mut out = BTreeMap::new();
        let mut after = String::new();
        const PAGE: i64 = 1000;
        loop {
            let rows = self.app.store.list_device_inventories(&after, PAGE).await?;
            let done = (rows.len() as i64) < PAGE;
            for row in rows {
                after.clone_from(&row.id);
                if wanted.contains(row.id.as_str())
                    && let Some(bytes) = &row.inventory
                    && let Ok(inv) = schoolfleet_proto::v1::Inventory::decode(bytes.as_slice())
                {
                    out.insert(row.id, inv);
                }
            }
            if done || out.len() == wanted.len() {
                break;
            }
        }
        Ok(out)
    }

    pub async fn device_history(
        &self,
        device: &DeviceRecord,
    ) -> Result<Vec<storage::InventoryChangeRecord>, PageError> {
        Ok(self
            .app
            .store
            .list_inventory_changes(&device.id, 50)
            .await?)
    }

    pub async fn device_compliance(
        &self,
        device: &DeviceRecord,
        revision: i64,
    ) -> Result<Vec<storage::ComplianceResultRecord>, PageError> {
        Ok(self
            .app
            .store
            .list_compliance_results(&device.id, revision)
            .await?)
    }

    // --- tickets (technicians, coordinators, school leaders) ---

    pub async fn tickets(&self, query: TicketQuery) -> Result<Vec<TicketRecord>, PageError> {
        let query = TicketQuery {
            filter: self.principal.filter(Permission::TicketRead),
            ..query
        };
        Ok(self.app.store.list_tickets(&query).await?)
    }

    /// Opened, resolved and open-at-the-end tickets per county and
    /// category over `[start, end)`, counted in SQL.
    pub async fn ticket_period_counts(
        &self,
        county: Option<&str>,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<storage::TicketPeriodCount>, PageError> {
        Ok(self
            .app
            .store
            .ticket_period_counts(
                &self.principal.filter(Permission::TicketRead),
                county,
                start,
                end,
            )
            .await?)
    }

    /// How long the tickets resolved in `[start, end)` took.
    pub async fn ticket_resolutions(
        &self,
        county: Option<&str>,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<storage::TicketResolution>, PageError> {
        Ok(self
            .app
            .store
            .ticket_resolutions(
                &self.principal.filter(Permission::TicketRead),
                county,
                start,
                end,
            )
            .await?)
    }

    pub async fn ticket(&self, key: &str) -> Result<(TicketRecord, Vec<TimelineEntry>), PageError> {
        let ticket =
            access::visible_ticket(self.app, self.principal, key, Permission::TicketRead).await?;
        let timeline = self.app.store.ticket_timeline(&ticket.id).await?;
        Ok((ticket, timeline))
    }

    pub async fn ticket_devices(
        &self,
        ticket: &TicketRecord,
    ) -> Result<Vec<DeviceRecord>, PageError> {
        let ids = self.app.store.ticket_devices(&ticket.id).await?;
        Ok(self
            .app
            .store
            .get_devices(&ids)
            .await?
            .into_iter()
            .filter(|d| {
                self.principal.can(
                    Permission::DeviceRead,
                    &TenantRef::school(&d.county_id, &d.school_id),
                )
            })
            .collect())
    }

    pub async fn comment_ticket(&self, key: &str, text: &str) -> Result<TicketRecord, PageError> {
        let ticket =
            access::visible_ticket(self.app, self.principal, key, Permission::TicketWork).await?;
        self.comment(&ticket, text).await?;
        Ok(ticket)
    }

    pub async fn user_names(&self) -> Result<BTreeMap<String, String>, PageError> {
        Ok(self
            .app
            .store
            .list_users()
            .await?
            .into_iter()
            .map(|u| (u.id, u.name))
            .collect())
    }

    // --- remote sessions ---

    /// Sessions the caller may read (SessionRead), newest first.
    pub async fn sessions(
        &self,
        device: Option<&str>,
        limit: i64,
    ) -> Result<Option<Vec<SessionRecord>>, PageError> {
        let filter = self.principal.filter(Permission::SessionRead);
        if filter.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            self.app
                .store
                .list_sessions(&SessionQuery {
                    filter,
                    device_id: device.map(str::to_owned),
                    live_only: false,
                    limit,
                })
                .await?,
        ))
    }

    /// Sessions started in `[start, end)` per county (count, minutes),
    /// counted in SQL; `None`: the caller may not read sessions.
    pub async fn session_period_counts(
        &self,
        county: Option<&str>,
        start: Millis,
        end: Millis,
    ) -> Result<Option<Vec<storage::SessionPeriodCount>>, PageError> {
        let filter = self.principal.filter(Permission::SessionRead);
        if filter.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            self.app
                .store
                .session_period_counts(&filter, county, start, end)
                .await?,
        ))
    }

    // --- search ---

    pub async fn search(&self, text: &str) -> Result<Vec<storage::SearchHit>, PageError> {
        let ticket_filter = self.principal.filter(Permission::TicketRead);
        let include_articles = self.principal.can_anywhere(Permission::KbRead);
        if ticket_filter.is_empty() && !include_articles {
            return Err(PageError::Denied);
        }
        Ok(self
            .app
            .store
            .search(&storage::SearchQuery {
                text: text.to_owned(),
                ticket_filter,
                include_articles,
                limit: 100,
            })
            .await?)
    }
}
