//! Reading the knowledge base: articles with their versions, and what
//! changed recently.
//!
//! The knowledge base is shared by the cooperation on purpose: KbRead in
//! any scope reads every article; without it articles are NOT_FOUND.
//! Writing stays in `api/kb.rs` for now.

use super::{AppError, AppResult};
use crate::auth::{Permission, Principal};
use crate::state::AppState;
use crate::storage::{KbArticle, KbVersion, now_millis};

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
