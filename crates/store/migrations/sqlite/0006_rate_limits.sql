-- Rate limits on users and teams (requests and tokens per minute, tokens per day, concurrent
-- requests), and tokens per day on keys. NULL: no limit.
ALTER TABLE api_keys ADD COLUMN tpd INTEGER;

ALTER TABLE teams ADD COLUMN rpm INTEGER;
ALTER TABLE teams ADD COLUMN tpm INTEGER;
ALTER TABLE teams ADD COLUMN tpd INTEGER;
ALTER TABLE teams ADD COLUMN max_parallel INTEGER;

ALTER TABLE users ADD COLUMN rpm INTEGER;
ALTER TABLE users ADD COLUMN tpm INTEGER;
ALTER TABLE users ADD COLUMN tpd INTEGER;
ALTER TABLE users ADD COLUMN max_parallel INTEGER;
