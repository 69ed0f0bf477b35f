-- Service desk: tickets, their timeline, the knowledge base, full-text
-- search and the webhook outbox (PostgreSQL).

-- Per-installation ticket numbers (SUP-1001, ...), taken in the same
-- transaction that creates the ticket.
CREATE TABLE ticket_sequence (
    name        TEXT PRIMARY KEY,
    next_value  BIGINT NOT NULL
);
INSERT INTO ticket_sequence (name, next_value) VALUES ('ticket', 1000);

CREATE TABLE tickets (
    id          TEXT PRIMARY KEY,
    number      BIGINT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    status      TEXT NOT NULL,
    priority    TEXT NOT NULL,
    category    TEXT NOT NULL,
    county_id   TEXT NOT NULL REFERENCES counties(id),
    school_id   TEXT REFERENCES schools(id),
    assignee_id TEXT REFERENCES users(id),
    reporter    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    -- Set while the ticket is resolved or closed: the end of the window in
    -- which its devices' inventory changes belong to its timeline.
    closed_at   BIGINT
);
CREATE INDEX tickets_county ON tickets(county_id, status);
CREATE INDEX tickets_school ON tickets(school_id);
CREATE INDEX tickets_assignee ON tickets(assignee_id);

CREATE TABLE ticket_devices (
    ticket_id   TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    linked_at   BIGINT NOT NULL,
    PRIMARY KEY (ticket_id, device_id)
);
CREATE INDEX ticket_devices_device ON ticket_devices(device_id);

-- The ticket's own timeline entries. `kind` is open text (created, comment,
-- status, assignee, device, report; later session, compliance) so that new
-- kinds need no migration.
CREATE TABLE ticket_events (
    id          BIGSERIAL PRIMARY KEY,
    ticket_id   TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    at          BIGINT NOT NULL,
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
    version      BIGINT NOT NULL,
    published_at BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX kb_articles_updated ON kb_articles(updated_at);

CREATE TABLE kb_versions (
    article_id  TEXT NOT NULL REFERENCES kb_articles(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    author      TEXT NOT NULL,
    at          BIGINT NOT NULL,
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
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(delivered_at, next_attempt_at);

-- Full-text search: the 'simple' configuration (no stemming, so prefix
-- queries work on German compounds; lower-casing folds umlauts), generated
-- tsvector columns with GIN indexes.
ALTER TABLE tickets ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', title || ' ' || description)) STORED;
CREATE INDEX tickets_search ON tickets USING GIN (search);
ALTER TABLE kb_articles ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', title || ' ' || body || ' ' || tags)) STORED;
CREATE INDEX kb_articles_search ON kb_articles USING GIN (search);
-- Comments are searched too, as part of their ticket.
ALTER TABLE ticket_events ADD COLUMN search tsvector
    GENERATED ALWAYS AS (
        to_tsvector('simple', CASE WHEN kind = 'comment' THEN body ELSE '' END)
    ) STORED;
CREATE INDEX ticket_events_search ON ticket_events USING GIN (search);
