-- Messages, their events, dead-letter entries, deduplication ids and
-- signing keys. Times are Unix milliseconds (UTC) in BIGINT columns.
--
-- Headers and label lists are JSON in TEXT columns, not JSONB: JSONB
-- rejects strings containing the \u0000 escape, which encoding/json emits
-- for NUL bytes, and no query looks inside these values.

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    url              TEXT NOT NULL,
    method           TEXT NOT NULL,
    header           TEXT NOT NULL,           -- JSON object: name -> [values]
    body             BYTEA NOT NULL,
    max_retries      INTEGER NOT NULL,
    retried          INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    retry_delay_expr TEXT NOT NULL DEFAULT '',
    timeout_ms       BIGINT NOT NULL DEFAULT 0,
    not_before       BIGINT NOT NULL,
    due_at           BIGINT,                  -- NULL once terminal
    lease_owner      TEXT NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    labels           TEXT NOT NULL DEFAULT '[]', -- JSON array
    dedup_id         TEXT NOT NULL DEFAULT '',
    caller_ip        TEXT NOT NULL DEFAULT ''
);

-- The dispatcher's claim scans this index in (due_at, id) order: waiting
-- messages by delivery time and active messages by lease expiry.
CREATE INDEX messages_due ON messages (due_at, id)
    WHERE state IN ('CREATED', 'RETRY', 'ACTIVE');

-- A starting node releases the leases held under its name.
CREATE INDEX messages_lease_owner ON messages (lease_owner)
    WHERE state = 'ACTIVE';

CREATE TABLE events (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id         TEXT NOT NULL,
    state              TEXT NOT NULL,
    time               BIGINT NOT NULL,
    url                TEXT NOT NULL,
    retried            INTEGER NOT NULL,
    response_status    INTEGER NOT NULL DEFAULT 0,
    response_header    TEXT NOT NULL DEFAULT '{}',
    response_body      BYTEA,
    error              TEXT NOT NULL DEFAULT '',
    next_delivery_time BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX events_message ON events (message_id, id);
CREATE INDEX events_time ON events (time);

CREATE TABLE dlq (
    id              TEXT PRIMARY KEY,
    message_id      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    response_status INTEGER NOT NULL,
    response_header TEXT NOT NULL,
    response_body   BYTEA,
    error           TEXT NOT NULL DEFAULT ''
);

CREATE TABLE dedup (
    id         TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    current   TEXT NOT NULL,
    next      TEXT NOT NULL
);
