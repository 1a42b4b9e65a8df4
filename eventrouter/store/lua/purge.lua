-- Delete the given events when every delivery is done and they were received before
-- ``cutoff``; drop log entries of events already gone. Returns how many events were deleted.
local events_log = KEYS[1]
local cutoff, event_prefix, attempts_prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
-- pairs of event id and its entry in the events log
local candidates = tail(ARGV, 4)

local removed = 0
for i = 1, #candidates, 2 do
  local key, log_id = event_prefix .. candidates[i], candidates[i + 1]
  local fields = redis.call('HGETALL', key)
  if #fields == 0 then
    redis.call('XDEL', events_log, log_id)
  else
    local keep, received, indexes = false, nil, {}
    for j = 1, #fields, 2 do
      local name = fields[j]
      if name == 'received' then
        received = tonumber(fields[j + 1])
      elseif name == 'idx' then
        indexes = cjson.decode(fields[j + 1])
      elseif string.sub(name, 1, 5) == 'sink:' and cjson.decode(fields[j + 1]).state ~= 'done' then
        keep = true
      end
    end
    if not keep and received and received < cutoff then
      redis.call('DEL', key, attempts_prefix .. candidates[i])
      for _, index in ipairs(indexes) do redis.call('ZREM', index, candidates[i]) end
      redis.call('XDEL', events_log, log_id)
      removed = removed + 1
    end
  end
end
return removed
