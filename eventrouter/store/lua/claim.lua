-- Claim up to ``limit`` due deliveries for one sink, leased for ``lease`` seconds.
-- Returns {event id, attempts, token, body, lost, trigger} per delivery claimed. The token is the stream
-- entry id and the claim's serial number: an outcome recorded with the token of an earlier
-- claim of the same entry (a worker that outlived its lease) changes nothing.
local queue, retry_set, lease_set, sinks_set = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sink, group, consumer, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lease, limit, event_prefix = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local lease_end, lost_worker_error = ARGV[8], ARGV[9]
-- the attempt history of event E is the list attempts_prefix .. E
local attempts_prefix = ARGV[10]

if redis.call('SISMEMBER', sinks_set, sink) == 0 then return {} end
local server_now = clock()
-- retries that are due go back into the queue stream
local due = redis.call('ZRANGEBYSCORE', retry_set, '-inf', score(server_now), 'LIMIT', 0, 1000)
for _, eid in ipairs(due) do
  local rec = load(event_prefix .. eid, sink)
  if rec and rec.state == 'pending' and not rec.entry then
    rec.entry = redis.call('XADD', queue, '*', 'event', eid)
    save(event_prefix .. eid, sink, rec)
  end
  redis.call('ZREM', retry_set, eid)
end
local out = {}
local function take(id, eid, rec, body)
  rec.state = 'inflight'
  rec.due = lease_end
  rec.updated = now
  rec.claim = (tonumber(rec.claim) or 0) + 1
  save(event_prefix .. eid, sink, rec)
  redis.call('ZADD', lease_set, score(server_now + lease), eid)
  out[#out + 1] = {eid, rec.attempts, id .. '/' .. rec.claim, body, rec.lost or 0,
    rec.trigger or 'first'}
end
-- take over deliveries whose lease (as the worker that claimed them set it) has ended: that
-- worker died, and its attempt counts as a failed one
local expired = redis.call('ZRANGEBYSCORE', lease_set, '-inf', score(server_now), 'LIMIT', 0, limit)
for _, eid in ipairs(expired) do
  local rec = load(event_prefix .. eid, sink)
  local body = redis.call('HGET', event_prefix .. eid, 'body')
  if rec and rec.state == 'inflight' and body then
    rec.attempts = (tonumber(rec.attempts) or 0) + 1
    rec.lost = (tonumber(rec.lost) or 0) + 1
    rec.error = lost_worker_error
    redis.call('RPUSH', attempts_prefix .. eid, cjson.encode({sink = sink, number = rec.attempts,
      started_at = rec.updated, ended_at = now, outcome = 'lost',
      trigger = rec.trigger or 'first', error = lost_worker_error}))
    rec.trigger = 'retry'
    local claimed = {}
    if rec.entry then
      claimed = redis.call('XCLAIM', queue, group, consumer, 0, rec.entry)
    end
    if type(claimed[1]) == 'table' then
      take(rec.entry, eid, rec, body)
    else
      -- its queue entry is gone: queue the delivery again
      if rec.entry then redis.call('XACK', queue, group, rec.entry) end
      rec.state = 'pending'
      rec.due = now
      rec.updated = now
      rec.entry = redis.call('XADD', queue, '*', 'event', eid)
      save(event_prefix .. eid, sink, rec)
      redis.call('ZREM', lease_set, eid)
    end
  else
    redis.call('ZREM', lease_set, eid)
  end
end
if limit - #out > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #out,
    'STREAMS', queue, '>')
  if read then
    for _, entry in ipairs(read[1][2]) do
      local id, fields = entry[1], entry[2]
      local eid = fields and fields[2]
      local rec, body
      if eid then
        rec = load(event_prefix .. eid, sink)
        body = redis.call('HGET', event_prefix .. eid, 'body')
      end
      if rec and rec.entry == id and body then
        take(id, eid, rec, body)
      else
        redis.call('XACK', queue, group, id)
        redis.call('XDEL', queue, id)
      end
    end
  end
end
return out
