-- Learning from feedback: a `model: auto` request keeps the selector's decision (JSON text) and
-- the prompt's embedding (little-endian f32 bytes) on its row, and users score requests.
ALTER TABLE request_log ADD COLUMN route TEXT;
ALTER TABLE request_log ADD COLUMN prompt_embedding BYTEA;
-- One feedback per request: a new one replaces the old and takes a new id, so every instance,
-- which loads the rows after the last id it has seen, sees it again.
CREATE TABLE IF NOT EXISTS feedback (
    id BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    key_id TEXT NOT NULL,
    -- The configured model name that served the request.
    model TEXT NOT NULL,
    -- 0 (bad) to 1 (good).
    score DOUBLE PRECISION NOT NULL,
    comment TEXT,
    embedding BYTEA,
    created_at_ms BIGINT NOT NULL
);
