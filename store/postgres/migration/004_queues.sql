-- Queues, URL groups and flow-control keys, and the message columns that
-- the claim's limits read. Times are Unix milliseconds (UTC) in BIGINT
-- columns.

ALTER TABLE messages
    ADD COLUMN flow_control_key         TEXT NOT NULL DEFAULT '',
    ADD COLUMN flow_control_parallelism INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN flow_control_rate        INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN flow_control_period_ms   BIGINT NOT NULL DEFAULT 0;

-- The claim scans due messages in this index, except queue messages that
-- never started: those start in queue order, read through
-- messages_queue_waiting. Queries repeat the WHERE clause so that the
-- planner can prove they match the index.
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (due_at, id)
    WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND (queue_name = '' OR attempts > 0);

-- Queue messages waiting for their first attempt, in queue order.
CREATE INDEX messages_queue_waiting ON messages (queue_name, created_at, id)
    WHERE state = 'CREATED' AND attempts = 0 AND queue_name != '';

-- Undelivered messages of a queue: its lag and the messages in flight.
CREATE INDEX messages_queue_open ON messages (queue_name, attempts)
    WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND queue_name != '';

-- Undelivered callback messages; a queue message stays in flight until its
-- callbacks finish.
CREATE INDEX messages_callback_open ON messages (callback_of)
    WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND callback_of != '';

-- Undelivered messages of a flow-control key: attempts in flight and the
-- wait list.
CREATE INDEX messages_flow_open ON messages (flow_control_key, state, due_at)
    WHERE state IN ('CREATED', 'RETRY', 'ACTIVE') AND flow_control_key != '';

-- gate_until and generation are the claim's note that the queue has no free
-- slot: until gate_until passes or the generation changes, the claim skips
-- its waiting messages. Every event that can free a slot increments the
-- generation and clears gate_until.
CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    parallelism INTEGER NOT NULL,
    paused      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    gate_until  BIGINT NOT NULL DEFAULT 0,
    generation  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE url_groups (
    name       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- position keeps the endpoints in the order they were added.
CREATE TABLE url_group_endpoints (
    group_name TEXT NOT NULL,
    position   INTEGER NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    url        TEXT NOT NULL,
    PRIMARY KEY (group_name, position)
);

-- Limits of 0 mean no limit. gate_until and generation work as in queues:
-- the claim skips the key's messages until gate_until passes or the
-- generation changes.
CREATE TABLE flow_controls (
    key                TEXT PRIMARY KEY,
    parallelism        INTEGER NOT NULL DEFAULT 0,
    rate               INTEGER NOT NULL DEFAULT 0,
    period_ms          BIGINT NOT NULL DEFAULT 1000,
    paused             BOOLEAN NOT NULL DEFAULT FALSE,
    pinned_parallelism BOOLEAN NOT NULL DEFAULT FALSE,
    pinned_rate        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    gate_until         BIGINT NOT NULL DEFAULT 0,
    generation         BIGINT NOT NULL DEFAULT 0
);

-- The start time of each attempt of a key with a rate, for the sliding
-- rate window. The claim deletes starts older than the key's period.
CREATE TABLE flow_control_starts (
    key        TEXT NOT NULL,
    started_at BIGINT NOT NULL
);

CREATE INDEX flow_control_starts_key ON flow_control_starts (key, started_at);
