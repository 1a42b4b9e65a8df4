-- Compare-and-set of a sink's control record (eventrouter.circuit.SinkControl as JSON).
-- KEYS[1]: the sink's control hash (fields version, data)
-- ARGV[1]: the version the writer read; ARGV[2]: the new JSON; ARGV[3]: the sink's wake channel
-- Returns 1 when written (as version + 1), 0 when another writer changed it first.
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', current + 1, 'data', ARGV[2])
-- a resume (or a closed circuit) takes effect at once in every worker listening
redis.call('PUBLISH', ARGV[3], 'control')
return 1
