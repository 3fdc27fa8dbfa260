-- ARGV: 1 lease prefix, 2 user, 3 token, 4 now, 5 requeue '1'/'0',
--       6 queue, 7 score, 8 not_before, 9 vulnerable '1'/'0', 10 reservation ("" = none).
-- Returns {'ok'} | {'stale', reason}
local user = ARGV[2]
local f, why = check_fence(user, ARGV[3], tonumber(ARGV[4]))
if not f then return {'stale', why} end
end_lease(user, LEASE_PREFIX .. user, f[1])
if ARGV[5] == '1' then
  place(LIVE, user, ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])
else
  unplace(LIVE, user)
end
mark_dirty(user)
return {'ok'}
