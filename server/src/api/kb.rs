//! The knowledge base: the adapter of `KnowledgeService` over
//! `service::kb` (articles, versions, templates, diff, links to tickets,
//! changes).
//!
//! The knowledge base is shared by the cooperation on purpose (knowledge
//! transfer between the counties is why it exists): KbRead in any scope
//! reads every article. Writing needs KbWrite on the article's owning
//! county; articles not readable at all are NOT_FOUND.

use schoolfleet_proto::v1::knowledge_service_server::KnowledgeService;
use schoolfleet_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{AppState, convert};
use crate::service::kb::{self, ArticleEdit, NewArticle};
use crate::storage::KbArticle;

#[derive(Debug, Clone)]
pub struct KnowledgeApi(pub AppState);

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

#[tonic::async_trait]
impl KnowledgeService for KnowledgeApi {
    async fn create_article(
        &self,
        request: Request<CreateArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let article = kb::create(
            &self.0,
            &principal,
            NewArticle {
                county_id: req.county_id,
                template: req.template,
                title: req.title,
                body: req.body,
                tags: req.tags,
                category: req.category,
                visibility: req.visibility,
                publish: req.publish,
            },
        )
        .await?;
        Ok(Response::new(wire(&article)))
    }

    async fn update_article(
        &self,
        request: Request<UpdateArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let article = kb::update(
            &self.0,
            &principal,
            ArticleEdit {
                id: req.id,
                base_version: req.base_version,
                title: req.title,
                body: req.body,
                tags: req.tags,
                category: req.category,
                visibility: req.visibility,
                publish: req.publish,
            },
        )
        .await?;
        Ok(Response::new(wire(&article)))
    }

    async fn get_article(
        &self,
        request: Request<GetArticleRequest>,
    ) -> Result<Response<ArticleDetail>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let detail = kb::show(&self.0, &principal, &req.id, req.version).await?;
        Ok(Response::new(ArticleDetail {
            article: Some(wire(&detail.article)),
            versions: detail
                .versions
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
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let lines = kb::diff(
            &self.0,
            &principal,
            &req.id,
            req.from_version,
            req.to_version,
        )
        .await?;
        Ok(Response::new(DiffArticleResponse { lines }))
    }

    async fn list_article_changes(
        &self,
        request: Request<ListArticleChangesRequest>,
    ) -> Result<Response<ListArticlesResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let articles = kb::changed(&self.0, &principal, req.since_seconds, req.limit).await?;
        Ok(Response::new(ListArticlesResponse {
            articles: articles.iter().map(wire).collect(),
        }))
    }

    async fn link_article_ticket(
        &self,
        request: Request<LinkArticleTicketRequest>,
    ) -> Result<Response<Article>, Status> {
        let principal = self.0.principal(&request).await?;
        let req = request.into_inner();
        let article = kb::link_ticket(&self.0, &principal, &req.article_id, &req.ticket).await?;
        Ok(Response::new(wire(&article)))
    }

    async fn list_templates(
        &self,
        request: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        let principal = self.0.principal(&request).await?;
        Ok(Response::new(ListTemplatesResponse {
            templates: kb::templates(&principal)?
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
