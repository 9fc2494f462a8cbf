-- Settle (or release) one ticket: free its hold and charge the tokens it used and what they cost, in each scope.
--
-- KEYS  per scope: its month hash, its holds zset
-- ARGV  1 hold member ("<ticket id>:<tokens>:<nano>")   2 tokens held   3 nano-dollars held
--       4 tokens to charge   5 nano-dollars to charge
-- Reply the number of scopes charged.
--
-- A hold already released (expired) is not released twice, but its usage is still charged:
-- the tokens were spent. A missing hash (Redis lost it) is left alone: the ledger row of this
-- request will be part of the next rebuild.

local held, held_nano = tonumber(ARGV[2]), tonumber(ARGV[3])
local charge, charge_nano = tonumber(ARGV[4]), tonumber(ARGV[5])

local function release(hash, field, amount)
  if amount > 0 and redis.call('HINCRBY', hash, field, -amount) < 0 then redis.call('HSET', hash, field, 0) end
end

local charged = 0
for i = 1, #KEYS, 2 do
  local hash, holds = KEYS[i], KEYS[i + 1]
  if redis.call('EXISTS', hash) == 1 then
    if redis.call('ZREM', holds, ARGV[1]) == 1 then
      release(hash, 'reserved', held)
      release(hash, 'reserved_nano', held_nano)
    end
    if charge > 0 then redis.call('HINCRBY', hash, 'used', charge) end
    if charge_nano > 0 then redis.call('HINCRBY', hash, 'used_nano', charge_nano) end
    charged = charged + 1
  end
end
return charged
