-- ARGV: 1 lease prefix, 2 now, 3 limit. Returns the user ids put back.
local due = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, u in ipairs(due) do restore_lease(u) end
return due
