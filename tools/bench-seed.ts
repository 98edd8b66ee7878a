// Seeds a benchmark source server-side: one EVAL per chunk of keys writes a fixed mix of types,
// so a million keys take seconds, and the same count always gives the same data.
import type { RedisServer } from '../test/helpers/servers.js';

/** Keys written per EVAL: big enough to amortise the round trip, small enough not to stall the server long. */
const KEYS_PER_EVAL = 10_000;
/** Values are slices of one random pool, so DUMP's LZF compression gains nothing, as with real data. */
const POOL_CHARS = 16_384;

// Per 200 keys: 170 strings (85%), 8 hashes, 8 lists, 6 sets, 7 zsets, 1 stream (0.5%).
// One key in ten gets a TTL a few hours ahead; the formula mixes in n/200 so every type gets some.
const SEED_SCRIPT = `
local first, last, pool = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local span = #pool - 128
local function piece(n, len)
  local at = (n * 7919) % span + 1
  return string.sub(pool, at, at + len - 1)
end
for n = first, last do
  local slot = n % 200
  local key
  if slot < 170 then
    key = 'bench:string:' .. n
    redis.call('SET', key, piece(n, 20 + (n * 37) % 81))
  elseif slot < 178 then
    key = 'bench:hash:' .. n
    redis.call('HSET', key, 'name', piece(n, 12), 'email', piece(n + 1, 24), 'city', piece(n + 2, 10),
      'visits', tostring(n % 977), 'plan', piece(n + 3, 6))
  elseif slot < 186 then
    key = 'bench:list:' .. n
    redis.call('RPUSH', key, piece(n, 16), piece(n + 1, 16), piece(n + 2, 16), piece(n + 3, 16), piece(n + 4, 16))
  elseif slot < 192 then
    key = 'bench:set:' .. n
    redis.call('SADD', key, piece(n, 10), piece(n + 1, 10), piece(n + 2, 10), piece(n + 3, 10), piece(n + 4, 10))
  elseif slot < 199 then
    key = 'bench:zset:' .. n
    redis.call('ZADD', key, n % 100, piece(n, 10), (n % 100) + 1.5, piece(n + 1, 10), -3, piece(n + 2, 10),
      1e6, piece(n + 3, 10), 0.25, piece(n + 4, 10))
  else
    key = 'bench:stream:' .. n
    for entry = 1, 3 do
      redis.call('XADD', key, entry .. '-0', 'event', piece(n + entry, 8), 'payload', piece(n + entry, 40))
    end
    if math.floor(n / 200) % 2 == 0 then
      redis.call('XGROUP', 'CREATE', key, 'workers', '0')
      redis.call('XREADGROUP', 'GROUP', 'workers', 'alice', 'COUNT', '1', 'STREAMS', key, '>')
    end
  end
  if (n + math.floor(n / 200)) % 10 == 3 then
    redis.call('PEXPIRE', key, 3 * 3600 * 1000 + (n % 3600) * 1000)
  end
end
return last - first + 1
`;

/** Deterministic alphanumeric noise (mulberry32), so runs with the same key count compare like for like. */
function randomPool(length: number, seed = 20_240_601): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  let state = seed >>> 0;
  let out = '';
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const r = ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
    out += alphabet[Math.floor(r * alphabet.length)];
  }
  return out;
}

/** Writes keys bench:<type>:0 .. bench:<type>:<count-1> and checks DBSIZE; returns the seconds it took. */
export async function seedSource(source: RedisServer, count: number): Promise<number> {
  const started = performance.now();
  const pool = randomPool(POOL_CHARS);
  const sha = String(await source.cmd('SCRIPT', 'LOAD', SEED_SCRIPT));
  for (let first = 0; first < count; first += KEYS_PER_EVAL) {
    const last = Math.min(first + KEYS_PER_EVAL, count) - 1;
    await source.cmd('EVALSHA', sha, 0, first, last, pool);
  }
  const size = Number(await source.cmd('DBSIZE'));
  if (size !== count) throw new Error(`seeding made ${size} keys, expected ${count}`);
  return (performance.now() - started) / 1000;
}
