-- Every request that reached the pipeline, including failures and abandoned streams (499).
CREATE TABLE IF NOT EXISTS request_log (
    id                  BIGSERIAL PRIMARY KEY,
    ts_ms               BIGINT           NOT NULL,
    request_id          TEXT             NOT NULL,
    upstream_request_id TEXT,
    key_id              TEXT             NOT NULL,
    endpoint            TEXT             NOT NULL,
    model               TEXT             NOT NULL,
    provider            TEXT             NOT NULL,
    upstream_model      TEXT             NOT NULL,
    stream              BOOLEAN          NOT NULL,
    status              BIGINT           NOT NULL,
    error_code          TEXT,
    prompt_tokens       BIGINT           NOT NULL,
    completion_tokens   BIGINT           NOT NULL,
    cached_tokens       BIGINT           NOT NULL,
    reasoning_tokens    BIGINT           NOT NULL,
    usage_estimated     BOOLEAN          NOT NULL,
    cost_usd            DOUBLE PRECISION NOT NULL,
    latency_ms          BIGINT           NOT NULL,
    ttft_ms             BIGINT
);
CREATE INDEX IF NOT EXISTS request_log_ts ON request_log (ts_ms);
CREATE INDEX IF NOT EXISTS request_log_request_id ON request_log (request_id);
