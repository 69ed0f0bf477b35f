-- Service desk: tickets, their timeline, the knowledge base, full-text
-- search and the webhook outbox (SQLite).

-- Per-installation ticket numbers (SUP-1001, ...), taken in the same
-- transaction that creates the ticket.
CREATE TABLE ticket_sequence (
    name        TEXT PRIMARY KEY,
    next_value  INTEGER NOT NULL
);
INSERT INTO ticket_sequence (name, next_value) VALUES ('ticket', 1000);

CREATE TABLE tickets (
    id          TEXT PRIMARY KEY,
    number      INTEGER NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    status      TEXT NOT NULL,
    priority    TEXT NOT NULL,
    category    TEXT NOT NULL,
    county_id   TEXT NOT NULL REFERENCES counties(id),
    school_id   TEXT REFERENCES schools(id),
    assignee_id TEXT REFERENCES users(id),
    reporter    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    -- Set while the ticket is resolved or closed: the end of the window in
    -- which its devices' inventory changes belong to its timeline.
    closed_at   INTEGER
);
CREATE INDEX tickets_county ON tickets(county_id, status);
CREATE INDEX tickets_school ON tickets(school_id);
CREATE INDEX tickets_assignee ON tickets(assignee_id);

CREATE TABLE ticket_devices (
    ticket_id   TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    linked_at   INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, device_id)
);
CREATE INDEX ticket_devices_device ON ticket_devices(device_id);

-- The ticket's own timeline entries. `kind` is open text (created, comment,
-- status, assignee, device, report; later session, compliance) so that new
-- kinds need no migration.
CREATE TABLE ticket_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id   TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    old_value   TEXT NOT NULL,
    new_value   TEXT NOT NULL
);
CREATE INDEX ticket_events_ticket ON ticket_events(ticket_id, at);

CREATE TABLE kb_articles (
    id           TEXT PRIMARY KEY,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    tags         TEXT NOT NULL,
    category     TEXT NOT NULL,
    county_id    TEXT NOT NULL REFERENCES counties(id),
    visibility   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    published_at INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX kb_articles_updated ON kb_articles(updated_at);

CREATE TABLE kb_versions (
    article_id  TEXT NOT NULL REFERENCES kb_articles(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    author      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (article_id, version)
);

CREATE TABLE kb_article_tickets (
    article_id  TEXT NOT NULL REFERENCES kb_articles(id) ON DELETE CASCADE,
    ticket_id   TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    PRIMARY KEY (article_id, ticket_id)
);

-- Events for webhooks, written in the transaction of the change they
-- report, delivered (with retries) by a background task.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(delivered_at, next_attempt_at);

-- Full-text search over tickets and articles (FTS5, unicode61 folds case
-- of umlauts too). Kept current by triggers.
CREATE VIRTUAL TABLE search_fts USING fts5(
    kind UNINDEXED,
    ref_id UNINDEXED,
    title,
    body,
    tokenize = 'unicode61'
);

CREATE TRIGGER tickets_fts_insert AFTER INSERT ON tickets BEGIN
    INSERT INTO search_fts (kind, ref_id, title, body)
        VALUES ('ticket', NEW.id, NEW.title, NEW.description);
END;
CREATE TRIGGER tickets_fts_update AFTER UPDATE OF title, description ON tickets BEGIN
    DELETE FROM search_fts WHERE kind = 'ticket' AND ref_id = OLD.id;
    INSERT INTO search_fts (kind, ref_id, title, body)
        VALUES ('ticket', NEW.id, NEW.title, NEW.description);
END;
CREATE TRIGGER tickets_fts_delete AFTER DELETE ON tickets BEGIN
    DELETE FROM search_fts WHERE kind IN ('ticket', 'comment') AND ref_id = OLD.id;
END;

-- Comments are searched too, as part of their ticket.
CREATE TRIGGER ticket_comments_fts_insert AFTER INSERT ON ticket_events
WHEN NEW.kind = 'comment' BEGIN
    INSERT INTO search_fts (kind, ref_id, title, body)
        VALUES ('comment', NEW.ticket_id, '', NEW.body);
END;

CREATE TRIGGER kb_fts_insert AFTER INSERT ON kb_articles BEGIN
    INSERT INTO search_fts (kind, ref_id, title, body)
        VALUES ('article', NEW.id, NEW.title, NEW.body || ' ' || NEW.tags);
END;
CREATE TRIGGER kb_fts_update AFTER UPDATE OF title, body, tags ON kb_articles BEGIN
    DELETE FROM search_fts WHERE kind = 'article' AND ref_id = OLD.id;
    INSERT INTO search_fts (kind, ref_id, title, body)
        VALUES ('article', NEW.id, NEW.title, NEW.body || ' ' || NEW.tags);
END;
CREATE TRIGGER kb_fts_delete AFTER DELETE ON kb_articles BEGIN
    DELETE FROM search_fts WHERE kind = 'article' AND ref_id = OLD.id;
END;
