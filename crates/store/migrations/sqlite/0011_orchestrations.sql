-- An orchestration's parent request keeps its result and evidence graph (JSON text): what
-- `GET /v1/orchestrations/{id}` returns, readable as the request log is.
ALTER TABLE request_log ADD COLUMN orchestration TEXT;
