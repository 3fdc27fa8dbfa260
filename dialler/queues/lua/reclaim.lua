-- An open call session re-takes its customer's lease after Redis lost it (flushed, failed over) or
-- it lapsed (the worker or Temporal down longer than the TTL). Fenced: the session's own token and
-- agent, and never over someone else's live lease.
-- ARGV: 1 lease prefix, 2 user, 3 agent, 4 token, 5 now, 6 new expires_at, 7 session id.
-- Returns {'ok', 'renewed'|'reclaimed'} | {'stale', reason}
local user, agent, token = ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(ARGV[5])
local lk = LEASE_PREFIX .. user
local f = redis.call('HMGET', lk, 'agent', 'token', 'expires_at')
if f[1] then
  if f[1] == agent and f[2] == token then
    redis.call('HSET', lk, 'expires_at', ARGV[6])
    redis.call('ZADD', K_EXP, ARGV[6], user)
    redis.call('HSET', K_AGENTS, agent, user)
    return {'ok', 'renewed'}
  end
  if tonumber(f[3]) > now then return {'stale', 'held_by_another'} end
  restore_lease(user)  -- someone else's lapsed lease: it ended when it expired
end
local held = redis.call('HGET', K_AGENTS, agent)
if held and held ~= user then
  local exp = redis.call('HGET', LEASE_PREFIX .. held, 'expires_at')
  if exp and tonumber(exp) > now then return {'stale', 'agent_holds_another'} end
  if exp then restore_lease(held) end
end
-- The token stays this session's: later leases must get greater ones (a flushed counter restarts at 0).
if tonumber(redis.call('GET', K_TOKEN) or '0') < tonumber(token) then redis.call('SET', K_TOKEN, token) end
local q, s = position(LIVE, user)
redis.call('HSET', lk, 'agent', agent, 'token', token, 'queue', q or '', 'score', s or '0',
  'expires_at', ARGV[6], 'reclaimed', '1')
if ARGV[7] ~= '' then redis.call('HSET', lk, 'session', ARGV[7]) end
if q then
  -- Requeued when the lease lapsed: out of the queue again, and back there when this lease ends.
  local nb, vul, res = metadata(LIVE, user)
  set_restore(lk, q, s, nb, vul, res)
  unplace(LIVE, user)
else
  set_restore(lk, '')
end
redis.call('HSET', K_AGENTS, agent, user)
redis.call('ZADD', K_EXP, ARGV[6], user)
mark_dirty(user)
return {'ok', 'reclaimed'}
