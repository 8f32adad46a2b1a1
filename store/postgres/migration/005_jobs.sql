-- Jobs: long-running work that an HTTP endpoint does in runs. Each run is
-- a message that carries the job id and run number. Times are Unix
-- milliseconds (UTC); 0 means not set. JSON values (input, cursors,
-- result items, response bodies) are stored as bytes, unchanged.

ALTER TABLE messages
    ADD COLUMN job_id  TEXT NOT NULL DEFAULT '',
    ADD COLUMN job_run INTEGER NOT NULL DEFAULT 0;

CREATE TABLE jobs (
    id                        TEXT PRIMARY KEY,
    state                     TEXT NOT NULL,
    url                       TEXT NOT NULL,
    input                     BYTEA NOT NULL,
    label                     TEXT NOT NULL DEFAULT '',
    target_results            INTEGER NOT NULL,
    max_runs                  INTEGER NOT NULL,
    continuation_delay_ms     BIGINT NOT NULL,
    backoff_factor            DOUBLE PRECISION NOT NULL,
    max_continuation_delay_ms BIGINT NOT NULL,
    run_timeout_ms            BIGINT NOT NULL,
    timeout_ms                BIGINT NOT NULL,
    retries                   INTEGER NOT NULL,
    retry_delay_expr          TEXT NOT NULL DEFAULT '',
    caller_ip                 TEXT NOT NULL DEFAULT '',
    started_runs              INTEGER NOT NULL DEFAULT 0,
    processed_runs            INTEGER NOT NULL DEFAULT 0,
    processed_results         INTEGER NOT NULL DEFAULT 0,
    stored_results            INTEGER NOT NULL DEFAULT 0,
    cursor                    BYTEA,                    -- NULL when the last run returned none
    current_run               INTEGER NOT NULL DEFAULT 0,
    current_message_id        TEXT NOT NULL DEFAULT '',
    next_run_at               BIGINT NOT NULL DEFAULT 0,
    created_at                BIGINT NOT NULL,
    started_at                BIGINT NOT NULL DEFAULT 0,
    completed_at              BIGINT NOT NULL DEFAULT 0,
    timeout_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL,
    completion_reason         TEXT NOT NULL DEFAULT '',
    completion_note           TEXT NOT NULL DEFAULT '',
    error                     TEXT NOT NULL DEFAULT '',
    last_response_status      INTEGER NOT NULL DEFAULT 0,
    last_response_body        BYTEA,
    retried_count             INTEGER NOT NULL DEFAULT 0,
    idempotency_key           TEXT NOT NULL DEFAULT ''
);

-- The sweeper scans unfinished jobs by their timeout.
CREATE INDEX jobs_active_timeout ON jobs (timeout_at)
    WHERE state IN ('pending', 'processing');

CREATE TABLE job_runs (
    job_id       TEXT NOT NULL,
    run          INTEGER NOT NULL,
    message_id   TEXT NOT NULL,
    state        TEXT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    started_at   BIGINT NOT NULL DEFAULT 0,
    finished_at  BIGINT NOT NULL DEFAULT 0,
    processed    INTEGER NOT NULL DEFAULT 0,
    result_count INTEGER NOT NULL DEFAULT 0,
    has_more     BOOLEAN NOT NULL DEFAULT TRUE,
    cursor       BYTEA,
    error        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, run)
);

-- One row per delivery attempt of a run, keyed by the message and its
-- claim count.
CREATE TABLE job_attempts (
    message_id      TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    job_id          TEXT NOT NULL,
    run             INTEGER NOT NULL,
    retried         INTEGER NOT NULL,
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT NOT NULL DEFAULT 0,
    latency_ms      BIGINT NOT NULL DEFAULT 0,
    response_status INTEGER NOT NULL DEFAULT 0,
    error           TEXT NOT NULL DEFAULT '',
    outcome         TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (message_id, attempt)
);

CREATE INDEX job_attempts_job ON job_attempts (job_id, run);

CREATE TABLE job_results (
    job_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    run    INTEGER NOT NULL,
    item   BYTEA NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE job_events (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL,
    time   BIGINT NOT NULL,
    state  TEXT NOT NULL,
    run    INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT ''
);

CREATE INDEX job_events_job ON job_events (job_id, id);

-- Idempotency-Key reservations of job creates.
CREATE TABLE job_idempotency (
    key          TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE INDEX job_idempotency_expires ON job_idempotency (expires_at);
