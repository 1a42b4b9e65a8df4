-- One permit of a sink's rate limit, shared by every worker: GCRA on one key holding the
-- theoretical arrival time of the next permit, by the server's clock (see eventrouter.ratelimit).
-- Returns '0' when the permit is taken, else the seconds to wait (a string: Lua numbers would
-- be truncated to integers in the reply).
local rate = KEYS[1]
local interval = tonumber(ARGV[1])

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', rate) or '0')
local base = math.max(tat, now)
if base - now > interval then
  return string.format('%.6f', base - interval - now)
end
local after = base + interval
redis.call('SET', rate, string.format('%.6f', after), 'PX', math.ceil((after - now) * 1000) + 1000)
return '0'
