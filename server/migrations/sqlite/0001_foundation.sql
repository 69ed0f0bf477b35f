-- Foundation schema for the embedded SQLite backend.
-- Times are Unix milliseconds (INTEGER) on both backends, so that one set of
-- queries serves both and comparisons never depend on text formats.

CREATE TABLE counties (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE schools (
    id          TEXT PRIMARY KEY,
    county_id   TEXT NOT NULL REFERENCES counties(id),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX schools_county ON schools(county_id);

CREATE TABLE device_classes (
    id          TEXT PRIMARY KEY,
    label       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
INSERT INTO device_classes (id, label, created_at) VALUES
    ('schueler-pc', 'Schüler-PC', 0),
    ('lehrer-laptop', 'Lehrer-Laptop', 0),
    ('verwaltungs-pc', 'Verwaltungs-PC', 0);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    county_id   TEXT REFERENCES counties(id),
    created_at  INTEGER NOT NULL
);

CREATE TABLE role_bindings (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    PRIMARY KEY (user_id, role, scope)
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE enrollment_tokens (
    id           TEXT PRIMARY KEY,
    secret_hash  TEXT NOT NULL,
    county_id    TEXT NOT NULL REFERENCES counties(id),
    school_id    TEXT NOT NULL REFERENCES schools(id),
    device_class TEXT NOT NULL REFERENCES device_classes(id),
    description  TEXT NOT NULL,
    max_uses     INTEGER NOT NULL,
    uses         INTEGER NOT NULL DEFAULT 0,
    expires_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX enrollment_tokens_school ON enrollment_tokens(school_id);

CREATE TABLE devices (
    id                 TEXT PRIMARY KEY,
    county_id          TEXT NOT NULL REFERENCES counties(id),
    school_id          TEXT NOT NULL REFERENCES schools(id),
    device_class       TEXT NOT NULL REFERENCES device_classes(id),
    status             TEXT NOT NULL,
    hostname           TEXT NOT NULL,
    system_uuid        TEXT NOT NULL,
    serial_number      TEXT NOT NULL,
    machine_id         TEXT NOT NULL DEFAULT '',
    cert_fingerprint   TEXT UNIQUE,
    -- The certificate before the last renewal, accepted until the new one
    -- is first used (so a crash during renewal cannot lock the device out).
    cert_fingerprint_previous TEXT,
    cert_serial        TEXT,
    cert_not_after     INTEGER,
    enrolled_at        INTEGER NOT NULL,
    last_seen          INTEGER,
    connected          BOOLEAN NOT NULL DEFAULT FALSE,
    agent_version      TEXT NOT NULL DEFAULT '',
    inventory_at       INTEGER,
    inventory_hash     TEXT,
    inventory          BLOB,
    os_name            TEXT NOT NULL DEFAULT '',
    os_version         TEXT NOT NULL DEFAULT '',
    vendor             TEXT NOT NULL DEFAULT '',
    model              TEXT NOT NULL DEFAULT '',
    memory_total_bytes INTEGER NOT NULL DEFAULT 0,
    ip_addresses       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX devices_county ON devices(county_id);
CREATE INDEX devices_school ON devices(school_id);
CREATE INDEX devices_hostname ON devices(hostname, id);
CREATE INDEX devices_hardware ON devices(county_id, system_uuid, serial_number);
CREATE INDEX devices_machine ON devices(county_id, machine_id);

CREATE TABLE inventory_reports (
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    report_id    TEXT NOT NULL,
    collected_at INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    reason       TEXT NOT NULL,
    PRIMARY KEY (device_id, report_id)
);
CREATE INDEX inventory_reports_received ON inventory_reports(device_id, received_at);

CREATE TABLE device_software (
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    source       TEXT NOT NULL,
    name         TEXT NOT NULL,
    architecture TEXT NOT NULL,
    version      TEXT NOT NULL,
    -- Several versions of one package can be installed side by side (rpm
    -- kernels), so the version is part of the key.
    PRIMARY KEY (device_id, source, name, architecture, version)
);
CREATE INDEX device_software_name ON device_software(name);

CREATE TABLE inventory_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    report_id   TEXT NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    old_value   TEXT NOT NULL,
    new_value   TEXT NOT NULL
);
CREATE INDEX inventory_changes_device ON inventory_changes(device_id, at);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    county_id   TEXT,
    outcome     TEXT NOT NULL,
    details     TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events(at);
