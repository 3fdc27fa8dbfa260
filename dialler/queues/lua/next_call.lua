-- ARGV: 1 lease prefix, 2 agent id, 3 now, 4 expires_at (now + ttl, computed by the caller),
--       5 trained for vulnerable '1'/'0', 6 reap batch, 7 scan limit per queue,
--       8 call session id the lease is for ("" = none), 9 the agent's presence key ("" = no check),
--       10.. queue names in the agent's priority order.
-- Returns {'lease', user, token, queue, score} | {'held', user} | {'busy', state} |
--         {'none', scanned, blocked_not_before, blocked_vulnerable, blocked_reserved}
local agent, now_s, expires = ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(now_s)
local trained = ARGV[5] == '1'
local scan_limit = tonumber(ARGV[7])

-- Reap first, so customers of expired leases compete for this very call (bounded batch: the
-- reaper schedule catches up with any backlog).
local due = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', now_s, 'LIMIT', 0, tonumber(ARGV[6]))
for _, u in ipairs(due) do restore_lease(u) end

local held = redis.call('HGET', K_AGENTS, agent)
if held then
  local exp = redis.call('HGET', LEASE_PREFIX .. held, 'expires_at')
  if exp and tonumber(exp) > now then return {'held', held} end
  if exp then restore_lease(held) else redis.call('HDEL', K_AGENTS, agent) end
end

-- Only an agent who is available is offered a customer: checked here, in the same step as the
-- lease, so no click (break, sign-off) can slip in between the check and the reservation.
if ARGV[9] ~= '' then
  local state = redis.call('HGET', ARGV[9], 'state') or ''
  if state ~= 'available' then return {'busy', state} end
end
local session = ARGV[8]

-- Returns the reason (0 eligible, 1 not before, 2 vulnerable, 3 reserved for another agent) and
-- the metadata read on the way, which the lease keeps as its restore placement.
local function check(user)
  local nb = redis.call('HGET', LIVE.nb, user)
  if nb and tonumber(nb) > now then return 1 end
  local vul = 0
  if not trained then
    vul = redis.call('SISMEMBER', LIVE.vul, user)
    if vul == 1 then return 2 end
  else
    vul = redis.call('SISMEMBER', LIVE.vul, user)
  end
  local res = redis.call('HGET', LIVE.res, user)
  if res then
    local ra, ru = string.match(res, '^([^|]*)|(.*)$')
    if ra ~= agent and tonumber(ru) > now then return 3 end
  end
  return 0, nb, vul, res
end

local function take(user, queue, qk, score, nb, vul, res)
  local lk = LEASE_PREFIX .. user
  redis.call('ZREM', qk, user)
  if redis.call('EXISTS', lk) == 1 then
    -- Queued and leased at once breaks the invariant; the lease's restore fields win.
    return nil
  end
  local token = redis.call('INCR', K_TOKEN)
  -- One HSET for the lease and its restore placement (the key is new: nothing to delete).
  local fields = {'agent', agent, 'token', token, 'queue', queue, 'score', score, 'expires_at', expires,
    'r_queue', queue, 'r_score', score, 'r_vul', vul == 1 and '1' or '0'}
  if nb then fields[#fields + 1] = 'r_nb'; fields[#fields + 1] = nb end
  if res then fields[#fields + 1] = 'r_res'; fields[#fields + 1] = res end
  if session ~= '' then fields[#fields + 1] = 'session'; fields[#fields + 1] = session end
  redis.call('HSET', lk, unpack(fields))
  if nb then redis.call('HDEL', LIVE.nb, user) end
  if vul == 1 then redis.call('SREM', LIVE.vul, user) end
  if res then redis.call('HDEL', LIVE.res, user) end
  redis.call('HSET', K_AGENTS, agent, user)
  redis.call('ZADD', K_EXP, expires, user)
  return token
end

-- Walk the heads in growing pages (4, 16, 64, ...): the best member is usually eligible, and
-- fetching a long head costs far more than the checks (ZRANGE of 100 with scores ~ 8x one of 4).
local counts = {0, 0, 0}
local scanned = 0
for i = 10, #ARGV do
  local queue = ARGV[i]
  local qk = LIVE.q[queue]
  local start, size = 0, 4
  while start < scan_limit do
    local stop = math.min(start + size, scan_limit) - 1
    local head = redis.call('ZRANGE', qk, start, stop, 'WITHSCORES')
    local taken_here = 0
    for j = 1, #head, 2 do
      local user, score = head[j], head[j + 1]
      scanned = scanned + 1
      local why, nb, vul, res = check(user)
      if why > 0 then
        counts[why] = counts[why] + 1
      else
        local token = take(user, queue, qk, score, nb, vul, res)
        if token then return {'lease', user, token, queue, score} end
        taken_here = taken_here + 1
      end
    end
    if #head < 2 * (stop - start + 1) then break end
    -- Members removed by take() shifted the ranks down.
    start, size = stop + 1 - taken_here, size * 4
  end
end
return {'none', scanned, counts[1], counts[2], counts[3]}
