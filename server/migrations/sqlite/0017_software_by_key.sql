-- Issue 11 (fleet scale): `device_software` becomes a WITHOUT ROWID table.
-- Its primary key (device, source, name, architecture, version) is the
-- whole row. As a rowid table every row was stored twice, in the table and
-- in the key's index, and every program written or removed touched both
-- B-trees: half the file and half the writes of a full change go.
-- Clustered by the key, a device's programs also sit together.
CREATE TABLE device_software_by_key (
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    source       TEXT NOT NULL,
    name         TEXT NOT NULL,
    architecture TEXT NOT NULL,
    version      TEXT NOT NULL,
    -- Several versions of one package can be installed side by side (rpm
    -- kernels), so the version is part of the key.
    PRIMARY KEY (device_id, source, name, architecture, version)
) WITHOUT ROWID;
INSERT INTO device_software_by_key (device_id, source, name, architecture, version)
    SELECT device_id, source, name, architecture, version FROM device_software;
DROP TABLE device_software;
ALTER TABLE device_software_by_key RENAME TO device_software;
