-- Remote sessions (issue #3): capability limits on role bindings, sessions,
-- their recordings, the consent policy, and the audit hash chain.

ALTER TABLE role_bindings ADD COLUMN remote TEXT NOT NULL DEFAULT '';

CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY,
    kind                 TEXT NOT NULL,
    state                TEXT NOT NULL,
    device_id            TEXT NOT NULL,
    county_id            TEXT NOT NULL,
    school_id            TEXT NOT NULL,
    user_id              TEXT NOT NULL,
    actor                TEXT NOT NULL,
    reason               TEXT NOT NULL,
    ticket               TEXT NOT NULL,
    summary              TEXT NOT NULL,
    spec                 TEXT NOT NULL,
    consent              TEXT NOT NULL,
    started_at           INTEGER NOT NULL,
    ended_at             INTEGER,
    end_reason           TEXT NOT NULL DEFAULT '',
    bytes_to_device      INTEGER NOT NULL DEFAULT 0,
    bytes_from_device    INTEGER NOT NULL DEFAULT 0,
    exit_code            INTEGER,
    has_recording        BOOLEAN NOT NULL DEFAULT FALSE,
    channels             INTEGER NOT NULL DEFAULT 0,
    end_requested_at     INTEGER,
    end_requested_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_started ON sessions(started_at);
CREATE INDEX sessions_device ON sessions(device_id, started_at);
CREATE INDEX sessions_state ON sessions(state);

CREATE TABLE session_recordings (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    chunk_no   INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (session_id, chunk_no)
);

CREATE TABLE consent_policies (
    school_id    TEXT NOT NULL,
    device_class TEXT NOT NULL,
    consent      TEXT NOT NULL,
    updated_by   TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (school_id, device_class)
);

ALTER TABLE audit_events ADD COLUMN seq INTEGER;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_events_seq ON audit_events(seq);

CREATE TABLE audit_chain (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    seq                INTEGER NOT NULL,
    head_hash          TEXT NOT NULL,
    pruned_before_seq  INTEGER NOT NULL,
    pruned_anchor_hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, seq, head_hash, pruned_before_seq, pruned_anchor_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0,
        '0000000000000000000000000000000000000000000000000000000000000000');
