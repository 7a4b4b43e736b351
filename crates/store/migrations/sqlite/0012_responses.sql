-- Stored Responses API responses (`store: true`, the default) and background runs: what
-- `previous_response_id` rebuilds a conversation from and what `GET /v1/responses/{id}` reads
-- on any instance. Independent of the request log's bodies setting.
CREATE TABLE IF NOT EXISTS responses (
    id                   TEXT    PRIMARY KEY,
    -- The virtual key that created it: the only one that may read, continue or delete it.
    key_id               TEXT    NOT NULL,
    previous_response_id TEXT,
    -- queued | in_progress | completed | incomplete | failed | cancelled. The column wins over
    -- the status inside `response` (a cancel or an interruption only updates the column).
    status               TEXT    NOT NULL,
    background           INTEGER NOT NULL,
    -- This turn's input items (JSON array), as the client sent them.
    input_items          TEXT    NOT NULL,
    -- The response object (JSON) as last reported.
    response             TEXT    NOT NULL,
    -- Set when an interruption (shutdown, a lost instance) ended a run: why.
    interrupted          TEXT,
    -- The instance running a background run, and when it last said it still is.
    instance_id          TEXT,
    heartbeat_ms         INTEGER,
    created_at_ms        INTEGER NOT NULL,
    updated_at_ms        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created_at_ms);
CREATE INDEX IF NOT EXISTS request_log_bodies ON request_log (ts_ms) WHERE request_body IS NOT NULL OR response_body IS NOT NULL;
