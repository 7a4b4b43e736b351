-- Every request that reached the pipeline, including failures and abandoned streams (499).
CREATE TABLE IF NOT EXISTS request_log (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms               INTEGER NOT NULL,
    request_id          TEXT    NOT NULL,
    upstream_request_id TEXT,
    key_id              TEXT    NOT NULL,
    endpoint            TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    provider            TEXT    NOT NULL,
    upstream_model      TEXT    NOT NULL,
    stream              INTEGER NOT NULL,
    status              INTEGER NOT NULL,
    error_code          TEXT,
    prompt_tokens       INTEGER NOT NULL,
    completion_tokens   INTEGER NOT NULL,
    cached_tokens       INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    usage_estimated     INTEGER NOT NULL,
    cost_usd            REAL    NOT NULL,
    latency_ms          INTEGER NOT NULL,
    ttft_ms             INTEGER
);
CREATE INDEX IF NOT EXISTS request_log_ts ON request_log (ts_ms);
CREATE INDEX IF NOT EXISTS request_log_request_id ON request_log (request_id);
