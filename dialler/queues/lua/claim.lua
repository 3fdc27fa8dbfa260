-- A pooled (predictive) call was answered: hand its lease, held by the call's pool id, to the first
-- candidate agent who is still available and holds no customer, in one step. From then on the lease
-- names the agent, so the agent is reserved by it (presence.effective) exactly as after a next call.
-- ARGV: 1 lease prefix, 2 user, 3 token, 4 now, 5 the pool id holding the lease,
--       6.. pairs of (candidate agent id, the agent's presence key), best candidate first.
-- Returns {'ok', agent} | {'none'} | {'stale', reason}
local user = ARGV[2]
local f, why = check_fence(user, ARGV[3], tonumber(ARGV[4]))
if not f then return {'stale', why} end
if f[1] ~= ARGV[5] then return {'stale', 'claimed'} end
for i = 6, #ARGV - 1, 2 do
  local agent, presence = ARGV[i], ARGV[i + 1]
  local held = redis.call('HGET', K_AGENTS, agent)
  if not held and (redis.call('HGET', presence, 'state') or '') == 'available' then
    redis.call('HSET', LEASE_PREFIX .. user, 'agent', agent)
    redis.call('HDEL', K_AGENTS, ARGV[5])
    redis.call('HSET', K_AGENTS, agent, user)
    return {'ok', agent}
  end
end
return {'none'}
