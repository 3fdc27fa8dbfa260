-- ARGV: 1 lease prefix, 2 user, 3 token, 4 now, 5 new expires_at.
-- Returns {'ok', agent, queue, score} | {'stale', reason}
local user = ARGV[2]
local f, why = check_fence(user, ARGV[3], tonumber(ARGV[4]))
if not f then return {'stale', why} end
redis.call('HSET', LEASE_PREFIX .. user, 'expires_at', ARGV[5])
redis.call('ZADD', K_EXP, ARGV[5], user)
return {'ok', f[1], f[3], f[4]}
