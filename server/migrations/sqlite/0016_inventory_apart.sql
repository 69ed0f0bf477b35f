-- Issue 11 (fleet scale): the current inventory (tens of KB, encoded) moves
-- out of the devices row. A row is rewritten whole on every update, and the
-- devices row is updated by every heartbeat, stream open and end: with the
-- blob in it, each of those rewrote the blob's overflow pages too (and,
-- with secure_delete, zeroed the old ones). Apart, a heartbeat writes a
-- small row, and the blob only when a changed inventory arrives.
CREATE TABLE device_inventories (
    device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    inventory BLOB NOT NULL
);
INSERT INTO device_inventories (device_id, inventory)
    SELECT id, inventory FROM devices WHERE inventory IS NOT NULL;
ALTER TABLE devices DROP COLUMN inventory;
