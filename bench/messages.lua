-- wrk script: keep-alive POSTs of a small Anthropic Messages request (the same prompt as chat.lua).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = os.getenv("BENCH_KEY") or "sk-bench-master-key"
wrk.headers["anthropic-version"] = "2023-06-01"
local stream = os.getenv("BENCH_STREAM") == "1" and ',"stream":true' or ''
wrk.body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "gpt") .. '","system":"You are terse.","messages":[{"role":"user","content":"Give me one short sentence about load testing."}],"max_tokens":32' .. stream .. '}'
