-- Remove consumers from a sink's group: with ``idle_ms`` 0 only ``consumer`` itself, otherwise
-- every other consumer idle that long. Only consumers that own no pending entry are removed:
-- deleting one with pending entries would lose them. Returns how many were removed.
local queue = KEYS[1]
local group, consumer, idle_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])

if redis.call('EXISTS', queue) == 0 then return 0 end
local removed = 0
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', queue, group)) do
  local fields = {}
  for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
  local remove
  if idle_ms == 0 then
    remove = fields['name'] == consumer
  else
    remove = fields['name'] ~= consumer and tonumber(fields['idle']) >= idle_ms
  end
  if remove and fields['pending'] == 0 then
    redis.call('XGROUP', 'DELCONSUMER', queue, group, fields['name'])
    removed = removed + 1
  end
end
return removed
