-- Provider credentials, envelope-encrypted (the secret never appears in plaintext).
CREATE TABLE IF NOT EXISTS credentials (
    id         TEXT    PRIMARY KEY,
    provider   TEXT    NOT NULL,
    version    BIGINT NOT NULL,
    kek_id     TEXT    NOT NULL,
    sealed     TEXT    NOT NULL,
    masked     TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    retired_at BIGINT
);
CREATE INDEX IF NOT EXISTS credentials_provider ON credentials (provider);
