-- The common IT standard and the compliance of every device with it.

CREATE TABLE standard_versions (
    revision     BIGSERIAL PRIMARY KEY,
    standard_id  TEXT NOT NULL,
    version      TEXT NOT NULL,
    content      TEXT NOT NULL,
    rules        BIGINT NOT NULL,
    waivers      BIGINT NOT NULL,
    applied_by   TEXT NOT NULL,
    applied_at   BIGINT NOT NULL
);

-- One row per device, standard revision and rule. Kept per revision, so a
-- report of an earlier revision can be reproduced.
CREATE TABLE compliance_results (
    device_id          TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    revision           BIGINT NOT NULL REFERENCES standard_versions(revision),
    rule_id            TEXT NOT NULL,
    status             TEXT NOT NULL,
    counted            BOOLEAN NOT NULL,
    expected           TEXT NOT NULL,
    actual             TEXT NOT NULL,
    reason             TEXT NOT NULL,
    waiver_id          TEXT NOT NULL,
    waiver_expires_at  BIGINT,
    evaluated_at       BIGINT NOT NULL,
    PRIMARY KEY (device_id, revision, rule_id)
);
CREATE INDEX compliance_results_rule ON compliance_results(revision, rule_id, status);
CREATE INDEX compliance_results_waivers ON compliance_results(revision, waiver_expires_at);

-- Daily counts per school, for the trend.
CREATE TABLE compliance_snapshots (
    day        TEXT NOT NULL,
    revision   BIGINT NOT NULL,
    county_id  TEXT NOT NULL,
    school_id  TEXT NOT NULL,
    devices    BIGINT NOT NULL,
    compliant  BIGINT NOT NULL,
    PRIMARY KEY (day, school_id)
);

-- When the agent last confirmed (by heartbeat hash) that its inventory is
-- unchanged: reports are sent only on change, so this is how the age of an
-- unchanged inventory stays honest.
ALTER TABLE devices ADD COLUMN inventory_confirmed_at BIGINT;

-- When a device's result for a rule changes (fail -> pass, say): what the
-- ticket timeline shows as "compliance changes of its devices".
CREATE TABLE compliance_changes (
    id          BIGSERIAL PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    revision    BIGINT NOT NULL,
    rule_id     TEXT NOT NULL,
    at          BIGINT NOT NULL,
    old_status  TEXT NOT NULL,
    new_status  TEXT NOT NULL,
    actual      TEXT NOT NULL
);
CREATE INDEX compliance_changes_device ON compliance_changes(device_id, at);

-- The one service-desk ticket per device and rule that `auto_ticket`
-- rules open; reopened or resolved as the result changes, never duplicated.
CREATE TABLE compliance_tickets (
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    rule_id    TEXT NOT NULL,
    ticket_id  TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    PRIMARY KEY (device_id, rule_id)
);
