-- Create a month's budget hash from the ledger's figures, unless another process already did
-- (SETNX semantics for the whole hash). Holds left over from the lost state are dropped with it.
--
-- KEYS  1 budget hash   2 holds zset
-- ARGV  1 tokens charged this month according to the ledger   2 nano-dollars charged   3 time to live (s)
-- Reply 1 when created, 0 when it already existed.

if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'used', ARGV[1], 'reserved', 0, 'used_nano', ARGV[2], 'reserved_nano', 0)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
