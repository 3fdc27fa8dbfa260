-- Atomic swap of a rebuild's staging over the live structures. O(leases + pending dirty users + 6 keys):
-- the big structures move by RENAME and the old ones are freed by UNLINK in a background thread;
-- the dirty users were mostly copied into staging beforehand (sync_dirty.lua).
-- KEYS[13..18] staging keyset, KEYS[19] staging meta, KEYS[20] done record, KEYS[21] done dirty set.
-- ARGV: 1 lease prefix, 2 run id, 3 done-record ttl, 4 JSON of the pre-pass counts per queue.
-- Returns {'ok'|'done', json} | {'not_active', current run id or ''} | {'no_staging', ''}
local done = redis.call('GET', KEYS[20])
if done then return {'done', done} end
local run_id = ARGV[2]
local current = redis.call('GET', K_REBUILD)
if current ~= run_id then return {'not_active', current or ''} end
if redis.call('EXISTS', KEYS[19]) == 0 then return {'no_staging', ''} end
local STAGE = keyset(13)

-- Dirty users not yet copied into staging keep their live placement: the snapshot may predate their
-- change (e.g. a not_before set by a call outcome) and must not undo a compliance gate.
for _, u in ipairs(redis.call('SMEMBERS', K_PENDING)) do sync_to_stage(STAGE, u) end

-- Leased users never go into the live queues. Unless they changed during the rebuild (dirty: the
-- live placement is newer), the rebuild's placement becomes what their lease restores on expiry.
local leased_staged = {}
for _, u in ipairs(redis.call('ZRANGE', K_EXP, 0, -1)) do
  local q, s = position(STAGE, u)
  if q then leased_staged[#leased_staged + 1] = u end
  if redis.call('SISMEMBER', K_DIRTY, u) == 0 then
    local lk = LEASE_PREFIX .. u
    if q then
      local nb, vul, res = metadata(STAGE, u)
      set_restore(lk, q, s, nb, vul, res)
    else
      set_restore(lk, '')
    end
  end
  if q then unplace(STAGE, u) end
end

local prepass = cjson.decode(ARGV[4])
local queues = {}
for i = 1, 3 do
  local name = LIVE.names[i]
  local c = prepass[name] or {}
  queues[name] = {live_before = redis.call('ZCARD', LIVE.list[i]), live_after = redis.call('ZCARD', STAGE.list[i]),
    added = c.added or 0, rescored = c.rescored or 0, removed = c.removed or 0}
end

-- UNLINK first: RENAME over an existing key would free the old value synchronously.
for i = 1, 6 do
  local live, staged = KEYS[i], KEYS[12 + i]
  redis.call('UNLINK', live)
  if redis.call('EXISTS', staged) == 1 then
    redis.call('RENAME', staged, live)
    redis.call('PERSIST', live)
  end
end

-- The dirty set moves aside (O(1)) for the caller to read, kept as long as the drift record.
local dirty_count = redis.call('SCARD', K_DIRTY)
if dirty_count > 0 then
  redis.call('RENAME', K_DIRTY, KEYS[21])
  redis.call('EXPIRE', KEYS[21], ARGV[3])
end
redis.call('DEL', K_REBUILD, K_DIRTY, K_PENDING, KEYS[19])

-- cjson encodes an empty table as {}; engine.py accepts both.
local result = cjson.encode({run_id = run_id, queues = queues, dirty = dirty_count, leased = leased_staged})
redis.call('SET', KEYS[20], result, 'EX', ARGV[3])
return {'ok', result}
