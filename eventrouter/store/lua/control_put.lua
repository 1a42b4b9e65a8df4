-- Compare-and-set of a sink's control record (eventrouter.circuit.SinkControl as JSON).
-- Returns 1 when written (as version + 1), 0 when another writer changed it first.
local control = KEYS[1]
local read_version, data, wake_channel = tonumber(ARGV[1]), ARGV[2], ARGV[3]

local current = tonumber(redis.call('HGET', control, 'version') or '0')
if current ~= read_version then return 0 end
redis.call('HSET', control, 'version', current + 1, 'data', data)
-- a resume (or a closed circuit) takes effect at once in every worker listening
redis.call('PUBLISH', wake_channel, 'control')
return 1
