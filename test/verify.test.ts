// Verification end to end: MIGRATION_MODE=compare (writes nothing, every category of difference counted,
// encodings ignored, big keys in chunks, TTL tolerance) and VERIFY=true after a copy (copied and skipped
// keys tallied apart, keys gone from the source meanwhile not counted as missing). Real redis-server
// processes and the real script; nothing mocked.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calls, commandStats, parseSummary } from './helpers/inspect.js';
import { digest, seedEveryType } from './helpers/sample-data.js';
import { endpoints, freePort, runMigrator, spawnMigrator, startRedis, tempDir, waitUntil, type RedisServer, type RunResult } from './helpers/servers.js';
import { samePayload } from '../lib/verify/compare-key.js';
import { dumpPayload } from '../lib/rdb/payload.js';
import { rdbChanges, readReport, seedBig, shownDiffs, tallyOf, writeCommandsRun, type ReportLine, type ShownDiff } from './helpers/verify-helpers.js';

let source: RedisServer;
let target: RedisServer;

beforeAll(async () => {
  [source, target] = await Promise.all([startRedis(), startRedis()]);
});
afterAll(async () => {
  await Promise.all([source?.stop(), target?.stop()]);
});

async function fresh(...servers: RedisServer[]): Promise<void> {
  await Promise.all(servers.map((s) => s.cmd('FLUSHALL')));
}

interface Run extends RunResult {
  cwd: string;
  /** Exit status and both streams, for failure messages. */
  output: string;
}

async function migrate(settings: Record<string, string | number>, to: RedisServer = target): Promise<Run> {
  const cwd = tempDir();
  const run = await runMigrator({ ...endpoints(source, to), ...settings }, cwd, 30_000);
  return { ...run, cwd, output: `exit ${run.code}\n${run.stdout}\n${run.stderr}` };
}

const REPORT = 'diffs.jsonl';

/** Compare mode with differences shown and written to a report in the run's directory. */
function compare(settings: Record<string, string | number> = {}, to: RedisServer = target): Promise<Run> {
  return migrate({ MIGRATION_MODE: 'compare', SHOW_DIFFS: 'true', DIFF_REPORT_FILE: REPORT, ...settings }, to);
}

/** The report of a run; a report that was never created counts as empty. */
function reportOf(run: Run): ReportLine[] {
  const path = join(run.cwd, REPORT);
  return existsSync(path) ? readReport(path) : [];
}

/** Sends a command with binary arguments; the reply is not decoded. */
function bin(server: RedisServer, ...args: (string | Buffer)[]): Promise<unknown> {
  return server.client.sendCommand(args);
}

/** An absolute expiry a day ahead, so nothing expires and no clock reading matters. */
const FAR = Date.now() + 86_400_000;

describe('MIGRATION_MODE=compare on identical data', () => {
  describe.each(['dump', 'type'])('after a copy with COPY_METHOD=%s', (method) => {
    it('reports no difference, exits 0 and writes nothing on either server', async () => {
      await fresh(source, target);
      const made = await seedEveryType(source);
      const copy = await migrate({ COPY_METHOD: method });
      expect(parseSummary(copy.stdout).restored, copy.output).toBe(made);
      expect(copy.code, copy.output).toBe(0);

      const before = { size: await target.cmd('DBSIZE'), digest: await digest(target), changes: await rdbChanges(target), sourceChanges: await rdbChanges(source) };
      await Promise.all([target.cmd('CONFIG', 'RESETSTAT'), source.cmd('CONFIG', 'RESETSTAT')]);

      const run = await compare();
      expect(run.stdout, run.output).toContain(`0 missing, 0 type, 0 value, 0 ttl (${made} keys checked, ${made} identical)`);
      expect(tallyOf(run.stdout), run.output).toEqual({ missing: 0, type: 0, value: 0, ttl: 0, checked: made, identical: made, vanished: 0 });
      expect(run.code, run.output).toBe(0);
      expect(shownDiffs(run.stdout)).toEqual([]);
      expect(reportOf(run)).toEqual([]);

      // The run did read the target (so the checks below are not vacuous) but changed nothing there.
      expect(calls(await commandStats(target), 'eval')).toBeGreaterThan(0);
      expect(await writeCommandsRun(target)).toEqual([]);
      expect(await writeCommandsRun(source)).toEqual([]);
      expect(await rdbChanges(target)).toBe(before.changes);
      expect(await rdbChanges(source)).toBe(before.sourceChanges);
      expect(await target.cmd('DBSIZE')).toBe(before.size);
      expect(await digest(target)).toBe(before.digest);
    });
  });
});

describe('MIGRATION_MODE=compare that cannot start', () => {
  it('exits 1 on a bad setting or an unreachable target, and prints no tally', async () => {
    await fresh(source, target);
    await source.cmd('SET', 'only-on-source', 'v');
    const badSetting = await compare({ TTL_TOLERANCE: 'soon' });
    expect(badSetting.stdout, badSetting.output).toContain('TTL_TOLERANCE');
    expect(badSetting.code, badSetting.output).toBe(1);
    const unreachable = await compare({ DESTINATION_REDIS_PORT: await freePort() });
    expect(unreachable.stdout, unreachable.output).toContain('Error connecting to Redis');
    expect(unreachable.code, unreachable.output).toBe(1);
    for (const run of [badSetting, unreachable]) expect(() => tallyOf(run.stdout)).toThrow();
  });

  it('stops in one line, exit 1 and no stack trace, when the source refuses a read (an ACL user without DUMP)', async () => {
    await fresh(source, target);
    await source.cmd('SET', 'user:1', 'v');
    await source.cmd('ACL', 'SETUSER', 'nodump', 'on', '>secret-pw', '~*', '+@all', '-dump');
    try {
      const run = await compare({ SOURCE_REDIS_USERNAME: 'nodump', SOURCE_REDIS_PASSWORD: 'secret-pw' });
      expect(run.code, run.output).toBe(1);
      expect(run.stdout, run.output).toMatch(/^Stopped early: source 127\.0\.0\.1:\d+ could not read \|user:1\|: (NOPERM|ERR The user executing the script can't run)/m);
      expect(run.stderr, run.output).not.toMatch(/^\s+at /m);
      expect(run.stdout + run.stderr).not.toContain('secret-pw');
      expect(() => tallyOf(run.stdout)).toThrow();
    } finally {
      await source.cmd('ACL', 'DELUSER', 'nodump');
    }
  });
});

describe('MIGRATION_MODE=compare with every kind of difference', () => {
  const BINARY_MISSING = Buffer.from([0x6d, 0xff, 0x00, 0x7c, 0x5c]);
  /** key (as shown), category, what the hint must name. */
  const EXPECTED: { key: string; raw: Buffer; category: string; hint: RegExp }[] = [
    { key: 'missing:plain', raw: Buffer.from('missing:plain'), category: 'missing', hint: /./ },
    { key: 'm\\xff\\x00\\x7c\\\\', raw: BINARY_MISSING, category: 'missing', hint: /./ },
    { key: 'type:string-vs-list', raw: Buffer.from('type:string-vs-list'), category: 'type', hint: /string.*list/ },
    { key: 'value:string', raw: Buffer.from('value:string'), category: 'value', hint: /\b5\b.*\b6\b/ },
    { key: 'value:list', raw: Buffer.from('value:list'), category: 'value', hint: /index 10\b/ },
    { key: 'value:set', raw: Buffer.from('value:set'), category: 'value', hint: /member c\b/ },
    { key: 'value:hash', raw: Buffer.from('value:hash'), category: 'value', hint: /field f2\b/ },
    { key: 'value:zset', raw: Buffer.from('value:zset'), category: 'value', hint: /member m\b.*\b1\b.*1\.5/ },
    { key: 'value:stream-entry', raw: Buffer.from('value:stream-entry'), category: 'value', hint: /entry 2-1\b/ },
    { key: 'value:stream-group', raw: Buffer.from('value:stream-group'), category: 'value', hint: /last-delivered-id.*0-0.*1-1/ },
    { key: 'ttl:persistent-vs-expiring', raw: Buffer.from('ttl:persistent-vs-expiring'), category: 'ttl', hint: /no expiry/ },
    { key: 'ttl:5000-apart', raw: Buffer.from('ttl:5000-apart'), category: 'ttl', hint: /5000/ },
  ];
  let run: Run;

  beforeAll(async () => {
    await fresh(source, target);
    const both = async (...args: (string | number)[]): Promise<void> => {
      await source.cmd(...args);
      await target.cmd(...args);
    };
    await both('SET', 'same:string', 'equal');
    await both('HSET', 'same:hash', 'a', '1', 'b', '2');

    await source.cmd('SET', 'missing:plain', 'only here');
    await bin(source, 'RPUSH', BINARY_MISSING, 'only', 'here');
    await target.cmd('SET', 'extra:only-on-target', 'not a difference');

    await source.cmd('SET', 'type:string-vs-list', 'a');
    await target.cmd('RPUSH', 'type:string-vs-list', 'a');

    await source.cmd('SET', 'value:string', 'hello');
    await target.cmd('SET', 'value:string', 'hello!');
    const elements = Array.from({ length: 21 }, (_, i) => `e${i}`);
    await both('RPUSH', 'value:list', ...elements);
    await target.cmd('LSET', 'value:list', 10, 'changed');
    await source.cmd('SADD', 'value:set', 'a', 'b', 'c');
    await target.cmd('SADD', 'value:set', 'a', 'b', 'd');
    await both('HSET', 'value:hash', 'f1', 'v1', 'f2', 'v2', 'f3', 'v3');
    await target.cmd('HSET', 'value:hash', 'f2', 'changed');
    await source.cmd('ZADD', 'value:zset', '1.0', 'm', '2', 'n');
    await target.cmd('ZADD', 'value:zset', '1.5', 'm', '2', 'n');
    await both('XADD', 'value:stream-entry', '1-1', 'f', 'a');
    await source.cmd('XADD', 'value:stream-entry', '2-1', 'f', 'b');
    await target.cmd('XADD', 'value:stream-entry', '2-1', 'f', 'B');
    await both('XADD', 'value:stream-group', '1-1', 'f', 'a');
    await both('XADD', 'value:stream-group', '2-1', 'f', 'b');
    await source.cmd('XGROUP', 'CREATE', 'value:stream-group', 'g', '0');
    await target.cmd('XGROUP', 'CREATE', 'value:stream-group', 'g', '1-1');

    await both('SET', 'ttl:persistent-vs-expiring', 'v');
    await target.cmd('PEXPIREAT', 'ttl:persistent-vs-expiring', FAR);
    await both('SET', 'ttl:5000-apart', 'v');
    await source.cmd('PEXPIREAT', 'ttl:5000-apart', FAR);
    await target.cmd('PEXPIREAT', 'ttl:5000-apart', FAR + 5000);

    run = await compare();
  });

  it('counts each category exactly and exits 4', () => {
    expect(run.stdout, run.output).toContain('2 missing, 1 type, 7 value, 2 ttl (14 keys checked, 2 identical)');
    expect(tallyOf(run.stdout), run.output).toEqual({ missing: 2, type: 1, value: 7, ttl: 2, checked: 14, identical: 2, vanished: 0 });
    expect(run.code, run.output).toBe(4);
  });

  it('SHOW_DIFFS prints each differing key once, escaped, with its category and a hint naming the difference', () => {
    const shown = shownDiffs(run.stdout);
    expect(shown.map((d) => `${d.category} ${d.key}`).sort(), run.output).toEqual(EXPECTED.map((e) => `${e.category} ${e.key}`).sort());
    for (const e of EXPECTED) {
      const line = shown.find((d) => d.key === e.key) as ShownDiff;
      expect(line.hint, `${e.key}: ${line.hint}`).toMatch(e.hint);
    }
  });

  it('without SHOW_DIFFS and DIFF_REPORT_FILE only the tally is printed', async () => {
    const quiet = await migrate({ MIGRATION_MODE: 'compare' });
    expect(quiet.stdout, quiet.output).toContain('2 missing, 1 type, 7 value, 2 ttl (14 keys checked, 2 identical)');
    expect(shownDiffs(quiet.stdout)).toEqual([]);
    expect(existsSync(join(quiet.cwd, REPORT))).toBe(false);
    expect(quiet.code, quiet.output).toBe(4);
  });

  it('DIFF_REPORT_FILE holds exactly one JSON line per difference, with the key escaped and in base64', () => {
    const report = reportOf(run);
    expect(report.map((r) => `${r.category} ${r.key_base64}`).sort()).toEqual(EXPECTED.map((e) => `${e.category} ${e.raw.toString('base64')}`).sort());
    for (const line of report) {
      const e = EXPECTED.find((x) => x.raw.toString('base64') === line.key_base64);
      expect(line.key).toBe(e?.key);
      expect(line.detail).toMatch(e?.hint ?? /^$/);
      expect(line.heading).toBe('compare');
    }
  });
});

describe('MIGRATION_MODE=compare with the copy\'s key selection', () => {
  it('checks only keys matching SCAN_MATCH_PATTERN, between the configured databases', async () => {
    await fresh(source, target);
    // Outside the selection, each of these would be counted missing.
    await source.cmd('SET', 'm:in-db-0', 'not in the source database');
    await source.cmd('SET', 'n:not-matching', 'x');

    for (const server of [source, target]) {
      await server.cmd('SET', 'm:same', 'equal');
      for (let i = 1; i <= 3; i++) await server.cmd('XADD', 'm:stream', `${i}-1`, 'f', `v${i}`);
      await server.cmd('XGROUP', 'CREATE', 'm:stream', 'g', '0');
    }
    // Same entries, last-delivered-id, pending total (2) and consumers (alice, bob); only who holds what differs.
    await source.cmd('XREADGROUP', 'GROUP', 'g', 'alice', 'COUNT', 2, 'STREAMS', 'm:stream', '>');
    await source.cmd('XGROUP', 'CREATECONSUMER', 'm:stream', 'g', 'bob');
    await target.cmd('XREADGROUP', 'GROUP', 'g', 'alice', 'COUNT', 1, 'STREAMS', 'm:stream', '>');
    await target.cmd('XREADGROUP', 'GROUP', 'g', 'bob', 'COUNT', 1, 'STREAMS', 'm:stream', '>');
    await source.cmd('SET', 'm:expiry-only-on-source', 'v', 'PXAT', FAR);
    await target.cmd('SET', 'm:expiry-only-on-source', 'v');
    for (const key of ['m:same', 'm:stream', 'm:expiry-only-on-source', 'n:not-matching']) {
      expect(await source.cmd('MOVE', key, 3)).toBe(1);
      if (key !== 'n:not-matching') expect(await target.cmd('MOVE', key, 5)).toBe(1);
    }

    const run = await compare({ SOURCE_REDIS_DB_INDEX: 3, DESTINATION_REDIS_DB_INDEX: 5, SCAN_MATCH_PATTERN: 'm:*' });
    expect(run.stdout, run.output).toContain('0 missing, 0 type, 1 value, 1 ttl (3 keys checked, 1 identical)');
    expect(run.code, run.output).toBe(4);
    const shown = shownDiffs(run.stdout);
    expect(shown.map((d) => `${d.category} ${d.key}`).sort()).toEqual(['ttl m:expiry-only-on-source', 'value m:stream']);
    expect(shown.find((d) => d.key === 'm:stream')?.hint).toMatch(/alice/);
    expect(shown.find((d) => d.key === 'm:expiry-only-on-source')?.hint).toMatch(/expir/);
  });
});

describe('MIGRATION_MODE=compare across encodings', () => {
  let other: RedisServer;
  beforeAll(async () => {
    other = await startRedis([
      '--hash-max-listpack-entries', '1', '--set-max-intset-entries', '0', '--zset-max-listpack-entries', '0',
      '--list-max-listpack-size', '1', '--stream-node-max-entries', '1',
    ]);
  });
  afterAll(async () => {
    await other?.stop();
  });

  it('counts the same content in another encoding as identical', async () => {
    await fresh(source, other);
    for (const server of [source, other]) {
      const c = server.cmd;
      await c('HSET', 'enc:hash', ...Array.from({ length: 10 }, (_, i) => [`field-${i}`, `value-${i}`]).flat());
      await c('PEXPIREAT', 'enc:hash', FAR);
      await c('SADD', 'enc:set', ...Array.from({ length: 10 }, (_, i) => String(i * 7)));
      await c('ZADD', 'enc:zset', '0.1', 'tenth', '1e300', 'huge', '-2.5', 'negative', '3', 'three', '-inf', 'bottom');
      await c('RPUSH', 'enc:list', ...Array.from({ length: 10 }, (_, i) => `element-${i}`));
      for (let i = 1; i <= 5; i++) await c('XADD', 'enc:stream', `${i}-1`, 'field', `value-${i}`);
      await c('XGROUP', 'CREATE', 'enc:stream', 'workers', '0');
      await c('XREADGROUP', 'GROUP', 'workers', 'alice', 'COUNT', 2, 'STREAMS', 'enc:stream', '>');
    }
    // Preconditions: different encodings (or node layouts), so the DUMP payloads cannot settle it.
    const encodings: [string, string, string][] = [['enc:hash', 'listpack', 'hashtable'], ['enc:set', 'intset', 'hashtable'], ['enc:zset', 'listpack', 'skiplist']];
    for (const [key, mine, theirs] of encodings) {
      expect([await source.cmd('OBJECT', 'ENCODING', key), await other.cmd('OBJECT', 'ENCODING', key)]).toEqual([mine, theirs]);
    }
    for (const key of ['enc:hash', 'enc:set', 'enc:zset', 'enc:list', 'enc:stream']) {
      const [a, b] = [(await bin(source, 'DUMP', key)) as Buffer, (await bin(other, 'DUMP', key)) as Buffer];
      expect(a.equals(b), `DUMP of ${key} should differ`).toBe(false);
    }

    const run = await compare({}, other);
    expect(run.stdout, run.output).toContain('0 missing, 0 type, 0 value, 0 ttl (5 keys checked, 5 identical)');
    expect(shownDiffs(run.stdout)).toEqual([]);
    expect(run.code, run.output).toBe(0);
  });

  it('settles a small set that differs in layout alone by one content digest per side, with no element-wise reads', async () => {
    await fresh(source, other);
    const members = Array.from({ length: 40 }, (_, i) => `member-${i}`);
    await source.cmd('SADD', 'layout:set', ...members);
    await other.cmd('SADD', 'layout:set', ...[...members].reverse());
    // Precondition: hashtable sets, each DUMPed in the order of its server's own hash seed.
    const [a, b] = [(await bin(source, 'DUMP', 'layout:set')) as Buffer, (await bin(other, 'DUMP', 'layout:set')) as Buffer];
    expect(a.equals(b), 'DUMP of layout:set should differ').toBe(false);
    await Promise.all([source, other].map((s) => s.cmd('CONFIG', 'RESETSTAT')));

    const run = await compare({}, other);
    expect(run.stdout, run.output).toContain('0 missing, 0 type, 0 value, 0 ttl (1 keys checked, 1 identical)');
    for (const server of [source, other]) {
      const stats = await commandStats(server);
      expect(['sscan', 'smismember', 'scard'].map((c) => calls(stats, c)), 'element-wise reads').toEqual([0, 0, 1]);
    }

    await other.cmd('SREM', 'layout:set', 'member-7');
    await other.cmd('SADD', 'layout:set', 'member-7 (changed)');
    const changed = await compare({}, other);
    expect(changed.stdout, changed.output).toContain('0 missing, 0 type, 1 value, 0 ttl (1 keys checked, 0 identical)');
    expect(shownDiffs(changed.stdout)).toEqual([{ category: 'value', key: 'layout:set', hint: 'member member-7 not on the target' }]);
  });
});

describe('MIGRATION_MODE=compare of big keys, in chunks of COLLECTION_CHUNK_SIZE (default)', () => {
  const N = 100_000;
  beforeAll(async () => {
    await fresh(source, target);
    for (const server of [source, target]) {
      await seedBig(server, 'big:list', 'list', N);
      await seedBig(server, 'big:set', 'set', N);
      await seedBig(server, 'big:hash', 'hash', N);
      await seedBig(server, 'big:zset', 'zset', N);
      await seedBig(server, 'big:same-hash', 'hash', N);
      await seedBig(server, 'big:same-zset', 'zset', N);
    }
    await target.cmd('LSET', 'big:list', 50_123, 'changed'); // off a chunk boundary, so the hint must count within the chunk
    await target.cmd('SREM', 'big:set', 'member-50000');
    await target.cmd('SADD', 'big:set', 'member-changed');
    await target.cmd('HSET', 'big:hash', 'field-50000', 'changed');
    await target.cmd('ZADD', 'big:zset', 'XX', '50000.5', 'member-50000');
  });

    const cases: { label: string; settings: Record<string, number> }[] = [
    { label: 'default DUMP_MAX_BYTES', settings: {} },
    { label: 'DUMP_MAX_BYTES=1, no payload compared', settings: { DUMP_MAX_BYTES: 1 } },
  ];
  it.each(cases)('finds the one changed element in the middle of each ($label)', async ({ settings }) => {
    await target.cmd('CONFIG', 'RESETSTAT');
    const run = await compare(settings);
    expect(run.stdout, run.output).toContain('0 missing, 0 type, 4 value, 0 ttl (6 keys checked, 2 identical)');
    expect(run.code, run.output).toBe(4);
    const hints = Object.fromEntries(shownDiffs(run.stdout).map((d) => [d.key, `${d.category}: ${d.hint}`]));
    expect(Object.keys(hints).sort(), run.output).toEqual(['big:hash', 'big:list', 'big:set', 'big:zset']);
    expect(hints['big:list']).toMatch(/^value: .*index 50123\b/);
    expect(hints['big:set']).toMatch(/^value: .*member member-50000\b/);
    expect(hints['big:hash']).toMatch(/^value: .*field field-50000\b/);
    expect(hints['big:zset']).toMatch(/^value: .*member member-50000\b.*50000\.5/);
    // In chunks of 1000: the identical 100,000-element zset and hash alone take 100 reads each on the target.
    const stats = await commandStats(target);
    expect(calls(stats, 'zrange')).toBeGreaterThanOrEqual(100);
    expect(calls(stats, 'hmget')).toBeGreaterThanOrEqual(100);
  });
});

describe('MIGRATION_MODE=compare with TTL_TOLERANCE', () => {
  /** Target expiry minus source expiry, in ms, per key. */
  const DELTAS = [0, 100, -100, 101, -101, 150];
  const keyFor = (delta: number): string => `ttl:${delta >= 0 ? '+' : ''}${delta}`;

  beforeAll(async () => {
    await fresh(source, target);
    for (const delta of DELTAS) {
      await source.cmd('SET', keyFor(delta), 'v', 'PXAT', FAR);
      await target.cmd('SET', keyFor(delta), 'v', 'PXAT', FAR + delta);
    }
  });

  const cases: { label: string; settings: Record<string, number>; differing: number[] }[] = [
    { label: 'unset (100 ms)', settings: {}, differing: [101, -101, 150] },
    { label: '200', settings: { TTL_TOLERANCE: 200 }, differing: [] },
    { label: '0', settings: { TTL_TOLERANCE: 0 }, differing: [100, -100, 101, -101, 150] },
  ];
  it.each(cases)('TTL_TOLERANCE=$label: expiries further apart than the tolerance differ', async ({ settings, differing }) => {
    const run = await compare(settings);
    const n = differing.length;
    expect(run.stdout, run.output).toContain(`0 missing, 0 type, 0 value, ${n} ttl (${DELTAS.length} keys checked, ${DELTAS.length - n} identical)`);
    expect(run.code, run.output).toBe(n > 0 ? 4 : 0);
    const shown = shownDiffs(run.stdout);
    expect(shown.map((d) => d.key).sort()).toEqual(differing.map(keyFor).sort());
    for (const d of shown) {
      expect(d.category).toBe('ttl');
      expect(d.hint).toContain(String(Math.abs(Number(d.key.slice('ttl:'.length)))));
    }
  });
});

describe('VERIFY=true after a copy', () => {
  describe.each(['dump', 'type'])('COPY_METHOD=%s', (method) => {
    it('tallies copied keys and skipped keys apart; a differing skipped key does not change the exit code', async () => {
      await fresh(source, target);
      const made = await seedEveryType(source);
      await target.cmd('SET', 'string', 'already here');

      const run = await migrate({ COPY_METHOD: method, VERIFY: 'true', SHOW_DIFFS: 'true', DIFF_REPORT_FILE: REPORT });
      expect(parseSummary(run.stdout), run.output).toEqual({ restored: made - 1, skipped: 1, failed: 0, vanished: 0 });
      expect(run.stdout, run.output).toContain(`Verification of copied keys: 0 missing, 0 type, 0 value, 0 ttl (${made - 1} keys checked, ${made - 1} identical)`);
      expect(run.stdout, run.output).toContain('Verification of skipped keys (already on the target): 0 missing, 0 type, 1 value, 0 ttl (1 keys checked, 0 identical)');
      expect(run.code, run.output).toBe(0);

      const shown = shownDiffs(run.stdout);
      expect(shown.map((d) => `${d.category} ${d.key}`)).toEqual(['value string']);
      expect(shown[0]?.hint).toMatch(/\b5\b.*\b12\b/); // the two lengths: "hello" and "already here"
      const report = reportOf(run);
      expect(report.map((r) => [r.key, r.key_base64, r.category, r.heading])).toEqual([['string', Buffer.from('string').toString('base64'), 'value', 'skipped']]);
      expect(await target.cmd('GET', 'string')).toBe('already here');
    });
  });

  /**
   * A copy paced with SLEEP_TIME copies its first batch, then sleeps before the second. While it sleeps,
   * the test changes the keys of that first batch; the verification after the copy then sees the changes.
   * The test acts within milliseconds of the batch landing, against a sleep of seconds.
   */
  async function copyAndTamper(tamper: (firstBatch: string[]) => Promise<void>): Promise<Run> {
    await fresh(source, target);
    for (let i = 0; i < 100; i++) await source.cmd('SET', `v:${String(i).padStart(3, '0')}`, `value-${i}`);
    const cwd = tempDir();
    const child = spawnMigrator(
      {
        ...endpoints(source, target),
        SLEEP_TIME: 4, PIPELINE_BATCH_SIZE: 50, SCAN_BATCH_SIZE: 10_000, VERIFY: 'true', SHOW_DIFFS: 'true', DIFF_REPORT_FILE: REPORT,
      },
      cwd,
    );
    try {
      await child.waitFor('Connected to Redis instances successfully', 15_000);
      await waitUntil(async () => Number(await target.cmd('DBSIZE')) >= 50, 'the first batch (50 keys) on the target', 10_000, 10);
      const firstBatch = ((await target.cmd('KEYS', '*')) as string[]).sort();
      expect(firstBatch).toHaveLength(50); // the second batch waits for the sleep
      await tamper(firstBatch);
      expect(Number(await target.cmd('DBSIZE'))).toBeLessThanOrEqual(50); // still asleep: the tampering came first
    } catch (err) {
      child.signalAll('SIGKILL');
      throw err;
    }
    const { code } = await child.done;
    return { code, stdout: child.stdout(), stderr: child.stderr(), cwd, output: `exit ${code}\n${child.stdout()}\n${child.stderr()}` };
  }

  it('a copied key deleted from the source before verification is gone from the source, not missing', async () => {
    const run = await copyAndTamper(async (firstBatch) => {
      for (const key of firstBatch.slice(0, 10)) await source.cmd('DEL', key);
      for (const key of firstBatch.slice(10, 20)) await Promise.all([source.cmd('DEL', key), target.cmd('DEL', key)]);
    });
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: 100, skipped: 0, failed: 0, vanished: 0 });
    expect(run.stdout, run.output).toContain(
      'Verification of copied keys: 0 missing, 0 type, 0 value, 0 ttl (80 keys checked, 80 identical, 20 gone from the source meanwhile)',
    );
    expect(shownDiffs(run.stdout)).toEqual([]);
    expect(run.code, run.output).toBe(0);
  }, 30_000);

  it('a copied key changed or deleted on the target before verification is a difference, and the run exits 4', async () => {
    let changed = '';
    let deleted = '';
    const run = await copyAndTamper(async (firstBatch) => {
      [changed = '', deleted = ''] = firstBatch;
      await target.cmd('SET', changed, 'changed on the target');
      await target.cmd('DEL', deleted);
    });
    expect(parseSummary(run.stdout), run.output).toEqual({ restored: 100, skipped: 0, failed: 0, vanished: 0 });
    expect(run.stdout, run.output).toContain('Verification of copied keys: 1 missing, 0 type, 1 value, 0 ttl (100 keys checked, 98 identical)');
    expect(shownDiffs(run.stdout).map((d) => `${d.category} ${d.key}`).sort()).toEqual([`missing ${deleted}`, `value ${changed}`]);
    expect(reportOf(run).map((r) => `${r.heading} ${r.category} ${r.key}`).sort()).toEqual([`copied missing ${deleted}`, `copied value ${changed}`]);
    expect(run.code, run.output).toBe(4);
  }, 30_000);
});

describe('payload comparison (the DUMP reads that settle most keys)', () => {
  const value = Buffer.from([0x00, 0x05, ...Buffer.from('hello')]);
  const stamped = (version: number, body = value): Buffer => dumpPayload(body, version);
  it('a value stamped with another RDB version (restamped for an older target, or a module value) is the same value', () => {
    expect(samePayload({ expireAt: -1, payload: stamped(12) }, { expireAt: -1, payload: stamped(10) })).toBe(true);
  });
  it('other value bytes, a value cut short, or an empty read are not', () => {
    const other = Buffer.from([0x00, 0x05, ...Buffer.from('hellp')]);
    expect(samePayload({ expireAt: -1, payload: stamped(10) }, { expireAt: -1, payload: stamped(10, other) })).toBe(false);
    expect(samePayload({ expireAt: -1, payload: stamped(10) }, { expireAt: -1, payload: stamped(10).subarray(1) })).toBe(false);
    expect(samePayload({ expireAt: -1, payload: Buffer.alloc(0) }, { expireAt: -1, payload: Buffer.alloc(0) })).toBe(false);
  });
});
