-- ARGV: 1 lease prefix, 2 run id, 3 ttl seconds. Idempotent for the same run id (activity retries);
-- a different run id takes over and starts a fresh dirty set.
-- Returns 1 if this call started the run, 0 if it was already the run in progress.
if redis.call('GET', K_REBUILD) == ARGV[2] then
  redis.call('EXPIRE', K_REBUILD, ARGV[3])
  return 0
end
redis.call('SET', K_REBUILD, ARGV[2], 'EX', ARGV[3])
redis.call('DEL', K_DIRTY, K_PENDING)
return 1
