//! The pages. German, server-rendered with maud (every value is escaped at
//! compile time; nothing from a device or a user is ever `PreEscaped`),
//! no JavaScript, readable on a phone (one column, large targets).

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Extension, FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::data::{self, Data, REPORT_CATEGORIES};
use super::session::{self, LOGIN_COOKIE, SECOND_FACTOR_COOKIE, SESSION_COOKIE, Session};
use super::{PageError, Peer, WebState};
use crate::auth::Permission;
use crate::storage::{self, Millis, TicketQuery, TimelineEntry};

type Page = Result<Response, PageError>;

/// A logged-in request: the portal's state and the caller's session.
pub struct Ctx {
    state: WebState,
    s: Session,
}

impl FromRequestParts<WebState> for Ctx {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &WebState,
    ) -> Result<Self, PageError> {
        let s = Session::from_request_parts(parts, state).await?;
        Ok(Ctx {
            state: state.clone(),
            s,
        })
    }
}

// --- helpers ---

/// Times on pages are German local time (Europe/Berlin, with summer
/// time); the store keeps UTC milliseconds.
pub fn local(ms: Millis) -> chrono::DateTime<chrono_tz::Tz> {
    crate::storage::millis_to_datetime(ms).with_timezone(&chrono_tz::Europe::Berlin)
}

pub fn when(ms: Millis) -> String {
    local(ms).format("%d.%m.%Y %H:%M").to_string()
}

fn day(ms: Millis) -> String {
    local(ms).format("%d.%m.%Y").to_string()
}

/// `when` of an optional end: "läuft" while there is none.
fn until(ms: Option<Millis>) -> String {
    ms.map(when).unwrap_or_else(|| "läuft".into())
}

/// A compliance reason in German (the evaluator stores English; the
/// standard crate translates every reason it writes).
fn reason_de(reason: &str) -> String {
    schoolfleet_standard::reasons::german(reason)
}

// --- render helpers: one shape for tables, forms and fact lists ---

/// The cells of one table row, each rendered as its cell's content.
macro_rules! row {
    ($($cell:expr),* $(,)?) => { vec![$(maud::html! { ($cell) }),*] };
}

/// A table with a header row. A heading starting with `#` is a number
/// column (right-aligned, tabular figures); its cells get the same class.
fn table<R: IntoIterator<Item = Markup>>(
    head: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> Markup {
    let numeric: Vec<bool> = head.iter().map(|h| h.starts_with('#')).collect();
    html! {
        table {
            thead { tr { @for h in head {
                @if let Some(h) = h.strip_prefix('#') { th scope="col" class="num" { (h) } }
                @else { th scope="col" { (h) } }
            } } }
            tbody { @for r in rows { tr { @for (i, cell) in r.into_iter().enumerate() {
                @if numeric.get(i).copied().unwrap_or(false) { td class="num" { (cell) } }
                @else { td { (cell) } }
            } } } }
        }
    }
}

/// `table`, or a sentence when there are no rows.
fn table_or<R: IntoIterator<Item = Markup>>(empty: &str, head: &[&str], rows: Vec<R>) -> Markup {
    if rows.is_empty() {
        html! { p { (empty) } }
    } else {
        table(head, rows)
    }
}

/// A link.
fn link(href: impl maud::Render, text: impl maud::Render) -> Markup {
    html! { a href=(href) { (text) } }
}

/// A POST form with the session's CSRF token, its fields and one button.
fn post_form(action: &str, csrf: &str, button: &str, fields: Markup) -> Markup {
    html! {
        form method="post" action=(action) class="card" {
            input type="hidden" name="csrf" value=(csrf);
            (fields)
            button type="submit" { (button) }
        }
    }
}

/// A labelled multi-line text field named `text`.
fn text_field(label: &str, rows: u32) -> Markup {
    html! {
        label for="text" { (label) }
        textarea id="text" name="text" rows=(rows) maxlength="5000" required {}
    }
}

/// A definition list of facts (term, description).
fn facts(items: impl IntoIterator<Item = (&'static str, Markup)>) -> Markup {
    html! { dl class="facts" { @for (term, text) in items { dt { (term) } dd { (text) } } } }
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

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    csrf: String,
    name: String,
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
    let app = &state.app;
    let (cookie, peer) = login_guard(app, addr, &headers, &form.csrf)?;
    let name = form.name.trim().to_owned();
    let user = state
        .identity
        .authenticate(&app.store, &name, &form.password)
        .await?;
    let Some(user) = user else {
        login_failed(
            app,
            &name,
            &format!(
                "web-password:{}",
                schoolfleet_proto::text::clean(&name, 64).value
            ),
            &peer,
            "web.login",
            "wrong user name or password",
        )?;
        let mut response =
            login_page(cookie, Some("Benutzername oder Passwort ist falsch.")).into_response();
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    };
    if crate::sessions::step_up::is_active(app, &user.id).await? {
        // The password is right; the session starts only after the code.
        let pending = session::seal_pending(&app.keys, &user.id, cookie);
        let mut response = code_page(cookie, None).into_response();
        response.headers_mut().append(
            header::SET_COOKIE,
            session::set_cookie(
                SECOND_FACTOR_COOKIE,
                &pending,
                Some(session::SECOND_FACTOR_SECONDS),
            )
            .parse()
            .map_err(|_| PageError::Unavailable)?,
        );
        return Ok(response);
    }
    finish_login(app, &user, &peer, "password").await
}

/// Both login steps: the double-submit token must equal the login cookie,
/// and a peer that failed too often waits. Returns the cookie and the peer.
fn login_guard<'h>(
    app: &crate::state::AppState,
    addr: std::net::SocketAddr,
    headers: &'h HeaderMap,
    csrf: &str,
) -> Result<(&'h str, String), PageError> {
    let cookie = session::cookie(headers, LOGIN_COOKIE).unwrap_or_default();
    if cookie.is_empty() || !session::tokens_equal(cookie, csrf) {
        return Err(PageError::Csrf);
    }
    let peer = crate::limits::peer_key(Some(addr));
    app.auth_failures
        .admit(&peer)
        .map_err(|l| PageError::TooMany(l.seconds()))?;
    Ok((cookie, peer))
}

/// Counts a failed login step against the peer and `limit_key` (the
/// limits of API tokens); `Err` once either is over its limit. Wrong
/// passwords count under the name tried, wrong codes under the user's id:
/// a code step is only reached with the right password, so whoever merely
/// knows a name cannot use up another user's code attempts.
fn login_failed(
    app: &crate::state::AppState,
    name: &str,
    limit_key: &str,
    peer: &str,
    action: &'static str,
    reason: &str,
) -> Result<(), PageError> {
    let clean = schoolfleet_proto::text::clean(name, 64).value;
    let key = crate::limits::FailureKey {
        action,
        target: format!("web_user:{clean}"),
        county_id: None,
    };
    app.auth_failures
        .record(key, Some(limit_key), peer, reason)
        .map_err(|l| PageError::TooMany(l.seconds()))?;
    tracing::warn!(user = %schoolfleet_proto::text::echo(name), %peer, action, "web login refused");
    Ok(())
}

/// The login succeeded: a new session, the audit entry, the cookies.
async fn finish_login(
    app: &crate::state::AppState,
    user: &storage::User,
    peer: &str,
    method: &str,
) -> Page {
    let id = session::start(&app.store, user).await?;
    app.audit(
        &format!("user:{}", user.name),
        "web.login",
        &format!("user:{}", user.name),
        user.county_id.as_deref(),
        "ok",
        format!("peer={peer} method={method}"),
    )
    .await;
    let mut response = Redirect::to("/").into_response();
    let headers = response.headers_mut();
    for value in [
        session::set_cookie(SESSION_COOKIE, &id, None),
        session::clear_cookie(LOGIN_COOKIE),
        session::clear_cookie(SECOND_FACTOR_COOKIE),
    ] {
        headers.append(
            header::SET_COOKIE,
            value.parse().map_err(|_| PageError::Unavailable)?,
        );
    }
    Ok(response)
}

fn code_page(token: &str, error: Option<&str>) -> Markup {
    layout(
        "Anmelden: zweiter Faktor",
        None,
        html! {
            @if let Some(error) = error { p class="error" role="alert" { (error) } }
            form method="post" action="/anmelden/code" class="card" {
                input type="hidden" name="csrf" value=(token);
                label for="code" { "Code aus der Authenticator-App (6 Ziffern)" }
                input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                    pattern="[0-9 ]{6,7}" maxlength="7" required autofocus;
                button type="submit" { "Bestätigen" }
            }
            p class="hint" { "Jeder Code gilt einmal. Nach fünf Minuten beginnt die Anmeldung von vorn." }
            p { a href="/anmelden" { "Neu anmelden" } }
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    csrf: String,
    code: String,
}

/// The second step of a login: the TOTP code of a user with an active
/// second factor. Limited like the password (per peer and per user), and a
/// code is used once (`step_up::use_login_code`).
pub async fn login_code(
    State(state): State<WebState>,
    Extension(Peer(addr)): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Page {
    let app = &state.app;
    let (cookie, peer) = login_guard(app, addr, &headers, &form.csrf)?;
    let pending = session::cookie(&headers, SECOND_FACTOR_COOKIE).unwrap_or_default();
    let user_id = session::open_pending(&app.keys, pending, cookie).ok_or(PageError::Login)?;
    let user = app
        .store
        .get_user(&user_id)
        .await?
        .filter(|u| u.id == user_id)
        .ok_or(PageError::Login)?;
    // Code failures per user, not per (user, peer): only a holder of the
    // password gets here, and a limit per peer alone would let them guess
    // a six-digit code from many addresses at once.
    let code_key = format!("web-code:{}", user.id);
    app.auth_failures
        .admit_key(&code_key)
        .map_err(|l| PageError::TooMany(l.seconds()))?;
    if !crate::sessions::step_up::use_login_code(app, &user.id, &form.code).await? {
        login_failed(
            app,
            &user.name,
            &code_key,
            &peer,
            "web.login.mfa",
            "wrong or used code",
        )?;
        let mut response = code_page(
            cookie,
            Some("Der Code ist falsch, abgelaufen oder wurde schon verwendet."),
        )
        .into_response();
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    finish_login(app, &user, &peer, "password+totp").await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(Ctx { state, s }: Ctx, Form(form): Form<CsrfForm>) -> Page {
    s.check_csrf(&form.csrf)?;
    state.app.store.delete_web_session(&s.id_hash).await?;
    Ok((
        [(header::SET_COOKIE, session::clear_cookie(SESSION_COOKIE))],
        Redirect::to("/anmelden"),
    )
        .into_response())
}

// --- start ---

pub async fn home(Ctx { state, s }: Ctx) -> Page {
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

pub async fn report_form(Ctx { state, s }: Ctx, Query(q): Query<ReportQuery>) -> Page {
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
            (post_form("/melden", &s.csrf, "Problem melden", html! {
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
                (text_field("Was ist passiert?", 6))
            }))
        }
    };
    Ok(page(&s, &d, "Problem melden", body))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ReportForm {
    csrf: String,
    device: String,
    category: String,
    text: String,
}

pub async fn report(Ctx { state, s }: Ctx, Form(form): Form<ReportForm>) -> Page {
    s.check_csrf(&form.csrf)?;
    let d = Data::new(&state.app, &s.principal);
    let ticket = d
        .report_problem(&form.device, &form.category, &form.text)
        .await?;
    Ok(Redirect::to(&format!("/meine-meldungen/{}", ticket.key())).into_response())
}

pub async fn my_tickets(Ctx { state, s }: Ctx) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let tickets = d.my_tickets().await?;
    let body = html! {
        (table_or("Sie haben noch nichts gemeldet.", &["Nummer", "Betreff", "Stand", "Gemeldet"],
            tickets.iter().map(|t| row![
                link(format!("/meine-meldungen/{}", t.key()), t.key()),
                t.title, status_label(&t.status), when(t.created_at),
            ]).collect()))
    };
    Ok(page(&s, &d, "Meine Meldungen", body))
}

pub async fn my_ticket(Ctx { state, s }: Ctx, Path(key): Path<String>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let (ticket, events) = d.my_ticket(&key).await?;
    let body = html! {
        (facts([
            ("Betreff", html! { (ticket.title) }),
            ("Stand", html! { (status_label(&ticket.status)) }),
            ("Art", html! { (data::category_label(&ticket.category)) }),
            ("Gemeldet", html! { (when(ticket.created_at)) }),
        ]))
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
        (post_form(&format!("/meine-meldungen/{}/antwort", ticket.key()), &s.csrf, "Antwort senden",
            text_field("Antwort an die Technik", 4)))
    };
    Ok(page(&s, &d, &format!("Meldung {}", ticket.key()), body))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TextForm {
    csrf: String,
    text: String,
}

pub async fn my_ticket_answer(
    Ctx { state, s }: Ctx,
    Path(key): Path<String>,
    Form(form): Form<TextForm>,
) -> Page {
    s.check_csrf(&form.csrf)?;
    let d = Data::new(&state.app, &s.principal);
    let ticket = d.answer_my_ticket(&key, &form.text).await?;
    Ok(Redirect::to(&format!("/meine-meldungen/{}", ticket.key())).into_response())
}

pub async fn articles(Ctx { state, s }: Ctx) -> Page {
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

pub async fn article(Ctx { state, s }: Ctx, Path(id): Path<String>) -> Page {
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

/// The county and school a device page is narrowed to: the caller must
/// read devices somewhere, the county must be theirs, the school visible.
async fn scope<'q>(
    d: &Data<'_>,
    q: &'q ScopeQuery,
) -> Result<(Option<&'q str>, Option<&'q str>, Option<storage::School>), PageError> {
    if !d.may_read_devices() {
        return Err(PageError::Denied);
    }
    let (county, school) = (given(&q.county), given(&q.school));
    d.require_county(county)?;
    let record = match school {
        Some(id) => Some(d.school(id).await?),
        None => None,
    };
    Ok((county, school, record))
}

/// Compliance per school: devices, compliant, share.
fn school_table(rows: &[storage::SchoolCompliance], links: bool) -> Markup {
    table(
        &["Schule", "Landkreis", "#Geräte", "#konform", "#Anteil"],
        rows.iter().map(|r| {
            row![
                html! {
                    @if links { (link(format!("/konformitaet?county={}&school={}", r.county_id, r.school_id), &r.school_id)) }
                    @else { (r.school_id) }
                },
                r.county_id,
                r.devices,
                r.compliant,
                percent(r.compliant, r.devices),
            ]
        }),
    )
}

pub async fn compliance(Ctx { state, s }: Ctx, Query(q): Query<ScopeQuery>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let (county, school, school_record) = scope(&d, &q).await?;
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
        (table(&["Regel", "Art", "#nicht erfüllt", "#unbekannt", "#Ausnahme", "#erfüllt"],
            rules.iter().map(|(rule, pass, fail, unknown, waived)| row![
                html! { (link(format!("/konformitaet/regel/{}{scope}", rule.id), &rule.title)) br; small { (rule.id) } },
                if rule.mode.counted() { "zählt" } else { "beobachten" },
                fail, unknown, waived, pass,
            ])))
        @if school.is_none() {
            h2 { "Schulen" }
            (school_table(&schools, true))
        }
        @if !school_devices.is_empty() {
            h2 { "Geräte" }
            ul class="columns" { @for dev in &school_devices { li { a href={ "/geraete/" (dev.id) } { (dev.hostname) } } } }
        }
        h2 { "Ausnahmen (Waiver)" }
        (table_or("Keine.", &["Ausnahme", "Regel", "läuft ab", "Begründung"],
            waivers.iter().map(|w| row![
                w.waiver_id, w.rule_id,
                html! { (day(w.expires.timestamp_millis())) @if w.expires < chrono::Utc::now() { " (abgelaufen)" } },
                w.reason,
            ]).collect()))
    };
    Ok(page(&s, &d, &title, body))
}

pub async fn compliance_rule(
    Ctx { state, s }: Ctx,
    Path(rule_id): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let (county, school, _) = scope(&d, &q).await?;
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
        (table_or("Keine.", &["Gerät", "Schule", "erwartet", "tatsächlich", "Grund"],
            failing.iter().map(|f| row![
                link(format!("/geraete/{}", f.device_id), &f.hostname),
                f.school_id, f.expected, f.actual, reason_de(&f.reason),
            ]).collect()))
    };
    Ok(page(&s, &d, &rule.title, body))
}

pub async fn trend_svg(Ctx { state, s }: Ctx, Query(q): Query<ScopeQuery>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let (county, school, _) = scope(&d, &q).await?;
    // A quarter's days, or the last 90 (Berlin calendar days).
    let (from, to) = match given(&q.quartal) {
        Some(text) => {
            let quarter = Quarter::parse(text)?;
            (quarter.first_day(), quarter.last_day())
        }
        None => {
            let today = local(storage::now_millis()).date_naive();
            (today - chrono::TimeDelta::days(89), today)
        }
    };
    let format = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    let points: Vec<(String, f64)> = d
        .trend(county, school, &format(from), &format(to))
        .await?
        .into_iter()
        .map(|(day, devices, compliant)| (day, compliant as f64 / devices as f64))
        .collect();
    let svg = super::svg::trend(&points, "Anteil konformer Geräte");
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

// --- the quarterly report ---

/// One quarter in German local time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Quarter {
    year: i32,
    /// 1..=4
    q: u32,
}

impl Quarter {
    fn label(&self) -> String {
        format!("{}-Q{}", self.year, self.q)
    }

    fn first_day(&self) -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(self.year, (self.q - 1) * 3 + 1, 1).unwrap_or_default()
    }

    fn next(&self) -> Quarter {
        if self.q == 4 {
            Quarter {
                year: self.year + 1,
                q: 1,
            }
        } else {
            Quarter {
                year: self.year,
                q: self.q + 1,
            }
        }
    }

    fn previous(&self) -> Quarter {
        if self.q == 1 {
            Quarter {
                year: self.year - 1,
                q: 4,
            }
        } else {
            Quarter {
                year: self.year,
                q: self.q - 1,
            }
        }
    }

    /// The last day (inclusive).
    fn last_day(&self) -> chrono::NaiveDate {
        self.next().first_day().pred_opt().unwrap_or_default()
    }

    /// Its first instant and its end (exclusive), midnight in Berlin.
    fn bounds(&self) -> (Millis, Millis) {
        (
            berlin_midnight(self.first_day()),
            berlin_midnight(self.next().first_day()),
        )
    }

    /// The quarter running at `now` (Berlin).
    fn of(now: Millis) -> Quarter {
        use chrono::Datelike;
        let today = local(now).date_naive();
        Quarter {
            year: today.year(),
            q: (today.month() - 1) / 3 + 1,
        }
    }

    /// `YYYY-Qn`.
    fn parse(text: &str) -> Result<Quarter, PageError> {
        let invalid = || PageError::Invalid("Quartal wie 2026-Q4 angeben.".into());
        let (y, q) = text.trim().split_once("-Q").ok_or_else(invalid)?;
        let year: i32 = y.parse().map_err(|_| invalid())?;
        let q: u32 = q.parse().map_err(|_| invalid())?;
        if !(1..=4).contains(&q) || !(2000..=2100).contains(&year) {
            return Err(invalid());
        }
        Ok(Quarter { year, q })
    }
}

fn iso_day(date: chrono::NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

fn berlin_midnight(date: chrono::NaiveDate) -> Millis {
    use chrono::TimeZone;
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    chrono_tz::Europe::Berlin
        .from_local_datetime(&midnight)
        .earliest()
        .map_or_else(
            || midnight.and_utc().timestamp_millis(),
            |t| t.timestamp_millis(),
        )
}

/// The quarter asked for, or by default the last complete one.
fn chosen_quarter(text: Option<&str>) -> Result<Quarter, PageError> {
    match text {
        Some(t) => Quarter::parse(t),
        None => Ok(Quarter::of(storage::now_millis()).previous()),
    }
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

/// One rule's counts in one school (results of the current revision).
struct RuleRow {
    rule_id: String,
    title: String,
    county_id: String,
    school_id: String,
    pass: i64,
    fail: i64,
    unknown: i64,
    waived: i64,
}

struct Quarterly {
    quarter: Quarter,
    /// The quarter is still running.
    running: bool,
    revision: Option<i64>,
    /// The last daily snapshot inside the quarter: its day and schools.
    end: Option<(String, Vec<storage::SchoolCompliance>)>,
    /// The trend: the first snapshot and each month's last, summed over
    /// the caller's schools: (day, devices, compliant).
    trend: Vec<(String, i64, i64)>,
    rules: Vec<RuleRow>,
    /// (rule id, rule title, German reason) -> failing devices.
    reasons: BTreeMap<(String, String, String), i64>,
    /// (county, category) -> stats
    tickets: BTreeMap<(String, String), TicketStats>,
    /// county -> (sessions, minutes), `None`: the caller may not read sessions.
    sessions: Option<BTreeMap<String, (i64, i64)>>,
}

/// The end of a quarter (the last day with snapshots, per school) and its
/// trend (the first day and each month's last day, summed).
#[allow(clippy::type_complexity)]
fn snapshot_summary(
    snapshots: &[storage::DailySchoolCompliance],
) -> (
    Option<(String, Vec<storage::SchoolCompliance>)>,
    Vec<(String, i64, i64)>,
) {
    let end_of_quarter = snapshots.last().map(|last| {
        let day = last.day.clone();
        let rows = snapshots
            .iter()
            .filter(|r| r.day == day)
            .map(|r| storage::SchoolCompliance {
                county_id: r.county_id.clone(),
                school_id: r.school_id.clone(),
                devices: r.devices,
                compliant: r.compliant,
            })
            .collect();
        (day, rows)
    });
    let mut per_day: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for r in snapshots {
        let e = per_day.entry(&r.day).or_default();
        e.0 += r.devices;
        e.1 += r.compliant;
    }
    let mut trend: Vec<(String, i64, i64)> = Vec::new();
    let mut iter = per_day.iter().peekable();
    let mut first = true;
    while let Some((day, (devices, compliant))) = iter.next() {
        let month_ends = iter.peek().is_none_or(|(next, _)| next[..7] != day[..7]);
        if first || month_ends {
            trend.push(((*day).to_owned(), *devices, *compliant));
        }
        first = false;
    }

    (end_of_quarter, trend)
}

async fn quarterly_data(d: &Data<'_>, q: &ScopeQuery) -> Result<Quarterly, PageError> {
    let (county, _, _) = scope(d, q).await?;
    let quarter = chosen_quarter(given(&q.quartal))?;
    let running = quarter == Quarter::of(storage::now_millis());
    let (start, end) = quarter.bounds();

    // Compliance over the quarter: the daily snapshots, one query.
    let snapshots = d
        .snapshots(
            &iso_day(quarter.first_day()),
            &iso_day(quarter.last_day()),
            county,
            None,
        )
        .await?;
    let (end_of_quarter, trend) = snapshot_summary(&snapshots);

    // Rules per school and the reasons of failures: the current results.
    let current = d.standard().await?;
    let mut rules = Vec::new();
    let mut reasons = BTreeMap::new();
    if let Some(current) = &current {
        let schools = d.school_compliance(current.revision, county, None).await?;
        let counts = d.rule_counts_by_school(current.revision, county).await?;
        for school in &schools {
            for rule in current.standard.rules() {
                let count = |status: &str| {
                    counts
                        .iter()
                        .find(|c| {
                            c.school_id == school.school_id
                                && c.rule_id == rule.id
                                && c.status == status
                        })
                        .map_or(0, |c| c.devices)
                };
                rules.push(RuleRow {
                    rule_id: rule.id.clone(),
                    title: rule.title.clone(),
                    county_id: school.county_id.clone(),
                    school_id: school.school_id.clone(),
                    pass: count("pass"),
                    fail: count("fail"),
                    unknown: count("unknown"),
                    waived: count("waived"),
                });
            }
        }
        // Every rule's reasons in one grouped query.
        let titles: BTreeMap<&str, &str> = current
            .standard
            .rules()
            .iter()
            .map(|rule| (rule.id.as_str(), rule.title.as_str()))
            .collect();
        for row in d.failure_reason_counts(current.revision, county).await? {
            let Some(title) = titles.get(row.rule_id.as_str()) else {
                continue;
            };
            for part in schoolfleet_standard::reasons::parts(&row.reason) {
                *reasons
                    .entry((row.rule_id.clone(), (*title).to_owned(), part.german))
                    .or_insert(0) += row.devices;
            }
        }
    }

    // Tickets and sessions: counted in SQL; the median time to resolve
    // from the rows resolved in this quarter only.
    let mut tickets: BTreeMap<(String, String), TicketStats> = BTreeMap::new();
    if d.may_read_tickets() {
        for row in d.ticket_period_counts(county, start, end).await? {
            if row.opened + row.resolved + row.backlog == 0 {
                continue;
            }
            let entry = tickets.entry((row.county_id, row.category)).or_default();
            entry.opened += row.opened;
            entry.resolved += row.resolved;
            entry.backlog += row.backlog;
        }
        for row in d.ticket_resolutions(county, start, end).await? {
            tickets
                .entry((row.county_id, row.category))
                .or_default()
                .resolve_times
                .push(row.millis);
        }
    }
    let sessions = d
        .session_period_counts(county, start, end)
        .await?
        .map(|rows| {
            rows.into_iter()
                .map(|r| (r.county_id, (r.sessions, r.minutes)))
                .collect::<BTreeMap<_, _>>()
        });
    Ok(Quarterly {
        quarter,
        running,
        revision: current.map(|c| c.revision),
        end: end_of_quarter,
        trend,
        rules,
        reasons,
        tickets,
        sessions,
    })
}

fn hours(h: Option<f64>) -> String {
    h.map_or("–".into(), |h| format!("{h:.1} h").replace('.', ","))
}

/// `YYYY-MM-DD` as `DD.MM.YYYY`.
fn german_day(day: &str) -> String {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_or_else(|_| day.to_owned(), |d| d.format("%d.%m.%Y").to_string())
}

/// The quarters to choose from: the running one and the last four.
fn quarter_choices() -> Vec<(Quarter, &'static str)> {
    let running = Quarter::of(storage::now_millis());
    let mut out = vec![(running.clone(), " (laufend)")];
    let mut q = running;
    for i in 0..4 {
        q = q.previous();
        out.push((
            q.clone(),
            if i == 0 {
                " (letztes abgeschlossenes)"
            } else {
                ""
            },
        ));
    }
    out
}

pub async fn quarterly(Ctx { state, s }: Ctx, Query(q): Query<ScopeQuery>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let r = quarterly_data(&d, &q).await?;
    let county = given(&q.county);
    let label = r.quarter.label();
    let county_arg = county.map(|c| format!("&county={c}")).unwrap_or_default();
    let csv_link = format!("/bericht.csv?quartal={label}{county_arg}");
    let body = html! {
        (county_picker(&d, "/bericht", county).await?)
        form method="get" action="/bericht" class="inline noprint" {
            @if let Some(c) = county { input type="hidden" name="county" value=(c); }
            label for="quartal" { "Quartal" }
            select id="quartal" name="quartal" {
                @for (choice, note) in quarter_choices() {
                    option value=(choice.label()) selected[choice == r.quarter] { (choice.label()) (note) }
                }
            }
            button type="submit" { "Anzeigen" }
            " " (link(&csv_link, "Als CSV herunterladen"))
        }
        p { "Zeitraum: " (german_day(&r.quarter.first_day().to_string())) " bis " (german_day(&r.quarter.last_day().to_string()))
            @if r.running { " (läuft noch: Zahlen bis heute)" } }
        h2 { "Konformität am Quartalsende" }
        @match &r.end {
            None => p { "Für dieses Quartal gibt es keine Tageswerte." },
            Some((day, rows)) => {
                p { "Tageswert vom " (german_day(day)) "." }
                (school_table(rows, false))
            }
        }
        h2 { "Verlauf im Quartal" }
        figure {
            img src={ "/konformitaet/trend.svg?quartal=" (label) (county_arg) } alt={ "Verlauf des Anteils konformer Geräte im Quartal " (label) } width="640" height="240";
            figcaption { "Anteil konformer Geräte, Tageswerte " (label) }
        }
        (table_or("Keine Tageswerte.", &["Tag", "#Geräte", "#konform", "#Anteil"],
            r.trend.iter().map(|(day, n, ok)| row![german_day(day), n, ok, percent(*ok, *n)]).collect()))
        @match r.revision {
            None => p { "Es wurde noch kein IT-Standard eingespielt." },
            Some(rev) => {
                h2 { "Konformität je Regel und Schule" }
                p class="hint" { "Aktueller Stand (Standard-Revision " (rev) "); je Regel werden keine Tageswerte gespeichert." }
                (table(&["Regel", "Schule", "#erfüllt", "#nicht erfüllt", "#unbekannt", "#Ausnahme"],
                    r.rules.iter().map(|x| row![
                        html! { (x.title) br; small { (x.rule_id) } }, x.school_id, x.pass, x.fail, x.unknown, x.waived,
                    ])))
                h2 { "Häufigste Gründe" }
                (table_or("Kein Gerät verfehlt eine Regel.", &["Regel", "Grund", "#Geräte"],
                    r.reasons.iter().map(|((_, title, why), n)| row![title, why, n]).collect()))
            }
        }
        h2 { "Tickets " (label) }
        (table_or("Keine Tickets.", &["Landkreis", "Kategorie", "#eröffnet", "#gelöst", "#offen am Quartalsende", "#Median bis Lösung"],
            r.tickets.iter().map(|((c, cat), st)| row![
                c, data::category_label(cat), st.opened, st.resolved, st.backlog, hours(st.median_hours()),
            ]).collect()))
        h2 { "Fernwartung " (label) }
        @match &r.sessions {
            None => p { "Keine Berechtigung, Fernwartungssitzungen zu sehen." },
            Some(by) => (table_or("Keine Sitzungen.", &["Landkreis", "#Sitzungen", "#Minuten"],
                by.iter().map(|(c, (n, minutes))| row![c, n, minutes]).collect())),
        }
    };
    Ok(page(&s, &d, &format!("Quartalsbericht {label}"), body))
}

/// One CSV line: section, county, school, rule, category, reason, day and
/// metric (empty text: an empty cell), then the value.
fn csv_line(out: &mut String, fields: [&str; 8], value: super::csv::Cell<'_>) {
    use super::csv::Cell;
    let mut cells: Vec<Cell<'_>> = fields
        .iter()
        .map(|t| {
            if t.is_empty() {
                Cell::Empty
            } else {
                Cell::Text(t)
            }
        })
        .collect();
    cells.push(value);
    out.push_str(&super::csv::row(&cells));
}

pub async fn quarterly_csv(Ctx { state, s }: Ctx, Query(q): Query<ScopeQuery>) -> Page {
    use super::csv::{Cell, row};
    let d = Data::new(&state.app, &s.principal);
    let r = quarterly_data(&d, &q).await?;
    // abschnitt, landkreis, schule, regel, kategorie, grund, tag, kennzahl, wert
    let mut out = row(&[
        "abschnitt",
        "landkreis",
        "schule",
        "regel",
        "kategorie",
        "grund",
        "tag",
        "kennzahl",
        "wert",
    ]
    .map(Cell::Text));
    let share = |ok: i64, n: i64| {
        if n > 0 {
            Cell::Num(ok as f64 / n as f64)
        } else {
            Cell::Empty
        }
    };
    if let Some((day, rows)) = &r.end {
        for sc in rows {
            let k = (
                "konformitaet_quartalsende",
                sc.county_id.as_str(),
                sc.school_id.as_str(),
            );
            csv_line(
                &mut out,
                [k.0, k.1, k.2, "", "", "", day, "geraete"],
                Cell::Int(sc.devices),
            );
            csv_line(
                &mut out,
                [k.0, k.1, k.2, "", "", "", day, "konform"],
                Cell::Int(sc.compliant),
            );
            csv_line(
                &mut out,
                [k.0, k.1, k.2, "", "", "", day, "anteil_konform"],
                share(sc.compliant, sc.devices),
            );
        }
    }
    for (day, n, ok) in &r.trend {
        csv_line(
            &mut out,
            ["konformitaet_verlauf", "", "", "", "", "", day, "geraete"],
            Cell::Int(*n),
        );
        csv_line(
            &mut out,
            [
                "konformitaet_verlauf",
                "",
                "",
                "",
                "",
                "",
                day,
                "anteil_konform",
            ],
            share(*ok, *n),
        );
    }
    for x in &r.rules {
        for (metric, value) in [
            ("erfuellt", x.pass),
            ("nicht_erfuellt", x.fail),
            ("unbekannt", x.unknown),
            ("ausnahme", x.waived),
        ] {
            csv_line(
                &mut out,
                [
                    "konformitaet_regel",
                    &x.county_id,
                    &x.school_id,
                    &x.rule_id,
                    "",
                    "",
                    "",
                    metric,
                ],
                Cell::Int(value),
            );
        }
    }
    for ((rule, _, why), n) in &r.reasons {
        csv_line(
            &mut out,
            ["gruende", "", "", rule, "", why, "", "geraete"],
            Cell::Int(*n),
        );
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
            csv_line(
                &mut out,
                ["tickets", county, "", "", category, "", "", metric],
                value,
            );
        }
    }
    if let Some(by) = &r.sessions {
        for (county, (n, minutes)) in by {
            csv_line(
                &mut out,
                ["fernwartung", county, "", "", "", "", "", "sitzungen"],
                Cell::Int(*n),
            );
            csv_line(
                &mut out,
                ["fernwartung", county, "", "", "", "", "", "minuten"],
                Cell::Int(*minutes),
            );
        }
    }
    let filename = format!(
        "attachment; filename=\"quartalsbericht-{}{}.csv\"",
        r.quarter.label(),
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

pub async fn procurement(Ctx { state, s }: Ctx, Query(q): Query<ScopeQuery>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let (county, _, _) = scope(&d, &q).await?;
    let devices = d.devices(county, None).await?;
    let inventories = d.inventories(&devices).await?;
    let now = storage::now_millis();
    // (vendor, model) -> (count, sum of ages in days)
    let mut models: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    // school -> (devices, win ready, win not ready, not windows/unknown)
    let mut schools: BTreeMap<String, (i64, i64, i64, i64)> = BTreeMap::new();
    let mut blocked: Vec<(storage::DeviceRecord, Vec<String>, String)> = Vec::new();
    for dev in &devices {
        let inv = inventories.get(&dev.id);
        let age_days = (now - dev.enrolled_at).max(0) / 86_400_000;
        let m = models
            .entry((dev.vendor.clone(), dev.model.clone()))
            .or_default();
        m.0 += 1;
        m.1 += age_days;
        let sc = schools.entry(dev.school_id.clone()).or_default();
        sc.0 += 1;
        match inv.and_then(win11_blockers) {
            Some(b) if b.is_empty() => sc.1 += 1,
            Some(b) => {
                sc.2 += 1;
                let cpu = inv
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
        (table(&["Hersteller", "Modell", "#Anzahl", "#Ø Jahre im Bestand"],
            models.iter().map(|((vendor, model), (n, days))| row![
                vendor, model, n, format!("{:.1}", *days as f64 / *n as f64 / 365.0).replace('.', ","),
            ])))
        p class="hint" { "Alter: seit der Aufnahme in schoolfleet (das Kaufdatum ist im Inventar nicht bekannt)." }
        h2 { "Windows 11 je Schule" }
        (table(&["Schule", "#Geräte", "#Windows-11-fähig", "#nicht fähig", "#kein Windows / unbekannt"],
            schools.iter().map(|(school, (n, ok, no, other))| row![school, n, ok, no, other])))
        @if !blocked.is_empty() {
            h2 { "Nicht Windows-11-fähig" }
            (table(&["Gerät", "Schule", "Gründe", "CPU"],
                blocked.iter().map(|(dev, reasons, cpu)| row![
                    link(format!("/geraete/{}", dev.id), &dev.hostname), dev.school_id, reasons.join(", "), cpu,
                ])))
        }
        h2 { "Betriebssystem ohne Herstellerunterstützung" }
        (table_or("Keine (laut Lebenszyklus-Tabelle des IT-Standards).", &["Gerät", "Schule", "Regel", "System", "Grund"],
            eol.iter().map(|(title, f)| row![
                link(format!("/geraete/{}", f.device_id), &f.hostname), f.school_id, title, f.actual, reason_de(&f.reason),
            ]).collect()))
    };
    Ok(page(&s, &d, "Beschaffung", body))
}

// --- school leaders ---

/// The consent modes in German, mildest first.
const CONSENT_LABELS: [(&str, &str); 3] = [
    ("none", "ohne Rückfrage"),
    ("notify", "mit Hinweis an die angemeldete Person"),
    ("prompt", "nur mit Zustimmung der angemeldeten Person"),
];

fn consent_label(mode: &str) -> &str {
    CONSENT_LABELS
        .iter()
        .find(|(m, _)| *m == mode)
        .map_or(mode, |(_, label)| label)
}

/// The class a policy or floor applies to, in German.
fn class_label(class: &str) -> &str {
    if class.is_empty() {
        "ganze Schule"
    } else {
        class
    }
}

pub async fn school(Ctx { state, s }: Ctx, Path(id): Path<String>) -> Page {
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
    let policies = d.consent_policies(&school.id).await?;
    let (floors, classes) = d.consent_floors(&school).await?;
    let may_set = d.may_set_consent(&school);
    let default_consent = &state.app.config.sessions.default_consent;
    let body = html! {
        p class="big" {
            @if let Some(c) = &compliance { "Konform: " strong { (percent(c.compliant, c.devices)) } " (" (c.compliant) " von " (c.devices) ") · " }
            (link(format!("/konformitaet?county={}&school={}", school.county_id, school.id), "Konformität im Einzelnen"))
        }
        h2 { "Geräte (" (devices.len()) ")" }
        (table(&["Gerät", "Klasse", "System", "zuletzt gesehen"],
            devices.iter().map(|dev| row![
                link(format!("/geraete/{}", dev.id), &dev.hostname), dev.device_class,
                format!("{} {}", dev.os_name, dev.os_version),
                dev.last_seen.map(when).unwrap_or_else(|| "nie".into()),
            ])))
        h2 { "Tickets" }
        (table_or("Keine.", &["Nummer", "Betreff", "Status", "Erstellt"],
            tickets.iter().map(|t| row![
                link(format!("/tickets/{}", t.key()), t.key()), t.title, status_label(&t.status), when(t.created_at),
            ]).collect()))
        h2 { "Fernwartung: wer, wann, warum" }
        @match &sessions {
            None => p { "Keine Berechtigung, Fernwartungssitzungen zu sehen." },
            Some(list) => (table_or("Keine Sitzungen.", &["Beginn", "Ende", "Wer", "Art", "Grund", "Ticket"],
                list.iter().map(|x| row![when(x.started_at), until(x.ended_at), x.actor, x.kind, x.reason, x.ticket]).collect())),
        }
        h2 id="einwilligung" { "Einwilligung bei Fernwartung" }
        p { "Ohne eigene Einstellung gilt: " strong { (consent_label(default_consent)) } "." }
        (table_or("Die Schule hat noch nichts festgelegt.", &["Gilt für", "Einstellung", "geändert von", "am"],
            policies.iter().map(|x| row![class_label(&x.device_class), consent_label(&x.consent), x.updated_by, when(x.updated_at)]).collect()))
        @if !floors.is_empty() {
            p { "Mindeststufe der Schulleitung (Technik und Landkreis können sie nur verschärfen):" }
            (table(&["Gilt für", "mindestens", "festgelegt von", "am"],
                floors.iter().map(|f| row![class_label(&f.device_class), consent_label(&f.floor), f.set_by, when(f.set_at)])))
        }
        @if may_set {
            (post_form(&format!("/schule/{}/einwilligung", school.id), &s.csrf, "Einstellung speichern", html! {
                label for="device_class" { "Gilt für" }
                select id="device_class" name="device_class" {
                    option value="" { "ganze Schule" }
                    @for c in &classes { option value=(c.id) { (c.label) " (" (c.id) ")" } }
                }
                fieldset {
                    legend { "Fernwartung an Geräten dieser Schule" }
                    @for (i, (mode, label)) in CONSENT_LABELS.iter().enumerate() {
                        div class="choice" {
                            input type="radio" name="consent" id={ "consent-" (i) } value=(mode) required checked[*mode == "prompt"];
                            label for={ "consent-" (i) } { (label) }
                        }
                    }
                }
            }))
        }
    };
    Ok(page(&s, &d, &format!("Schule {}", school.name), body))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConsentForm {
    csrf: String,
    device_class: String,
    consent: String,
}

/// A school lead (or anyone with `ConsentManage` there) sets the school's
/// consent: `service::consent::set_policy`, the function gRPC calls.
pub async fn school_consent(
    Ctx { state, s }: Ctx,
    Path(id): Path<String>,
    Form(form): Form<ConsentForm>,
) -> Page {
    s.check_csrf(&form.csrf)?;
    if !CONSENT_LABELS.iter().any(|(mode, _)| *mode == form.consent) {
        return Err(PageError::Invalid(
            "Bitte eine der angebotenen Einstellungen wählen.".into(),
        ));
    }
    let d = Data::new(&state.app, &s.principal);
    let policy = d
        .set_consent(&id, &form.device_class, &form.consent)
        .await?;
    Ok(Redirect::to(&format!("/schule/{}#einwilligung", policy.school_id)).into_response())
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

pub async fn ticket_queue(Ctx { state, s }: Ctx, Query(q): Query<QueueQuery>) -> Page {
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
        (table(&["Nummer", "Betreff", "Status", "Priorität", "Kategorie", "Schule", "Bearbeiter", "Erstellt"],
            tickets.iter().map(|t| row![
                link(format!("/tickets/{}", t.key()), t.key()),
                t.title, status_label(&t.status), t.priority, data::category_label(&t.category),
                t.school_id.as_deref().unwrap_or(&t.county_id),
                t.assignee_id.as_ref().and_then(|a| names.get(a)).map(String::as_str).unwrap_or("–"),
                when(t.created_at),
            ])))
    };
    Ok(page(&s, &d, "Tickets", body))
}

pub async fn ticket(Ctx { state, s }: Ctx, Path(key): Path<String>) -> Page {
    let d = Data::new(&state.app, &s.principal);
    let (ticket, timeline) = d.ticket(&key).await?;
    let devices = d.ticket_devices(&ticket).await?;
    let names = d.user_names().await?;
    let may_work = s.principal.can(
        Permission::TicketWork,
        &crate::service::access::ticket_tenant(&ticket),
    );
    let body = html! {
        (facts([
            ("Betreff", html! { (ticket.title) }),
            ("Status", html! { (status_label(&ticket.status)) }),
            ("Priorität", html! { (ticket.priority) }),
            ("Kategorie", html! { (data::category_label(&ticket.category)) }),
            ("Schule", html! { (ticket.school_id.as_deref().unwrap_or("–")) " (" (ticket.county_id) ")" }),
            ("Gemeldet von", html! { (ticket.reporter) }),
            ("Bearbeiter", html! { (ticket.assignee_id.as_ref().and_then(|a| names.get(a)).map(String::as_str).unwrap_or("–")) }),
            ("Geräte", html! { @for dev in &devices { (link(format!("/geraete/{}", dev.id), &dev.hostname)) " " } }),
        ]))
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
                            " · Ende: " (until(x.ended_at))
                            @if let Some(code) = x.exit_code { " · Exit-Code " (code) }
                        }
                    }
                }
            }
        }
        @if may_work {
            (post_form(&format!("/tickets/{}/kommentar", ticket.key()), &s.csrf, "Kommentieren",
                text_field("Kommentar", 4)))
        }
    };
    Ok(page(&s, &d, &format!("Ticket {}", ticket.key()), body))
}

pub async fn ticket_comment(
    Ctx { state, s }: Ctx,
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

pub async fn device(Ctx { state, s }: Ctx, Path(key): Path<String>) -> Page {
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
        (facts([
            ("Schule", html! { (link(format!("/schule/{}", device.school_id), &device.school_id)) " (" (device.county_id) ")" }),
            ("Klasse", html! { (device.device_class) }),
            ("Status", html! { (device.status) }),
            ("Zuletzt gesehen", html! { (device.last_seen.map(when).unwrap_or_else(|| "nie".into())) }),
            ("Geräte-ID", html! { code { (device.id) } }),
        ]))
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
        (table_or("Noch nicht bewertet.", &["Regel", "Ergebnis", "erwartet", "tatsächlich", "Grund", "Ausnahme"],
            results.iter().map(|r| row![
                title_of(&r.rule_id), result_label(&r.status), r.expected, r.actual, reason_de(&r.reason),
                html! { (r.waiver_id) @if let Some(exp) = r.waiver_expires_at { " bis " (day(exp)) } },
            ]).collect()))
        h2 { "Offene Tickets" }
        @if open_tickets.is_empty() { p { "Keine." } }
        ul { @for t in &open_tickets { li { a href={ "/tickets/" (t.key()) } { (t.key()) } " " (t.title) } } }
        @if let Some(list) = &sessions {
            h2 { "Fernwartung" }
            @if list.is_empty() { p { "Keine Sitzungen." } }
            ul { @for x in list { li { (when(x.started_at)) " bis " (until(x.ended_at)) " " (x.actor) " (" (x.kind) "): " (x.reason) } } }
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

pub async fn search(Ctx { state, s }: Ctx, Query(q): Query<SearchQuery>) -> Page {
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
