"""The Lua scripts of Redis presence (``realtime.presence.RedisPresence``).

Keys, under LEDGERCORE_REDIS_PREFIX: ``room:<room>:conns`` (channel -> user),
``room:<room>:users`` (user -> connections), ``proc:<process>`` (the
process's entries, "channel|user|room"), ``procs`` (heartbeats) and
``room:<room>:left:<user>`` (the marker below). Each script is one atomic
step; they run by SHA (``realtime.redis.run_script``).
"""

# The marker room:<room>:left:<user> says "this user's departure from the
# room was announced and the user has not come back since"; it lets the
# processes that saw a user leave while Redis was down agree on one
# announcement (realtime.presence.RedisPresence._announce_gone).
JOIN = """
local added = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local first = 0
if added == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
    first = 1
    redis.call('DEL', KEYS[4])
  end
  redis.call('SADD', KEYS[3], ARGV[3])
end
return {redis.call('HLEN', KEYS[1]), first}
"""

OCCUPIED = """
local found = {}
for i, key in ipairs(KEYS) do found[i] = redis.call('EXISTS', key) end
return found
"""

LEAVE = """
local last = 0
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
    last = 1
  end
end
redis.call('SREM', KEYS[3], ARGV[3])
return {redis.call('HLEN', KEYS[1]), last}
"""

# Heartbeat in the server's clock, so machines with skewed clocks agree.
# Returns 1 when this process was absent: swept as dead (event loop stalled
# past the timeout), or Redis lost its data (restart without persistence,
# failover to a replica that lagged); the process then rebuilds its
# memberships.
HEARTBEAT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZADD', KEYS[1], now, ARGV[1])
"""

# An entry of a process's membership set is "channel|user|room". remove()
# takes one membership out of its room (``prefix``: LEDGERCORE_REDIS_PREFIX);
# when its user has no connection left there it marks the departure
# announced for ``marker_ms``. It appends (room, user, channel, last) to
# ``out`` when the membership was there. Shared by SWEEP, DROP, RELEASE
# (and split() by RESTORE).
REMOVE = """
local function split(entry)
  local i = string.find(entry, '|', 1, true)
  local j = string.find(entry, '|', i + 1, true)
  return string.sub(entry, 1, i - 1), string.sub(entry, i + 1, j - 1), string.sub(entry, j + 1)
end

local function remove(prefix, marker_ms, entry, out)
  local channel, user, room = split(entry)
  local ukey = prefix .. ':room:' .. room .. ':users'
  if redis.call('HDEL', prefix .. ':room:' .. room .. ':conns', channel) == 1 then
    local last = 0
    if redis.call('HINCRBY', ukey, user, -1) <= 0 then
      redis.call('HDEL', ukey, user)
      redis.call('SET', prefix .. ':room:' .. room .. ':left:' .. user, '1', 'PX', marker_ms)
      last = 1
    end
    table.insert(out, room)
    table.insert(out, user)
    table.insert(out, channel)
    table.insert(out, last)
  end
end
"""

# Removes every membership of processes whose heartbeat is older than
# ARGV[1] ms; returns flat (room, user, channel, last) quadruples.
SWEEP = (
    REMOVE
    + """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local out = {}
for _, proc in ipairs(dead) do
  local pkey = ARGV[2] .. ':proc:' .. proc
  for _, entry in ipairs(redis.call('SMEMBERS', pkey)) do
    remove(ARGV[2], ARGV[3], entry, out)
  end
  redis.call('DEL', pkey)
  redis.call('ZREM', KEYS[1], proc)
end
return out
"""
)

# Rebuild, step 1: this process's registered entries (KEYS[1] = its set).
# Step 2 (RESTORE): re-register live entries ARGV[3..] ("channel|user|room");
# no join is announced (nobody joined: Redis forgot them).
RESTORE = (
    REMOVE
    + """
for n = 3, #ARGV do
  local entry = ARGV[n]
  local channel, user, room = split(entry)
  local ckey = ARGV[1] .. ':room:' .. room .. ':conns'
  if redis.call('HSETNX', ckey, channel, user) == 1 then
    local ukey = ARGV[1] .. ':room:' .. room .. ':users'
    if redis.call('HINCRBY', ukey, user, 1) == 1 then
      redis.call('DEL', ARGV[1] .. ':room:' .. room .. ':left:' .. user)
    end
  end
  redis.call('SADD', KEYS[1], entry)
end
return #ARGV - 2
"""
)

# Step 3 (DROP): remove stale entries ARGV[3..] of this process (connections
# that closed while Redis was down, when Redis kept its data); returns flat
# (room, user, channel, last) quadruples, as SWEEP.
DROP = (
    REMOVE
    + """
local out = {}
for n = 3, #ARGV do
  remove(ARGV[1], ARGV[2], ARGV[n], out)
  redis.call('SREM', KEYS[1], ARGV[n])
end
return out
"""
)

# Users that left while Redis was down (pairs ARGV[3..] room, user): 1 for
# each that has no connection in the room any more and whose departure no
# process has announced yet (it claims the announcement), else 0.
GONE = """
local out = {}
for n = 3, #ARGV, 2 do
  local room = ARGV[n]
  local user = ARGV[n + 1]
  local present = tonumber(redis.call('HGET', ARGV[1] .. ':room:' .. room .. ':users', user) or '0')
  local claimed = 0
  if present <= 0 then
    if redis.call('SET', ARGV[1] .. ':room:' .. room .. ':left:' .. user, '1', 'NX', 'PX', ARGV[2]) then
      claimed = 1
    end
  end
  table.insert(out, claimed)
end
return out
"""

# Removes every membership of one process (ARGV[1]), its record and its
# heartbeat, marking announced departures as SWEEP does (ARGV[3]: the
# marker's lifetime in ms); returns what SWEEP returns.
RELEASE = (
    REMOVE
    + """
local out = {}
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  remove(ARGV[2], ARGV[3], entry, out)
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return out
"""
)
