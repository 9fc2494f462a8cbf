-- Admit one request: the requests-per-minute check and the token reservation, atomically.
-- The twin of base.decide(); integer arithmetic only, so both backends agree to the request.
--
-- KEYS  1 rate window (current)   2 rate window (previous)
--       3 user budget hash        4 user holds zset
--       5 key budget hash         6 key holds zset          (only when the key has its own budget)
-- ARGV  1 rate limit   2 window ms   3 ms elapsed in the window   4 now (ms)
--       5 user budget  6 key budget  7 prompt tokens   8 max completion tokens (-1: none)
--       9 default completion allowance (-1: all that is left)   10 ticket id
--       11 hold deadline (ms)   12 month keys time to live (s)   13 choices (n: caps reserved)
-- Reply {status, current, previous, cap, used_1, reserved_1[, used_2, reserved_2]}
--       status 0 admitted (counts and balances after the reservation), 1 refused by the rate,
--       2 refused by the budget, 3 budget hash missing (current = bitmask of missing scopes):
--       the caller rebuilds it from the ledger and calls again.

local limit, window, elapsed, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local prompt, max_completion, allowance = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local choices = tonumber(ARGV[13]) or 1
local scopes = (#KEYS - 2) / 2
local limits = {tonumber(ARGV[5]), tonumber(ARGV[6])}

-- A missing hash means Redis lost it (restart, flush, eviction) or the month is new: never
-- hand out a fresh budget from here; the ledger knows the month's usage.
local missing = 0
for i = 1, scopes do
  if redis.call('EXISTS', KEYS[1 + 2 * i]) == 0 then missing = missing + 2 ^ (i - 1) end
end
if missing > 0 then return {3, missing, 0, 0, 0, 0} end

local used, reserved = {}, {}
for i = 1, scopes do
  local hash, holds = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  -- Release holds of requests that can no longer be running (their process died unsettled).
  local stale = redis.call('ZRANGEBYSCORE', holds, '-inf', now, 'LIMIT', 0, 100)
  for _, member in ipairs(stale) do
    local tokens = tonumber(string.match(member, ':(%d+)$')) or 0
    if redis.call('HINCRBY', hash, 'reserved', -tokens) < 0 then redis.call('HSET', hash, 'reserved', 0) end
    redis.call('ZREM', holds, member)
  end
  local values = redis.call('HMGET', hash, 'used', 'reserved')
  used[i], reserved[i] = tonumber(values[1]) or 0, tonumber(values[2]) or 0
end

local function reply(status, current, previous, cap)
  local out = {status, current, previous, cap}
  for i = 1, scopes do
    out[#out + 1] = used[i]
    out[#out + 1] = reserved[i]
  end
  return out
end

local current = tonumber(redis.call('GET', KEYS[1])) or 0
local previous = tonumber(redis.call('GET', KEYS[2])) or 0
if previous * (window - elapsed) + (current + 1) * window > limit * window then
  return reply(1, current, previous, 0)
end

local available = nil
for i = 1, scopes do
  local left = math.max(0, limits[i] - used[i] - reserved[i])
  if available == nil or left < available then available = left end
end

local cap
if max_completion >= 0 then
  if prompt + choices * max_completion > available then return reply(2, current, previous, 0) end
  cap = max_completion
else
  cap = math.floor((available - prompt) / choices)
  if allowance >= 0 and cap > allowance then cap = allowance end
  if cap < 1 then return reply(2, current, previous, 0) end
end

local tokens = prompt + choices * cap
local member = ARGV[10] .. ':' .. tokens
for i = 1, scopes do
  local hash, holds = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  reserved[i] = redis.call('HINCRBY', hash, 'reserved', tokens)
  redis.call('ZADD', holds, ARGV[11], member)
  redis.call('EXPIRE', hash, ARGV[12])
  redis.call('EXPIRE', holds, ARGV[12])
end
current = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 2 * window)
return reply(0, current, previous, cap)
