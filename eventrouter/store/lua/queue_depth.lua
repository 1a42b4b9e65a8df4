-- Deliveries by sink and state: {sink, pending, inflight, dead} per sink with a queue.
local sinks_set = KEYS[1]
local group, key_prefix = ARGV[1], ARGV[2]

local out = {}
for _, sink in ipairs(redis.call('SMEMBERS', sinks_set)) do
  local queue = key_prefix .. ':queue:' .. sink
  local length, inflight = 0, 0
  if redis.call('EXISTS', queue) == 1 then
    length = redis.call('XLEN', queue)
    inflight = redis.call('XPENDING', queue, group)[1]
  end
  local waiting = redis.call('ZCARD', key_prefix .. ':retry:' .. sink)
  local dead = redis.call('XLEN', key_prefix .. ':dead:' .. sink)
  out[#out + 1] = {sink, length - inflight + waiting, inflight, dead}
end
return out
