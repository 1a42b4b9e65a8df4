-- Shared by every script (loaded in front of each). A delivery record is JSON in the event
-- hash's ``sink:NAME`` field; times in it are kept as strings so they round-trip exactly.
local function load(key, sink)
  local raw = redis.call('HGET', key, 'sink:' .. sink)
  if not raw then return nil end
  return cjson.decode(raw)
end
local function save(key, sink, rec)
  redis.call('HSET', key, 'sink:' .. sink, cjson.encode(rec))
end
-- the Redis server's clock, in seconds: every process schedules by the same clock
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function score(value)
  return string.format('%.6f', value)
end
local function ensure_queue(stream, group)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  end
end
-- queue a delivery of the event to ``sink`` with no attempt made yet, and wake its workers
local function queue_fresh(event_key, event_id, sink, queue, sinks_set, group, now, wake_channel)
  redis.call('SADD', sinks_set, sink)
  ensure_queue(queue, group)
  local entry = redis.call('XADD', queue, '*', 'event', event_id)
  save(event_key, sink, {state = 'pending', attempts = 0, due = now, updated = now, entry = entry})
  redis.call('PUBLISH', wake_channel, event_id)
end
-- the elements of ``list`` from index ``first`` on (the variable part of a script's keys or arguments)
-- what the attempts of a delivery queued by a bulk action are recorded as: 'console' for an
-- action made in the console (its id starts with 'console:', eventrouter.store.CONSOLE_ACTION)
local function trigger_for(action, default)
  if string.sub(action, 1, 8) == 'console:' then return 'console' end
  return default
end

local function tail(list, first)
  local out = {}
  for i = first, #list do out[#out + 1] = list[i] end
  return out
end
