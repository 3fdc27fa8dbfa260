-- Before the swap, in chunks: copy users changed during the rebuild into staging, so the atomic swap
-- only handles the few changed since the last chunk. A user changed again is pending again.
-- KEYS[13..18] staging keyset. ARGV: 1 lease prefix, 2 chunk size, 3 staging ttl.
-- Returns {synced, still pending}.
local STAGE = keyset(13)
local users = redis.call('SPOP', K_PENDING, tonumber(ARGV[2]))
for _, u in ipairs(users) do sync_to_stage(STAGE, u) end
-- Staging keys created here must expire like the rest of an abandoned run's staging.
for k = 13, 18 do redis.call('EXPIRE', KEYS[k], ARGV[3]) end
return {#users, redis.call('SCARD', K_PENDING)}
