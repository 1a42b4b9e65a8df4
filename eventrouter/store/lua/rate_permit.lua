-- One permit of a sink's rate limit, shared by every worker: GCRA on one key holding the
-- theoretical arrival time of the next permit, by the server's clock (see eventrouter.ratelimit).
-- KEYS[1]: the sink's rate key; ARGV[1]: seconds between permits
-- Returns '0' when the permit is taken, else the seconds to wait (a string: Lua numbers would
-- be truncated to integers in the reply).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = math.max(tat, now)
if base - now > interval then
  return string.format('%.6f', base - interval - now)
end
local after = base + interval
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX', math.ceil((after - now) * 1000) + 1000)
return '0'
