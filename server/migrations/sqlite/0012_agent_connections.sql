-- Which stream speaks for a device (issue #11). A stream that ends late on
-- one replica (its keepalive timed out minutes after the agent reconnected
-- elsewhere) must not mark the device disconnected: only the stream whose
-- id is recorded here may. The replica column names where that stream is,
-- so that a session started on another replica can be relayed to it.
ALTER TABLE devices ADD COLUMN connection_id TEXT;
ALTER TABLE devices ADD COLUMN connection_replica TEXT;

-- The replicas sharing this database that relay remote sessions, with the
-- URL each is reached at; a replica renews its row while it runs and
-- deletes it when it stops. Rows of a crashed replica age out by seen_at.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    seen_at BIGINT NOT NULL
);
