-- Issue 11 (fleet scale): a device's programs become one row: a JSON array
-- of [source, name, architecture, version], sorted by that key, each once.
-- As rows, a report that moved every version deleted and inserted some
-- 1,650 B-tree entries per device (half the writer's time in a morning
-- storm of updated PCs). The software search scanned every row either way
-- (`lower(name) LIKE '%…%'` can use no index); it now scans one text per
-- device and expands only the devices that match. What changed, program by
-- program, stays in `inventory_changes`.
CREATE TABLE device_software_list (
    device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    packages  TEXT NOT NULL
);
INSERT INTO device_software_list (device_id, packages)
    SELECT device_id,
           json_group_array(json_array(source, name, architecture, version)
                            ORDER BY source, name, architecture, version)
    FROM device_software GROUP BY device_id;
DROP TABLE device_software;
ALTER TABLE device_software_list RENAME TO device_software;
