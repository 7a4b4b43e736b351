-- Optional request and response bodies (off by default; redacted when configured), and
-- organizations above teams.
ALTER TABLE request_log ADD COLUMN request_body TEXT;
ALTER TABLE request_log ADD COLUMN response_body TEXT;

CREATE TABLE IF NOT EXISTS orgs (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
ALTER TABLE teams ADD COLUMN org_id TEXT REFERENCES orgs (id);
