-- KEYS[13..18] staging keyset, KEYS[19] staging meta.
-- ARGV: 1 lease prefix, 2 ttl seconds, then groups of 6 like upsert.lua.
-- Idempotent: re-staging a user replaces its staged placement (one-queue invariant holds in staging).
local STAGE = keyset(13)
local n = 0
for i = 3, #ARGV, 6 do
  place(STAGE, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
  n = n + 1
end
redis.call('HINCRBY', KEYS[19], 'stage_calls', 1)
-- An abandoned run must not leak memory: staging expires unless swapped (swap PERSISTs).
for k = 13, 19 do redis.call('EXPIRE', KEYS[k], ARGV[2]) end
return n
