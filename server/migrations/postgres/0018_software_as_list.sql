-- Issue 11 (fleet scale): a device's programs become one row: a JSON array
-- of [source, name, architecture, version], sorted by that key, each once
-- (see the SQLite migration of the same number). Stored as text: the
-- server writes and compares it as written, and the search expands it
-- with `jsonb_array_elements` only for the devices whose text matches.
CREATE TABLE device_software_list (
    device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    packages  TEXT NOT NULL
);
INSERT INTO device_software_list (device_id, packages)
    SELECT device_id,
           json_agg(json_build_array(source, name, architecture, version)
                    ORDER BY source COLLATE "C", name COLLATE "C",
                             architecture COLLATE "C", version COLLATE "C")::text
    FROM device_software GROUP BY device_id;
DROP TABLE device_software;
ALTER TABLE device_software_list RENAME TO device_software;
ALTER TABLE device_software RENAME CONSTRAINT device_software_list_pkey TO device_software_pkey;
ALTER TABLE device_software RENAME CONSTRAINT device_software_list_device_id_fkey TO device_software_device_id_fkey;
