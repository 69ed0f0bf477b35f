//! The pages. German, server-rendered with maud (every value is escaped at
//! compile time; nothing from a device or a user is ever `PreEscaped`),
//! no JavaScript, readable on a phone (one column, large targets).

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::data::{self, Data, REPORT_CATEGORIES};
use super::session::{self, LOGIN_COOKIE, SESSION_COOKIE, Session};
use super::{PageError, Peer, WebState};
use crate::auth::Permission;
use crate::storage::{self, Millis, TicketQuery, TimelineEntry};

type Page = Result<Response, PageError>;

// --- helpers ---

pub fn when(ms: Millis) -> String {
    crate::storage::millis_to_datetime(ms)
        .format("%d.%m.%Y %H:%M UTC")
        .to_string()
}

fn day(ms: Millis) -> String {
    crate::storage::millis_to_datetime(ms)
        .format("%d.%m.%Y")
        .to_string()
}

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64).replace('.', ",")
    }
}

fn status_label(status: &str) -> &str {
    match status {
        "new" => "neu",
        "open" => "in Bearbeitung",
        "waiting" => "wartet auf Rückmeldung",
        "resolved" => "gelöst",
        "closed" => "geschlossen",
        other => other,
    }
}

fn result_label(status: &str) -> &str {
    match status {
        "pass" => "erfüllt",
        "fail" => "nicht erfüllt",
        "unknown" => "unbekannt",
        "waived" => "Ausnahme",
        "not_applicable" => "nicht anwendbar",
        other => other,
    }
}

/// Query parameters that are empty in a GET form count as absent.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn nav(d: &Data<'_>, csrf: &str) -> Markup {
    html! {
        nav aria-label="Hauptnavigation" {
            ul {
                li { a href="/" { "Start" } }
                @if d.may_report() {
                    li { a href="/melden" { "Problem melden" } }
                    li { a href="/meine-meldungen" { "Meine Meldungen" } }
                }
                @if d.may_read_teacher_articles() {
                    li { a href="/wissen" { "Hilfe-Artikel" } }
                }
                @if d.may_read_devices() {
                    li { a href="/konformitaet" { "Konformität" } }
                    li { a href="/bericht" { "Quartalsbericht" } }
                    li { a href="/beschaffung" { "Beschaffung" } }
                }
                @if d.may_read_tickets() {
                    li { a href="/tickets" { "Tickets" } }
                    li { a href="/suche" { "Suche" } }
                }
            }
            form method="post" action="/abmelden" class="logout" {
                input type="hidden" name="csrf" value=(csrf);
                span { "Angemeldet: " (d.principal.name) " " }
                button type="submit" { "Abmelden" }
            }
        }
    }
}

fn layout(title: &str, nav: Option<Markup>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="de" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – schoolfleet" }
                link rel="stylesheet" href="/static/portal.css";
            }
            body {
                a class="skip" href="#inhalt" { "Zum Inhalt springen" }
                header {
                    p class="brand" { "schoolfleet · Schul-IT Donnersbergkreis, Kusel, Kaiserslautern" }
                    @if let Some(nav) = nav { (nav) }
                }
                main id="inhalt" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn page(s: &Session, d: &Data<'_>, title: &str, body: Markup) -> Response {
    layout(title, Some(nav(d, &s.csrf)), body).into_response()
}

pub fn error_page(title: &str, text: &str) -> Markup {
    layout(
        title,
        None,
        html! { p { (text) } p { a href="/" { "Zur Startseite" } } },
    )
}

pub async fn not_found() -> PageError {
    PageError::NotFound
}

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("portal.css"),
    )
        .into_response()
}

// --- login ---

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

fn login_page(token: &str, error: Option<&str>) -> Markup {
    layout(
        "Anmelden",
        None,
        html! {
            @if let Some(error) = error { p class="error" role="alert" { (error) } }
            form method="post" action="/anmelden" class="card" {
                input type="hidden" name="csrf" value=(token);
                label for="name" { "Benutzername" }
                input id="name" name="name" type="text" autocomplete="username" required autofocus;
                label for="password" { "Passwort" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Anmelden" }
            }
            p class="hint" { "Ihr Zugang wird von der Schul-IT eingerichtet (schoolfleet user set-password)." }
        },
    )
}

pub async fn login_form(headers: HeaderMap) -> Response {
    let token = session::cookie(&headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64)
        .map(str::to_owned)
        .unwrap_or_else(session::random_hex);
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(LOGIN_COOKIE, &token, Some(3600)),
        )],
        login_page(&token, None),
    )
        .into_response()
}

pub async fn login(
    State(state): State<WebState>,
    Extension(Peer(addr)): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Page {
    // Double submit: the form's token must equal the login cookie.
    let cookie = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !session::tokens_equal(cookie, &form.csrf) {
        return Err(PageError::Csrf);
    }
    let app = &state.app;
    let peer = crate::limits::peer_key(Some(addr));
    app.auth_failures
        .admit(&peer)
        .map_err(|l| PageError::TooMany(l.seconds()))?;
    let name = form.name.trim().to_owned();
    let user = state
        .identity
        .authenticate(&app.store, &name, &form.password)
        .await?;
    let Some(user) = user else {
        let key = crate::limits::FailureKey {
            action: "web.login",
            target: format!(
                "web_user:{}",
                schoolfleet_proto::text::clean(&name, 64).value
            ),
            county_id: None,
        };
        let limited_key = format!("web:{name}");
        app.auth_failures
            .record(
                key,
                Some(&limited_key),
                &peer,
                "wrong user name or password",
            )
            .map_err(|l| PageError::TooMany(l.seconds()))?;
        tracing::warn!(user = %schoolfleet_proto::text::echo(&name), %peer, "web login refused");
        let mut response =
            login_page(cookie, Some("Benutzername oder Passwort ist falsch.")).into_response();
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    };
    let id = session::start(&app.store, &user).await?;
    app.audit(
        &format!("user:{}", user.name),
        "web.login",
        &format!("user:{}", user.name),
        user.county_id.as_deref(),
        "ok",
        format!("peer={peer}"),
    )
    .await;
    let mut response = Redirect::to("/").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, &id, None)
            .parse()
            .map_err(|_| PageError::Unavailable)?,
    );
    headers.append(
        header::SET_COOKIE,
        session::clear_cookie(LOGIN_COOKIE)
            .parse()
            .map_err(|_| PageError::Unavailable)?,
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(State(state): State<WebState>, s: Session, Form(form): Form<CsrfForm>) -> Page {
    s.check_csrf(&form.csrf)?;
    state.app.store.delete_web_session(&s.id_hash).await?;
    Ok((
        [(header::SET_COOKIE, session::clear_cookie(SESSION_COOKIE))],
        Redirect::to("/anmelden"),
    )
        .into_response())
}

// --- start ---

pub async fn home(State(state): State<WebState>, s: Session) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let schools = if d.may_read_devices() {
        d.schools(None).await?
    } else {
        Vec::new()
    };
    let body = html! {
        p { "Willkommen, " (s.principal.name) "." }
        ul class="tiles" {
            @if d.may_report() {
                li { a href="/melden" { strong { "Problem melden" } span { "Ein Gerät Ihrer Schule funktioniert nicht? Hier melden." } } }
                li { a href="/meine-meldungen" { strong { "Meine Meldungen" } span { "Stand Ihrer Meldungen und Rückfragen der Technik." } } }
            }
            @if d.may_read_teacher_articles() {
                li { a href="/wissen" { strong { "Hilfe-Artikel" } span { "Anleitungen und was es Neues gibt." } } }
            }
            @if d.may_read_devices() {
                li { a href="/konformitaet" { strong { "Konformität" } span { "IT-Standard je Landkreis, Schule und Gerät." } } }
                li { a href="/bericht" { strong { "Quartalsbericht" } span { "Für die Strategierunde, druckbar und als CSV." } } }
                li { a href="/beschaffung" { strong { "Beschaffung" } span { "Modelle, Alter, Windows-11-Fähigkeit." } } }
            }
            @if d.may_read_tickets() {
                li { a href="/tickets" { strong { "Tickets" } span { "Warteschlange mit Filtern." } } }
            }
        }
        @if !schools.is_empty() && schools.len() <= 30 {
            h2 { "Schulen" }
            ul { @for school in &schools { li { a href={ "/schule/" (school.id) } { (school.name) " (" (school.id) ")" } } } }
        }
        @if !d.may_report() && !d.may_read_devices() && !d.may_read_tickets() && !d.may_read_teacher_articles() {
            p { "Ihr Zugang hat keine Rechte für das Portal." }
        }
    };
    Ok(page(&s, &d, "Start", body))
}

// --- teachers ---

#[derive(Deserialize)]
pub struct ReportQuery {
    q: Option<String>,
}

pub async fn report_form(
    State(state): State<WebState>,
    s: Session,
    Query(q): Query<ReportQuery>,
) -> Page {
    let d = Data::new(&state.app, &s.principal);
    if !d.may_report() {
        return Err(PageError::Denied);
    }
    let query = given(&q.q).unwrap_or_default().to_owned();
    let devices = d.report_devices(&query).await?;
    let body = html! {
        form method="get" action="/melden" class="card" role="search" {
            label for="q" { "Raum oder Gerätename" }
            input id="q" name="q" type="search" value=(query) placeholder="z. B. r204 oder pc03" required;
            button type="submit" { "Gerät suchen" }
        }
        @if !query.is_empty() && devices.is_empty() {
            p { "Kein Gerät Ihrer Schule passt zu „" (query) "“." }
        }
        @if !devices.is_empty() {
            form method="post" action="/melden" class="card" {
                input type="hidden" name="csrf" value=(s.csrf);
                fieldset {
                    legend { "Gerät" }
                    @for (i, device) in devices.iter().enumerate() {
                        div class="choice" {
                            input type="radio" name="device" id={ "d" (i) } value=(device.id) checked[devices.len() == 1] required;
                            label for={ "d" (i) } { (device.hostname) " · " (device.model) }
                        }
                    }
                }
                label for="category" { "Art des Problems" }
                select id="category" name="category" required {
                    @for (id, label) in REPORT_CATEGORIES { option value=(id) { (label) } }
                }
                label for="text" { "Was ist passiert?" }
                textarea id="text" name="text" rows="6" maxlength="5000" required {}
                button type="submit" { "Problem melden" }
            }
        }
    };
    Ok(page(&s, &d, "Problem melden", body))
}

#[derive(Deserialize)]
pub struct ReportForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    text: String,
}

pub async fn report(
    State(state): State<WebState>,
    s: Session,
    Form(form): Form<ReportForm>,
) -> Page {
    s.check_csrf(&form.csrf)?;
    let d = Data::new(&state.app, &s.principal);
    let ticket = d
        .report_problem(&form.device, &form.category, &form.text)
        .await?;
    Ok(Redirect::to(&format!("/meine-meldungen/{}", ticket.key())).into_response())
}

pub async fn my_tickets(State(state): State<WebState>, s: Session) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let tickets = d.my_tickets().await?;
    let body = html! {
        @if tickets.is_empty() { p { "Sie haben noch nichts gemeldet." } }
        @else {
            table {
                thead { tr { th { "Nummer" } th { "Betreff" } th { "Stand" } th { "Gemeldet" } } }
                tbody {
                    @for t in &tickets {
                        tr {
                            td { a href={ "/meine-meldungen/" (t.key()) } { (t.key()) } }
                            td { (t.title) }
                            td { (status_label(&t.status)) }
                            td { (when(t.created_at)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&s, &d, "Meine Meldungen", body))
}

pub async fn my_ticket(State(state): State<WebState>, s: Session, Path(key): Path<String>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let (ticket, events) = d.my_ticket(&key).await?;
    let body = html! {
        dl class="facts" {
            dt { "Betreff" } dd { (ticket.title) }
            dt { "Stand" } dd { (status_label(&ticket.status)) }
            dt { "Art" } dd { (data::category_label(&ticket.category)) }
            dt { "Gemeldet" } dd { (when(ticket.created_at)) }
        }
        h2 { "Beschreibung" }
        p class="text" { (ticket.description) }
        h2 { "Verlauf" }
        ol class="timeline" {
            @for e in &events {
                li {
                    span class="when" { (when(e.at)) }
                    " " strong { (e.actor) } " "
                    @match e.kind.as_str() {
                        "comment" => { p class="text" { (e.body) } }
                        "status" => { "Stand: " (status_label(&e.new_value)) }
                        _ => { "gemeldet" }
                    }
                }
            }
        }
        form method="post" action={ "/meine-meldungen/" (ticket.key()) "/antwort" } class="card" {
            input type="hidden" name="csrf" value=(s.csrf);
            label for="text" { "Antwort an die Technik" }
            textarea id="text" name="text" rows="4" required {}
            button type="submit" { "Antwort senden" }
        }
    };
    Ok(page(&s, &d, &format!("Meldung {}", ticket.key()), body))
}

#[derive(Deserialize)]
pub struct TextForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

pub async fn my_ticket_answer(
    State(state): State<WebState>,
    s: Session,
    Path(key): Path<String>,
    Form(form): Form<TextForm>,
) -> Page {
    s.check_csrf(&form.csrf)?;
    let d = Data::new(&state.app, &s.principal);
    let ticket = d.answer_my_ticket(&key, &form.text).await?;
    Ok(Redirect::to(&format!("/meine-meldungen/{}", ticket.key())).into_response())
}

pub async fn articles(State(state): State<WebState>, s: Session) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let articles = d.teacher_articles().await?;
    let month_ago = storage::now_millis() - 30 * 86_400_000;
    let new: Vec<_> = articles
        .iter()
        .filter(|a| a.updated_at >= month_ago)
        .collect();
    let body = html! {
        h2 { "Neu in den letzten 30 Tagen" }
        @if new.is_empty() { p { "Nichts Neues." } }
        ul {
            @for a in &new {
                li { a href={ "/wissen/" (a.id) } { (a.title) } " – " (day(a.updated_at)) }
            }
        }
        h2 { "Alle Artikel für Lehrkräfte" }
        @if articles.is_empty() { p { "Noch keine Artikel." } }
        ul {
            @for a in &articles { li { a href={ "/wissen/" (a.id) } { (a.title) } } }
        }
    };
    Ok(page(&s, &d, "Hilfe-Artikel", body))
}

pub async fn article(State(state): State<WebState>, s: Session, Path(id): Path<String>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let a = d.article(&id).await?;
    let body = html! {
        p class="hint" { "Stand: " (day(a.updated_at)) " · Version " (a.version) }
        div class="text article" { (a.body) }
    };
    Ok(page(&s, &d, &a.title, body))
}

// --- coordinators: compliance ---

#[derive(Deserialize, Default)]
pub struct ScopeQuery {
    county: Option<String>,
    school: Option<String>,
    quartal: Option<String>,
}

fn scope_query(county: Option<&str>, school: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(c) = county {
        parts.push(format!("county={c}"));
    }
    if let Some(s) = school {
        parts.push(format!("school={s}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

async fn county_picker(
    d: &Data<'_>,
    path: &str,
    current: Option<&str>,
) -> Result<Markup, PageError> {
    let counties = d.counties().await?;
    Ok(html! {
        @if counties.len() > 1 {
            p class="picker" {
                "Landkreis: "
                a href=(path) aria-current=[current.is_none().then_some("page")] { "alle" }
                @for c in &counties {
                    " · "
                    a href={ (path) "?county=" (c.id) } aria-current=[(current == Some(c.id.as_str())).then_some("page")] { (c.name) }
                }
            }
        }
    })
}

pub async fn compliance(
    State(state): State<WebState>,
    s: Session,
    Query(q): Query<ScopeQuery>,
) -> Page {
    let d = Data::new(&state.app, &s.principal);
    if !d.may_read_devices() {
        return Err(PageError::Denied);
    }
    let (county, school) = (given(&q.county), given(&q.school));
    d.require_county(county)?;
    let school_record = match school {
        Some(id) => Some(d.school(id).await?),
        None => None,
    };
    let Some(current) = d.standard().await? else {
        return Ok(page(
            &s,
            &d,
            "Konformität",
            html! { p { "Es wurde noch kein IT-Standard eingespielt." } },
        ));
    };
    let schools = d
        .school_compliance(current.revision, county, school)
        .await?;
    let counts = d.rule_counts(current.revision, county, school).await?;
    let waivers = d.waivers(&current, county, school).await?;
    let (devices, compliant) = schools
        .iter()
        .fold((0, 0), |(a, b), s| (a + s.devices, b + s.compliant));
    // Worst rules first: most devices failing or unknown (counted rules).
    let mut rules: Vec<_> = current
        .standard
        .rules()
        .iter()
        .map(|rule| {
            let count = |status: &str| {
                counts
                    .iter()
                    .find(|c| c.rule_id == rule.id && c.status == status)
                    .map_or(0, |c| c.devices)
            };
            (
                rule,
                count("pass"),
                count("fail"),
                count("unknown"),
                count("waived"),
            )
        })
        .collect();
    rules.sort_by_key(|(rule, _, fail, unknown, _)| (-(fail + unknown), rule.id.clone()));
    let scope = scope_query(county, school);
    let school_devices = match &school_record {
        Some(sr) => d.devices(Some(&sr.county_id), Some(&sr.id)).await?,
        None => Vec::new(),
    };
    let title = match &school_record {
        Some(sr) => format!("Konformität: {}", sr.name),
        None => match county {
            Some(c) => format!("Konformität: Landkreis {c}"),
            None => "Konformität".to_owned(),
        },
    };
    let body = html! {
        (county_picker(&d, "/konformitaet", county).await?)
        p class="big" { "Konform: " strong { (percent(compliant, devices)) } " (" (compliant) " von " (devices) " Geräten) · Standard-Revision " (current.revision) }
        figure {
            img src={ "/konformitaet/trend.svg" (scope) } alt="Verlauf des Anteils konformer Geräte über die letzten 90 Tage" width="640" height="240";
            figcaption { "Anteil konformer Geräte, Tageswerte der letzten 90 Tage" }
        }
        h2 { "Regeln, schlechteste zuerst" }
        table {
            thead { tr { th { "Regel" } th { "Art" } th class="num" { "nicht erfüllt" } th class="num" { "unbekannt" } th class="num" { "Ausnahme" } th class="num" { "erfüllt" } } }
            tbody {
                @for (rule, pass, fail, unknown, waived) in &rules {
                    tr {
                        td { a href={ "/konformitaet/regel/" (rule.id) (scope) } { (rule.title) } br; small { (rule.id) } }
                        td { (if rule.mode.counted() { "zählt" } else { "beobachten" }) }
                        td class="num" { (fail) } td class="num" { (unknown) } td class="num" { (waived) } td class="num" { (pass) }
                    }
                }
            }
        }
        @if school.is_none() {
            h2 { "Schulen" }
            table {
                thead { tr { th { "Schule" } th { "Landkreis" } th class="num" { "Geräte" } th class="num" { "konform" } th class="num" { "Anteil" } } }
                tbody {
                    @for row in &schools {
                        tr {
                            td { a href={ "/konformitaet?county=" (row.county_id) "&school=" (row.school_id) } { (row.school_id) } }
                            td { (row.county_id) }
                            td class="num" { (row.devices) } td class="num" { (row.compliant) } td class="num" { (percent(row.compliant, row.devices)) }
                        }
                    }
                }
            }
        }
        @if !school_devices.is_empty() {
            h2 { "Geräte" }
            ul class="columns" { @for dev in &school_devices { li { a href={ "/geraete/" (dev.id) } { (dev.hostname) } } } }
        }
        h2 { "Ausnahmen (Waiver)" }
        @if waivers.is_empty() { p { "Keine." } }
        @else {
            table {
                thead { tr { th { "Ausnahme" } th { "Regel" } th { "läuft ab" } th { "Begründung" } } }
                tbody {
                    @for (id, rule, expires, reason) in &waivers {
                        tr {
                            td { (id) } td { (rule) }
                            td { (expires.format("%d.%m.%Y").to_string()) @if *expires < chrono::Utc::now() { " (abgelaufen)" } }
                            td { (reason) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&s, &d, &title, body))
}

pub async fn compliance_rule(
    State(state): State<WebState>,
    s: Session,
    Path(rule_id): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> Page {
    let d = Data::new(&state.app, &s.principal);
    if !d.may_read_devices() {
        return Err(PageError::Denied);
    }
    let (county, school) = (given(&q.county), given(&q.school));
    d.require_county(county)?;
    if let Some(id) = school {
        d.school(id).await?;
    }
    let current = d.standard().await?.ok_or(PageError::NotFound)?;
    let rule = current
        .standard
        .rules()
        .iter()
        .find(|r| r.id == rule_id)
        .ok_or(PageError::NotFound)?;
    let failing = d
        .failing_devices(current.revision, &rule.id, county, school)
        .await?;
    let body = html! {
        p { small { "Regel " (rule.id) } }
        @if let Some(fix) = &rule.remediation { p { strong { "Abhilfe: " } (fix) } }
        h2 { "Geräte, die die Regel nicht erfüllen (" (failing.len()) ")" }
        @if failing.is_empty() { p { "Keine." } }
        @else {
            table {
                thead { tr { th { "Gerät" } th { "Schule" } th { "erwartet" } th { "tatsächlich" } } }
                tbody {
                    @for f in &failing {
                        tr {
                            td { a href={ "/geraete/" (f.device_id) } { (f.hostname) } }
                            td { (f.school_id) }
                            td { (f.expected) }
                            td { (f.actual) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&s, &d, &rule.title, body))
}

pub async fn trend_svg(
    State(state): State<WebState>,
    s: Session,
    Query(q): Query<ScopeQuery>,
) -> Page {
    let d = Data::new(&state.app, &s.principal);
    if !d.may_read_devices() {
        return Err(PageError::Denied);
    }
    let (county, school) = (given(&q.county), given(&q.school));
    d.require_county(county)?;
    if let Some(id) = school {
        d.school(id).await?;
    }
    let points: Vec<(String, f64)> = d
        .trend(county, school, 90)
        .await?
        .into_iter()
        .map(|(day, devices, compliant)| (day, compliant as f64 / devices as f64))
        .collect();
    let svg = super::svg::trend(&points, "Anteil konformer Geräte");
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

// --- the quarterly report ---

/// A quarter `YYYY-Qn`: its first and its end instant (exclusive).
fn quarter_bounds(text: Option<&str>) -> Result<(String, Millis, Millis), PageError> {
    use chrono::{Datelike, NaiveDate};
    let (year, q) = match text {
        Some(t) => {
            let (y, q) = t
                .split_once("-Q")
                .ok_or_else(|| PageError::Invalid("Quartal wie 2026-Q4 angeben.".into()))?;
            let year: i32 = y
                .parse()
                .map_err(|_| PageError::Invalid("Jahr ungültig.".into()))?;
            let q: u32 = q
                .parse()
                .map_err(|_| PageError::Invalid("Quartal ungültig.".into()))?;
            if !(1..=4).contains(&q) || !(2000..=2100).contains(&year) {
                return Err(PageError::Invalid("Quartal wie 2026-Q4 angeben.".into()));
            }
            (year, q)
        }
        None => {
            let today = chrono::Utc::now().date_naive();
            (today.year(), (today.month() - 1) / 3 + 1)
        }
    };
    let start = NaiveDate::from_ymd_opt(year, (q - 1) * 3 + 1, 1).ok_or(PageError::NotFound)?;
    let end = if q == 4 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, q * 3 + 1, 1)
    }
    .ok_or(PageError::NotFound)?;
    let ms = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp_millis())
    };
    Ok((format!("{year}-Q{q}"), ms(start), ms(end)))
}

/// Ticket figures of one group.
#[derive(Default, Clone)]
struct TicketStats {
    opened: i64,
    resolved: i64,
    backlog: i64,
    resolve_times: Vec<Millis>,
}

impl TicketStats {
    fn median_hours(&self) -> Option<f64> {
        if self.resolve_times.is_empty() {
            return None;
        }
        let mut t = self.resolve_times.clone();
        t.sort_unstable();
        let mid = t.len() / 2;
        let ms = if t.len().is_multiple_of(2) {
            (t[mid - 1] + t[mid]) as f64 / 2.0
        } else {
            t[mid] as f64
        };
        Some(ms / 3_600_000.0)
    }
}

struct Quarterly {
    quarter: String,
    revision: Option<i64>,
    /// (rule id, title, school, pass, fail, unknown, waived)
    rules: Vec<(String, String, String, i64, i64, i64, i64)>,
    schools: Vec<storage::SchoolCompliance>,
    /// (county, category) -> stats
    tickets: BTreeMap<(String, String), TicketStats>,
    /// county -> (sessions, minutes), `None`: the caller may not read sessions.
    sessions: Option<BTreeMap<String, (i64, i64)>>,
}

async fn quarterly_data(d: &Data<'_>, q: &ScopeQuery) -> Result<Quarterly, PageError> {
    if !d.may_read_devices() {
        return Err(PageError::Denied);
    }
    let county = given(&q.county);
    d.require_county(county)?;
    let (quarter, start, end) = quarter_bounds(given(&q.quartal))?;
    let current = d.standard().await?;
    let mut rules = Vec::new();
    let mut schools = Vec::new();
    if let Some(current) = &current {
        schools = d.school_compliance(current.revision, county, None).await?;
        for school in &schools {
            let counts = d
                .rule_counts(current.revision, county, Some(&school.school_id))
                .await?;
            for rule in current.standard.rules() {
                let count = |status: &str| {
                    counts
                        .iter()
                        .find(|c| c.rule_id == rule.id && c.status == status)
                        .map_or(0, |c| c.devices)
                };
                rules.push((
                    rule.id.clone(),
                    rule.title.clone(),
                    school.school_id.clone(),
                    count("pass"),
                    count("fail"),
                    count("unknown"),
                    count("waived"),
                ));
            }
        }
    }
    let mut tickets: BTreeMap<(String, String), TicketStats> = BTreeMap::new();
    if d.may_read_tickets() {
        for t in d
            .tickets(TicketQuery {
                county_id: county.map(str::to_owned),
                limit: 100_000,
                ..Default::default()
            })
            .await?
        {
            let entry = tickets
                .entry((t.county_id.clone(), t.category.clone()))
                .or_default();
            if (start..end).contains(&t.created_at) {
                entry.opened += 1;
            }
            if let Some(closed) = t.closed_at
                && (start..end).contains(&closed)
            {
                entry.resolved += 1;
                entry.resolve_times.push(closed - t.created_at);
            }
            // Open at the end of the quarter.
            if t.created_at < end && t.closed_at.is_none_or(|c| c >= end) {
                entry.backlog += 1;
            }
        }
    }
    let sessions = match d.sessions(None, 100_000).await? {
        None => None,
        Some(list) => {
            let mut by_county: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            for session in list.iter().filter(|x| {
                (start..end).contains(&x.started_at) && county.is_none_or(|c| c == x.county_id)
            }) {
                let entry = by_county.entry(session.county_id.clone()).or_default();
                entry.0 += 1;
                entry.1 += session
                    .ended_at
                    .map_or(0, |e| (e - session.started_at).max(0) / 60_000);
            }
            Some(by_county)
        }
    };
    Ok(Quarterly {
        quarter,
        revision: current.map(|c| c.revision),
        rules,
        schools,
        tickets,
        sessions,
    })
}

fn hours(h: Option<f64>) -> String {
    h.map_or("–".into(), |h| format!("{h:.1} h").replace('.', ","))
}

pub async fn quarterly(
    State(state): State<WebState>,
    s: Session,
    Query(q): Query<ScopeQuery>,
) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let r = quarterly_data(&d, &q).await?;
    let county = given(&q.county);
    let csv_link = format!(
        "/bericht.csv?quartal={}{}",
        r.quarter,
        county.map(|c| format!("&county={c}")).unwrap_or_default()
    );
    let body = html! {
        (county_picker(&d, "/bericht", county).await?)
        form method="get" action="/bericht" class="inline noprint" {
            @if let Some(c) = county { input type="hidden" name="county" value=(c); }
            label for="quartal" { "Quartal" }
            input id="quartal" name="quartal" value=(r.quarter) pattern="[0-9]{4}-Q[1-4]";
            button type="submit" { "Anzeigen" }
            " " a href=(csv_link) { "Als CSV herunterladen" }
        }
        h2 { "Konformität je Schule" }
        @match r.revision {
            None => p { "Es wurde noch kein IT-Standard eingespielt." },
            Some(rev) => {
                p { "Stand heute, Standard-Revision " (rev) "." }
                table {
                    thead { tr { th { "Schule" } th { "Landkreis" } th class="num" { "Geräte" } th class="num" { "konform" } th class="num" { "Anteil" } } }
                    tbody { @for row in &r.schools { tr { td { (row.school_id) } td { (row.county_id) } td class="num" { (row.devices) } td class="num" { (row.compliant) } td class="num" { (percent(row.compliant, row.devices)) } } } }
                }
                h2 { "Konformität je Regel und Schule" }
                table {
                    thead { tr { th { "Regel" } th { "Schule" } th class="num" { "erfüllt" } th class="num" { "nicht erfüllt" } th class="num" { "unbekannt" } th class="num" { "Ausnahme" } } }
                    tbody { @for (id, title, school, pass, fail, unknown, waived) in &r.rules { tr { td { (title) br; small { (id) } } td { (school) } td class="num" { (pass) } td class="num" { (fail) } td class="num" { (unknown) } td class="num" { (waived) } } } }
                }
            }
        }
        h2 { "Tickets " (r.quarter) }
        @if r.tickets.is_empty() { p { "Keine Tickets." } }
        @else {
            table {
                thead { tr { th { "Landkreis" } th { "Kategorie" } th class="num" { "eröffnet" } th class="num" { "gelöst" } th class="num" { "offen am Quartalsende" } th class="num" { "Median bis Lösung" } } }
                tbody { @for ((c, cat), st) in &r.tickets { tr { td { (c) } td { (data::category_label(cat)) } td class="num" { (st.opened) } td class="num" { (st.resolved) } td class="num" { (st.backlog) } td class="num" { (hours(st.median_hours())) } } } }
            }
        }
        h2 { "Fernwartung " (r.quarter) }
        @match &r.sessions {
            None => p { "Keine Berechtigung, Fernwartungssitzungen zu sehen." },
            Some(by) if by.is_empty() => p { "Keine Sitzungen." },
            Some(by) => table {
                thead { tr { th { "Landkreis" } th class="num" { "Sitzungen" } th class="num" { "Minuten" } } }
                tbody { @for (c, (n, minutes)) in by { tr { td { (c) } td class="num" { (n) } td class="num" { (minutes) } } } }
            },
        }
    };
    Ok(page(
        &s,
        &d,
        &format!("Quartalsbericht {}", r.quarter),
        body,
    ))
}

pub async fn quarterly_csv(
    State(state): State<WebState>,
    s: Session,
    Query(q): Query<ScopeQuery>,
) -> Page {
    use super::csv::{Cell, row};
    let d = Data::new(&state.app, &s.principal);
    let r = quarterly_data(&d, &q).await?;
    let mut out = row(&[
        Cell::Text("abschnitt"),
        Cell::Text("landkreis"),
        Cell::Text("schule"),
        Cell::Text("regel"),
        Cell::Text("kategorie"),
        Cell::Text("kennzahl"),
        Cell::Text("wert"),
    ]);
    for sc in &r.schools {
        for (metric, value) in [("geraete", sc.devices), ("konform", sc.compliant)] {
            out.push_str(&row(&[
                Cell::Text("konformitaet_schule"),
                Cell::Text(&sc.county_id),
                Cell::Text(&sc.school_id),
                Cell::Empty,
                Cell::Empty,
                Cell::Text(metric),
                Cell::Int(value),
            ]));
        }
        if sc.devices > 0 {
            out.push_str(&row(&[
                Cell::Text("konformitaet_schule"),
                Cell::Text(&sc.county_id),
                Cell::Text(&sc.school_id),
                Cell::Empty,
                Cell::Empty,
                Cell::Text("anteil_konform"),
                Cell::Num(sc.compliant as f64 / sc.devices as f64),
            ]));
        }
    }
    let county_of: BTreeMap<&str, &str> = r
        .schools
        .iter()
        .map(|s| (s.school_id.as_str(), s.county_id.as_str()))
        .collect();
    for (id, _, school, pass, fail, unknown, waived) in &r.rules {
        let county = county_of.get(school.as_str()).copied().unwrap_or_default();
        for (metric, value) in [
            ("erfuellt", pass),
            ("nicht_erfuellt", fail),
            ("unbekannt", unknown),
            ("ausnahme", waived),
        ] {
            out.push_str(&row(&[
                Cell::Text("konformitaet_regel"),
                Cell::Text(county),
                Cell::Text(school),
                Cell::Text(id),
                Cell::Empty,
                Cell::Text(metric),
                Cell::Int(*value),
            ]));
        }
    }
    for ((county, category), st) in &r.tickets {
        let mut metrics = vec![
            ("eroeffnet", Cell::Int(st.opened)),
            ("geloest", Cell::Int(st.resolved)),
            ("offen_quartalsende", Cell::Int(st.backlog)),
        ];
        if let Some(h) = st.median_hours() {
            metrics.push(("median_stunden_bis_loesung", Cell::Num(h)));
        }
        for (metric, value) in metrics {
            out.push_str(&row(&[
                Cell::Text("tickets"),
                Cell::Text(county),
                Cell::Empty,
                Cell::Empty,
                Cell::Text(category),
                Cell::Text(metric),
                value,
            ]));
        }
    }
    if let Some(by) = &r.sessions {
        for (county, (n, minutes)) in by {
            for (metric, value) in [("sitzungen", *n), ("minuten", *minutes)] {
                out.push_str(&row(&[
                    Cell::Text("fernwartung"),
                    Cell::Text(county),
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Empty,
                    Cell::Text(metric),
                    Cell::Int(value),
                ]));
            }
        }
    }
    let filename = format!(
        "attachment; filename=\"quartalsbericht-{}{}.csv\"",
        r.quarter,
        given(&q.county)
            .map(|c| format!("-{c}"))
            .unwrap_or_default()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        out,
    )
        .into_response())
}

// --- procurement ---

/// Windows 11 readiness of a device: `Some(empty)` ready, `Some(reasons)`
/// not ready, `None` unknown or not Windows. The agent's own check
/// (`Inventory.windows11`, with the CPU list) wins; for agents that do not
/// send it, TPM, UEFI, Secure Boot and memory from the inventory can only
/// prove a device NOT ready (the CPU is not judged here, so nothing is
/// promised).
fn win11_blockers(inv: &schoolfleet_proto::v1::Inventory) -> Option<Vec<String>> {
    use schoolfleet_proto::v1::Tristate;
    let os = inv.os.as_ref()?;
    if os.family != "windows" {
        return None;
    }
    if let Some(w) = &inv.windows11 {
        return match w.ready() {
            Tristate::Yes => Some(Vec::new()),
            Tristate::No if !w.blockers.is_empty() => Some(w.blockers.clone()),
            Tristate::No => Some(vec!["nicht erfüllt (ohne Angabe)".into()]),
            Tristate::Unknown => None,
        };
    }
    let fw = inv.firmware.as_ref()?;
    let mut blockers = Vec::new();
    if !fw.tpm_present || !fw.tpm_version.starts_with('2') {
        blockers.push("kein TPM 2.0".to_owned());
    }
    if fw.boot_mode != "uefi" {
        blockers.push("kein UEFI".to_owned());
    } else if fw.secure_boot_capable() == Tristate::No {
        blockers.push("Secure Boot nicht möglich".to_owned());
    }
    let memory = inv.hardware.as_ref().map_or(0, |h| h.memory_total_bytes);
    if memory < 4 * 1024 * 1024 * 1024 - 64 * 1024 * 1024 {
        blockers.push("unter 4 GB RAM".to_owned());
    }
    (!blockers.is_empty()).then_some(blockers)
}

pub async fn procurement(
    State(state): State<WebState>,
    s: Session,
    Query(q): Query<ScopeQuery>,
) -> Page {
    let d = Data::new(&state.app, &s.principal);
    if !d.may_read_devices() {
        return Err(PageError::Denied);
    }
    let county = given(&q.county);
    d.require_county(county)?;
    let devices = d.devices(county, None).await?;
    let now = storage::now_millis();
    // (vendor, model) -> (count, sum of ages in days)
    let mut models: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    // school -> (devices, win ready, win not ready, not windows/unknown)
    let mut schools: BTreeMap<String, (i64, i64, i64, i64)> = BTreeMap::new();
    let mut blocked: Vec<(storage::DeviceRecord, Vec<String>, String)> = Vec::new();
    for dev in &devices {
        let inv = d.inventory(dev).await?;
        let age_days = (now - dev.enrolled_at).max(0) / 86_400_000;
        let m = models
            .entry((dev.vendor.clone(), dev.model.clone()))
            .or_default();
        m.0 += 1;
        m.1 += age_days;
        let sc = schools.entry(dev.school_id.clone()).or_default();
        sc.0 += 1;
        match inv.as_ref().and_then(win11_blockers) {
            Some(b) if b.is_empty() => sc.1 += 1,
            Some(b) => {
                sc.2 += 1;
                let cpu = inv
                    .as_ref()
                    .and_then(|i| i.hardware.as_ref())
                    .map(|h| h.cpu_model.clone())
                    .unwrap_or_default();
                blocked.push((dev.clone(), b, cpu));
            }
            None => sc.3 += 1,
        }
    }
    // OS past its end of support: the standard's os_lifecycle rules.
    let mut eol = Vec::new();
    if let Some(current) = d.standard().await? {
        for rule in current
            .standard
            .rules()
            .iter()
            .filter(|r| r.check_type() == "os_lifecycle")
        {
            for f in d
                .failing_devices(current.revision, &rule.id, county, None)
                .await?
            {
                eol.push((rule.title.clone(), f));
            }
        }
    }
    let body = html! {
        (county_picker(&d, "/beschaffung", county).await?)
        h2 { "Geräte nach Modell" }
        table {
            thead { tr { th { "Hersteller" } th { "Modell" } th class="num" { "Anzahl" } th class="num" { "Ø Jahre im Bestand" } } }
            tbody {
                @for ((vendor, model), (n, days)) in &models {
                    tr { td { (vendor) } td { (model) } td class="num" { (n) } td class="num" { (format!("{:.1}", *days as f64 / *n as f64 / 365.0).replace('.', ",")) } }
                }
            }
        }
        p class="hint" { "Alter: seit der Aufnahme in schoolfleet (das Kaufdatum ist im Inventar nicht bekannt)." }
        h2 { "Windows 11 je Schule" }
        table {
            thead { tr { th { "Schule" } th class="num" { "Geräte" } th class="num" { "Windows-11-fähig" } th class="num" { "nicht fähig" } th class="num" { "kein Windows / unbekannt" } } }
            tbody { @for (school, (n, ok, no, other)) in &schools { tr { td { (school) } td class="num" { (n) } td class="num" { (ok) } td class="num" { (no) } td class="num" { (other) } } } }
        }
        @if !blocked.is_empty() {
            h2 { "Nicht Windows-11-fähig" }
            table {
                thead { tr { th { "Gerät" } th { "Schule" } th { "Gründe" } th { "CPU" } } }
                tbody { @for (dev, reasons, cpu) in &blocked { tr { td { a href={ "/geraete/" (dev.id) } { (dev.hostname) } } td { (dev.school_id) } td { (reasons.join(", ")) } td { (cpu) } } } }
            }
        }
        h2 { "Betriebssystem ohne Herstellerunterstützung" }
        @if eol.is_empty() { p { "Keine (laut Lebenszyklus-Tabelle des IT-Standards)." } }
        @else {
            table {
                thead { tr { th { "Gerät" } th { "Schule" } th { "Regel" } th { "System" } } }
                tbody { @for (title, f) in &eol { tr { td { a href={ "/geraete/" (f.device_id) } { (f.hostname) } } td { (f.school_id) } td { (title) } td { (f.actual) } } } }
            }
        }
    };
    Ok(page(&s, &d, "Beschaffung", body))
}

// --- school leaders ---

pub async fn school(State(state): State<WebState>, s: Session, Path(id): Path<String>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let school = d.school(&id).await?;
    let devices = d.devices(Some(&school.county_id), Some(&school.id)).await?;
    let compliance = match d.standard().await? {
        Some(c) => d
            .school_compliance(c.revision, Some(&school.county_id), Some(&school.id))
            .await?
            .into_iter()
            .next(),
        None => None,
    };
    let tickets = if d.may_read_tickets() {
        d.tickets(TicketQuery {
            county_id: Some(school.county_id.clone()),
            school_id: Some(school.id.clone()),
            limit: 200,
            ..Default::default()
        })
        .await?
    } else {
        Vec::new()
    };
    let sessions = d.sessions(None, 5000).await?.map(|list| {
        list.into_iter()
            .filter(|x| x.school_id == school.id)
            .take(100)
            .collect::<Vec<_>>()
    });
    let body = html! {
        p class="big" {
            @if let Some(c) = &compliance { "Konform: " strong { (percent(c.compliant, c.devices)) } " (" (c.compliant) " von " (c.devices) ") · " }
            a href={ "/konformitaet?county=" (school.county_id) "&school=" (school.id) } { "Konformität im Einzelnen" }
        }
        h2 { "Geräte (" (devices.len()) ")" }
        table {
            thead { tr { th { "Gerät" } th { "Klasse" } th { "System" } th { "zuletzt gesehen" } } }
            tbody { @for dev in &devices { tr { td { a href={ "/geraete/" (dev.id) } { (dev.hostname) } } td { (dev.device_class) } td { (dev.os_name) " " (dev.os_version) } td { (dev.last_seen.map(when).unwrap_or_else(|| "nie".into())) } } } }
        }
        h2 { "Tickets" }
        @if tickets.is_empty() { p { "Keine." } }
        table {
            tbody { @for t in &tickets { tr { td { a href={ "/tickets/" (t.key()) } { (t.key()) } } td { (t.title) } td { (status_label(&t.status)) } td { (when(t.created_at)) } } } }
        }
        h2 { "Fernwartung: wer, wann, warum" }
        @match &sessions {
            None => p { "Keine Berechtigung, Fernwartungssitzungen zu sehen." },
            Some(list) if list.is_empty() => p { "Keine Sitzungen." },
            Some(list) => table {
                thead { tr { th { "Beginn" } th { "Ende" } th { "Wer" } th { "Art" } th { "Grund" } th { "Ticket" } } }
                tbody { @for x in list { tr { td { (when(x.started_at)) } td { (x.ended_at.map(when).unwrap_or_else(|| "läuft".into())) } td { (x.actor) } td { (x.kind) } td { (x.reason) } td { (x.ticket) } } } }
            },
        }
    };
    Ok(page(&s, &d, &format!("Schule {}", school.name), body))
}

// --- technicians ---

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    county: Option<String>,
    school: Option<String>,
    status: Option<String>,
    category: Option<String>,
    assignee: Option<String>,
}

pub async fn ticket_queue(
    State(state): State<WebState>,
    s: Session,
    Query(q): Query<QueueQuery>,
) -> Page {
    let d = Data::new(&state.app, &s.principal);
    if !d.may_read_tickets() {
        return Err(PageError::Denied);
    }
    let statuses = match given(&q.status) {
        Some("alle") => Vec::new(),
        Some(st) if storage::TICKET_STATUSES.contains(&st) => vec![st.to_owned()],
        Some(_) => return Err(PageError::Invalid("Unbekannter Status.".into())),
        None => vec!["new".into(), "open".into(), "waiting".into()],
    };
    let names = d.user_names().await?;
    let assignee_id = given(&q.assignee).map(|a| {
        names
            .iter()
            .find(|(_, n)| n.as_str() == a)
            .map_or_else(|| format!("unknown:{a}"), |(id, _)| id.clone())
    });
    let mut tickets = d
        .tickets(TicketQuery {
            statuses,
            county_id: given(&q.county).map(str::to_owned),
            school_id: given(&q.school).map(str::to_owned),
            assignee_id,
            limit: 500,
            ..Default::default()
        })
        .await?;
    if let Some(cat) = given(&q.category) {
        tickets.retain(|t| t.category == cat);
    }
    let counties = d.counties().await?;
    let body = html! {
        form method="get" action="/tickets" class="filters" {
            label for="county" { "Landkreis" }
            select id="county" name="county" {
                option value="" { "alle" }
                @for c in &counties { option value=(c.id) selected[given(&q.county) == Some(c.id.as_str())] { (c.name) } }
            }
            label for="school" { "Schule" }
            input id="school" name="school" value=(given(&q.school).unwrap_or_default()) size="8";
            label for="status" { "Status" }
            select id="status" name="status" {
                option value="" { "offen (neu, in Bearbeitung, wartet)" }
                @for st in storage::TICKET_STATUSES { option value=(st) selected[given(&q.status) == Some(st)] { (status_label(st)) } }
                option value="alle" selected[given(&q.status) == Some("alle")] { "alle" }
            }
            label for="category" { "Kategorie" }
            input id="category" name="category" value=(given(&q.category).unwrap_or_default()) size="10";
            label for="assignee" { "Bearbeiter" }
            input id="assignee" name="assignee" value=(given(&q.assignee).unwrap_or_default()) size="10";
            button type="submit" { "Filtern" }
        }
        p { (tickets.len()) " Tickets" }
        table {
            thead { tr { th { "Nummer" } th { "Betreff" } th { "Status" } th { "Priorität" } th { "Kategorie" } th { "Schule" } th { "Bearbeiter" } th { "Erstellt" } } }
            tbody {
                @for t in &tickets {
                    tr {
                        td { a href={ "/tickets/" (t.key()) } { (t.key()) } }
                        td { (t.title) }
                        td { (status_label(&t.status)) }
                        td { (t.priority) }
                        td { (t.category) }
                        td { (t.school_id.as_deref().unwrap_or(&t.county_id)) }
                        td { (t.assignee_id.as_ref().and_then(|a| names.get(a)).map(String::as_str).unwrap_or("–")) }
                        td { (when(t.created_at)) }
                    }
                }
            }
        }
    };
    Ok(page(&s, &d, "Tickets", body))
}

pub async fn ticket(State(state): State<WebState>, s: Session, Path(key): Path<String>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let (ticket, timeline) = d.ticket(&key).await?;
    let devices = d.ticket_devices(&ticket).await?;
    let names = d.user_names().await?;
    let may_work = s.principal.can(
        Permission::TicketWork,
        &crate::service::access::ticket_tenant(&ticket),
    );
    let body = html! {
        dl class="facts" {
            dt { "Betreff" } dd { (ticket.title) }
            dt { "Status" } dd { (status_label(&ticket.status)) }
            dt { "Priorität" } dd { (ticket.priority) }
            dt { "Kategorie" } dd { (ticket.category) }
            dt { "Schule" } dd { (ticket.school_id.as_deref().unwrap_or("–")) " (" (ticket.county_id) ")" }
            dt { "Gemeldet von" } dd { (ticket.reporter) }
            dt { "Bearbeiter" } dd { (ticket.assignee_id.as_ref().and_then(|a| names.get(a)).map(String::as_str).unwrap_or("–")) }
            dt { "Geräte" } dd { @for dev in &devices { a href={ "/geraete/" (dev.id) } { (dev.hostname) } " " } }
        }
        h2 { "Beschreibung" }
        p class="text" { (ticket.description) }
        h2 { "Verlauf" }
        ol class="timeline" {
            @for entry in &timeline {
                li {
                    span class="when" { (when(entry.at())) } " "
                    @match entry {
                        TimelineEntry::Event(e) => {
                            strong { (e.actor) } " "
                            @match e.kind.as_str() {
                                "comment" => { "kommentiert:" p class="text" { (e.body) } }
                                "status" => { "Status: " (status_label(&e.old_value)) " → " (status_label(&e.new_value)) }
                                "assignee" => { "Bearbeiter: " (e.new_value) }
                                "device" => { "Gerät verknüpft: " (e.new_value) }
                                "created" => { "hat das Ticket eröffnet" @if !e.body.is_empty() { " (" (e.body) ")" } }
                                other => { (other) " " (e.body) }
                            }
                        }
                        TimelineEntry::Inventory { device_id, change } => {
                            "Inventar " small { (device_id) } ": " (change.kind) " " (change.subject) " " (change.old_value) " → " (change.new_value)
                        }
                        TimelineEntry::Compliance(c) => {
                            "Standard-Regel " (c.rule_id) ": " (result_label(&c.old_status)) " → " (result_label(&c.new_status)) " (" (c.actual) ")"
                        }
                        TimelineEntry::Session(x) => {
                            strong { (x.actor) } " Fernwartung (" (x.kind) "), Grund: " (x.reason)
                            " · Ende: " (x.ended_at.map(when).unwrap_or_else(|| "läuft".into()))
                            @if let Some(code) = x.exit_code { " · Exit-Code " (code) }
                        }
                    }
                }
            }
        }
        @if may_work {
            form method="post" action={ "/tickets/" (ticket.key()) "/kommentar" } class="card" {
                input type="hidden" name="csrf" value=(s.csrf);
                label for="text" { "Kommentar" }
                textarea id="text" name="text" rows="4" required {}
                button type="submit" { "Kommentieren" }
            }
        }
    };
    Ok(page(&s, &d, &format!("Ticket {}", ticket.key()), body))
}

pub async fn ticket_comment(
    State(state): State<WebState>,
    s: Session,
    Path(key): Path<String>,
    Form(form): Form<TextForm>,
) -> Page {
    s.check_csrf(&form.csrf)?;
    let d = Data::new(&state.app, &s.principal);
    let ticket = d.comment_ticket(&key, &form.text).await?;
    Ok(Redirect::to(&format!("/tickets/{}", ticket.key())).into_response())
}

fn bytes(n: u64) -> String {
    format!("{:.1} GB", n as f64 / 1e9).replace('.', ",")
}

pub async fn device(State(state): State<WebState>, s: Session, Path(key): Path<String>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let device = d.device(&key).await?;
    let inventory = d.inventory(&device).await?;
    let history = d.device_history(&device).await?;
    let current = d.standard().await?;
    let results = match &current {
        Some(c) => d.device_compliance(&device, c.revision).await?,
        None => Vec::new(),
    };
    let sessions = d.sessions(Some(&device.id), 20).await?;
    let tenant = crate::auth::TenantRef::school(&device.county_id, &device.school_id);
    let may_shell = s.principal.can(Permission::SessionShell, &tenant);
    let open_tickets = if d.may_read_tickets() {
        d.tickets(TicketQuery {
            device_id: Some(device.id.clone()),
            statuses: vec!["new".into(), "open".into(), "waiting".into()],
            limit: 20,
            ..Default::default()
        })
        .await?
    } else {
        Vec::new()
    };
    let ticket_arg = open_tickets
        .first()
        .map(|t| format!(" --ticket {}", t.key()))
        .unwrap_or_default();
    let command = format!("schoolfleet shell {} --reason \"…\"{ticket_arg}", device.id);
    let title_of = |rule: &str| {
        current
            .as_ref()
            .and_then(|c| c.standard.rules().iter().find(|r| r.id == rule))
            .map(|r| r.title.clone())
            .unwrap_or_else(|| rule.to_owned())
    };
    let body = html! {
        dl class="facts" {
            dt { "Schule" } dd { a href={ "/schule/" (device.school_id) } { (device.school_id) } " (" (device.county_id) ")" }
            dt { "Klasse" } dd { (device.device_class) }
            dt { "Status" } dd { (device.status) }
            dt { "Zuletzt gesehen" } dd { (device.last_seen.map(when).unwrap_or_else(|| "nie".into())) }
            dt { "Geräte-ID" } dd { code { (device.id) } }
        }
        @if may_shell {
            h2 { "Fernwartung starten" }
            p { "Im Terminal (der Grund wird protokolliert):" }
            pre { code { (command) } }
        }
        h2 { "Inventar" }
        @match &inventory {
            None => p { "Noch kein Inventar." },
            Some(inv) => {
                dl class="facts" {
                    @if let Some(os) = &inv.os { dt { "System" } dd { (os.name) " " (os.version) " " (os.edition) } }
                    @if let Some(hw) = &inv.hardware {
                        dt { "Hardware" } dd { (hw.vendor) " " (hw.model) }
                        dt { "CPU" } dd { (hw.cpu_model) " (" (hw.cpu_logical_cores) " Threads)" }
                        dt { "Arbeitsspeicher" } dd { (bytes(hw.memory_total_bytes)) }
                        dt { "BIOS" } dd { (hw.bios_vendor) " " (hw.bios_version) " " (hw.bios_date) }
                    }
                    @if let Some(fw) = &inv.firmware { dt { "Firmware" } dd { (fw.boot_mode) ", TPM " (if fw.tpm_present { fw.tpm_version.as_str() } else { "keins" }) } }
                    dt { "Datenträger" } dd { @for disk in &inv.disks { (disk.name) " " (bytes(disk.size_bytes)) " · " } }
                    dt { "Software" } dd { (inv.software.len()) " Pakete" }
                }
            }
        }
        h2 { "Konformität" }
        @if results.is_empty() { p { "Noch nicht bewertet." } }
        @else {
            table {
                thead { tr { th { "Regel" } th { "Ergebnis" } th { "erwartet" } th { "tatsächlich" } th { "Ausnahme" } } }
                tbody {
                    @for r in &results {
                        tr {
                            td { (title_of(&r.rule_id)) }
                            td { (result_label(&r.status)) }
                            td { (r.expected) } td { (r.actual) }
                            td { (r.waiver_id) @if let Some(exp) = r.waiver_expires_at { " bis " (day(exp)) } }
                        }
                    }
                }
            }
        }
        h2 { "Offene Tickets" }
        @if open_tickets.is_empty() { p { "Keine." } }
        ul { @for t in &open_tickets { li { a href={ "/tickets/" (t.key()) } { (t.key()) } " " (t.title) } } }
        @if let Some(list) = &sessions {
            h2 { "Fernwartung" }
            @if list.is_empty() { p { "Keine Sitzungen." } }
            ul { @for x in list { li { (when(x.started_at)) " " (x.actor) " (" (x.kind) "): " (x.reason) } } }
        }
        h2 { "Verlauf" }
        @if history.is_empty() { p { "Keine Änderungen." } }
        ol class="timeline" {
            @for c in &history {
                li { span class="when" { (when(c.at)) } " " (c.kind) " " (c.subject) " " (c.old_value) " → " (c.new_value) }
            }
        }
    };
    Ok(page(&s, &d, &format!("Gerät {}", device.hostname), body))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

pub async fn search(
    State(state): State<WebState>,
    s: Session,
    Query(q): Query<SearchQuery>,
) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let text = given(&q.q).unwrap_or_default().to_owned();
    let hits = if text.is_empty() {
        Vec::new()
    } else {
        d.search(&text).await?
    };
    let body = html! {
        form method="get" action="/suche" class="card" role="search" {
            label for="q" { "Tickets und Artikel durchsuchen" }
            input id="q" name="q" type="search" value=(text) required;
            button type="submit" { "Suchen" }
        }
        @if !text.is_empty() {
            p { (hits.len()) " Treffer" }
            ul {
                @for h in &hits {
                    li {
                        @if h.kind == "ticket" {
                            @let key = format!("SUP-{}", h.number.unwrap_or_default());
                            a href={ "/tickets/" (key) } { (key) } " " (h.title) " (" (h.school_id.as_deref().unwrap_or(&h.county_id)) ")"
                        } @else {
                            a href={ "/wissen/" (h.ref_id) } { (h.title) } " (Artikel)"
                        }
                    }
                }
            }
        }
    };
    Ok(page(&s, &d, "Suche", body))
}
