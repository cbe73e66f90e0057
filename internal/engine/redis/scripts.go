package redis

import "github.com/redis/rueidis"

// The keys of a topic share the hash tag {topic}, so that in a Redis
// Cluster they live in one slot and one script can use them all:
//
//	<prefix>:{<topic>}:m   hash: e epoch (16 hex digits), s last offset,
//	                       f first retained offset, b retained bytes,
//	                       lt time of the newest event (unix ms)
//	<prefix>:{<topic>}:s   stream: the retained events, entry ID <offset>-0,
//	                       fields t (unix ms), z (size), r (record)
//	<prefix>:{<topic>}:k   hash: idempotency key -> offset
//	<prefix>:{<topic>}:kt  sorted set: idempotency key by time stored
//	<prefix>:{<topic>}:c   the (sharded) pub/sub channel of its events, and
//	                       of its presence changes (presence.go)
//	<prefix>:{<topic>}:p   hash: client id -> node id:since (unix ms):info,
//	                       the clients present on the topic on every node
//	<prefix>:{<topic>}:pz  sorted set: client id by expiry (unix ms)
//
// Keys of the deployment, in the slot of {<prefix>}:
//
//	{<prefix>}:epoch       the epoch new topics get
//	{<prefix>}:topics      hash: topic -> "p"+epoch (assigned, creation
//	                       pending) or "c"+epoch (created with it)

// luaTrim is shared by the publish and read scripts: it drops the oldest
// events of stream s beyond the retention bounds and returns the new first
// offset and byte count.
const luaTrim = `
local function trim(s, first, last, bytes, now, maxn, maxb, maxage)
  local cutoff = nil
  if maxage > 0 then cutoff = now - maxage end
  local start = first
  local grow = 1
  while first <= last do
    if not (maxn > 0 and last - first + 1 > maxn) and not (maxb > 0 and bytes > maxb) and not cutoff then break end
    -- Read no more entries than are likely to go: the ones over the count
    -- bound and the one after them (usually 1 or 2: an XRANGE costs Redis
    -- about 1 µs per entry), more each round when bytes or age drop more.
    local want = grow
    if maxn > 0 and last - first + 1 > maxn then want = math.max(want, last - first + 2 - maxn) end
    want = math.min(want, 256)
    grow = math.min(grow * 4, 256)
    local batch = redis.call('XRANGE', s, string.format('%d-0', first), '+', 'COUNT', want)
    if #batch == 0 then first = last + 1; break end
    local stop = false
    for _, ent in ipairs(batch) do
      local off = tonumber(string.match(ent[1], '^(%d+)'))
      local f = ent[2]
      local overn = maxn > 0 and last - off + 1 > maxn
      local overb = maxb > 0 and bytes > maxb
      local old = cutoff and tonumber(f[2]) <= cutoff
      if not (overn or overb or old) then first = off; stop = true; break end
      bytes = bytes - tonumber(f[4])
      first = off + 1
    end
    if stop then break end
  end
  if first > start then redis.call('XTRIM', s, 'MINID', string.format('%d-0', first)) end
  return first, bytes
end
`

// The scripts that only read, or whose writes are idempotent (a rerun
// changes nothing more), are retryable: rueidis sends them again after a
// connection lost mid-call. publishScript and applyStateScript are not: a
// lost answer fails the call (unavailable) and the caller decides.

// publishScript appends a batch of records to a topic, atomically: it
// assigns the next offsets, dedupes by idempotency key, appends to the
// stream, trims it, and publishes each new event on the topic's channel.
//
// KEYS: m, s, k, kt. ARGV: 1 epoch to create the topic with ("": do not
// create it), 2 now (unix ms), 3 dedupe window (ms), 4 max keys, 5 max
// events, 6 max bytes, 7 max age (ms), 8 channel, 9 PUBLISH or SPUBLISH,
// 10 record count, then per record: idempotency key, size, encoding.
//
// Returns {0} when the topic does not exist and ARGV[1] is empty; else
// {1 or 2 (created), epoch, then offset and duplicate (0/1) per record}.
var publishScript = rueidis.NewLuaScript(luaTrim + `
local m, s, kh, kt = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[2])
local meta = redis.call('HMGET', m, 'e', 's', 'f', 'b', 'lt')
local e = meta[1]
local status, last, first, bytes, lt = 1, 0, 1, 0, 0
if not e then
  if ARGV[1] == '' then return {0} end
  e = ARGV[1]
  status = 2
  redis.call('DEL', s, kh, kt)
else
  last, first, bytes, lt = tonumber(meta[2]), tonumber(meta[3]), tonumber(meta[4]), tonumber(meta[5])
end
if now < lt then now = lt end
local window = tonumber(ARGV[3])
if window > 0 then
  local old = redis.call('ZRANGEBYSCORE', kt, '-inf', '(' .. string.format('%d', now - window), 'LIMIT', 0, 1000)
  if #old > 0 then
    redis.call('HDEL', kh, unpack(old))
    redis.call('ZREM', kt, unpack(old))
  end
end
local out = {status, e}
local fresh = {}
local n = tonumber(ARGV[10])
for i = 0, n - 1 do
  local key, size, rec = ARGV[11 + 3 * i], ARGV[12 + 3 * i], ARGV[13 + 3 * i]
  local dup = false
  if key ~= '' then dup = redis.call('HGET', kh, key) end
  if dup then
    out[#out + 1] = tonumber(dup)
    out[#out + 1] = 1
  else
    last = last + 1
    redis.call('XADD', s, string.format('%d-0', last), 't', string.format('%d', now), 'z', size, 'r', rec)
    bytes = bytes + tonumber(size)
    if key ~= '' then
      redis.call('HSET', kh, key, last)
      redis.call('ZADD', kt, string.format('%.4f', now + (last % 1024) / 1024), key)
    end
    out[#out + 1] = last
    out[#out + 1] = 0
    fresh[#fresh + 1] = i
  end
end
local maxkeys = tonumber(ARGV[4])
if maxkeys > 0 then
  local c = redis.call('ZCARD', kt)
  if c > maxkeys then
    local pop = redis.call('ZPOPMIN', kt, c - maxkeys)
    for j = 1, #pop, 2 do redis.call('HDEL', kh, pop[j]) end
  end
end
first, bytes = trim(s, first, last, bytes, now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
redis.call('HSET', m, 'e', e, 's', string.format('%d', last), 'f', string.format('%d', first), 'b', string.format('%d', bytes), 'lt', string.format('%d', now))
local ts = ':' .. string.format('%d', now) .. ':'
for _, i in ipairs(fresh) do
  redis.call(ARGV[9], ARGV[8], e .. string.format('%d', out[3 + 2 * i]) .. ts .. ARGV[13 + 3 * i])
end
return out
`)

// readScript reads a topic's state and up to a limit of its events after
// an offset, first dropping events older than the age bound.
//
// KEYS: m, s. ARGV: 1 after, 2 limit, 3 now (unix ms), 4 max age (ms).
// Returns {} when the topic does not exist, else {epoch, last, first,
// bytes, entries} (entries as XRANGE returns them, only when asked for).
var readScript = rueidis.NewLuaScriptRetryable(luaTrim + `
local m, s = KEYS[1], KEYS[2]
local meta = redis.call('HMGET', m, 'e', 's', 'f', 'b', 'lt')
if not meta[1] then return {} end
local last, first, bytes, lt = tonumber(meta[2]), tonumber(meta[3]), tonumber(meta[4]), tonumber(meta[5])
local now = tonumber(ARGV[3])
if now < lt then now = lt end
local maxage = tonumber(ARGV[4])
if maxage > 0 then
  local f, b = trim(s, first, last, bytes, now, 0, 0, maxage)
  if f ~= first then
    first, bytes = f, b
    redis.call('HSET', m, 'f', string.format('%d', first), 'b', string.format('%d', bytes))
  end
end
local out = {meta[1], last, first, bytes}
local after, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if limit > 0 and after < last then
  local from = after + 1
  if from < first then from = first end
  out[5] = redis.call('XRANGE', s, string.format('%d-0', from), '+', 'COUNT', limit)
end
return out
`)

// epochScript answers, in the deployment's slot, the epoch a topic that
// does not exist has, or is to be created with.
//
// KEYS: epoch, topics. ARGV: 1 mode (read, create, mark), 2 topic, 3 a
// fresh epoch for the deployment if it has none, 4 a fresh epoch for the
// topic if its history was lost, 5 (mark) the epoch it was created with.
//
// A topic never created gets the deployment's epoch (so reading it before
// its first publish shows the epoch it will have). A topic whose creation
// was recorded ("c") but whose keys are gone lost its history (a wiped
// Redis node, a failover to a replica without it): it gets a fresh epoch,
// so consumers holding positions in the old history see the change.
var epochScript = rueidis.NewLuaScriptRetryable(`
local d = redis.call('GET', KEYS[1])
if not d then
  d = ARGV[3]
  redis.call('SET', KEYS[1], d)
end
local v = redis.call('HGET', KEYS[2], ARGV[2])
if ARGV[1] == 'mark' then
  if v == 'p' .. ARGV[5] then redis.call('HSET', KEYS[2], ARGV[2], 'c' .. ARGV[5]) end
  return d
end
if not v then
  if ARGV[1] == 'create' then redis.call('HSET', KEYS[2], ARGV[2], 'p' .. d) end
  return d
end
if string.sub(v, 1, 1) == 'p' then return string.sub(v, 2) end
redis.call('HSET', KEYS[2], ARGV[2], 'p' .. ARGV[4])
return ARGV[4]
`)

// applyStateScript applies a hub.StateStore ApplyState call to one space:
// every check first, then every write, or nothing.
//
// KEYS: h (hash key -> value), z (sorted set of the keys, all scored 0).
// ARGV: per op four strings: flags (c check, n expect absent, s set, d
// delete), key, expected value, value. Returns {} when applied, or
// {key} of the first check that failed.
var applyStateScript = rueidis.NewLuaScript(`
local h, z = KEYS[1], KEYS[2]
for i = 1, #ARGV, 4 do
  local flags = ARGV[i]
  if string.find(flags, 'c', 1, true) then
    local v = redis.call('HGET', h, ARGV[i + 1])
    if string.find(flags, 'n', 1, true) then
      if v then return {ARGV[i + 1]} end
    elseif v ~= ARGV[i + 2] then
      return {ARGV[i + 1]}
    end
  end
end
for i = 1, #ARGV, 4 do
  local flags = ARGV[i]
  if string.find(flags, 's', 1, true) then
    redis.call('HSET', h, ARGV[i + 1], ARGV[i + 3])
    redis.call('ZADD', z, 0, ARGV[i + 1])
  elseif string.find(flags, 'd', 1, true) then
    redis.call('HDEL', h, ARGV[i + 1])
    redis.call('ZREM', z, ARGV[i + 1])
  end
end
return {}
`)

// scanStateScript returns a page of a space's keys that start with a
// prefix and sort after a key, with their values.
//
// KEYS: h, z. ARGV: 1 prefix, 2 after ("" for from the start), 3 max
// entries, 4 max bytes. Returns {more (0/1), key, value, key, value...}.
var scanStateScript = rueidis.NewLuaScriptRetryable(`
local h, z = KEYS[1], KEYS[2]
local prefix, after = ARGV[1], ARGV[2]
local maxn, maxb = tonumber(ARGV[3]), tonumber(ARGV[4])
local from = '[' .. prefix
if after ~= '' then from = '(' .. after end
local out = {0}
local size, n = 0, 0
while true do
  local keys = redis.call('ZRANGE', z, from, '+', 'BYLEX', 'LIMIT', 0, 64)
  if #keys == 0 then return out end
  for _, k in ipairs(keys) do
    if string.sub(k, 1, #prefix) ~= prefix then return out end
    if n >= maxn or size >= maxb then
      out[1] = 1
      return out
    end
    local v = redis.call('HGET', h, k)
    if v then
      out[#out + 1] = k
      out[#out + 1] = v
      n = n + 1
      size = size + #k + #v
    end
    from = '(' .. k
  end
end
`)
