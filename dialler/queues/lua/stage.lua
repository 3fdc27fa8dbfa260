-- Stage a chunk of a rebuild's placements with a handful of variadic commands per chunk, not several
-- commands per user: a rebuild stages every queued customer.
-- KEYS[13..18] staging keyset, KEYS[19] staging meta.
-- ARGV: 1 lease prefix, 2 ttl seconds, then
--   for each queue of the keyset, in order: n, then n pairs (score, user)   -- ZADD's own order
--   not-before: n, then n pairs (user, epoch)
--   vulnerable: n, then n users
--   reservations: n, then n pairs (user, "agent|until")
-- Idempotent: every user of the chunk first leaves every staging structure, so re-staging replaces
-- its staged placement (the one-queue invariant holds in staging). A user appears once per call.
local STAGE = keyset(13)
local users, others, zadds = {}, {{}, {}, {}}, {}
local i = 3
for q = 1, 3 do
  local n = tonumber(ARGV[i])
  zadds[q] = {i + 1, i + 2 * n}
  for j = i + 2, i + 2 * n, 2 do
    users[#users + 1] = ARGV[j]
    for o = 1, 3 do
      if o ~= q then others[o][#others[o] + 1] = ARGV[j] end
    end
  end
  i = i + 2 * n + 1
end
-- ZADD moves a user within its own queue; it leaves the other two.
for q = 1, 3 do
  if #others[q] > 0 then redis.call('ZREM', STAGE.list[q], unpack(others[q])) end
end
if #users > 0 then
  redis.call('HDEL', STAGE.nb, unpack(users))
  redis.call('SREM', STAGE.vul, unpack(users))
  redis.call('HDEL', STAGE.res, unpack(users))
end
for q = 1, 3 do
  local from, to = zadds[q][1], zadds[q][2]
  if to >= from then redis.call('ZADD', STAGE.list[q], unpack(ARGV, from, to)) end
end
local n = tonumber(ARGV[i])
if n > 0 then redis.call('HSET', STAGE.nb, unpack(ARGV, i + 1, i + 2 * n)) end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
if n > 0 then redis.call('SADD', STAGE.vul, unpack(ARGV, i + 1, i + n)) end
i = i + n + 1
n = tonumber(ARGV[i])
if n > 0 then redis.call('HSET', STAGE.res, unpack(ARGV, i + 1, i + 2 * n)) end
redis.call('HINCRBY', KEYS[19], 'stage_calls', 1)
-- An abandoned run must not leak memory: staging expires unless swapped (swap PERSISTs).
for k = 13, 19 do redis.call('EXPIRE', KEYS[k], ARGV[2]) end
return #users
