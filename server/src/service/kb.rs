//! The knowledge base: reading articles with their versions and what
//! changed recently, templates and diffs; writing articles and linking
//! them to tickets.
//!
//! The knowledge base is shared by the cooperation on purpose: KbRead in
//! any scope reads every article; without it articles are NOT_FOUND.
//! Writing (create, update, link to a ticket) needs KbWrite on the
//! article's owning county.

use super::access::{self, require};
use super::input::{display_text, multiline_text, tenant_id};
use super::{AppError, AppResult};
use crate::auth::{Permission, Principal, TenantRef};
use crate::state::AppState;
use crate::storage::{KbArticle, KbVersion, StorageError, TicketChange, now_millis};
use crate::webhooks;

/// An article (at the version asked for) and all its versions.
#[derive(Debug, Clone)]
pub struct ArticleDetail {
    pub article: KbArticle,
    /// Oldest first; each with its title, author and time.
    pub versions: Vec<KbVersion>,
}

/// DENIED unless the caller may read the knowledge base at all.
pub fn require_read(principal: &Principal) -> AppResult<()> {
    if principal.can_anywhere(Permission::KbRead) {
        Ok(())
    } else {
        Err(AppError::denied(format!("{} lacks KbRead", principal.name)))
    }
}

/// The current article `id`, NOT_FOUND unless the caller may read it.
pub async fn article(state: &AppState, principal: &Principal, id: &str) -> AppResult<KbArticle> {
    let not_found = || AppError::not_found(format!("article {:?} not found", id.trim()));
    if !principal.can_anywhere(Permission::KbRead) {
        return Err(not_found());
    }
    state
        .store
        .get_article(id.trim())
        .await?
        .ok_or_else(not_found)
}

/// An article with its versions; `version` 0 is the current one, another
/// number shows that version's title and body.
pub async fn show(
    state: &AppState,
    principal: &Principal,
    id: &str,
    version: i64,
) -> AppResult<ArticleDetail> {
    let mut article = article(state, principal, id).await?;
    let versions = state.store.list_article_versions(&article.id).await?;
    if version != 0 {
        let v = versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| AppError::not_found(format!("version {version} not found")))?;
        article.title = v.title.clone();
        article.body = v.body.clone();
        article.version = v.version;
    }
    Ok(ArticleDetail { article, versions })
}

/// Articles changed in the last `since_seconds` (0: a week), newest
/// first, at most `limit` (0: 200; capped at 2,000).
pub async fn changed(
    state: &AppState,
    principal: &Principal,
    since_seconds: u64,
    limit: u32,
) -> AppResult<Vec<KbArticle>> {
    require_read(principal)?;
    let seconds = match since_seconds {
        0 => 7 * 24 * 3600,
        s => s.min(10 * 366 * 24 * 3600),
    };
    let since = now_millis() - (seconds as i64) * 1000;
    let limit = match limit {
        0 => 200,
        n => n.min(2000),
    };
    Ok(state
        .store
        .list_articles_changed(since, i64::from(limit))
        .await?)
}

/// The templates shipped with the server (German, as the team writes):
/// name, title, body.
pub const TEMPLATES: [(&str, &str, &str); 3] = [
    (
        "howto",
        "Anleitung: <Thema>",
        "# Anleitung: <Thema>\n\n## Ziel\n\nWas nach dieser Anleitung funktioniert.\n\n\
         ## Voraussetzungen\n\n- Rechte, Geräte, Software\n\n## Schritte\n\n1. …\n2. …\n3. …\n\n\
         ## Prüfen\n\nWoran man erkennt, dass es geklappt hat.\n\n## Siehe auch\n\n- \n",
    ),
    (
        "stoerung",
        "Störung: <Symptom>",
        "# Störung: <Symptom>\n\n## Symptom\n\nWas Lehrkräfte oder Schüler:innen sehen.\n\n\
         ## Betroffen\n\nSchulen, Geräteklassen, Software-Versionen.\n\n## Ursache\n\n…\n\n\
         ## Lösung\n\n1. …\n\n## Umgehung\n\nFalls die Lösung nicht sofort möglich ist.\n\n\
         ## Tickets\n\nSUP-…\n",
    ),
    (
        "checkliste",
        "Checkliste: <Vorgang>",
        "# Checkliste: <Vorgang>\n\n## Vorher\n\n- [ ] …\n- [ ] …\n\n## Durchführung\n\n\
         - [ ] …\n- [ ] …\n\n## Nachher\n\n- [ ] Dokumentation aktualisiert\n\
         - [ ] Schule informiert\n",
    ),
];

const MAX_BODY: usize = 200_000;
const MAX_DIFF_LINES: usize = 5_000;
const VISIBILITIES: [&str; 2] = ["team", "teachers"];

fn tags(list: &[String]) -> AppResult<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in list {
        let tag = display_text("tag", &tag.trim().to_lowercase(), 40)?;
        if tag.is_empty() || tag.contains(',') {
            return Err(AppError::invalid(format!("tag {tag:?} is invalid")));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > 20 {
        return Err(AppError::invalid("at most 20 tags"));
    }
    Ok(out.join(","))
}

fn visibility(value: &str) -> AppResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok("team".into());
    }
    if VISIBILITIES.contains(&value) {
        Ok(value.into())
    } else {
        Err(AppError::invalid("visibility must be team or teachers"))
    }
}

/// The templates, for whoever may read the knowledge base.
pub fn templates(
    principal: &Principal,
) -> AppResult<&'static [(&'static str, &'static str, &'static str)]> {
    require_read(principal)?;
    Ok(&TEMPLATES)
}

/// A new article. Empty title or body with a template: the template's;
/// empty category: the template's name, or `allgemein`.
#[derive(Debug, Clone, Default)]
pub struct NewArticle {
    pub county_id: String,
    pub template: String,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub category: String,
    /// `team` (empty) or `teachers`.
    pub visibility: String,
    pub publish: bool,
}

/// Creates an article owned by a county the caller knows (otherwise
/// NOT_FOUND) and may write (KbWrite); a published one is announced by
/// webhook.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    req: NewArticle,
) -> AppResult<KbArticle> {
    let county = tenant_id("county", &req.county_id)?;
    let exists = state.store.get_county(&county).await?.is_some();
    // A county the caller has no role in is NOT_FOUND, exactly like one
    // that does not exist.
    let target = TenantRef::County(county.clone());
    if !exists || !access::tenant_known(state, principal, &target).await? {
        return Err(AppError::not_found(format!("county {county:?} not found")));
    }
    require(
        principal,
        Permission::KbWrite,
        &TenantRef::County(county.clone()),
    )?;
    let template = match req.template.trim() {
        "" => None,
        name => Some(
            TEMPLATES
                .iter()
                .find(|(n, _, _)| *n == name)
                .ok_or_else(|| {
                    AppError::invalid(format!(
                        "unknown template {name:?}: use howto, stoerung or checkliste"
                    ))
                })?,
        ),
    };
    let title = match (req.title.trim(), template) {
        ("", Some((_, title, _))) => (*title).to_owned(),
        (title, _) => display_text("title", title, 200)?,
    };
    if title.is_empty() {
        return Err(AppError::invalid("title required"));
    }
    let body = match (req.body.trim(), template) {
        ("", Some((_, _, body))) => (*body).to_owned(),
        (body, _) => multiline_text("body", body, MAX_BODY, true)?,
    };
    let category = match req.category.trim() {
        "" => template
            .map(|(n, _, _)| (*n).to_owned())
            .unwrap_or_else(|| "allgemein".into()),
        c => tenant_id("category", c)?,
    };
    let now = now_millis();
    let article = KbArticle {
        id: uuid::Uuid::now_v7().to_string(),
        title: title.clone(),
        body: body.clone(),
        tags: tags(&req.tags)?,
        category,
        county_id: county.clone(),
        visibility: visibility(&req.visibility)?,
        version: 1,
        published_at: req.publish.then_some(now),
        created_at: now,
        updated_at: now,
    };
    let first = KbVersion {
        article_id: article.id.clone(),
        version: 1,
        title,
        body,
        author: principal.actor(),
        at: now,
    };
    let outbox = if req.publish {
        webhooks::article_event(
            &state.config,
            "kb.article_published",
            &article,
            &principal.name,
            now,
        )
    } else {
        None
    };
    state
        .store
        .create_article(&article, &first, outbox.as_ref())
        .await?;
    state
        .audit(
            &principal.actor(),
            "kb.create",
            &format!("article:{}", article.id),
            Some(&county),
            "ok",
            format!("publish={}", req.publish),
        )
        .await;
    Ok(article)
}

/// An edit of an article; empty fields keep their value.
#[derive(Debug, Clone, Default)]
pub struct ArticleEdit {
    pub id: String,
    /// The version the edit was made on: ABORTED unless it is current.
    pub base_version: i64,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub category: String,
    pub visibility: String,
    pub publish: bool,
}

/// Saves a new version (KbWrite on the owning county). ABORTED when
/// someone else saved one since `base_version`.
pub async fn update(
    state: &AppState,
    principal: &Principal,
    req: ArticleEdit,
) -> AppResult<KbArticle> {
    let current = article(state, principal, &req.id).await?;
    require(
        principal,
        Permission::KbWrite,
        &TenantRef::County(current.county_id.clone()),
    )?;
    if req.base_version != current.version {
        return Err(AppError::aborted(format!(
            "article is at version {}, not {}: reload and edit again",
            current.version, req.base_version
        )));
    }
    let now = now_millis();
    let mut next = current.clone();
    if !req.title.trim().is_empty() {
        next.title = display_text("title", &req.title, 200)?;
    }
    if !req.body.trim().is_empty() {
        next.body = multiline_text("body", &req.body, MAX_BODY, true)?;
    }
    if !req.tags.is_empty() {
        next.tags = tags(&req.tags)?;
    }
    if !req.category.trim().is_empty() {
        next.category = tenant_id("category", &req.category)?;
    }
    if !req.visibility.trim().is_empty() {
        next.visibility = visibility(&req.visibility)?;
    }
    next.version = current.version + 1;
    next.updated_at = now;
    if req.publish {
        next.published_at = Some(now);
    }
    let version = KbVersion {
        article_id: next.id.clone(),
        version: next.version,
        title: next.title.clone(),
        body: next.body.clone(),
        author: principal.actor(),
        at: now,
    };
    // New and revised published articles are announced alike.
    let outbox = if next.published_at.is_some() {
        webhooks::article_event(
            &state.config,
            "kb.article_published",
            &next,
            &principal.name,
            now,
        )
    } else {
        None
    };
    state
        .store
        .update_article(&next, &version, outbox.as_ref())
        .await
        .map_err(|e| match e {
            StorageError::Conflict(_) => {
                AppError::aborted("article changed meanwhile: reload and edit again")
            }
            other => other.into(),
        })?;
    state
        .audit(
            &principal.actor(),
            "kb.update",
            &format!("article:{}", next.id),
            Some(&next.county_id),
            "ok",
            format!("version={}", next.version),
        )
        .await;
    Ok(next)
}

/// The line diff between two versions (0: the current one as `to`, the
/// one before `to` as `from`), with the title change first.
pub async fn diff(
    state: &AppState,
    principal: &Principal,
    id: &str,
    from_version: i64,
    to_version: i64,
) -> AppResult<Vec<String>> {
    let article = article(state, principal, id).await?;
    let versions = state.store.list_article_versions(&article.id).await?;
    let to = if to_version == 0 {
        article.version
    } else {
        to_version
    };
    let from = if from_version == 0 {
        to - 1
    } else {
        from_version
    };
    let find = |n: i64| {
        versions
            .iter()
            .find(|v| v.version == n)
            .ok_or_else(|| AppError::not_found(format!("version {n} not found")))
    };
    let (old, new) = (find(from)?, find(to)?);
    if old.body.lines().count() > MAX_DIFF_LINES || new.body.lines().count() > MAX_DIFF_LINES {
        return Err(AppError::failed_precondition("article too long to diff"));
    }
    let mut lines = Vec::new();
    if old.title != new.title {
        lines.push(format!("- # {}", old.title));
        lines.push(format!("+ # {}", new.title));
    }
    lines.extend(crate::textdiff::line_diff(&old.body, &new.body));
    Ok(lines)
}

/// Links an article to a ticket, with a timeline entry on the ticket.
/// Linking changes the ticket, so it needs TicketWork there; the article
/// is shared and only read.
pub async fn link_ticket(
    state: &AppState,
    principal: &Principal,
    article_id: &str,
    ticket: &str,
) -> AppResult<KbArticle> {
    let article = article(state, principal, article_id).await?;
    let ticket = access::visible_ticket(state, principal, ticket, Permission::TicketWork).await?;
    state
        .store
        .link_article_ticket(&article.id, &ticket.id)
        .await?;
    state
        .store
        .apply_ticket_change(&TicketChange {
            ticket_id: ticket.id.clone(),
            at: now_millis(),
            actor: principal.actor(),
            kind: "article".into(),
            body: article.title.clone(),
            new_value: article.id.clone(),
            ..Default::default()
        })
        .await?;
    Ok(article)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_german_markdown() {
        for (name, title, body) in TEMPLATES {
            assert!(body.starts_with("# "), "{name}");
            assert!(!title.is_empty());
        }
        assert!(
            TEMPLATES
                .iter()
                .any(|(n, _, b)| *n == "stoerung" && b.contains("Störung"))
        );
    }
}
