-- The seconds until the sink's next delivery is due by the server's clock (<= 0: due now), or
-- nil (false) when nothing is queued.
local queue, retry_set, lease_set = KEYS[1], KEYS[2], KEYS[3]
local group = ARGV[1]

local server_now = clock()
local best = nil
if redis.call('EXISTS', queue) == 1 then
  local inflight = redis.call('XPENDING', queue, group)[1]
  if redis.call('XLEN', queue) > inflight then best = 0 end
end
for _, set in ipairs({retry_set, lease_set}) do
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if first[2] then
    local delay = tonumber(first[2]) - server_now
    if best == nil or delay < best then best = delay end
  end
end
if best == nil then return false end
return score(best)
