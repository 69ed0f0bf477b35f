-- Offboarding, the school lead's audit and the four-eyes rule for
-- recordings (issue 12, parts 2, 3 and 4).

-- When an API token last authenticated (updated at most every few minutes
-- per server), for `schoolfleet user tokens`. NULL: never since 0013.
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;

-- The school an audit entry concerns (sessions, devices, consent), so the
-- school lead reads its school's entries. Part of the entry's hash when
-- set; older entries have NULL and hash as before.
ALTER TABLE audit_events ADD COLUMN school_id TEXT;
CREATE INDEX audit_events_school ON audit_events(school_id, seq);

-- Four-eyes rule for recordings (issue 12, part 3): another person's
-- approval lets one user play one session's recording until expires_at.
-- Deleted with the session (its retention).
CREATE TABLE playback_approvals (
    session_id   TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    requester_id TEXT NOT NULL,
    approver_id  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    approved_at  INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (session_id, requester_id)
);
