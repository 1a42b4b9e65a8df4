-- Queue a stored event again for ``sinks``, replacing whatever state its deliveries to them
-- were in. Returns how many deliveries were queued (0 when the event is not stored).
local event_key, sinks_set = KEYS[1], KEYS[2]
-- per sink, four keys: queue stream, retry set, lease set, dead stream
local sink_keys = tail(KEYS, 3)
local event_id, group, now, wake_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- a bulk action's id ('' for none): a delivery it queued already is left alone
local action = ARGV[5]
local sinks = tail(ARGV, 6)

if redis.call('EXISTS', event_key) == 0 then return 0 end
local queued = 0
for i, sink in ipairs(sinks) do
  local base = (i - 1) * 4
  local queue, retry_set = sink_keys[base + 1], sink_keys[base + 2]
  local lease_set, dead_stream = sink_keys[base + 3], sink_keys[base + 4]
  local rec = load(event_key, sink)
  local already = rec and action ~= '' and rec.action == action
  if rec and not already then
    if rec.entry then
      redis.call('XACK', queue, group, rec.entry)
      redis.call('XDEL', queue, rec.entry)
    end
    if rec.dead then redis.call('XDEL', dead_stream, rec.dead) end
    redis.call('ZREM', retry_set, event_id)
    redis.call('ZREM', lease_set, event_id)
  end
  if not already then
    queue_fresh(event_key, event_id, sink, queue, sinks_set, group, now, wake_prefix .. sink)
    local fresh = load(event_key, sink)
    fresh.trigger = trigger_for(action, 'replay')
    if action ~= '' then fresh.action = action end
    save(event_key, sink, fresh)
    queued = queued + 1
  end
end
return queued
