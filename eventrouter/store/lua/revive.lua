-- Make a dead letter pending again with its attempts reset. Returns 1, or 0 when the delivery
-- is not dead (any more).
local event_key, queue, dead_stream, sinks_set = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sink, group, now = ARGV[1], ARGV[2], ARGV[3]
-- the dead stream's entry a listing found ('' when the caller went by event id)
local listed_entry, event_id, wake_channel = ARGV[4], ARGV[5], ARGV[6]
-- a bulk action's id ('' for none): a delivery it revived already is left alone
local action = ARGV[7]

if listed_entry ~= '' then redis.call('XDEL', dead_stream, listed_entry) end
local rec = load(event_key, sink)
if not rec or rec.state ~= 'dead' then return 0 end
if action ~= '' and rec.action == action then return 0 end
if rec.dead then redis.call('XDEL', dead_stream, rec.dead) end
redis.call('SADD', sinks_set, sink)
ensure_queue(queue, group)
rec.dead = nil
rec.state = 'pending'
rec.attempts = 0
rec.lost = nil
rec.due = now
rec.updated = now
rec.entry = redis.call('XADD', queue, '*', 'event', event_id)
rec.trigger = trigger_for(action, 'dlq_retry')
if action ~= '' then rec.action = action end
save(event_key, sink, rec)
redis.call('PUBLISH', wake_channel, event_id)
return 1
