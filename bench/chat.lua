-- wrk script: keep-alive POSTs of a small chat completion.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "sk-bench-master-key")
wrk.body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "gpt") .. '","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Give me one short sentence about load testing."}],"max_tokens":32}'
