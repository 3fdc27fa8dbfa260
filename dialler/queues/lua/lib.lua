-- Shared prelude: engine.py prepends this file to every script body.
--
-- KEYS[1..12] are always the live keys, in the order of QueueKeys.base():
--   1-3 queue zsets (callbacks, unsigned, outstanding_requests), 4 not_before hash,
--   5 vulnerable set, 6 reservations hash, 7 lease expiry zset, 8 agent -> user hash,
--   9 fencing-token counter, 10 rebuild marker, 11 rebuild dirty set, 12 dirty-not-yet-staged set.
-- Scripts that work on a rebuild's staging get its keyset at KEYS[13..18].
-- ARGV[1] is always the lease key prefix "<prefix>:{q}:lease:". Lease keys are built here from
-- user ids (next_call and the reaper cannot know them in advance); they carry the same {q} hash
-- tag, so on Redis Cluster they live in the same slot as the declared keys.
-- Times are never read from the server clock: callers pass "now" so scripts stay deterministic.

local LEASE_PREFIX = ARGV[1]
local K_EXP, K_AGENTS, K_TOKEN = KEYS[7], KEYS[8], KEYS[9]
local K_REBUILD, K_DIRTY, K_PENDING = KEYS[10], KEYS[11], KEYS[12]

-- A keyset is the six swappable structures, live or staging: 3 queues, not_before, vulnerable,
-- reservations, at KEYS[first .. first+5]. Queue names are parsed from the key so the list of
-- names exists in one place only (keys.py).
local function keyset(first)
  local ks = {names = {}, q = {}, list = {}, nb = KEYS[first + 3], vul = KEYS[first + 4], res = KEYS[first + 5]}
  for i = 0, 2 do
    local k = KEYS[first + i]
    local name = string.match(k, ':queue:([^:]+)$')
    ks.names[i + 1] = name
    ks.q[name] = k
    ks.list[i + 1] = k
  end
  return ks
end

local LIVE = keyset(1)

local function hset_or_del(key, field, value)
  if value and value ~= '' then
    redis.call('HSET', key, field, value)
  else
    redis.call('HDEL', key, field)
  end
end

-- Put a user in exactly one queue of a keyset with its metadata (one-queue invariant).
local function place(ks, user, queue, score, nb, vul, res)
  for i = 1, 3 do
    if ks.names[i] ~= queue then redis.call('ZREM', ks.list[i], user) end
  end
  redis.call('ZADD', ks.q[queue], score, user)
  hset_or_del(ks.nb, user, nb)
  if vul == '1' or vul == 1 then
    redis.call('SADD', ks.vul, user)
  else
    redis.call('SREM', ks.vul, user)
  end
  hset_or_del(ks.res, user, res)
end

local function unplace(ks, user)
  for i = 1, 3 do redis.call('ZREM', ks.list[i], user) end
  redis.call('HDEL', ks.nb, user)
  redis.call('SREM', ks.vul, user)
  redis.call('HDEL', ks.res, user)
end

-- Queue name and score of a user in a keyset, or nil.
local function position(ks, user)
  for i = 1, 3 do
    local s = redis.call('ZSCORE', ks.list[i], user)
    if s then return ks.names[i], s end
  end
  return nil, nil
end

local function metadata(ks, user)
  return redis.call('HGET', ks.nb, user), redis.call('SISMEMBER', ks.vul, user), redis.call('HGET', ks.res, user)
end

-- While a rebuild runs, every incremental change of a user's placement is recorded so the swap
-- keeps the live (newer) placement for that user instead of the rebuild's snapshot.
local rebuilding = nil
local function mark_dirty(user)
  if rebuilding == nil then rebuilding = redis.call('EXISTS', K_REBUILD) == 1 end
  if rebuilding then
    redis.call('SADD', K_DIRTY, user)
    redis.call('SADD', K_PENDING, user)
  end
end

-- Copy a dirty user's live placement into staging (live is newer than the rebuild's snapshot).
-- Leased users are left to the swap, which handles every lease.
local function sync_to_stage(stage, user)
  if redis.call('EXISTS', LEASE_PREFIX .. user) == 1 then return end
  local q, s = position(LIVE, user)
  if q then
    local nb, vul, res = metadata(LIVE, user)
    place(stage, user, q, s, nb, vul, res)
  else
    unplace(stage, user)
  end
end

-- The placement a lease restores when it expires; queue '' means "leave the queues".
local function set_restore(lk, queue, score, nb, vul, res)
  if queue and queue ~= '' then
    redis.call('HSET', lk, 'r_queue', queue, 'r_score', score, 'r_vul', (vul == '1' or vul == 1) and '1' or '0')
    hset_or_del(lk, 'r_nb', nb)
    hset_or_del(lk, 'r_res', res)
  else
    redis.call('HSET', lk, 'r_queue', '')
    redis.call('HDEL', lk, 'r_score', 'r_nb', 'r_vul', 'r_res')
  end
end

local function end_lease(user, lk, agent)
  redis.call('DEL', lk)
  redis.call('ZREM', K_EXP, user)
  if agent and redis.call('HGET', K_AGENTS, agent) == user then redis.call('HDEL', K_AGENTS, agent) end
end

-- Expired (or abandoned) lease: end it and put the user back where its restore fields say.
local function restore_lease(user)
  local lk = LEASE_PREFIX .. user
  local f = redis.call('HMGET', lk, 'agent', 'r_queue', 'r_score', 'r_nb', 'r_vul', 'r_res')
  if f[2] and f[2] ~= '' then place(LIVE, user, f[2], f[3], f[4], f[5], f[6]) end
  end_lease(user, lk, f[1])
  mark_dirty(user)
end

-- Fencing check shared by renew and release. Returns the lease fields, or nil and a reason.
-- An expired lease is reaped on the spot: its holder lost it the moment it expired.
local function check_fence(user, token, now)
  local lk = LEASE_PREFIX .. user
  local f = redis.call('HMGET', lk, 'agent', 'token', 'queue', 'score', 'expires_at')
  if not f[1] then return nil, 'no_lease' end
  if f[2] ~= token then return nil, 'token' end
  if tonumber(f[5]) <= now then
    restore_lease(user)
    return nil, 'expired'
  end
  return f, nil
end

