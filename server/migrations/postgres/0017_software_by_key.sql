-- Issue 11 (fleet scale): on SQLite, 0017 stores `device_software` once,
-- by its key (WITHOUT ROWID). PostgreSQL keeps a heap and the key's index
-- either way, so nothing changes here; the file keeps both backends'
-- migration numbers in step.
SELECT 1;
