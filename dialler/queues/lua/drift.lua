-- One chunk of the drift pre-pass, run before the swap (not atomic with it: keeps Redis responsive).
-- KEYS[13..18] staging keyset. ARGV: 1 lease prefix, 2 queue, 3 start, 4 stop.
-- Walks the staging queue by rank against the live queue: returns {n, added, rescored, in_both}.
-- The removed are then the live members not met here (live size - in_both): no walk of the live queue.
-- Users that are leased or dirty are skipped: the swap handles them, they are not drift.
local STAGE = keyset(13)
local queue = ARGV[2]
local rows = redis.call('ZRANGE', STAGE.q[queue], ARGV[3], ARGV[4], 'WITHSCORES')
if #rows == 0 then return {0, 0, 0, 0} end
local members = {}
for j = 1, #rows, 2 do members[#members + 1] = rows[j] end
local live = redis.call('ZMSCORE', LIVE.q[queue], unpack(members))
local added, rescored, both = 0, 0, 0
for j = 1, #members do
  local staged, was = rows[2 * j], live[j]
  if was then both = both + 1 end
  if was ~= staged then
    local user = members[j]
    local skip = redis.call('SISMEMBER', K_DIRTY, user) == 1 or redis.call('ZSCORE', K_EXP, user)
    if not skip then
      if not was then added = added + 1 else rescored = rescored + 1 end
    end
  end
end
return {#members, added, rescored, both}
