-- The web portal (issue 13): a web password for an existing user (so the
-- user's role bindings apply unchanged) and server-side web sessions.

-- One argon2id hash (PHC string) per user; no row: no web login.
CREATE TABLE web_credentials (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Only the SHA-256 of the session id is stored: a copy of the table does
-- not yield a cookie. Idle sessions are deleted by the retention sweep.
CREATE TABLE web_sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen_at);
