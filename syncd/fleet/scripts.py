"""The fleet's shared pacing, as Lua scripts that Redis runs atomically, so no host can
read the bucket, be overtaken by another, and write back a stale value.

All times are Redis's own (`TIME`), so the hosts' clocks need not agree. The keys, under
`syncd:{<prefix>}:` (the braces keep them in one Redis Cluster slot):

* `tat`: the bucket's theoretical arrival time (GCRA): the earliest start of the next
  request at the fleet's interval;
* `pause`: every host waits until then (a `Retry-After`, or a backoff, seen by any host);
* `rate`, `rate_t`: the learned rate (requests/s) and when it was last moved, absent until
  the first rate-limit signal; `ss`, `ss_t`: the slow start's rate before that, which
  doubles every half second of full use from a modest start, so hosts that start
  together do not all burst into the DAM's limit; both grow only while turns queue;
* `queued`: when the last request told to ask again will find its turn, so that those
  waiting are woken one interval apart; `epoch`: bumped each time the rate is lowered, so the
  refusals of requests sent at an older rate do not lower it again (one round, one cut);
* `n:<slot>`, `r:<slot>`: requests started and refused in each 100 ms slot, kept a few
  seconds, from which the rate the DAM accepted lately is measured; `first_r`: the
  first refusal of the current window; `valid_from`: the end of the last pause, before
  which no refusal starts a measurement (the DAM's bucket filled up during it).

The rules follow `syncd.dam.limits.LearnedRate`, for the whole fleet at once: a first
refusal sets a rate `under` what the fleet got accepted in the last window; a later fresh
one lowers it by `step_down` at most, or to what was measured; the rate probes upward by
`growth` per second while nothing is refused.
"""

from __future__ import annotations

from typing import Final

__all__ = ["LIMITED", "RESERVE"]

# KEYS[1]: the key prefix. ARGV: cap interval s (0: none), growth per s, longest wait s,
# the highest rate probing may reach, the slow start's first rate, the horizon s.
# Returns {wait s, learned rate (0: none), epoch, reserved (1) or ask again after the wait
# (0), the rate turns are spaced at (0: none)} as strings.
RESERVE: Final = """
local p = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap, growth, longest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local top = tonumber(ARGV[4])
local pause = tonumber(redis.call('GET', p .. 'pause') or '0')
local epoch = redis.call('GET', p .. 'epoch') or '0'
local rate = tonumber(redis.call('GET', p .. 'rate') or '0')
if pause > now then
  return {tostring(math.min(pause - now, longest)), tostring(rate), epoch, '0', '0'}
end
local tat = tonumber(redis.call('GET', p .. 'tat') or '0')
-- Both rates below grow only while the fleet's turns queue (the bucket is what holds
-- the hosts back): a fleet that sends little does not drift up to rates it never tried.
local busy = tat > now
local pacing = 0
if rate > 0 then
  local since = tonumber(redis.call('GET', p .. 'rate_t') or tostring(now))
  if busy then
    -- Probing up, bounded by `top` (no DAM quota is above it).
    rate = math.min(top, rate * (1 + growth * math.max(0, math.min(now - since, 10))))
    redis.call('SET', p .. 'rate', tostring(rate), 'EX', 3600)
  end
  redis.call('SET', p .. 'rate_t', tostring(now), 'EX', 3600)
  pacing = rate
else
  -- No limit seen yet: a slow start. Many hosts that start at once would all burst
  -- into the DAM's limit; the fleet starts at a modest rate and doubles it every half
  -- second of full use until the DAM pushes back, or until it is past any quota (then:
  -- no pacing).
  local ss = tonumber(redis.call('GET', p .. 'ss') or '0')
  if ss == 0 then
    ss = tonumber(ARGV[5])
  elseif ss < top and busy then
    local since = tonumber(redis.call('GET', p .. 'ss_t') or tostring(now))
    ss = math.min(top, ss * 4 ^ math.max(0, math.min(now - since, 10)))
  end
  redis.call('SET', p .. 'ss', tostring(ss), 'EX', 3600)
  redis.call('SET', p .. 'ss_t', tostring(now), 'EX', 3600)
  if ss < top then pacing = ss end
end
local interval = cap
if pacing > 0 then interval = math.max(interval, 1 / pacing) end
local wait = 0
if interval > 0 then
  local start = math.max(now, tat)
  wait = start - now
  -- Turns are handed out at most `horizon` ahead, so a rate cut by a refusal applies to
  -- every request but the next few. A request further back is told when to ask again:
  -- one interval after the request told before it, so those waiting wake in turn, not
  -- all at once to race for the next turn.
  local horizon = tonumber(ARGV[6])
  if wait > horizon then
    local queued = math.max(start, tonumber(redis.call('GET', p .. 'queued') or '0')) + interval
    redis.call('SET', p .. 'queued', tostring(queued), 'PX', math.ceil((queued - now) * 1000) + 1000)
    return {tostring(math.max(horizon, queued - now - horizon)), tostring(rate), epoch, '0', tostring(pacing)}
  end
  redis.call('SET', p .. 'tat', tostring(start + interval), 'PX', math.ceil((wait + interval) * 1000) + 1000)
end
local slot = p .. 'n:' .. math.floor((now + wait) * 10)
redis.call('INCR', slot)
redis.call('EXPIRE', slot, 30)
return {tostring(wait), tostring(rate), epoch, '1', tostring(pacing)}
"""

# KEYS[1]: the key prefix. ARGV: the refused request's epoch, pause s (0: none), window s,
# under, step_down, floor, min_samples, longest pause s, measure_samples, min_span s,
# the highest rate (a slow start past it has ended).
# Returns {rate (0: none), epoch} as strings.
LIMITED: Final = """
local p = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sent_epoch, pause_s, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local under, step_down, floor = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local min_samples, longest = tonumber(ARGV[7]), tonumber(ARGV[8])
local measure_samples, min_span = tonumber(ARGV[9]), tonumber(ARGV[10])
local max_rate = tonumber(ARGV[11])
local slot = math.floor(now * 10)
local function accepted_since(from)
  local n = 0
  for s = from, slot do
    n = n + tonumber(redis.call('GET', p .. 'n:' .. s) or '0')
    n = n - tonumber(redis.call('GET', p .. 'r:' .. s) or '0')
  end
  return n
end
-- While the DAM keeps refusing, its bucket is empty at each refusal: what it accepted
-- between the first refusal of the window and this one is its rate, whatever its burst.
local exact = nil
local valid_from = tonumber(redis.call('GET', p .. 'valid_from') or '0')
local first_r = tonumber(redis.call('GET', p .. 'first_r') or '0')
if first_r > 0 and now - first_r >= min_span then
  local n = accepted_since(math.floor(first_r * 10) + 1)
  if n >= measure_samples then exact = n / (now - math.floor(first_r * 10 + 1) / 10) end
end
if first_r == 0 and now >= valid_from then
  redis.call('SET', p .. 'first_r', tostring(now), 'PX', math.ceil(window * 1000))
end
redis.call('INCR', p .. 'r:' .. slot)
redis.call('EXPIRE', p .. 'r:' .. slot, 30)
if pause_s > 0 then
  local until_ = now + math.min(pause_s, longest)
  local pause = tonumber(redis.call('GET', p .. 'pause') or '0')
  if until_ > pause then
    redis.call('SET', p .. 'pause', tostring(until_), 'PX', math.ceil(math.min(pause_s, longest) * 1000) + 1000)
  end
  -- Every host waits: the DAM's bucket fills up meanwhile, so measure afresh after.
  redis.call('DEL', p .. 'first_r')
  redis.call('SET', p .. 'valid_from', tostring(until_), 'EX', 3600)
  exact = nil
end
local epoch = redis.call('GET', p .. 'epoch') or '0'
local rate = tonumber(redis.call('GET', p .. 'rate') or '0')
local before = rate
if exact ~= nil then
  -- A refusal says the rate was too high: an exact measure lowers it, never raises it
  -- (an early one still counts the DAM's burst).
  rate = math.max(floor, under * exact)
  if before > 0 then rate = math.min(before, rate) end
elseif sent_epoch ~= epoch then
  -- sent before the rate last went down: not news
  return {tostring(rate), epoch}
else
  local started, refused, first = 0, 0, nil
  for s = slot - math.floor(window * 10) + 1, slot do
    local n = tonumber(redis.call('GET', p .. 'n:' .. s) or '0')
    if n > 0 and first == nil then first = s end
    started = started + n
    refused = refused + tonumber(redis.call('GET', p .. 'r:' .. s) or '0')
  end
  local accepted = started - refused
  local measured = nil
  if first ~= nil and accepted >= min_samples then
    measured = accepted / math.max(0.1, now - first / 10)
  end
  if rate <= 0 then
    -- The first refusal: under what the fleet was sent at (the slow start's rate), or
    -- under what was accepted lately when that is lower.
    local ss = tonumber(redis.call('GET', p .. 'ss') or '0')
    if ss >= max_rate then ss = 0 end  -- past any quota: the slow start had ended
    if measured == nil and ss == 0 then return {'0', epoch} end
    local sent = measured or ss
    if ss > 0 and measured ~= nil then sent = math.min(ss, measured) end
    rate = math.max(floor, under * sent)
  else
    local lower = rate * under
    if measured ~= nil then lower = math.min(lower, under * measured) end
    rate = math.max(floor, rate * step_down, lower)
  end
end
if before <= 0 or rate < before then
  epoch = tostring(tonumber(epoch) + 1)
  redis.call('SET', p .. 'epoch', epoch, 'EX', 3600)
end
redis.call('SET', p .. 'rate', tostring(rate), 'EX', 3600)
redis.call('SET', p .. 'rate_t', tostring(now), 'EX', 3600)
return {tostring(rate), epoch}
"""
