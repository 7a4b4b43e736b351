-- Who a request belonged to, for spend by user and team (and for budgets rebuilt at start).
ALTER TABLE request_log ADD COLUMN user_id TEXT;
ALTER TABLE request_log ADD COLUMN team_id TEXT;
CREATE INDEX IF NOT EXISTS request_log_key_ts ON request_log (key_id, ts_ms);
CREATE INDEX IF NOT EXISTS request_log_user_ts ON request_log (user_id, ts_ms);
CREATE INDEX IF NOT EXISTS request_log_team_ts ON request_log (team_id, ts_ms);
