-- Issue 11 (fleet scale): the index on `device_software(name)` served no
-- query. The software search matches `lower(name) LIKE '%…%'`, which no
-- B-tree index can answer, yet every stored program cost the index a write
-- at a random place: at 10,000 devices about 1,700 dirty pages per first
-- report, most of SQLite's write-ahead log. A device's rows stay reachable
-- through the primary key, which starts with the device.
DROP INDEX IF EXISTS device_software_name;
