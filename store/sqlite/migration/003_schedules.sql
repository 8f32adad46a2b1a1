-- Schedules: a message template, its cron expression and the time of its
-- next tick. Times are Unix milliseconds (UTC).

CREATE TABLE schedules (
    id                      TEXT PRIMARY KEY,
    cron                    TEXT NOT NULL,
    destination             TEXT NOT NULL,
    method                  TEXT NOT NULL,
    header                  TEXT NOT NULL,              -- JSON object: name -> [values]
    body                    BLOB NOT NULL,
    retries                 INTEGER NOT NULL,
    delay_ms                INTEGER NOT NULL DEFAULT 0,
    timeout_ms              INTEGER NOT NULL DEFAULT 0,
    retry_delay_expr        TEXT NOT NULL DEFAULT '',
    callback                TEXT NOT NULL DEFAULT '',
    failure_callback        TEXT NOT NULL DEFAULT '',
    callback_header         TEXT NOT NULL DEFAULT '{}', -- JSON object: name -> [values]
    failure_callback_header TEXT NOT NULL DEFAULT '{}', -- JSON object: name -> [values]
    labels                  TEXT NOT NULL DEFAULT '[]', -- JSON array
    queue_name              TEXT NOT NULL DEFAULT '',
    caller_ip               TEXT NOT NULL DEFAULT '',
    paused                  INTEGER NOT NULL DEFAULT 0,
    created_at              INTEGER NOT NULL,
    next_fire               INTEGER,                    -- NULL when no tick is left
    last_fire               INTEGER NOT NULL DEFAULT 0,
    last_message_ids        TEXT NOT NULL DEFAULT '[]', -- JSON array
    error                   TEXT NOT NULL DEFAULT ''
);

-- The scheduler reads the earliest tick of the active schedules.
CREATE INDEX schedules_next_fire ON schedules (next_fire) WHERE paused = 0;
