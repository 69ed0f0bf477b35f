//! The knowledge base: Markdown articles with version history, templates,
//! line diffs, links to tickets, and "what changed" for the weekly
//! information of the whole team.
//!
//! The knowledge base is shared by the cooperation on purpose (knowledge
//! transfer between the counties is why it exists): KbRead in any scope
//! reads every article. Writing needs KbWrite on the article's owning
//! county; articles not readable at all are NOT_FOUND.

use crate::service::access;
use schoolfleet_proto::v1::knowledge_service_server::KnowledgeService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::tickets::multiline_text;
use super::{AppState, convert, display_text, require, storage_status, tenant_id};
use crate::auth::{Permission, Principal, TenantRef};
use crate::storage::{self, KbArticle, KbVersion, TicketChange, now_millis};
use crate::webhooks;

const MAX_BODY: usize = 200_000;
const MAX_DIFF_LINES: usize = 5_000;
const VISIBILITIES: [&str; 2] = ["team", "teachers"];

/// The templates shipped with the server (German, as the team writes).
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

#[derive(Debug, Clone)]
pub struct KnowledgeApi(pub AppState);

fn tags(list: &[String]) -> Result<String, Status> {
    let mut out: Vec<String> = Vec::new();
    for tag in list {
        let tag = display_text("tag", &tag.trim().to_lowercase(), 40)?;
        if tag.is_empty() || tag.contains(',') {
            return Err(Status::invalid_argument(format!("tag {tag:?} is invalid")));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > 20 {
        return Err(Status::invalid_argument("at most 20 tags"));
    }
    Ok(out.join(","))
}

fn visibility(value: &str) -> Result<String, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Ok("team".into());
    }
    if VISIBILITIES.contains(&value) {
        Ok(value.into())
    } else {
        Err(Status::invalid_argument(
            "visibility must be team or teachers",
        ))
    }
}

fn wire(a: &KbArticle) -> Article {
    Article {
        id: a.id.clone(),
        title: a.title.clone(),
        body: a.body.clone(),
        tags: a
            .tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        category: a.category.clone(),
        county_id: a.county_id.clone(),
        visibility: a.visibility.clone(),
        version: a.version,
        published_at: convert::opt_ts(a.published_at),
        created_at: convert::ts(a.created_at),
        updated_at: convert::ts(a.updated_at),
    }
}

pub use crate::textdiff::line_diff;

impl KnowledgeApi {
    fn require_read(principal: &Principal) -> Result<(), Status> {
        if principal.can_anywhere(Permission::KbRead) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{} lacks KbRead",
                principal.name
            )))
        }
    }

    async fn article(&self, principal: &Principal, id: &str) -> Result<KbArticle, Status> {
        let not_found = || Status::not_found(format!("article {:?} not found", id.trim()));
        if !principal.can_anywhere(Permission::KbRead) {
            return Err(not_found());
        }
        self.0
            .store
            .get_article(id.trim())
            .await
            .map_err(storage_status)?
            .ok_or_else(not_found)
    }
}

#[tonic::async_trait]
impl KnowledgeService for KnowledgeApi {
    async fn create_article(
        &self,
        request: Request<CreateArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let county = tenant_id("county", &req.county_id)?;
        let exists = state
            .store
            .get_county(&county)
            .await
            .map_err(storage_status)?
            .is_some();
        // A county the caller has no role in is NOT_FOUND, exactly like one
        // that does not exist.
        let target = TenantRef::County(county.clone());
        if !exists || !access::tenant_known(state, &principal, &target).await? {
            return Err(Status::not_found(format!("county {county:?} not found")));
        }
        require(
            &principal,
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
                        Status::invalid_argument(format!(
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
            return Err(Status::invalid_argument("title required"));
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
            .await
            .map_err(storage_status)?;
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
        Ok(Response::new(wire(&article)))
    }

    async fn update_article(
        &self,
        request: Request<UpdateArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let current = self.article(&principal, &req.id).await?;
        require(
            &principal,
            Permission::KbWrite,
            &TenantRef::County(current.county_id.clone()),
        )?;
        if req.base_version != current.version {
            return Err(Status::aborted(format!(
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
                storage::StorageError::Conflict(_) => {
                    Status::aborted("article changed meanwhile: reload and edit again")
                }
                other => storage_status(other),
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
        Ok(Response::new(wire(&next)))
    }

    async fn get_article(
        &self,
        request: Request<GetArticleRequest>,
    ) -> Result<Response<ArticleDetail>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let mut article = self.article(&principal, &req.id).await?;
        let versions = state
            .store
            .list_article_versions(&article.id)
            .await
            .map_err(storage_status)?;
        if req.version != 0 {
            let v = versions
                .iter()
                .find(|v| v.version == req.version)
                .ok_or_else(|| Status::not_found(format!("version {} not found", req.version)))?;
            article.title = v.title.clone();
            article.body = v.body.clone();
            article.version = v.version;
        }
        Ok(Response::new(ArticleDetail {
            article: Some(wire(&article)),
            versions: versions
                .iter()
                .map(|v| ArticleVersion {
                    version: v.version,
                    title: v.title.clone(),
                    author: v.author.clone(),
                    at: convert::ts(v.at),
                })
                .collect(),
        }))
    }

    async fn diff_article(
        &self,
        request: Request<DiffArticleRequest>,
    ) -> Result<Response<DiffArticleResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let article = self.article(&principal, &req.id).await?;
        let versions = state
            .store
            .list_article_versions(&article.id)
            .await
            .map_err(storage_status)?;
        let to = if req.to_version == 0 {
            article.version
        } else {
            req.to_version
        };
        let from = if req.from_version == 0 {
            to - 1
        } else {
            req.from_version
        };
        let find = |n: i64| {
            versions
                .iter()
                .find(|v| v.version == n)
                .ok_or_else(|| Status::not_found(format!("version {n} not found")))
        };
        let (old, new) = (find(from)?, find(to)?);
        if old.body.lines().count() > MAX_DIFF_LINES || new.body.lines().count() > MAX_DIFF_LINES {
            return Err(Status::failed_precondition("article too long to diff"));
        }
        let mut lines = Vec::new();
        if old.title != new.title {
            lines.push(format!("- # {}", old.title));
            lines.push(format!("+ # {}", new.title));
        }
        lines.extend(line_diff(&old.body, &new.body));
        Ok(Response::new(DiffArticleResponse { lines }))
    }

    async fn list_article_changes(
        &self,
        request: Request<ListArticleChangesRequest>,
    ) -> Result<Response<ListArticlesResponse>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        Self::require_read(&principal)?;
        let req = request.into_inner();
        let seconds = match req.since_seconds {
            0 => 7 * 24 * 3600,
            s => s.min(10 * 366 * 24 * 3600),
        };
        let since = now_millis() - (seconds as i64) * 1000;
        let limit = match req.limit {
            0 => 200,
            n => n.min(2000),
        };
        let articles = state
            .store
            .list_articles_changed(since, i64::from(limit))
            .await
            .map_err(storage_status)?;
        Ok(Response::new(ListArticlesResponse {
            articles: articles.iter().map(wire).collect(),
        }))
    }

    async fn link_article_ticket(
        &self,
        request: Request<LinkArticleTicketRequest>,
    ) -> Result<Response<Article>, Status> {
        let state = &self.0;
        let principal = state.principal(&request).await?;
        let req = request.into_inner();
        let article = self.article(&principal, &req.article_id).await?;
        // Linking changes the ticket (a timeline entry), so it needs work
        // on the ticket; the article is shared and only read.
        let ticket =
            access::visible_ticket(state, &principal, &req.ticket, Permission::TicketWork).await?;
        state
            .store
            .link_article_ticket(&article.id, &ticket.id)
            .await
            .map_err(storage_status)?;
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
            .await
            .map_err(storage_status)?;
        Ok(Response::new(wire(&article)))
    }

    async fn list_templates(
        &self,
        request: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        Self::require_read(&principal)?;
        Ok(Response::new(ListTemplatesResponse {
            templates: TEMPLATES
                .iter()
                .map(|(name, title, body)| Template {
                    name: (*name).into(),
                    title: (*title).into(),
                    body: (*body).into(),
                })
                .collect(),
        }))
    }
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
