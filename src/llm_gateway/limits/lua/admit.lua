-- Admit one request: every request rate and every budget reservation (tokens and US dollars), atomically.
-- The twin of rule.decide(); integer arithmetic only, so both backends agree to the token and the nano-dollar.
--
-- KEYS  1, 2 the credential's rate windows (current, previous)   [3, 4 the team's, when it has a rate]
--       then per budget scope (the user's, [the key's], [the team's]): its month hash, its holds zset
-- ARGV  1 number of rates (1 or 2)   2 window ms   3 ms elapsed in the window   4 now (ms)
--       5 credential's rate limit   6 team's rate limit (-1: none)   7 prompt tokens
--       8 max completion tokens (-1: none)   9 default completion allowance (-1: all there is room for)
--       10 choices (n: caps reserved)   11 nano-dollars per prompt token   12 per completion token (0, 0: unpriced)
--       13 ticket id   14 hold deadline (ms)   15 month keys time to live (s)
--       then per scope: its token budget, its nano-dollar budget (-1: none)
-- Reply {status, detail, cap, current_1, previous_1[, current_2, previous_2],
--        then per scope: used, reserved, used_nano, reserved_nano}
--       status 0 admitted (counts and counters after the reservation), 1 refused by rate number `detail`,
--       2 refused by the token budget of scope `detail`, 4 by its US-dollar budget, 3 budget hash missing
--       ({3, bitmask of missing scopes, 0}): the caller rebuilds it from the ledger and calls again.

local rates, window, elapsed, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rate_limits = {tonumber(ARGV[5]), tonumber(ARGV[6])}
local prompt, max_completion, allowance = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local choices, input_nano, output_nano = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local first = 2 * rates  -- KEYS before the first scope's
local scopes = (#KEYS - first) / 2

-- A missing hash means Redis lost it (restart, flush, eviction) or the month is new: never
-- hand out a fresh budget from here; the ledger knows the month's usage and spend.
local missing = 0
for i = 1, scopes do
  if redis.call('EXISTS', KEYS[first + 2 * i - 1]) == 0 then missing = missing + 2 ^ (i - 1) end
end
if missing > 0 then return {3, missing, 0} end

local function release(hash, field, amount)
  if amount > 0 and redis.call('HINCRBY', hash, field, -amount) < 0 then redis.call('HSET', hash, field, 0) end
end

local used, reserved, used_nano, reserved_nano = {}, {}, {}, {}
for i = 1, scopes do
  local hash, holds = KEYS[first + 2 * i - 1], KEYS[first + 2 * i]
  -- Release holds of requests that can no longer be running (their process died unsettled).
  local stale = redis.call('ZRANGEBYSCORE', holds, '-inf', now, 'LIMIT', 0, 100)
  for _, member in ipairs(stale) do
    local tokens, nano = string.match(member, ':(%d+):(%d+)$')
    if not tokens then tokens, nano = string.match(member, ':(%d+)$'), 0 end  -- a hold from before US dollars
    release(hash, 'reserved', tonumber(tokens) or 0)
    release(hash, 'reserved_nano', tonumber(nano) or 0)
    redis.call('ZREM', holds, member)
  end
  local values = redis.call('HMGET', hash, 'used', 'reserved', 'used_nano', 'reserved_nano')
  used[i], reserved[i] = tonumber(values[1]) or 0, tonumber(values[2]) or 0
  used_nano[i], reserved_nano[i] = tonumber(values[3]) or 0, tonumber(values[4]) or 0
end

local counts = {}
local function reply(status, detail, cap)
  local out = {status, detail, cap}
  for r = 1, rates do
    out[#out + 1] = counts[2 * r - 1]
    out[#out + 1] = counts[2 * r]
  end
  for i = 1, scopes do
    out[#out + 1] = used[i]
    out[#out + 1] = reserved[i]
    out[#out + 1] = used_nano[i]
    out[#out + 1] = reserved_nano[i]
  end
  return out
end

for r = 1, rates do
  counts[2 * r - 1] = tonumber(redis.call('GET', KEYS[2 * r - 1])) or 0
  counts[2 * r] = tonumber(redis.call('GET', KEYS[2 * r])) or 0
end
for r = 1, rates do
  local current, previous, limit = counts[2 * r - 1], counts[2 * r], rate_limits[r]
  if previous * (window - elapsed) + (current + 1) * window > limit * window then return reply(1, r, 0) end
end

-- Floor division exact for integers below 2^53 (a double quotient may round up to the next integer).
local function floordiv(n, d)
  local q = math.floor(n / d)
  if (q + 1) * d <= n then return q + 1 end
  if q * d > n then return q - 1 end
  return q
end

-- The completion tokens per choice every budget has room for (nil: no bound), and the budget with the least.
local room, refused_status, refused_scope = nil, 2, 1
local function consider(value, status, i)
  if room == nil or value < room then room, refused_status, refused_scope = value, status, i end
end
for i = 1, scopes do
  local token_limit, nano_limit = tonumber(ARGV[14 + 2 * i]), tonumber(ARGV[15 + 2 * i])
  if token_limit >= 0 then
    consider(floordiv(math.max(0, token_limit - used[i] - reserved[i]) - prompt, choices), 2, i)
  end
  if nano_limit >= 0 then
    local left = math.max(0, nano_limit - used_nano[i] - reserved_nano[i])
    if left <= 0 then
      consider(-1, 4, i)  -- spent is spent: an unpriced request is refused too
    elseif input_nano > 0 or output_nano > 0 then
      left = left - prompt * input_nano
      if output_nano > 0 then
        consider(floordiv(left, choices * output_nano), 4, i)
      elseif left < 0 then
        consider(-1, 4, i)
      end
    end
  end
end

local cap
if max_completion >= 0 then
  if room ~= nil and max_completion > room then return reply(refused_status, refused_scope, 0) end
  cap = max_completion
else
  cap = room or allowance  -- room is never nil: a user always has a token budget
  if allowance >= 0 and cap > allowance then cap = allowance end
  if cap < 1 then return reply(refused_status, refused_scope, 0) end
end

local tokens = prompt + choices * cap
local nano = prompt * input_nano + choices * cap * output_nano
local member = ARGV[13] .. ':' .. string.format('%d', tokens) .. ':' .. string.format('%d', nano)
for i = 1, scopes do
  local hash, holds = KEYS[first + 2 * i - 1], KEYS[first + 2 * i]
  reserved[i] = redis.call('HINCRBY', hash, 'reserved', tokens)
  if nano > 0 then reserved_nano[i] = redis.call('HINCRBY', hash, 'reserved_nano', nano) end
  redis.call('ZADD', holds, ARGV[14], member)
  redis.call('EXPIRE', hash, ARGV[15])
  redis.call('EXPIRE', holds, ARGV[15])
end
for r = 1, rates do
  counts[2 * r - 1] = redis.call('INCR', KEYS[2 * r - 1])
  redis.call('PEXPIRE', KEYS[2 * r - 1], 2 * window)
end
return reply(0, 0, cap)
