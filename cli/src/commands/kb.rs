//! `kb ...`: the shared knowledge base.

use anyhow::Context as _;
use schoolfleet_proto::text::for_terminal;
use schoolfleet_proto::v1::*;
use serde::Serialize;

use super::Context;
use crate::args::KbCommand;
use crate::client::Reply;
use crate::output::{Column, Record, Section, Ui, col, time_opt, wide};

#[derive(Debug, Serialize)]
pub struct ArticleRow {
    pub id: String,
    pub title: String,
    pub version: i64,
    pub county_id: String,
    pub category: String,
    pub tags: String,
    pub updated_at: Option<String>,
    pub published_at: Option<String>,
    pub visibility: String,
}

impl From<&Article> for ArticleRow {
    fn from(a: &Article) -> Self {
        Self {
            id: a.id.clone(),
            title: a.title.clone(),
            version: a.version,
            county_id: a.county_id.clone(),
            category: a.category.clone(),
            tags: a.tags.join(","),
            updated_at: time_opt(a.updated_at.as_ref()),
            published_at: time_opt(a.published_at.as_ref()),
            visibility: a.visibility.clone(),
        }
    }
}

impl Record for ArticleRow {
    const NOUN: &'static str = "articles";
    const COLUMNS: &'static [Column] = &[
        col("id", "ID"),
        col("title", "TITLE"),
        col("version", "VERSION"),
        col("county_id", "COUNTY"),
        col("category", "CATEGORY"),
        col("tags", "TAGS"),
        col("updated_at", "UPDATED"),
        wide("published_at", "PUBLISHED"),
        wide("visibility", "VISIBILITY"),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.title.clone(),
            self.version.to_string(),
            self.county_id.clone(),
            self.category.clone(),
            self.tags.clone(),
            self.updated_at.clone().unwrap_or_default(),
            self.published_at.clone().unwrap_or_default(),
            self.visibility.clone(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct TemplateRow {
    pub name: String,
    pub title: String,
}

impl Record for TemplateRow {
    const NOUN: &'static str = "templates";
    const COLUMNS: &'static [Column] = &[col("name", "NAME"), col("title", "TITLE")];
    fn cells(&self) -> Vec<String> {
        vec![self.name.clone(), self.title.clone()]
    }
}

fn read_body(file: Option<std::path::PathBuf>) -> anyhow::Result<String> {
    match file {
        Some(path) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display())),
        None => Ok(String::new()),
    }
}

fn one(ui: &mut Ui<'_>, article: &Article, message: &str) -> anyhow::Result<()> {
    let row = ArticleRow::from(article);
    ui.one(&row, |out| writeln!(out, "{}", for_terminal(message)))?;
    Ok(())
}

pub async fn run(cmd: KbCommand, ctx: &Context, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api = ctx.connect().await?;
    match cmd {
        KbCommand::New {
            county,
            title,
            template,
            file,
            tags,
            category,
            visibility,
            publish,
        } => {
            let a = api
                .kb()
                .create_article(CreateArticleRequest {
                    title: title.unwrap_or_default(),
                    body: read_body(file)?,
                    tags,
                    category: category.unwrap_or_default(),
                    county_id: county,
                    visibility,
                    template: template.unwrap_or_default(),
                    publish,
                })
                .await
                .reply(&api)?;
            let state = if publish {
                "published"
            } else {
                "saved as draft"
            };
            one(ui, &a, &format!("Article {} {state}: {}", a.id, a.title))?;
        }
        KbCommand::Edit {
            id,
            base_version,
            file,
            title,
            tags,
            publish,
        } => {
            let a = api
                .kb()
                .update_article(UpdateArticleRequest {
                    id,
                    base_version,
                    title: title.unwrap_or_default(),
                    body: read_body(file)?,
                    tags,
                    publish,
                    ..Default::default()
                })
                .await
                .reply(&api)?;
            one(
                ui,
                &a,
                &format!("Saved version {} of {}", a.version, a.title),
            )?;
        }
        KbCommand::Show { id, version } => {
            let detail = api
                .kb()
                .get_article(GetArticleRequest { id, version })
                .await
                .reply(&api)?;
            let Some(article) = detail.article else {
                anyhow::bail!("the server sent no article")
            };
            let row = ArticleRow::from(&article);
            ui.one(&row, |out| {
                let mut s =
                    Section::new(format!("{} (version {})", article.title, article.version));
                s.field("Id", article.id.clone())
                    .field("County", article.county_id.clone())
                    .field("Category", article.category.clone())
                    .field("Tags", article.tags.join(", "))
                    .field("Visibility", article.visibility.clone())
                    .table(
                        vec!["VERSION", "AT", "AUTHOR", "TITLE"],
                        detail
                            .versions
                            .iter()
                            .map(|v| {
                                vec![
                                    v.version.to_string(),
                                    time_opt(v.at.as_ref()).unwrap_or_default(),
                                    v.author.clone(),
                                    v.title.clone(),
                                ]
                            })
                            .collect(),
                    );
                write!(out, "{}\n{}\n", s.render(), for_terminal(&article.body))
            })?;
        }
        KbCommand::Diff { id, from, to } => {
            let diff = api
                .kb()
                .diff_article(DiffArticleRequest {
                    id,
                    from_version: from,
                    to_version: to,
                })
                .await
                .reply(&api)?;
            match ui.format {
                crate::output::OutputFormat::Table => {
                    for line in &diff.lines {
                        writeln!(ui.out, "{}", for_terminal(line))?;
                    }
                }
                _ => crate::output::write_json(ui.out, &diff.lines)?,
            }
        }
        KbCommand::Changes { since } => {
            let list = api
                .kb()
                .list_article_changes(ListArticleChangesRequest {
                    since_seconds: since.as_secs(),
                    limit: 0,
                })
                .await
                .reply(&api)?;
            let rows: Vec<ArticleRow> = list.articles.iter().map(ArticleRow::from).collect();
            ui.list(&rows)?;
        }
        KbCommand::Link { id, ticket } => {
            let a = api
                .kb()
                .link_article_ticket(LinkArticleTicketRequest {
                    article_id: id,
                    ticket: ticket.clone(),
                })
                .await
                .reply(&api)?;
            one(ui, &a, &format!("Linked {} to {ticket}", a.title))?;
        }
        KbCommand::Templates => {
            let list = api
                .kb()
                .list_templates(ListTemplatesRequest {})
                .await
                .reply(&api)?;
            let rows: Vec<TemplateRow> = list
                .templates
                .into_iter()
                .map(|t| TemplateRow {
                    name: t.name,
                    title: t.title,
                })
                .collect();
            ui.list(&rows)?;
        }
        KbCommand::Search { query, limit } => {
            super::tickets::search(&api, query, true, limit, ui).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::assert_keys_match_columns;

    #[test]
    fn rows_match_their_columns() {
        assert_keys_match_columns(&ArticleRow::from(&Article::default()));
        assert_keys_match_columns(&TemplateRow {
            name: String::new(),
            title: String::new(),
        });
    }
}
