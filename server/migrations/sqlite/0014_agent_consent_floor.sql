-- The consent floor the agent enforces (`--consent-min`), as it reported
-- it in its Hello at the last connect (issue 12, part 4): "none",
-- "notify" or "prompt"; NULL when unknown (an older agent, or a value the
-- server refused). A session's recorded consent is never below it.
ALTER TABLE devices ADD COLUMN agent_consent_min TEXT;
