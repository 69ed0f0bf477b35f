-- Data protection (issue 12, parts 1, 3 and 4): the second factor of each
-- user, the step-up a session was started with, and the consent floors
-- that a school's own role sets.

-- One TOTP per user. `secret` is sealed with a data key outside the
-- database (keyring.rs); `last_step` makes every code single-use; the
-- grace columns let a fan-out start more sessions of the same kind and
-- reason for a short while (the reason only as a SHA-256).
CREATE TABLE user_mfa (
    user_id      TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    method       TEXT NOT NULL,
    secret       BYTEA NOT NULL,
    confirmed    BOOLEAN NOT NULL DEFAULT FALSE,
    last_step    BIGINT NOT NULL DEFAULT 0,
    grace_until  BIGINT NOT NULL DEFAULT 0,
    grace_kind   TEXT NOT NULL DEFAULT '',
    grace_reason TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL
);

ALTER TABLE sessions ADD COLUMN step_up TEXT NOT NULL DEFAULT '';

-- The least consent a school's lead (`schulleitung`) set for the school
-- (device_class '') or one class; technicians and county admins cannot
-- set a policy below it, and resolving the mode never goes below it.
CREATE TABLE consent_floors (
    school_id    TEXT NOT NULL,
    device_class TEXT NOT NULL,
    floor        TEXT NOT NULL,
    set_by       TEXT NOT NULL,
    set_at       BIGINT NOT NULL,
    PRIMARY KEY (school_id, device_class)
);
