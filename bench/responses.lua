-- wrk script: keep-alive POSTs of a small OpenAI Responses request (the same prompt as chat.lua).
-- BENCH_STORE=0 sends `store: false` (nothing written); by default the response is stored.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "sk-bench-master-key")
local stream = os.getenv("BENCH_STREAM") == "1" and ',"stream":true' or ''
local store = os.getenv("BENCH_STORE") == "0" and ',"store":false' or ''
wrk.body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "gpt") .. '","instructions":"You are terse.","input":"Give me one short sentence about load testing.","max_output_tokens":32' .. stream .. store .. '}'
