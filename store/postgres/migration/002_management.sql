-- Columns for callbacks, URL groups, queues and schedules, and the URL
-- parts that filters match on.

ALTER TABLE messages
    ADD COLUMN url_host                TEXT NOT NULL DEFAULT '',
    ADD COLUMN url_path                TEXT NOT NULL DEFAULT '',
    ADD COLUMN callback                TEXT NOT NULL DEFAULT '',
    ADD COLUMN failure_callback        TEXT NOT NULL DEFAULT '',
    ADD COLUMN callback_header         TEXT NOT NULL DEFAULT '{}', -- JSON object: name -> [values]
    ADD COLUMN failure_callback_header TEXT NOT NULL DEFAULT '{}', -- JSON object: name -> [values]
    ADD COLUMN topic_name              TEXT NOT NULL DEFAULT '',
    ADD COLUMN endpoint_name           TEXT NOT NULL DEFAULT '',
    ADD COLUMN queue_name              TEXT NOT NULL DEFAULT '',
    ADD COLUMN schedule_id             TEXT NOT NULL DEFAULT '',
    ADD COLUMN callback_of             TEXT NOT NULL DEFAULT '';

-- Retention removes finished messages by the time they finished.
CREATE INDEX messages_finished ON messages (updated_at)
    WHERE state IN ('DELIVERED', 'FAILED', 'CANCELED');

CREATE INDEX dlq_created ON dlq (created_at);
CREATE INDEX dlq_message ON dlq (message_id);
CREATE INDEX dedup_expires ON dedup (expires_at);
