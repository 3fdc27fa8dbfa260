-- One chunk of the drift pre-pass, run before the swap (not atomic with it: keeps Redis responsive).
-- KEYS[13..18] staging keyset. ARGV: 1 lease prefix, 2 mode 'staged'|'live', 3 queue, 4 start, 5 stop.
-- 'staged' walks the staging queue by rank: returns {n, added, rescored}.
-- 'live' walks the live queue by rank: returns {n, removed}.
-- Users that are leased or dirty are skipped: the swap handles them, they are not drift.
local STAGE = keyset(13)
local queue = ARGV[3]
local from, to
if ARGV[2] == 'staged' then from, to = STAGE.q[queue], LIVE.q[queue] else from, to = LIVE.q[queue], STAGE.q[queue] end
local rows = redis.call('ZRANGE', from, ARGV[4], ARGV[5], 'WITHSCORES')
if #rows == 0 then return {0, 0, 0} end
local members = {}
for j = 1, #rows, 2 do members[#members + 1] = rows[j] end
local other = redis.call('ZMSCORE', to, unpack(members))
local a, b = 0, 0
for j = 1, #members do
  local mine, theirs = rows[2 * j], other[j]
  if theirs ~= mine then
    local user = members[j]
    local skip = redis.call('SISMEMBER', K_DIRTY, user) == 1 or redis.call('ZSCORE', K_EXP, user)
    if not skip then
      if not theirs then a = a + 1 else b = b + 1 end
    end
  end
end
return {#members, a, b}
