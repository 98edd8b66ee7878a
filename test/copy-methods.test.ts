// How each copy method behaves beyond "copies the sample data": the auto fallback when the target refuses
// RESTORE, exact absolute expiry, stream consumer groups, overwriting, keys over the dump bound, and keys
// that expire while the run is under way. Real redis-server processes and the real script; nothing mocked.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runDir, serverPair, type Pair } from './helpers/fixtures.js';
import { FOOTER_BYTES } from '../lib/rdb/payload.js';
import { asList, buildKeysOf, calls, commandStats, parseSummary, streamState } from './helpers/inspect.js';
import { digest, seedEveryType } from './helpers/sample-data.js';
import { endpoints, runMigrator, spawnMigrator, waitUntil, type RedisServer, type RunResult } from './helpers/servers.js';

/** Runs the migrator against the pair and returns the run with the cwd it ran in (for the error log). */
async function migrate(pair: Pair, settings: Record<string, string | number>): Promise<RunResult & { cwd: string; output: string }> {
  const cwd = runDir();
  const run = await runMigrator({ ...endpoints(pair.source, pair.target), ...settings }, cwd);
  return { ...run, cwd, output: `exit ${run.code}\n${run.stdout}\n${run.stderr}` };
}

/** Empties the target and zeroes its command statistics, so each test sees only its own run. */
async function freshTarget(target: RedisServer): Promise<void> {
  await target.cmd('FLUSHALL');
  await target.cmd('CONFIG', 'RESETSTAT');
}

async function dbsize(server: RedisServer): Promise<number> {
  return Number(await server.cmd('DBSIZE'));
}

/** Builds a big collection on the server side, 1000 elements per command. */
const SEED_BIG = `
local k, kind, n = KEYS[1], ARGV[1], tonumber(ARGV[2])
local command = ({ list = 'RPUSH', set = 'SADD', hash = 'HSET', zset = 'ZADD' })[kind]
for first = 1, n, 1000 do
  local args = {}
  for i = first, math.min(first + 999, n) do
    if kind == 'list' then args[#args + 1] = 'element-' .. i
    elseif kind == 'set' then args[#args + 1] = 'member-' .. i
    elseif kind == 'hash' then args[#args + 1] = 'field-' .. i; args[#args + 1] = 'value-' .. i
    else args[#args + 1] = tostring((i % 977) / 8); args[#args + 1] = 'member-' .. i end
  end
  redis.call(command, k, unpack(args))
end
return redis.call('TYPE', k)['ok']
`;

async function seedBig(server: RedisServer, key: string, kind: 'list' | 'set' | 'hash' | 'zset', n: number): Promise<void> {
  expect(await server.cmd('EVAL', SEED_BIG, 1, key, kind, n)).toBe(kind);
}

/** 2100-01-01T00:00:00.123Z: far enough that nothing expires, with a millisecond part that must survive. */
const FAR_AT = 4_102_444_800_123;

describe('auto fallback when the target refuses RESTORE', () => {
  const pair = serverPair();
  const EXTRA = 3000;
  let sampleKeys = 0;

  beforeAll(async () => {
    sampleKeys = await seedEveryType(pair.source);
    const made = await pair.source.cmd(
      'EVAL',
      "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'extra:' .. i, 'value-' .. i) end return tonumber(ARGV[1])",
      0,
      EXTRA,
    );
    expect(made).toBe(EXTRA);
    expect(await pair.target.cmd('ACL', 'SETUSER', 'norestore', 'on', '>pw', '~*', '+@all', '-restore')).toBe('OK');
  });
  beforeEach(async () => freshTarget(pair.target));

  const asNoRestoreUser = { DESTINATION_REDIS_USERNAME: 'norestore', DESTINATION_REDIS_PASSWORD: 'pw', PIPELINE_BATCH_SIZE: 500 };

  it('COPY_METHOD=auto switches to type at the first refusal and copies every key exactly once', async () => {
    const total = await dbsize(pair.source);
    expect(total).toBe(sampleKeys + EXTRA);
    const run = await migrate(pair, { ...asNoRestoreUser, COPY_METHOD: 'auto' });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: total, skipped: 0, failed: 0, vanished: 0 });
    const fallbackLines = run.stdout.split('\n').filter((line) => line.startsWith('The target refused RESTORE ('));
    expect(fallbackLines, run.output).toHaveLength(1);
    expect(fallbackLines[0]).toMatch(/^The target refused RESTORE \(.+\); copying by type from now on$/);
    expect(await dbsize(pair.target)).toBe(total);
    expect(await digest(pair.target)).toBe(await digest(pair.source));
    const stats = await commandStats(pair.target);
    expect(calls(stats, 'restore')).toBe(0);
    expect(stats.get('restore')?.rejected ?? 0).toBeGreaterThan(0);
  });

  it('COPY_METHOD=dump fails every key (exit 2) and writes nothing', async () => {
    const total = await dbsize(pair.source);
    // No error limit, so the run reaches its end and reports every key instead of stopping at 1000.
    const run = await migrate(pair, { ...asNoRestoreUser, COPY_METHOD: 'dump', MAX_ERRORED_KEYS_LIMIT: 0 });
    expect(run.code, run.output).toBe(2);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: 0, skipped: 0, failed: total, vanished: 0 });
    expect(run.stdout).not.toContain('copying by type');
    expect(await dbsize(pair.target)).toBe(0);
    expect(calls(await commandStats(pair.target), 'restore')).toBe(0);
    const log = readFileSync(join(run.cwd, 'redis-keys-migrator-error.log'), 'utf8');
    expect(log.split('\n').filter((line) => line.startsWith('[') && line.includes(' - ERROR - Failed to migrate key |'))).toHaveLength(total);
  });
});

describe('expiry is copied as the same absolute millisecond', () => {
  const pair = serverPair();
  const volatile: [key: string, at: number][] = [];
  const persistent = ['keep:string', 'keep:hash', 'keep:stream', 'keep:big-list'];

  beforeAll(async () => {
    const c = pair.source.cmd;
    await c('SET', 'exp:string', 'text');
    await c('SET', 'exp:int', '42');
    await c('RPUSH', 'exp:list', 'a', 'b');
    await c('SADD', 'exp:set', 'a', 'b');
    await c('ZADD', 'exp:zset', 1, 'a', 2, 'b');
    await c('HSET', 'exp:hash', 'f', 'v');
    await c('XADD', 'exp:stream', '1-1', 'f', 'v');
    await c('XGROUP', 'CREATE', 'exp:stream', 'g', '0');
    await seedBig(pair.source, 'exp:big-list', 'list', 2500);
    await seedBig(pair.source, 'exp:big-hash', 'hash', 2500);
    const keys = ['exp:string', 'exp:int', 'exp:list', 'exp:set', 'exp:zset', 'exp:hash', 'exp:stream', 'exp:big-list', 'exp:big-hash'];
    for (const [i, key] of keys.entries()) {
      const at = FAR_AT + i * 1001;
      expect(await c('PEXPIREAT', key, at)).toBe(1);
      volatile.push([key, at]);
    }
    await c('SET', 'keep:string', 'forever');
    await c('HSET', 'keep:hash', 'f', 'v');
    await c('XADD', 'keep:stream', '1-1', 'f', 'v');
    await seedBig(pair.source, 'keep:big-list', 'list', 2500);
  });
  beforeEach(async () => freshTarget(pair.target));

  // DUMP_MAX_BYTES makes the big lists go in chunks in dump mode too; by type they are over COLLECTION_CHUNK_SIZE.
  it.each(['dump', 'type', 'auto'])('COPY_METHOD=%s: PEXPIRETIME equal to the millisecond, persistent keys stay persistent', async (method) => {
    const run = await migrate(pair, { COPY_METHOD: method, DUMP_MAX_BYTES: 20_000 });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: volatile.length + persistent.length, skipped: 0, failed: 0, vanished: 0 });
    for (const [key, at] of volatile) {
      expect(await pair.source.cmd('PEXPIRETIME', key), key).toBe(at);
      expect(await pair.target.cmd('PEXPIRETIME', key), key).toBe(at);
    }
    for (const key of persistent) expect(await pair.target.cmd('PTTL', key), key).toBe(-1);
    expect(await digest(pair.target)).toBe(await digest(pair.source));
  });
});

/** A stream with three groups: consumers with and without pending entries, delivery counts above 1, entries-read set and unset. */
async function seedStreamWithGroups(server: RedisServer, key: string): Promise<void> {
  const c = server.cmd;
  for (let i = 1; i <= 12; i++) await c('XADD', key, `${i}-0`, 'n', i, 'payload', `entry ${i}`);
  await c('XGROUP', 'CREATE', key, 'g1', '0');
  await c('XGROUP', 'CREATE', key, 'g2', '5-0', 'ENTRIESREAD', 5);
  await c('XGROUP', 'CREATE', key, 'g3', '0');
  await c('XREADGROUP', 'GROUP', 'g1', 'alice', 'COUNT', 4, 'STREAMS', key, '>');
  await c('XREADGROUP', 'GROUP', 'g1', 'bob', 'COUNT', 3, 'STREAMS', key, '>');
  // Reading one's own history again, and claiming, count as deliveries.
  await c('XREADGROUP', 'GROUP', 'g1', 'alice', 'STREAMS', key, '0');
  await c('XREADGROUP', 'GROUP', 'g1', 'alice', 'STREAMS', key, '0');
  await c('XCLAIM', key, 'g1', 'carol', 0, '5-0', '6-0');
  await c('XCLAIM', key, 'g1', 'carol', 0, '5-0');
  await c('XACK', key, 'g1', '2-0');
  await c('XGROUP', 'CREATECONSUMER', key, 'g1', 'dave');
  await c('XREADGROUP', 'GROUP', 'g2', 'erin', 'COUNT', 2, 'STREAMS', key, '>');
  await c('XREADGROUP', 'GROUP', 'g2', 'erin', 'STREAMS', key, '0');
  // A deleted entry nobody has pending: max-deleted-entry-id moves, the lag stays computable.
  await c('XDEL', key, '11-0');
}

describe('stream consumer groups', () => {
  const pair = serverPair();
  const STREAMS = ['groups:stream', 'groups:emptied', 'groups:never-written'];

  beforeAll(async () => {
    const c = pair.source.cmd;
    await seedStreamWithGroups(pair.source, 'groups:stream');
    // Every entry delivered, acknowledged and deleted: an empty stream whose counters and group remain.
    for (let i = 1; i <= 3; i++) await c('XADD', 'groups:emptied', `${i}-5`, 'f', i);
    await c('XGROUP', 'CREATE', 'groups:emptied', 'g', '0');
    await c('XREADGROUP', 'GROUP', 'g', 'zed', 'STREAMS', 'groups:emptied', '>');
    await c('XACK', 'groups:emptied', 'g', '1-5', '2-5', '3-5');
    await c('XDEL', 'groups:emptied', '1-5', '2-5', '3-5');
    // Created by XGROUP ... MKSTREAM, never given an entry.
    await c('XGROUP', 'CREATE', 'groups:never-written', 'g', '$', 'MKSTREAM');
    await c('XGROUP', 'CREATECONSUMER', 'groups:never-written', 'g', 'idle-one');
    // Pending entries whose stream entries are gone (XDEL, XTRIM): the PEL still lists them.
    for (let i = 1; i <= 5; i++) await c('XADD', 'trimmed:stream', `${i}-0`, 'f', i);
    await c('XGROUP', 'CREATE', 'trimmed:stream', 'g', '0');
    await c('XREADGROUP', 'GROUP', 'g', 'alice', 'STREAMS', 'trimmed:stream', '>');
    await c('XREADGROUP', 'GROUP', 'g', 'alice', 'STREAMS', 'trimmed:stream', '0');
    await c('XDEL', 'trimmed:stream', '2-0');
    await c('XTRIM', 'trimmed:stream', 'MAXLEN', 2);
  });
  beforeEach(async () => freshTarget(pair.target));

  it('the seeded source has what the tests claim to cover', async () => {
    const state = await streamState(pair.source, 'groups:stream');
    expect(state.groups.map((g) => g.info.name)).toEqual(['g1', 'g2', 'g3']);
    const g1 = state.groups[0];
    expect(g1?.info['entries-read']).toBe(7);
    expect(g1?.consumers.map((c) => c.name)).toEqual(['alice', 'bob', 'carol', 'dave']);
    expect(g1?.pending.some((p) => Number(p[2]) >= 3)).toBe(true);
    expect(state.stream['max-deleted-entry-id']).toBe('11-0');
    expect((await streamState(pair.source, 'groups:emptied')).stream.length).toBe(0);
    const trimmed = await streamState(pair.source, 'trimmed:stream');
    expect(trimmed.stream.length).toBe(2);
    expect(trimmed.groups[0]?.pending.map((p) => p[0])).toEqual(['1-0', '2-0', '3-0', '4-0', '5-0']);
  });

  it.each(['dump', 'type'])('COPY_METHOD=%s keeps groups, consumers, pending entries and delivery counts', async (method) => {
    const run = await migrate(pair, { COPY_METHOD: method, SCAN_MATCH_PATTERN: 'groups:*' });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: STREAMS.length, skipped: 0, failed: 0, vanished: 0 });
    for (const key of STREAMS) {
      expect(await streamState(pair.target, key), key).toEqual(await streamState(pair.source, key));
      expect(await pair.target.cmd('DEBUG', 'DIGEST-VALUE', key), key).toEqual(await pair.source.cmd('DEBUG', 'DIGEST-VALUE', key));
    }
  });

  it.each(['dump', 'type'])('COPY_METHOD=%s keeps pending entries whose stream entry was deleted or trimmed', async (method) => {
    const run = await migrate(pair, { COPY_METHOD: method, SCAN_MATCH_PATTERN: 'trimmed:*' });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: 1, skipped: 0, failed: 0, vanished: 0 });
    expect(await streamState(pair.target, 'trimmed:stream')).toEqual(await streamState(pair.source, 'trimmed:stream'));
  });
});

describe('OVERWRITE_EXISTING_KEYS', () => {
  const pair = serverPair();
  let sourceKeys = 0;

  /** Stale target keys: other types, other values, a TTL where the source has none and the reverse. */
  async function seedStale(target: RedisServer): Promise<void> {
    const c = target.cmd;
    await c('SET', 'list', 'stale string where the source has a list');
    await c('RPUSH', 'string', 'stale', 'list');
    await c('PEXPIRE', 'string', 3_600_000);
    await c('HSET', 'hash', 'f1', 'old', 'f9', 'extra');
    await c('SADD', 'stream', 'a set where the source has a stream');
    await c('ZADD', 'zset', 1, 'old');
    await c('HSET', 'big-list', 'a', 'b');
    await c('SET', 'ttl-string', 'stale, persistent');
  }
  const STALE = 7;

  beforeAll(async () => {
    sourceKeys = (await seedEveryType(pair.source)) + 1;
    // Over COLLECTION_CHUNK_SIZE: by type it goes in chunks, the first of which must replace.
    await seedBig(pair.source, 'big-list', 'list', 2500);
  });
  beforeEach(async () => {
    await freshTarget(pair.target);
    await seedStale(pair.target);
  });

  it.each(['dump', 'type'])('COPY_METHOD=%s by default leaves existing keys as they are and counts them skipped', async (method) => {
    const run = await migrate(pair, { COPY_METHOD: method });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: sourceKeys - STALE, skipped: STALE, failed: 0, vanished: 0 });
    expect(await pair.target.cmd('GET', 'list')).toBe('stale string where the source has a list');
    expect(await pair.target.cmd('TYPE', 'stream')).toBe('set');
    expect(await pair.target.cmd('HGETALL', 'big-list')).toEqual(['a', 'b']);
    expect(await pair.target.cmd('PTTL', 'ttl-string')).toBe(-1);
    expect(Number(await pair.target.cmd('PTTL', 'string'))).toBeGreaterThan(0);
    expect(await pair.target.cmd('GET', 'int')).toBe('12345');
    expect(await digest(pair.target)).not.toBe(await digest(pair.source));
  });

  it.each(['dump', 'type'])('COPY_METHOD=%s with OVERWRITE_EXISTING_KEYS=true replaces them', async (method) => {
    const run = await migrate(pair, { COPY_METHOD: method, OVERWRITE_EXISTING_KEYS: 'true' });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: sourceKeys, skipped: 0, failed: 0, vanished: 0 });
    expect(await digest(pair.target)).toBe(await digest(pair.source));
    expect(await pair.target.cmd('PTTL', 'string')).toBe(-1);
    expect(await pair.target.cmd('PEXPIRETIME', 'ttl-string')).toBe(await pair.source.cmd('PEXPIRETIME', 'ttl-string'));
    expect(await streamState(pair.target, 'stream')).toEqual(await streamState(pair.source, 'stream'));
  });
});

describe('keys over DUMP_MAX_BYTES go by type in chunks', () => {
  const pair = serverPair();
  const DUMP_MAX_BYTES = 100_000;
  const BIG = ['big:list', 'big:hash', 'big:zset', 'big:set', 'big:string', 'big:stream'];
  let smallKeys = 0;

  beforeAll(async () => {
    const c = pair.source.cmd;
    smallKeys = await seedEveryType(pair.source);
    await seedBig(pair.source, 'big:list', 'list', 200_000);
    await seedBig(pair.source, 'big:hash', 'hash', 200_000);
    await seedBig(pair.source, 'big:zset', 'zset', 200_000);
    await seedBig(pair.source, 'big:set', 'set', 20_000);
    await c('SET', 'big:string', Buffer.alloc(3_000_000, 'abcdefghij\x00\xff'));
    await c('SETRANGE', 'big:string', 2_999_990, 'the end...');
    expect(
      await c('EVAL', "for i = 1, 4000 do redis.call('XADD', KEYS[1], i .. '-1', 'n', i, 'text', 'entry number ' .. i .. string.rep('.', 40)) end return 1", 1, 'big:stream'),
    ).toBe(1);
    await c('XGROUP', 'CREATE', 'big:stream', 'g', '0');
    await c('XGROUP', 'CREATE', 'big:stream', 'late', '3000-1');
    // 1500 pending for one consumer: more than one page of COLLECTION_CHUNK_SIZE when the PEL is copied.
    await c('XREADGROUP', 'GROUP', 'g', 'reader', 'COUNT', 1500, 'STREAMS', 'big:stream', '>');
    await c('XCLAIM', 'big:stream', 'g', 'thief', 0, '10-1', '11-1', '1400-1');
    await c('XDEL', 'big:stream', '3500-1');
    await c('PEXPIREAT', 'big:hash', FAR_AT);
    for (const key of BIG) expect(Number(await c('MEMORY', 'USAGE', key)), key).toBeGreaterThan(DUMP_MAX_BYTES);
  });
  beforeEach(async () => freshTarget(pair.target));

  // A server's keys are sized by MEMORY USAGE before they are read; a replica's snapshot holds each value as
  // saved (compressed), sized by those bytes: a value that packs below DUMP_MAX_BYTES is RESTOREd whole.
  it.each(['scan', 'replication'])('COPY_METHOD=dump, SOURCE_READER=%s: copies big keys exactly in chunks and restores the small ones', async (reader) => {
    const savedSizes = await Promise.all(BIG.map(async (key) => ((await pair.source.cmd('DUMP', key)) as Buffer).length));
    const restoredWhole = reader === 'scan' ? [] : BIG.filter((_, i) => (savedSizes[i] as number) - FOOTER_BYTES <= DUMP_MAX_BYTES);
    const run = await migrate(pair, { COPY_METHOD: 'dump', DUMP_MAX_BYTES, SOURCE_READER: reader });
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: smallKeys + BIG.length, skipped: 0, failed: 0, vanished: 0 });
    // Both servers digest at once: over 600,000 elements each takes a while.
    const digestValues = async (server: RedisServer): Promise<unknown[]> => asList(await server.cmd('DEBUG', 'DIGEST-VALUE', ...BIG));
    const [sourceValues, targetValues] = await Promise.all([digestValues(pair.source), digestValues(pair.target)]);
    for (const [i, key] of BIG.entries()) {
      expect(sourceValues[i], key).not.toMatch(/^0+$/);
      expect(targetValues[i], key).toBe(sourceValues[i]);
    }
    const [sourceDigest, targetDigest] = await Promise.all([digest(pair.source), digest(pair.target)]);
    expect(targetDigest).toBe(sourceDigest);
    expect(await pair.target.cmd('PEXPIRETIME', 'big:hash')).toBe(FAR_AT);
    expect(await pair.target.cmd('PTTL', 'big:list')).toBe(-1);
    expect(await streamState(pair.target, 'big:stream')).toEqual(await streamState(pair.source, 'big:stream'));
    const stats = await commandStats(pair.target);
    // Every small key by one RESTORE; no big key by RESTORE, each in many writes.
    expect(calls(stats, 'restore')).toBe(smallKeys + restoredWhole.length);
    const chunked = { 'big:list': 'rpush', 'big:hash': 'hset', 'big:zset': 'zadd', 'big:set': 'sadd', 'big:stream': 'xadd', 'big:string': 'append' };
    for (const [key, command] of Object.entries(chunked)) if (!restoredWhole.includes(key)) expect(calls(stats, command), command).toBeGreaterThan(1);
  });
});

/**
 * Keys that expire while the run is under way. Each key's name carries its absolute expiry (`exp:<ms>:<i>`),
 * so whatever is left on the target can be checked against it: a key with no TTL, or another TTL, came back wrong.
 */
const SEED_EXPIRING = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n, lo, span = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, n do
  local at = string.format('%.0f', now + lo + (i * 7919) % span)
  redis.call('SET', 'exp:' .. at .. ':' .. i, 'value ' .. i, 'PXAT', at)
end
return n
`;

/** Target keys whose expiry is not the one in their name, as `key=pexpiretime`; run as one script so nothing expires meanwhile. */
const WRONG_EXPIRY = `
local bad = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local at = redis.call('PEXPIRETIME', k)
  local want = string.match(k, '^exp:(%d+):')
  if want == nil or string.format('%.0f', at) ~= want then bad[#bad + 1] = k .. '=' .. at end
end
return bad
`;

describe('keys that expire during the copy', () => {
  const pair = serverPair();
  const KEYS = 30_000;

  beforeEach(async () => {
    await pair.source.cmd('FLUSHALL');
    await freshTarget(pair.target);
  });

  it.each(['dump', 'type'])('COPY_METHOD=%s counts them vanished, fails none and resurrects none', async (method) => {
    // Expiries spread over 1.5 s to 4.5 s from now: the script needs a second or so to start, then copies
    // slowly (a 50 ms pause per 200 keys), so keys expire before, during and after being read.
    expect(await pair.source.cmd('EVAL', SEED_EXPIRING, 0, KEYS, 1500, 3000)).toBe(KEYS);
    const started = Date.now();
    const run = await migrate(pair, { COPY_METHOD: method, PIPELINE_BATCH_SIZE: 200, SLEEP_TIME: 0.05 });
    const elapsed = Date.now() - started;
    expect(run.code, run.output).toBe(0);
    const counts = parseSummary(run.stdout);
    expect(counts.failed, run.output).toBe(0);
    expect(counts.skipped, run.output).toBe(0);
    expect(counts.restored, run.output).toBeGreaterThan(0);
    expect(counts.vanished, run.output).toBeGreaterThan(0);
    expect(elapsed).toBeGreaterThan(1000);
    expect(await pair.target.cmd('EVAL', WRONG_EXPIRY, 0)).toEqual([]);
  });
});

describe('big keys that expire while being copied in chunks', () => {
  const pair = serverPair();
  const DOOMED = ['doomed:stream', 'doomed:list'];

  beforeEach(async () => {
    await pair.source.cmd('FLUSHALL');
    await freshTarget(pair.target);
  });

  // 100,000 elements, 10 per write: seconds of copying each. The keys carry an expiry from the start, which the
  // copies read; once both copies are under way, the target's writes are paused so that neither can finish, the
  // expiry is brought forward to now, and the copies go on only once the source has let the keys go.
  it.each([
    ['dump', 'false'],
    ['type', 'true'],
  ])('COPY_METHOD=%s, OVERWRITE_EXISTING_KEYS=%s: counted vanished, nothing left on the target without its TTL', async (method, overwrite) => {
    const c = pair.source.cmd;
    expect(await c('EVAL', "for i = 1, 100000 do redis.call('XADD', KEYS[1], i .. '-1', 'n', i) end return 1", 1, 'doomed:stream')).toBe(1);
    await seedBig(pair.source, 'doomed:list', 'list', 100_000);
    await c('XGROUP', 'CREATE', 'doomed:stream', 'g', '0');
    for (const key of DOOMED) expect(await c('PEXPIRE', key, 600_000)).toBe(1);

    const cwd = runDir();
    const running = spawnMigrator({
      ...endpoints(pair.source, pair.target),
      // Read by SCAN: a key the source lets go mid-copy (a replica's snapshot keeps it as it was).
      COPY_METHOD: method, OVERWRITE_EXISTING_KEYS: overwrite, DUMP_MAX_BYTES: 10_000, COLLECTION_CHUNK_SIZE: 10, SCAN_MATCH_PATTERN: 'doomed:*', SOURCE_READER: 'scan',
    }, cwd);
    const building = async (): Promise<boolean> => (await Promise.all(DOOMED.map((key) => buildKeysOf(pair.target, key)))).every((b) => b.length > 0);
    await waitUntil(building, 'both keys being built on the target', 30_000, 20).catch((err: Error) => {
      throw new Error(`${err.message}\n${running.output()}`);
    });
    await pair.target.cmd('CLIENT', 'PAUSE', 30_000, 'WRITE');
    try {
      for (const key of DOOMED) expect(await pair.target.cmd('EXISTS', key), `${key} was copied before it expired; the test proves nothing`).toBe(0);
      expect(await building(), 'a copy ended before the expiry; the test proves nothing').toBe(true);
      for (const key of DOOMED) expect(await c('PEXPIRE', key, 1)).toBe(1);
      await waitUntil(async () => Number(await c('EXISTS', ...DOOMED)) === 0, 'both keys expired on the source', 5_000, 5);
    } finally {
      await pair.target.cmd('CLIENT', 'UNPAUSE');
    }
    const run = await running.done;
    const output = `exit ${run.code}\n${run.stdout}\n${run.stderr}`;

    // Soft, so a wrong count does not hide what was left on the target.
    expect.soft(parseSummary(run.stdout), output).toEqual({ restored: 0, skipped: 0, failed: 0, vanished: DOOMED.length });
    expect.soft(run.code, output).toBe(0);
    for (const key of DOOMED) expect.soft(await pair.target.cmd('PTTL', key), `${key} on the target`).toBe(-2);
    for (const key of DOOMED) expect.soft(await buildKeysOf(pair.target, key), `${key}'s build key`).toEqual([]);
  });
});

describe('a big key the target refuses part way through', () => {
  const pair = serverPair();

  // The target has room for the first chunks only: a later one fails with OOM, and the partial copy must go.
  it.each(['dump', 'type'])('COPY_METHOD=%s: the key is failed and logged, and no partial copy is left on the target', async (method) => {
    await pair.source.cmd('FLUSHALL');
    await freshTarget(pair.target);
    await pair.source.cmd('RPUSH', 'huge:list', ...Array.from({ length: 400 }, (_, i) => `${i}:${'x'.repeat(1000)}`));
    await pair.source.cmd('SET', 'small', 'fits');
    const used = Number(/used_memory:(\d+)/.exec(String(await pair.target.cmd('INFO', 'memory')))?.[1]);
    await pair.target.cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    await pair.target.cmd('CONFIG', 'SET', 'maxmemory', String(used + 300_000));
    try {
      // Read by SCAN: the list's MEMORY USAGE sends it in chunks (its snapshot packs it below DUMP_MAX_BYTES).
      const run = await migrate(pair, { COPY_METHOD: method, DUMP_MAX_BYTES: 10_000, COLLECTION_CHUNK_SIZE: 20, SOURCE_READER: 'scan' });
      expect(parseSummary(run.stdout), run.output).toEqual({ restored: 1, skipped: 0, failed: 1, vanished: 0 });
      expect(run.code, run.output).toBe(2);
      expect(readFileSync(join(run.cwd, 'redis-keys-migrator-error.log'), 'utf8')).toMatch(/\|huge:list\|.*OOM/);
      expect(await pair.target.cmd('EXISTS', 'huge:list'), 'a partial copy was left on the target').toBe(0);
      expect(await buildKeysOf(pair.target, 'huge:list'), 'the build key was left on the target').toEqual([]);
      expect(await pair.target.cmd('GET', 'small')).toBe('fits');
    } finally {
      await pair.target.cmd('CONFIG', 'SET', 'maxmemory', '0');
    }
  });
});

describe('a target user that may not run scripts (ACL -@scripting)', () => {
  const pair = serverPair();
  let total = 0;
  beforeAll(async () => {
    total = await seedEveryType(pair.source);
    await pair.source.cmd('SET', 'expired-on-the-way', 'x', 'PX', 3_600_000);
    total += 1;
    expect(await pair.target.cmd('ACL', 'SETUSER', 'noscripts', 'on', '>pw', '~*', '+@all', '-@scripting')).toBe('OK');
  });
  beforeEach(async () => freshTarget(pair.target));
  const asNoScripts = { DESTINATION_REDIS_USERNAME: 'noscripts', DESTINATION_REDIS_PASSWORD: 'pw', COPY_METHOD: 'dump' };

  it('dump pipelines plain RESTOREs: every key once; a second run skips them all; OVERWRITE_EXISTING_KEYS=true replaces them', async () => {
    const run = await migrate(pair, asNoScripts);
    expect(run.code, run.output).toBe(0);
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: total, skipped: 0, failed: 0, vanished: 0 });
    expect(await digest(pair.target)).toBe(await digest(pair.source));
    const stats = await commandStats(pair.target);
    expect(calls(stats, 'restore')).toBe(total);
    expect(calls(stats, 'eval')).toBe(0);

    await pair.target.cmd('SET', 'string', 'changed on the target');
    const again = await migrate(pair, asNoScripts);
    expect(parseSummary(again.stdout), again.output).toEqual({ restored: 0, skipped: total, failed: 0, vanished: 0 });
    expect(await pair.target.cmd('GET', 'string')).toBe('changed on the target');
    const replaced = await migrate(pair, { ...asNoScripts, OVERWRITE_EXISTING_KEYS: 'true' });
    expect(parseSummary(replaced.stdout), replaced.output).toEqual({ restored: total, skipped: 0, failed: 0, vanished: 0 });
    expect(await digest(pair.target)).toBe(await digest(pair.source));
  });

  it('an .rdb file read natively, as that user (AUTH with a user name on the pipeline socket): every key once', async () => {
    // An earlier run read the source as its replica: its fork may still be ending, and SAVE waits for none.
    await waitUntil(async () => /rdb_bgsave_in_progress:0/.test(String(await pair.source.cmd('INFO', 'persistence'))), 'no fork left on the source');
    await pair.source.cmd('SAVE');
    const file = { SOURCE_RDB_FILE: join(pair.source.dir, 'dump.rdb'), RDB_READER: 'native' };
    const run = await runMigrator({ ...file, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: pair.target.port, SLEEP_TIME: 0, ...asNoScripts }, runDir());
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(parseSummary(run.stdout)).toEqual({ restored: total, skipped: 0, failed: 0, vanished: 0 });
    expect(await digest(pair.target)).toBe(await digest(pair.source));
  });
});
