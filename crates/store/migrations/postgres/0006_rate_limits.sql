-- Rate limits on users and teams (requests and tokens per minute, tokens per day, concurrent
-- requests), and tokens per day on keys. NULL: no limit.
ALTER TABLE api_keys ADD COLUMN tpd BIGINT;

ALTER TABLE teams ADD COLUMN rpm BIGINT;
ALTER TABLE teams ADD COLUMN tpm BIGINT;
ALTER TABLE teams ADD COLUMN tpd BIGINT;
ALTER TABLE teams ADD COLUMN max_parallel BIGINT;

ALTER TABLE users ADD COLUMN rpm BIGINT;
ALTER TABLE users ADD COLUMN tpm BIGINT;
ALTER TABLE users ADD COLUMN tpd BIGINT;
ALTER TABLE users ADD COLUMN max_parallel BIGINT;
