-- Record the outcome of a claim: ``state`` 'done' (ack), 'pending' (retry after ``delay``
-- seconds) or 'dead' (dead-lettered). Returns 1, or 0 when ``token`` is not the delivery's
-- current claim (it was taken over, or the outcome was recorded already): nothing changes.
local queue, lease_set, event_key, retry_set, dead_stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
-- the event's attempt history (a list of JSON attempts), and this attempt ('' for none)
local attempts_list = KEYS[6]
local sink, group, token, state = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local attempts, now, due, delay = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local error_text, event_id, wake_channel = ARGV[9], ARGV[10], ARGV[11]
local attempt = ARGV[12]

local entry, serial = string.match(token, '^([^/]*)/?(.*)$')
local rec = load(event_key, sink)
if not rec or rec.state ~= 'inflight' or rec.entry ~= entry then return 0 end
if serial ~= '' and tostring(rec.claim) ~= serial then return 0 end
redis.call('XACK', queue, group, entry)
redis.call('XDEL', queue, entry)
redis.call('ZREM', lease_set, event_id)
rec.entry = nil
rec.state = state
rec.attempts = tonumber(attempts)
rec.updated = now
if state == 'done' then
  rec.due = nil
  rec.error = nil
elseif state == 'pending' then
  rec.due = due
  rec.error = error_text
  rec.trigger = 'retry'
  redis.call('ZADD', retry_set, score(clock() + delay), event_id)
  redis.call('PUBLISH', wake_channel, event_id)
else
  local meta = redis.call('HMGET', event_key, 'source', 'type')
  rec.due = nil
  rec.error = error_text
  rec.dead = redis.call('XADD', dead_stream, '*', 'event', event_id, 'source', meta[1] or '',
    'type', meta[2] or '', 'attempts', attempts, 'reason', error_text, 'dead_at', now)
end
save(event_key, sink, rec)
if attempt ~= '' then redis.call('RPUSH', attempts_list, attempt) end
return 1
