-- Teams, users, virtual keys and the hash-chained audit log.
CREATE TABLE IF NOT EXISTS teams (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    max_budget_usd REAL,
    budget_period  TEXT,
    metadata       TEXT    NOT NULL DEFAULT '{}',
    created_at     INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    team_id    TEXT    REFERENCES teams (id),
    role       TEXT    NOT NULL,
    max_budget_usd REAL,
    budget_period  TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT    PRIMARY KEY,
    key_hash       TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    team_id        TEXT,
    user_id        TEXT,
    role           TEXT    NOT NULL,
    models         TEXT    NOT NULL DEFAULT '[]',
    metadata       TEXT    NOT NULL DEFAULT '{}',
    expires_at     INTEGER,
    max_budget_usd REAL,
    budget_period  TEXT,
    rpm            INTEGER,
    tpm            INTEGER,
    max_parallel   INTEGER,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    rotated_from   TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_team ON api_keys (team_id, id);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id, id);

CREATE TABLE IF NOT EXISTS audit_log (
    seq        INTEGER PRIMARY KEY,
    ts_ms      INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    details    TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts_ms);
