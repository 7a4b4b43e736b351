-- Money as integer nano-dollars (1e-9 USD): sums are exact (no `0.00006210000000000002`), and
-- a 10-token embedding costs 200 nanos instead of rounding to nothing.
--
-- `cost_nanos` is authoritative: this version reads and sums only it. It still writes
-- `cost_usd` too (the same amount, as a display value): the column is NOT NULL without a default
-- and SQLite cannot drop or relax it in place, and tools (or an older binary after a rollback)
-- that read `cost_usd` keep working.
ALTER TABLE request_log ADD COLUMN cost_nanos INTEGER NOT NULL DEFAULT 0;
-- Backfill, rounding to the nearest nano as the gateway does; amounts out of any sane range
-- (and NaN, stored as NULL) count as 0 rather than overflow.
UPDATE request_log
SET cost_nanos = CASE
    WHEN cost_usd BETWEEN -9000000000 AND 9000000000
        THEN CAST(ROUND(cost_usd * 1000000000) AS INTEGER)
    ELSE 0
END
WHERE cost_usd <> 0;
