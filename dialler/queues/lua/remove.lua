-- ARGV: 1 lease prefix, 2.. user ids. A leased user keeps its lease; expiry then restores nothing.
for i = 2, #ARGV do
  local user = ARGV[i]
  local lk = LEASE_PREFIX .. user
  if redis.call('EXISTS', lk) == 1 then
    set_restore(lk, '')
  else
    unplace(LIVE, user)
  end
  mark_dirty(user)
end
return #ARGV - 1
