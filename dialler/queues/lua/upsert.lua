-- ARGV: 1 lease prefix, then groups of 6: user, queue, score, not_before, vulnerable, reservation.
-- A leased user is not requeued: the entry becomes the placement its lease restores on expiry.
-- Returns the number of users that were leased.
local leased = 0
for i = 2, #ARGV, 6 do
  local user = ARGV[i]
  local lk = LEASE_PREFIX .. user
  if redis.call('EXISTS', lk) == 1 then
    set_restore(lk, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
    leased = leased + 1
  else
    place(LIVE, user, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
  end
  mark_dirty(user)
end
return leased
