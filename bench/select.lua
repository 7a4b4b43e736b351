-- wrk script: keep-alive POSTs to a `select` model, each with a different prompt (so every
-- request is embedded and decided afresh, with no session affinity).
local counter = 0
local topics = {"load testing", "sorting", "tides", "compilers", "bread", "chess", "glaciers", "jazz"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "sk-bench-master-key")
request = function()
  counter = counter + 1
  local topic = topics[(counter % #topics) + 1]
  local body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "auto") .. '","messages":[{"role":"user","content":"Request '
    .. counter .. ' from thread ' .. tostring(wrk.thread) .. ': give me one short sentence about ' .. topic .. '."}],"max_tokens":32}'
  return wrk.format(nil, nil, nil, body)
end
