-- Whether the response cache answered a request (`hit`, `semantic-hit`) or was consulted and
-- missed (`miss`); NULL when it was not consulted.
ALTER TABLE request_log ADD COLUMN cache_status TEXT;
