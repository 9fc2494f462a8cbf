-- wrk script: POST a small OpenAI chat request (JSON) to the URL given to wrk.
--
-- Why: wrk issues GETs by default; the gateway and bench/upstream.py are measured on the
-- request they actually serve, a JSON chat completion POST.
--
--   wrk -t1 -c64 -d5s -s bench/post.lua http://127.0.0.1:8001/v1/chat/completions
--   wrk -t1 -c64 -d5s -s bench/post.lua http://127.0.0.1:8001/v1/chat/completions -- stream
--   wrk -t1 -c64 -d5s -s bench/post.lua http://127.0.0.1:8001/v1/embeddings -- embeddings model=text-embedding-3-small
--   wrk -t1 -c64 -d5s -s bench/post.lua http://127.0.0.1:8080/v1/messages -- messages model=bench
--
-- Script arguments (after `--`):
--   stream      sets "stream": true (with usage in the stream)
--   embeddings  an embeddings request instead (for /v1/embeddings): 16 short strings as "input",
--               "encoding_format": "float"; give the model too (model=text-embedding-3-small)
--   messages    the same conversation as an Anthropic Messages request (for /v1/messages): "system",
--               one user message, "max_tokens"; with the anthropic-version header
--   responses   the same conversation as an OpenAI Responses request (for /v1/responses): "instructions",
--               "input", "max_output_tokens"
--   model=NAME  changes the model (default gpt-4o-mini)
--   auth=KEY    sends Authorization: Bearer KEY
--   unique      makes every request's body different (a counter in the user message), so a
--               response cache misses every time; the body is then built per request
--
-- At the end it prints one line `BENCH_JSON {...}` with exact figures (latencies in microseconds
-- from wrk's own histogram), so bench/run.py need not parse wrk's text. (done() runs in wrk's
-- main Lua state, where init() never ran, so that line cannot be switched by an argument.)

local stream = false
local embeddings = false
local surface = "chat"  -- or "messages", "responses"
local EMBEDDING_INPUTS = 16
local model = "gpt-4o-mini"
local unique = false
local prefix = ""
local counter = 0

local function embeddings_body(content)
  local inputs = {}
  for i = 1, EMBEDDING_INPUTS do
    inputs[i] = '"' .. content .. ' Passage ' .. i .. ' of the document being indexed."'
  end
  return '{"model":"' .. model .. '","input":[' .. table.concat(inputs, ",") .. '],"encoding_format":"float"}'
end

local SYSTEM = "You are a helpful assistant."

local function body_for(content)
  if embeddings then
    return embeddings_body(content)
  end
  if surface == "messages" then
    return '{"model":"' .. model .. '","system":"' .. SYSTEM .. '",'
      .. '"messages":[{"role":"user","content":"' .. content .. '"}],"max_tokens":64,"temperature":0}'
  end
  if surface == "responses" then
    return '{"model":"' .. model .. '","instructions":"' .. SYSTEM .. '",'
      .. '"input":"' .. content .. '","max_output_tokens":64,"temperature":0}'
  end
  local body = '{"model":"' .. model .. '","messages":['
    .. '{"role":"system","content":"You are a helpful assistant."},'
    .. '{"role":"user","content":"' .. content .. '"}],'
    .. '"max_tokens":64,"temperature":0'
  if stream then
    body = body .. ',"stream":true,"stream_options":{"include_usage":true}'
  end
  return body .. "}"
end

-- Only for `unique`: wrk checks whether a global request() exists after init() has run, and
-- a defined request() costs a Lua call per request, so the fixed-body case leaves it undefined.
local function unique_request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, body_for("Say hello, request " .. prefix .. "-" .. counter .. "."))
end

function init(args)
  for _, arg in ipairs(args) do
    if arg == "stream" then
      stream = true
    elseif arg == "embeddings" then
      embeddings = true
    elseif arg == "messages" or arg == "responses" then
      surface = arg
    elseif arg == "unique" then
      unique = true
    elseif arg:sub(1, 6) == "model=" then
      model = arg:sub(7)
    elseif arg:sub(1, 5) == "auth=" then
      wrk.headers["Authorization"] = "Bearer " .. arg:sub(6)
    end
  end
  wrk.method = "POST"
  wrk.body = body_for("Say hello in one short sentence.")
  wrk.headers["Content-Type"] = "application/json"
  if surface == "messages" then
    wrk.headers["anthropic-version"] = "2023-06-01"
  end
  -- Distinct prefixes per run and per thread keep "unique" bodies unique across runs too.
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  prefix = string.format("%08x", math.random(0, 0x7fffffff))
  if unique then
    request = unique_request
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
