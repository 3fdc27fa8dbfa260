-- ARGV: 1 lease prefix, 2 user, 3 token, 4 now.
-- The lease was never used (its call session could not start): end it and put the customer back
-- exactly where it was taken from, in one step. Returns {'ok'} | {'stale', reason}
local user = ARGV[2]
local f, why = check_fence(user, ARGV[3], tonumber(ARGV[4]))
if not f then return {'stale', why} end
restore_lease(user)
return {'ok'}
