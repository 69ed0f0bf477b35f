-- Data protection (issue 12, parts 2 and 5).

-- Offboarding: a disabled user keeps its bindings and tokens but cannot
-- authenticate until enabled again. NULL: enabled.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- Retention sweeps delete by time: without these indexes every hourly pass
-- would scan the whole table.
CREATE INDEX inventory_changes_at ON inventory_changes(at);
CREATE INDEX inventory_reports_received_at ON inventory_reports(received_at);
CREATE INDEX sessions_ended ON sessions(ended_at);
CREATE INDEX tickets_closed ON tickets(closed_at);
CREATE INDEX compliance_changes_at ON compliance_changes(at);
CREATE INDEX webhook_outbox_created ON webhook_outbox(created_at);
