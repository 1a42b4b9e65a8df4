-- Store a new event: de-duplicate, write the event hash, log it, add it to the query indexes,
-- queue one delivery per sink. Returns {1, event id} when stored (or already stored under this
-- id), {0, first event id} for a duplicate.
local dedupe_key, event_key, events_log, sinks_set = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- the query layer's sorted sets this event joins (scored by received time), then one queue
-- stream per sink, in the order of ``sinks``
local sets_and_queues = tail(KEYS, 5)
local event_id, window_ms, body = ARGV[1], ARGV[2], ARGV[3]
local source, event_type, received, now = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local group, wake_prefix, index_count = ARGV[8], ARGV[9], tonumber(ARGV[10])
local sinks = tail(ARGV, 11)

local indexes, queues = {}, {}
for i, key in ipairs(sets_and_queues) do
  if i <= index_count then indexes[#indexes + 1] = key else queues[#queues + 1] = key end
end

local seen = redis.call('GET', dedupe_key)
if seen then
  if seen == event_id then return {1, seen} end
  return {0, seen}
end
local log_id = redis.call('XADD', events_log, '*', 'event', event_id, 'source', source,
  'type', event_type, 'received', received)
redis.call('HSET', event_key, 'body', body, 'source', source, 'type', event_type,
  'received', received, 'log', log_id, 'idx', cjson.encode(indexes))
for _, index in ipairs(indexes) do
  redis.call('ZADD', index, received, event_id)
end
for i, sink in ipairs(sinks) do
  queue_fresh(event_key, event_id, sink, queues[i], sinks_set, group, now, wake_prefix .. sink)
end
redis.call('SET', dedupe_key, event_id, 'PX', window_ms)
return {1, event_id}
