// Sample data of every type, the awkward cases included (binary keys, int-encoded strings, intsets,
// extreme zset scores, a stream with a consumer group and pending entries, TTLs), for tests and the demo.
import type { RedisServer } from './servers.js';

export const BINARY_KEY = Buffer.from([0xff, 0xfe, 0x00, 0x61, 0x62, 0x63]);
export const AWKWARD_KEYS = [BINARY_KEY, Buffer.from('with space'), Buffer.from('new\nline'), Buffer.from('glob*?[x]')];

/** Writes one key of each kind under `prefix`; returns how many keys it made. */
export async function seedEveryType(server: RedisServer, prefix = ''): Promise<number> {
  const k = (name: string): string => `${prefix}${name}`;
  const c = server.cmd;
  await c('SET', k('string'), 'hello');
  await c('SET', k('int'), '12345');
  await c('SET', k('binary-value'), Buffer.from([0, 1, 2, 0xff, 0xfe]));
  await c('SET', k('ttl-string'), 'expires', 'PX', 3_600_000);
  await c('PFADD', k('hll'), 'a', 'b', 'c');
  await c('SETBIT', k('bitmap'), 1000, 1);
  await c('RPUSH', k('list'), 'a', 'b', 'c', 'a');
  await c('SADD', k('intset'), 1, 2, 3);
  await c('SADD', k('set'), 'x', 'y', 'z');
  await c('HSET', k('hash'), 'f1', 'v1', 'f2', 'v2');
  await c('ZADD', k('zset'), 'inf', 'top', '-inf', 'bottom', '0.1', 'tenth', '-1.5e300', 'tiny');
  await c('XADD', k('stream'), '1-1', 'field', 'one');
  await c('XADD', k('stream'), '2-1', 'field', 'two');
  await c('XADD', k('stream'), '3-1', 'field', 'three');
  await c('XGROUP', 'CREATE', k('stream'), 'workers', '0');
  await c('XREADGROUP', 'GROUP', 'workers', 'alice', 'COUNT', 2, 'STREAMS', k('stream'), '>');
  await c('HSET', k('ttl-hash'), 'f', 'v');
  await c('PEXPIRE', k('ttl-hash'), 7_200_000);
  for (const key of AWKWARD_KEYS) await c('SET', Buffer.concat([Buffer.from(prefix), key]), Buffer.concat([key, Buffer.from('-value')]));
  return 13 + AWKWARD_KEYS.length;
}

/** DEBUG DIGEST of the selected db: equal digests mean equal keys, types, values and expiry presence. */
export async function digest(server: RedisServer): Promise<string> {
  return String(await server.cmd('DEBUG', 'DIGEST'));
}

const SEED_STRINGS = `
for first = 1, tonumber(ARGV[1]), 1000 do
  local args = {}
  for i = first, math.min(first + 999, tonumber(ARGV[1])) do args[#args + 1] = 'key:' .. i; args[#args + 1] = 'value ' .. i end
  redis.call('MSET', unpack(args))
end
return redis.call('DBSIZE')
`;

/** `count` strings key:1 .. key:N on the server side, 1000 per MSET; returns the server's DBSIZE after. */
export async function seedStrings(server: RedisServer, count: number): Promise<number> {
  return Number(await server.cmd('EVAL', SEED_STRINGS, 0, count));
}
