-- Lineage of a request: the client's own `x-request-id` (the gateway always generates
-- `request_id`), the request an inner or system call was made for and its position there, and,
-- on rows of the `system` key, the team of the client request that caused the call (cache
-- overhead is reported per originating team).
ALTER TABLE request_log ADD COLUMN parent_request_id TEXT;
ALTER TABLE request_log ADD COLUMN step BIGINT;
ALTER TABLE request_log ADD COLUMN client_request_id TEXT;
ALTER TABLE request_log ADD COLUMN overhead_team_id TEXT;
CREATE INDEX IF NOT EXISTS request_log_parent ON request_log (parent_request_id);
