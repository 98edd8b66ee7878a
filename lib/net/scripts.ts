// The Lua scripts that read and write whole batches in one round trip each, and their packed layout.
// A read's reply is the next write's input as it stands: node passes the bytes through without unpacking them.

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

/** Why a type the type copy has no command for (a module's) cannot go that way, and what can copy it. */
export const NOT_BY_TYPE_HINT = 'a module value? COPY_METHOD=dump copies it where the target has the module';

/** One key of a DUMP read: expire-at (-1 none, -2 gone, -3 error: the payload is the message) and payload. */
export interface DumpRecord {
  expireAt: number;
  payload: Buffer;
}

/** Splits a DUMP read's header ("expire-at,length;" per key) and payloads; one pass, no intermediate arrays. */
export function parseDumpHeader(header: string, payloads: Buffer): DumpRecord[] {
  const records: DumpRecord[] = [];
  let offset = 0;
  for (let start = 0; start < header.length; ) {
    const comma = header.indexOf(',', start);
    const end = header.indexOf(';', comma);
    const length = Number(header.slice(comma + 1, end));
    records.push({ expireAt: Number(header.slice(start, comma)), payload: payloads.subarray(offset, offset + length) });
    offset += length;
    start = end + 1;
  }
  return records;
}

export function packKeys(keys: readonly Buffer[]): [string, Buffer] {
  return [keys.map((k) => `${k.length},`).join(''), Buffer.concat(keys)];
}

/** Cluster-safe flags for Redis 7+; older servers take scripts without a shebang. */
export function withFlags(body: string, flags: string | undefined): string {
  return flags === undefined ? UNPACK_KEYS + body : `#!lua flags=${flags}\n${UNPACK_KEYS}${body}`;
}

/** The flags a script may declare on this server: none before Redis 7, which takes scripts without a shebang. */
export function flagsFor(server: { capabilities: { scriptFlags: boolean } }, flags: string): string | undefined {
  return server.capabilities.scriptFlags ? flags : undefined;
}

export const READ_FLAGS = 'no-writes,allow-cross-slot-keys';
export const WRITE_FLAGS = 'allow-cross-slot-keys';

/**
 * Batch layout, the same out of a read script and into a write script:
 *   header: one record per key, ';'-terminated, fields ','-separated;
 *   values: the values end to end in one string, with their lengths in a ','-separated list (type batches).
 * Per-key errors are caught (redis.pcall) and travel in the header, so one bad key never aborts a script
 * halfway through its batch. Write scripts answer per key: 1 written, 0 skipped (exists), 2 gone (deleted
 * or expired on the way), 3 to be copied in chunks, or the error text.
 */
const COMMON = `
local function failed(r) return type(r) == 'table' and r.err end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

/** Expire-at in ms (-1: none, -2: gone), from PEXPIRETIME (ARGV[3] = '1') or TIME + PTTL. */
const EXPIRE_AT = `
local exptime = ARGV[3] == '1'
local now = 0
if not exptime then now = now_ms() end
local function expire_at(k)
  if exptime then return redis.pcall('PEXPIRETIME', k) end
  local ttl = redis.pcall('PTTL', k)
  if failed(ttl) or ttl < 0 then return ttl end
  return now + ttl
end
`;

/**
 * DUMP read. ARGV: byte budget, dump size limit, '1' if PEXPIRETIME exists.
 * Returns { header, payloads }. Header per key: "expire-at,length;" with expire-at -2 for a key that is gone,
 * -3 for an error (the payload is then the message), and length 0 for a key over the size limit.
 * No TYPE call: it would cost a fifth of the script's time, and only big keys need it.
 * Stops once the budget is used; the header tells how many keys it covered.
 */
export const DUMP_READ = `${COMMON}${EXPIRE_AT}
local budget, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local header, parts, used = {}, {}, 0
for i = 1, #KEYS do
  if used >= budget then break end
  local k = KEYS[i]
  local at, payload = expire_at(k), ''
  if failed(at) then
    at, payload = -3, at.err
  elseif at ~= -2 then
    local size = redis.pcall('MEMORY', 'USAGE', k)
    if failed(size) then
      at, payload = -3, size.err
    elseif (size or 0) <= limit then
      local dumped = redis.pcall('DUMP', k)
      if failed(dumped) then at, payload = -3, dumped.err
      elseif dumped then payload = dumped
      else at = -2 end
    end
  end
  header[i] = at .. ',' .. #payload .. ';'
  parts[i] = payload
  used = used + #payload + #k
end
return { table.concat(header), table.concat(parts) }
`;

/**
 * RESTORE of a batch. ARGV: '1' to replace existing keys, then a DUMP read's header and payloads.
 * RESTORE without REPLACE answers BUSYKEY for an existing key: skip-existing is atomic.
 */
export const DUMP_WRITE = `${COMMON}
local replace, blob, now = ARGV[1] == '1', ARGV[3], now_ms()
local out, i, pos = {}, 0, 1
for at_text, len in string.gmatch(ARGV[2], '(-?%d+),(%d+);') do
  i = i + 1
  local at = tonumber(at_text)
  local payload = string.sub(blob, pos, pos + len - 1)
  pos = pos + len
  if at == -3 then
    out[i] = payload
  elseif at == -2 or (at > 0 and at <= now) then
    out[i] = 2
  elseif payload == '' then
    out[i] = 3
  else
    local ttl = at > 0 and at_text or '0'
    local r
    if replace then r = redis.pcall('RESTORE', KEYS[i], ttl, payload, 'REPLACE', 'ABSTTL')
    else r = redis.pcall('RESTORE', KEYS[i], ttl, payload, 'ABSTTL') end
    if not failed(r) then out[i] = 1
    elseif string.sub(r.err, 1, 7) == 'BUSYKEY' then out[i] = 0
    else out[i] = 'RESTORE: ' .. r.err end
  end
end
return out
`;

/**
 * Type read of small keys. ARGV: byte budget, element limit, '1' if PEXPIRETIME exists, string limit, '1'
 * if hash fields can expire. Returns { header, lengths, values }. Header per key: "type,expire-at,count;";
 * count -1 for a key to copy in chunks (too big, a stream, a hash with field expiries); type 'none' for a key
 * that is gone; type 'error' with one value, the message. Values come in write order: zset as score, member.
 */
export const TYPE_READ = `${COMMON}${EXPIRE_AT}
local budget, limit, strlimit, fieldttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4]), ARGV[5] == '1'
local LEN = { list = 'LLEN', set = 'SCARD', zset = 'ZCARD', hash = 'HLEN' }
local READ = { list = { 'LRANGE', 0, -1 }, set = { 'SMEMBERS' }, hash = { 'HGETALL' }, zset = { 'ZRANGE', 0, -1, 'WITHSCORES' } }
local header, lens, parts, used = {}, {}, {}, 0
local function add(v)
  parts[#parts + 1] = v
  lens[#lens + 1] = #v
  used = used + #v
end
-- The key's values, nil for a key to copy in chunks, or nil and an error text.
local function values_of(k, kind)
  if kind == 'string' then
    local n = redis.pcall('STRLEN', k)
    if failed(n) then return nil, n.err end
    if n > strlimit then return nil end
    local v = redis.pcall('GET', k)
    if failed(v) then return nil, v.err end
    return { v }
  end
  if LEN[kind] == nil then return nil end
  local n = redis.pcall(LEN[kind], k)
  if failed(n) then return nil, n.err end
  if n > limit then return nil end
  local read = READ[kind]
  local v = redis.pcall(read[1], k, unpack(read, 2))
  if failed(v) then return nil, v.err end
  -- Field expiries travel with the chunked copy, which sets them before the key takes its name.
  if kind == 'hash' and fieldttl and #v > 0 then
    local fields = {}
    for j = 1, #v, 2 do fields[#fields + 1] = v[j] end
    local t = redis.pcall('HPEXPIRETIME', k, 'FIELDS', #fields, unpack(fields))
    if failed(t) then return nil, t.err end
    for j = 1, #t do if t[j] >= 0 then return nil end end
  end
  return v
end
for i = 1, #KEYS do
  if used >= budget then break end
  local k = KEYS[i]
  local kind = redis.pcall('TYPE', k)
  local at, values, err = -2, nil, nil
  if failed(kind) then err = kind.err else kind = kind.ok end
  if not err and kind ~= 'none' then
    at = expire_at(k)
    if failed(at) then err = at.err else values, err = values_of(k, kind) end
  end
  if err then
    header[i] = 'error,-3,1;'
    add(err)
  elseif kind == 'none' then
    header[i] = 'none,-2,0;'
  elseif values == nil then
    header[i] = kind .. ',' .. at .. ',-1;'
  else
    header[i] = kind .. ',' .. at .. ',' .. #values .. ';'
    if kind == 'zset' then
      for j = 1, #values, 2 do add(values[j + 1]); add(values[j]) end
    else
      for j = 1, #values do add(values[j]) end
    end
  end
  used = used + #k
end
return { table.concat(header), table.concat(lens, ','), table.concat(parts) }
`;

/**
 * Type write. ARGV: mode, then a type read's header, lengths and values. Mode create skips a key that
 * exists, replace deletes it first, append adds to it (later chunks of a big key; the key must exist).
 * An expire-at of '+N' sets a relative expiry of N ms instead. Stream values per
 * entry: id, field count, fields and values. A key that fails half-written is removed (not in append mode).
 */
export const TYPE_WRITE = `${COMMON}
local mode, blob = ARGV[1], ARGV[4]
local WRITE = { string = 'SET', list = 'RPUSH', set = 'SADD', zset = 'ZADD', hash = 'HSET' }
local lens, next_value, pos = {}, 1, 1
for len in string.gmatch(ARGV[3], '%d+') do lens[#lens + 1] = tonumber(len) end
local function take(n)
  local values = {}
  for j = 1, n do
    local len = lens[next_value]
    values[j] = string.sub(blob, pos, pos + len - 1)
    pos = pos + len
    next_value = next_value + 1
  end
  return values
end
local function write_stream(k, values)
  if #values == 0 then
    local r = redis.pcall('XGROUP', 'CREATE', k, 'redis-keys-migrator-tmp', '0', 'MKSTREAM')
    if failed(r) then return r end
    return redis.pcall('XGROUP', 'DESTROY', k, 'redis-keys-migrator-tmp')
  end
  local p = 1
  while p <= #values do
    local nf = tonumber(values[p + 1])
    local r = redis.pcall('XADD', k, values[p], unpack(values, p + 2, p + 1 + nf))
    if failed(r) then return r end
    p = p + 2 + nf
  end
  return 1
end
local function write_values(k, kind, values)
  if kind == 'stream' then return write_stream(k, values) end
  local command = WRITE[kind]
  if command == nil then return { err = 'cannot copy type ' .. kind .. ' by type (${NOT_BY_TYPE_HINT})' } end
  if kind == 'string' and mode == 'append' then command = 'APPEND' end
  return redis.pcall(command, k, unpack(values))
end
local function write_key(k, kind, at_text, values)
  -- '+N' is a relative expiry (PEXPIRE), for keys being built: the target's clock decides, not ours.
  local relative = string.sub(at_text, 1, 1) == '+'
  local at = tonumber(relative and string.sub(at_text, 2) or at_text)
  local exists = redis.pcall('EXISTS', k)
  if failed(exists) then return exists.err end
  if mode == 'create' and exists == 1 then return 0 end
  -- A later chunk must find the earlier ones: a build that vanished (a restarted target) is never completed.
  if mode == 'append' and exists == 0 then return 'the key being built is gone from the target (restarted or flushed?)' end
  local r = 1
  if mode == 'replace' then r = redis.pcall('DEL', k) end
  if not failed(r) then r = write_values(k, kind, values) end
  if not failed(r) and at > 0 then
    if relative then r = redis.pcall('PEXPIRE', k, at) else r = redis.pcall('PEXPIREAT', k, at_text) end
  end
  if failed(r) then
    if mode ~= 'append' then redis.pcall('DEL', k) end
    return r.err
  end
  if at > 0 and redis.call('EXISTS', k) == 0 then return 2 end
  return 1
end
local out, i = {}, 0
for kind, at_text, n in string.gmatch(ARGV[2], '([^,;]+),([+-]?%d+),(-?%d+);') do
  i = i + 1
  n = tonumber(n)
  local values = take(math.max(n, 0))
  if kind == 'error' then out[i] = values[1]
  elseif kind == 'none' then out[i] = 2
  elseif n < 0 then out[i] = 3
  else out[i] = write_key(KEYS[i], kind, at_text, values) end
end
return out
`;

/**
 * Content digest per key, the same whatever the encoding or the server's hash seed: string value; list and
 * zset in order (zset with its scores as the server prints them); set members and hash pairs sorted. ARGV:
 * element limit. Per key "type:sha1;", or ";" for a key not summed this way (bigger than the limit, a stream,
 * gone, or an error): those are compared element by element instead.
 */
export const CONTENT_DIGEST = `${COMMON}
local limit = tonumber(ARGV[1])
local LEN = { list = 'LLEN', set = 'SCARD', zset = 'ZCARD', hash = 'HLEN' }
local function call(...)
  local r = redis.pcall(...)
  if failed(r) then return nil end
  return r
end
-- Each element with its length first, so no two different lists frame to the same text.
local function framed(items)
  local parts = {}
  for i = 1, #items do parts[i] = #items[i] .. ':' .. items[i] end
  return table.concat(parts)
end
local function sorted_pairs(flat)
  local list = {}
  for i = 1, #flat, 2 do list[#list + 1] = { flat[i], flat[i + 1] } end
  table.sort(list, function(x, y) return x[1] < y[1] end)
  local out = {}
  for i = 1, #list do out[2 * i - 1] = list[i][1]; out[2 * i] = list[i][2] end
  return out
end
local function content(k, kind)
  if kind == 'string' then return call('GET', k) end
  if LEN[kind] == nil then return nil end
  local n = call(LEN[kind], k)
  if n == nil or n > limit then return nil end
  if kind == 'list' then
    local v = call('LRANGE', k, 0, -1)
    return v and framed(v)
  elseif kind == 'set' then
    local v = call('SMEMBERS', k)
    if v then table.sort(v) end
    return v and framed(v)
  elseif kind == 'hash' then
    local v = call('HGETALL', k)
    return v and framed(sorted_pairs(v))
  end
  local v = call('ZRANGE', k, 0, -1, 'WITHSCORES')
  return v and framed(v)
end
local out = {}
for i = 1, #KEYS do
  local kind = call('TYPE', KEYS[i])
  local text = kind and content(KEYS[i], kind.ok)
  out[i] = text and (kind.ok .. ':' .. redis.sha1hex(text) .. ';') or ';'
end
return table.concat(out)
`;

/**
 * A big key built under a temporary name (lib/writers/by-type.ts) takes its real name and final expiry at once.
 * KEYS: the temporary name, the real one. ARGV: '1' to replace an existing key, the expire-at (ms, or -1).
 * Answers like TYPE_WRITE: 1 moved, 0 skipped (the key appeared meanwhile; the build is dropped), 2 expired.
 */
export const MOVE_INTO_PLACE = `${COMMON}
local building, key, at = KEYS[1], KEYS[2], tonumber(ARGV[2])
local replace = ARGV[1] == '1'
local r
if replace then r = redis.pcall('RENAME', building, key) else r = redis.pcall('RENAMENX', building, key) end
if failed(r) and (string.find(r.err, 'non local key', 1, true) or string.sub(r.err, 1, 8) == 'TRYAGAIN') then
  -- A slot being imported here (ASKING) takes no multi-key command while keys are missing: the build is
  -- copied by value instead. Where the slot moved away, these calls fail too, and the run looks again.
  if not replace and redis.call('EXISTS', key) == 1 then
    r = 0
  else
    redis.call('RESTORE', key, 0, redis.call('DUMP', building), 'REPLACE')
    r = 1
  end
  redis.call('DEL', building)
end
if failed(r) then return r.err end
if r == 0 then
  redis.call('DEL', building)
  return 0
end
if at > 0 then
  redis.call('PEXPIREAT', key, ARGV[2])
  if redis.call('EXISTS', key) == 0 then return 2 end
else
  redis.call('PERSIST', key)
end
return 1
`;
