-- Hardening (issues #9 and #11).

-- The certificate lookup of every agent call is
-- `cert_fingerprint = $1 OR cert_fingerprint_previous = $1`; without this
-- index the second half scanned the whole devices table.
CREATE INDEX devices_cert_fingerprint_previous ON devices(cert_fingerprint_previous);

-- The chain head's HMAC (key in a file outside the database): rewriting
-- entries or the prune anchor in the database no longer goes unnoticed.
ALTER TABLE audit_chain ADD COLUMN head_mac TEXT NOT NULL DEFAULT '';
