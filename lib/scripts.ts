// The Lua scripts that read and write whole batches in one round trip each, and their argument layout.
// Reads take a byte budget so no call blocks a server or fills memory for long; writes skip existing keys atomically.

/**
 * Keys travel packed in the last two arguments (lengths, then bytes end to end), not as KEYS: node-redis
 * writes every Buffer argument as separate socket chunks, which cost more client CPU than the copy itself.
 * ACL key rules still apply to every redis.call; in a cluster each batch goes to the node owning its keys.
 */
const UNPACK_KEYS = `
local KEYS = {}
do
  local blob, pos = ARGV[#ARGV], 1
  for len in string.gmatch(ARGV[#ARGV - 1], '(%d+),') do
    KEYS[#KEYS + 1] = string.sub(blob, pos, pos + len - 1)
    pos = pos + len
  end
end
`;

export function packKeys(keys: readonly Buffer[]): [string, Buffer] {
  return [keys.map((k) => `${k.length},`).join(''), Buffer.concat(keys)];
}

/** Cluster-safe flags for Redis 7+; older servers take scripts without a shebang. */
export function withFlags(body: string, flags: string | undefined): string {
  return flags === undefined ? UNPACK_KEYS + body : `#!lua flags=${flags}\n${UNPACK_KEYS}${body}`;
}

export const READ_FLAGS = 'no-writes,allow-cross-slot-keys';
export const WRITE_FLAGS = 'allow-cross-slot-keys';

const EXPIRE_AT = `
local exptime = ARGV[3] == '1'
local now = 0
if not exptime then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function expire_at(k)
  if exptime then return redis.call('PEXPIRETIME', k) end
  local ttl = redis.call('PTTL', k)
  if ttl >= 0 then return now + ttl end
  return ttl
end
`;

/**
 * DUMP read. KEYS: keys. ARGV: byte budget, dump size limit, '1' if PEXPIRETIME exists.
 * Returns per key: expire-at ms (-1 none, -2 gone), payload; payload '' for a key over the size limit.
 * No TYPE call: it would cost a fifth of the script's time, and only big keys need it.
 * Stops early once the budget is used; the caller asks again for the rest.
 */
export const DUMP_READ = `${EXPIRE_AT}
local budget, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, used = {}, 0
for i = 1, #KEYS do
  if used >= budget then break end
  local k = KEYS[i]
  local at, payload = expire_at(k), ''
  if at ~= -2 and (redis.call('MEMORY', 'USAGE', k) or 0) <= limit then
    payload = redis.call('DUMP', k) or ''
    used = used + #payload
  end
  out[#out + 1] = at
  out[#out + 1] = payload
  used = used + #k
end
return out
`;

/**
 * Type read of small keys. KEYS: keys. ARGV: byte budget, element limit, '1' if PEXPIRETIME exists, string limit.
 * Returns per key: type, expire-at ms (-1 none), count, then count values; count -1 means
 * too big for one write (or a stream), to be copied in chunks.
 */
export const TYPE_READ = `${EXPIRE_AT}
local budget, limit, strlimit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local LEN = { list = 'LLEN', set = 'SCARD', zset = 'ZCARD', hash = 'HLEN' }
local out, used = {}, 0
local function values_of(k, kind)
  if kind == 'string' then
    if redis.call('STRLEN', k) > strlimit then return nil end
    return { redis.call('GET', k) }
  end
  local len = LEN[kind]
  if len == nil or redis.call(len, k) > limit then return nil end
  if kind == 'list' then return redis.call('LRANGE', k, 0, -1) end
  if kind == 'set' then return redis.call('SMEMBERS', k) end
  if kind == 'hash' then return redis.call('HGETALL', k) end
  return redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
end
for i = 1, #KEYS do
  if used >= budget then break end
  local k = KEYS[i]
  local kind = redis.call('TYPE', k)['ok']
  out[#out + 1] = kind
  if kind == 'none' then
    out[#out + 1] = -1
    out[#out + 1] = 0
  else
    out[#out + 1] = expire_at(k)
    local values = values_of(k, kind)
    if values == nil then
      out[#out + 1] = -1
    else
      out[#out + 1] = #values
      for j = 1, #values do
        out[#out + 1] = values[j]
        used = used + #values[j]
      end
    end
  end
  used = used + #k
end
return out
`;

/**
 * Type write. KEYS: keys. ARGV[1]: create (skip a key that exists), replace (delete it first) or append.
 * Then per key: type, expire-at ms (-1: none), count, values in write order (zset: score, member;
 * stream: id, field count, fields and values, per entry).
 * Returns per key: 1 written, 0 skipped as existing, 2 gone at once because its expiry passed, or an error text.
 */
export const TYPE_WRITE = `
local mode = ARGV[1]
local WRITE = { string = 'SET', list = 'RPUSH', set = 'SADD', zset = 'ZADD', hash = 'HSET' }
local function write_stream(k, first, last)
  if first > last then
    local r = redis.pcall('XGROUP', 'CREATE', k, 'redis-keys-migrator-tmp', '0', 'MKSTREAM')
    if type(r) == 'table' and r.err then return r end
    return redis.pcall('XGROUP', 'DESTROY', k, 'redis-keys-migrator-tmp')
  end
  local p = first
  while p <= last do
    local nf = tonumber(ARGV[p + 1])
    local r = redis.pcall('XADD', k, ARGV[p], unpack(ARGV, p + 2, p + 1 + nf))
    if type(r) == 'table' and r.err then return r end
    p = p + 2 + nf
  end
  return 1
end
local function write_values(k, kind, first, last)
  if kind == 'stream' then return write_stream(k, first, last) end
  local command = WRITE[kind]
  if command == nil then return { err = 'cannot copy type ' .. kind .. ' by type' } end
  if kind == 'string' and mode == 'append' then command = 'APPEND' end
  return redis.pcall(command, k, unpack(ARGV, first, last))
end
local out, pos = {}, 2
for i = 1, #KEYS do
  local k, kind, at, n = KEYS[i], ARGV[pos], tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  local first = pos + 3
  pos = first + n
  if mode == 'create' and redis.call('EXISTS', k) == 1 then
    out[i] = 0
  else
    if mode == 'replace' then redis.call('DEL', k) end
    local r = write_values(k, kind, first, pos - 1)
    if type(r) == 'table' and r.err then
      if mode ~= 'append' then redis.call('DEL', k) end
      out[i] = r.err
    elseif at > 0 then
      redis.call('PEXPIREAT', k, at)
      out[i] = redis.call('EXISTS', k) == 1 and 1 or 2
    else
      out[i] = 1
    end
  end
end
return out
`;

/**
 * RESTORE of a batch. KEYS: keys. ARGV[1]: '1' to replace existing keys; ARGV[2]: per key "expire-at,length;"
 * (expire-at 0: none); ARGV[3]: the payloads end to end. One packed argument instead of thousands keeps
 * the client's write path cheap. Returns per key: 1 restored, 0 skipped as existing (BUSYKEY), or the error text.
 */
export const DUMP_WRITE = `
local replace = ARGV[1] == '1'
local blob = ARGV[3]
local out, i, pos = {}, 0, 1
for at, len in string.gmatch(ARGV[2], '(%d+),(%d+);') do
  i = i + 1
  local payload = string.sub(blob, pos, pos + len - 1)
  pos = pos + len
  local r
  if replace then
    r = redis.pcall('RESTORE', KEYS[i], at, payload, 'REPLACE', 'ABSTTL')
  else
    r = redis.pcall('RESTORE', KEYS[i], at, payload, 'ABSTTL')
  end
  if type(r) == 'table' and r.err then
    if string.sub(r.err, 1, 7) == 'BUSYKEY' then out[i] = 0 else out[i] = r.err end
  else
    out[i] = 1
  end
end
return out
`;
