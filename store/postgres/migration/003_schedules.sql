-- Schedules: a message template, its cron expression and the time of its
-- next tick. Times are Unix milliseconds (UTC) in BIGINT columns; headers
-- and lists are JSON in TEXT columns, as in the messages table.

CREATE TABLE schedules (
    id                      TEXT PRIMARY KEY,
    cron                    TEXT NOT NULL,
    destination             TEXT NOT NULL,
    method                  TEXT NOT NULL,
    header                  TEXT NOT NULL,              -- JSON object: name -> [values]
    body                    BYTEA NOT NULL,
    retries                 INTEGER NOT NULL,
    delay_ms                BIGINT NOT NULL DEFAULT 0,
    timeout_ms              BIGINT NOT NULL DEFAULT 0,
    retry_delay_expr        TEXT NOT NULL DEFAULT '',
    callback                TEXT NOT NULL DEFAULT '',
    failure_callback        TEXT NOT NULL DEFAULT '',
    callback_header         TEXT NOT NULL DEFAULT '{}', -- JSON object: name -> [values]
    failure_callback_header TEXT NOT NULL DEFAULT '{}', -- JSON object: name -> [values]
    labels                  TEXT NOT NULL DEFAULT '[]', -- JSON array
    queue_name              TEXT NOT NULL DEFAULT '',
    caller_ip               TEXT NOT NULL DEFAULT '',
    paused                  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at              BIGINT NOT NULL,
    next_fire               BIGINT,                     -- NULL when no tick is left
    last_fire               BIGINT NOT NULL DEFAULT 0,
    last_message_ids        TEXT NOT NULL DEFAULT '[]', -- JSON array
    error                   TEXT NOT NULL DEFAULT ''
);

-- The scheduler reads and locks the due ticks of the active schedules in
-- (next_fire, id) order.
CREATE INDEX schedules_next_fire ON schedules (next_fire, id) WHERE NOT paused;
