-- wrk script: POST a small OpenAI chat request (JSON) to the URL given to wrk.
--
-- Why: wrk issues GETs by default; the gateway and bench/upstream.py are measured on the
-- request they actually serve, a JSON chat completion POST.
--
--   wrk -t1 -c64 -d5s -s bench/post.lua http://127.0.0.1:8001/v1/chat/completions
--   wrk -t1 -c64 -d5s -s bench/post.lua http://127.0.0.1:8001/v1/chat/completions -- stream
--
-- Script arguments (after `--`): `stream` sets "stream": true (with usage in the stream);
-- `model=NAME` changes the model (default gpt-4o-mini); `auth=KEY` sends Authorization: Bearer KEY.

local stream = false
local model = "gpt-4o-mini"

function init(args)
  for _, arg in ipairs(args) do
    if arg == "stream" then
      stream = true
    elseif arg:sub(1, 6) == "model=" then
      model = arg:sub(7)
    elseif arg:sub(1, 5) == "auth=" then
      wrk.headers["Authorization"] = "Bearer " .. arg:sub(6)
    end
  end
  local body = '{"model":"' .. model .. '","messages":['
    .. '{"role":"system","content":"You are a helpful assistant."},'
    .. '{"role":"user","content":"Say hello in one short sentence."}],'
    .. '"max_tokens":64,"temperature":0'
  if stream then
    body = body .. ',"stream":true,"stream_options":{"include_usage":true}'
  end
  wrk.method = "POST"
  wrk.body = body .. "}"
  wrk.headers["Content-Type"] = "application/json"
end
