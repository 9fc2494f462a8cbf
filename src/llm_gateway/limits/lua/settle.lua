-- Settle (or release) one ticket: free its hold and charge the tokens it used, in each scope.
--
-- KEYS  1 user budget hash   2 user holds zset   [3 key budget hash   4 key holds zset]
-- ARGV  1 hold member ("<ticket id>:<tokens>")   2 tokens held   3 tokens to charge
-- Reply the number of scopes charged.
--
-- A hold already released (expired) is not released twice, but its usage is still charged:
-- the tokens were spent. A missing hash (Redis lost it) is left alone: the ledger row of this
-- request will be part of the next rebuild.

local held, charge = tonumber(ARGV[2]), tonumber(ARGV[3])
local charged = 0
for i = 1, #KEYS, 2 do
  local hash, holds = KEYS[i], KEYS[i + 1]
  if redis.call('EXISTS', hash) == 1 then
    if redis.call('ZREM', holds, ARGV[1]) == 1 then
      if redis.call('HINCRBY', hash, 'reserved', -held) < 0 then redis.call('HSET', hash, 'reserved', 0) end
    end
    if charge > 0 then redis.call('HINCRBY', hash, 'used', charge) end
    charged = charged + 1
  end
end
return charged
