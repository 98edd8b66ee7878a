// SOURCE_RDB_FILE read by our own reader in every mode a server source has: MIGRATION_MODE=compare (the file's
// values against the target, by payload and else decoded and compared logically), DRY_RUN, VERIFY=true, and a
// cluster target. Real .rdb files from real servers (test/fixtures/rdb) or saved here; real redis-servers.
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ownerOf, keyspaceOf, startCluster, type TestCluster } from './helpers/cluster.js';
import { runDir } from './helpers/fixtures.js';
import { parseSummary } from './helpers/inspect.js';
import { ROOT, runMigrator, startRedis, waitUntil, type LocalServer, type RunResult } from './helpers/servers.js';
import { readReport, shownDiffs, tallyOf, writeCommandsRun } from './helpers/verify-helpers.js';

const fixture = (name: string): string => join(ROOT, 'test', 'fixtures', 'rdb', `${name}.rdb`);
/** Keys in db 0 and db 3 of every fixture (test/fixtures/rdb/README.md). */
const DB0_KEYS = 25;

const output = (run: RunResult): string => `exit ${run.code}\n${run.stdout}\n${run.stderr}`;

/** A redis-server 7.0 that loaded `file` itself: what the file holds, as a server holds it. */
async function loadedFrom(file: string): Promise<LocalServer> {
  const dir = runDir();
  copyFileSync(file, join(dir, 'dump.rdb'));
  return startRedis(['--dir', dir, '--dbfilename', 'dump.rdb']);
}

function fromFile(file: string, target: LocalServer, extra: Record<string, string | number> = {}): Promise<RunResult & { cwd: string }> {
  const cwd = runDir();
  const env = { SOURCE_RDB_FILE: file, DESTINATION_REDIS_HOST: '127.0.0.1', DESTINATION_REDIS_PORT: target.port, SLEEP_TIME: 0, ...extra };
  return runMigrator(env, cwd, 30_000).then((run) => ({ ...run, cwd }));
}

/** The tally lines of a run, one per database section. */
const tallies = (stdout: string): string[] => stdout.split('\n').filter((line) => /^\d+ missing, /.test(line));

describe('MIGRATION_MODE=compare with a file', () => {
  let target: LocalServer;
  beforeAll(async () => {
    target = await loadedFrom(fixture('redis-7.0'));
  });
  afterAll(async () => {
    await target?.stop();
  });

  it('against a target loaded from the same file: every key identical, in each database; exit 0; nothing written', async () => {
    await target.cmd('CONFIG', 'RESETSTAT');
    const run = await fromFile(fixture('redis-7.0'), target, { MIGRATION_MODE: 'compare' });
    expect(run.code, output(run)).toBe(0);
    expect(tallies(run.stdout)).toEqual([
      `0 missing, 0 type, 0 value, 0 ttl (${DB0_KEYS} keys checked, ${DB0_KEYS} identical)`,
      '0 missing, 0 type, 0 value, 0 ttl (2 keys checked, 2 identical)',
    ]);
    expect(await writeCommandsRun(target)).toEqual([]);
  });

  it('a changed value, TTL and type and a deleted key on the target: each in its category, shown and reported; exit 4', async () => {
    await target.cmd('SET', 'str:plain', 'changed on the target');
    await target.cmd('PERSIST', 'str:ttl');
    await target.cmd('DEL', 'str:int');
    await target.cmd('DEL', 'hash:small');
    await target.cmd('RPUSH', 'hash:small', 'now a list');
    // In the middle of big collections, so the logical comparison (chunks of 100) must walk to them.
    await target.cmd('LSET', 'list:big', 2500, 'changed');
    const member = String(await target.cmd('SRANDMEMBER', 'set:big'));
    await target.cmd('SREM', 'set:big', member);
    await target.cmd('SADD', 'set:big', 'not in the file');
    await target.cmd('XGROUP', 'SETID', 'stream:a', 'g2', '0-0');
    try {
      const run = await fromFile(fixture('redis-7.0'), target, { MIGRATION_MODE: 'compare', SOURCE_REDIS_DB_INDEX: 0, SHOW_DIFFS: 'true', DIFF_REPORT_FILE: 'diffs.jsonl', COLLECTION_CHUNK_SIZE: 100 });
      expect(run.code, output(run)).toBe(4);
      expect(tallyOf(run.stdout), output(run)).toEqual({ missing: 1, type: 1, value: 4, ttl: 1, checked: DB0_KEYS, identical: DB0_KEYS - 7, vanished: 0 });
      const shown = Object.fromEntries(shownDiffs(run.stdout).map((d) => [d.key, `${d.category}: ${d.hint}`]));
      expect(shown).toEqual({
        'str:plain': 'value: length 11 on the source, 21 on the target',
        'str:ttl': 'ttl: expires at 2000000000123 on the source, no expiry on the target',
        'str:int': 'missing: not on the target',
        'hash:small': 'type: hash on the source, list on the target',
        'list:big': 'value: index 2500 differs',
        'set:big': `value: member ${member} not on the target`,
        'stream:a': expect.stringMatching(/^value: group g2: last-delivered-id \S+ on the source, 0-0 on the target$/) as string,
      });
      const report = readReport(join(run.cwd, 'diffs.jsonl'));
      expect(report.map((line) => `${line.heading} ${line.category} ${line.key}`).sort()).toEqual([
        'compare missing str:int', 'compare ttl str:ttl', 'compare type hash:small', 'compare value list:big', 'compare value set:big', 'compare value str:plain', 'compare value stream:a',
      ]);
    } finally {
      await target.stop();
      target = await loadedFrom(fixture('redis-7.0'));
    }
  });

  it('a file from Redis 6.2 (ziplists, which 7.0 converts on load): its values decoded and compared logically, all identical', async () => {
    const older = await loadedFrom(fixture('redis-6.2'));
    try {
      const run = await fromFile(fixture('redis-6.2'), older, { MIGRATION_MODE: 'compare', SOURCE_REDIS_DB_INDEX: 0, SHOW_DIFFS: 'true' });
      expect(run.code, output(run)).toBe(0);
      expect(tallyOf(run.stdout)).toEqual({ missing: 0, type: 0, value: 0, ttl: 0, checked: DB0_KEYS, identical: DB0_KEYS, vanished: 0 });
      // The same logical path finds one changed element of a converted list.
      await older.cmd('LSET', 'list:small', 1, 'changed');
      const changed = await fromFile(fixture('redis-6.2'), older, { MIGRATION_MODE: 'compare', SOURCE_REDIS_DB_INDEX: 0, SHOW_DIFFS: 'true' });
      expect(changed.code, output(changed)).toBe(4);
      expect(shownDiffs(changed.stdout)).toEqual([{ category: 'value', key: 'list:small', hint: 'index 1 differs' }]);
    } finally {
      await older.stop();
    }
  });

  it('a key whose expiry in the file has passed counts as gone from the source, not missing', async () => {
    const saver = await startRedis();
    try {
      await saver.cmd('DEBUG', 'SET-ACTIVE-EXPIRE', 0);
      await saver.cmd('SET', 'kept', 'v');
      await saver.cmd('SET', 'expiring', 'v', 'PX', 200);
      await saver.cmd('SAVE');
      // Past once the saver itself holds it expired (read lazily: active expiry is off).
      await waitUntil(async () => Number(await saver.cmd('PTTL', 'expiring')) === -2, 'the expiry saved in the file to pass', 5_000, 20);
      const empty = await startRedis();
      try {
        await empty.cmd('SET', 'kept', 'v');
        const run = await fromFile(join(saver.dir, 'dump.rdb'), empty, { MIGRATION_MODE: 'compare' });
        expect(run.code, output(run)).toBe(0);
        expect(tallyOf(run.stdout)).toEqual({ missing: 0, type: 0, value: 0, ttl: 0, checked: 1, identical: 1, vanished: 1 });
      } finally {
        await empty.stop();
      }
    } finally {
      await saver.stop();
    }
  });
});

describe('DRY_RUN and VERIFY=true with a file', () => {
  let target: LocalServer;
  beforeAll(async () => {
    target = await startRedis();
  });
  afterAll(async () => {
    await target?.stop();
  });

  it('DRY_RUN: what a copy would do, from the file and the target alone; nothing written', async () => {
    await target.cmd('FLUSHALL');
    await target.cmd('SET', 'str:plain', 'already here');
    await target.cmd('CONFIG', 'RESETSTAT');
    const run = await fromFile(fixture('redis-7.0'), target, { DRY_RUN: 'true', SOURCE_REDIS_DB_INDEX: 0 });
    expect(run.code, output(run)).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^Would copy ${DB0_KEYS - 1} keys; 1 already on the target would be skipped; 2 have an expiry; [0-9.]+ KB of values in the file \\(as saved\\)\\.$`, 'm'));
    expect(run.stdout).toMatch(/^ {2}string +11 keys /m);
    expect(run.stdout).toMatch(/^ {2}stream +3 keys /m);
    expect(run.stdout).toMatch(/^Largest keys:$/m);
    expect(await writeCommandsRun(target)).toEqual([]);
    expect(await target.cmd('DBSIZE')).toBe(1);
    const replacing = await fromFile(fixture('redis-7.0'), target, { DRY_RUN: 'true', SOURCE_REDIS_DB_INDEX: 0, OVERWRITE_EXISTING_KEYS: 'true' });
    expect(replacing.stdout).toMatch(new RegExp(`^Would copy ${DB0_KEYS} keys; 1 already on the target would be replaced;`, 'm'));
  });

  it('VERIFY=true after a copy: the copied keys identical; a key skipped as existing, with another value, on the skipped line; exit 0', async () => {
    await target.cmd('FLUSHALL');
    await target.cmd('SET', 'str:plain', 'already here');
    const run = await fromFile(fixture('redis-7.0'), target, { VERIFY: 'true', SHOW_DIFFS: 'true', DIFF_REPORT_FILE: 'diffs.jsonl' });
    expect(run.code, output(run)).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines.filter((l) => l.startsWith('Verification of'))).toEqual([
      `Verification of copied keys: 0 missing, 0 type, 0 value, 0 ttl (${DB0_KEYS - 1} keys checked, ${DB0_KEYS - 1} identical)`,
      'Verification of skipped keys (already on the target): 0 missing, 0 type, 1 value, 0 ttl (1 keys checked, 0 identical)',
      'Verification of copied keys: 0 missing, 0 type, 0 value, 0 ttl (2 keys checked, 2 identical)',
    ]);
    expect(shownDiffs(run.stdout)).toEqual([{ category: 'value', key: 'str:plain', hint: 'length 11 on the source, 12 on the target' }]);
    expect(readReport(join(run.cwd, 'diffs.jsonl')).map((l) => `${l.heading} ${l.key}`)).toEqual(['skipped str:plain']);
  });

  it('VERIFY=true from a Redis 7.2 file into 7.0: every key, restamped or written by type, verified identical', async () => {
    await target.cmd('FLUSHALL');
    const run = await fromFile(fixture('redis-7.2'), target, { VERIFY: 'true', SOURCE_REDIS_DB_INDEX: 0 });
    const counts = parseSummary(run.stdout);
    expect(run.code, output(run)).toBe(0);
    expect(counts.failed).toBe(0);
    expect(tallyOf(run.stdout, 'Verification of copied keys: ')).toEqual({ missing: 0, type: 0, value: 0, ttl: 0, checked: counts.restored, identical: counts.restored, vanished: 0 });
  });

  it('VERIFY=true from a Redis 7.4 file into 7.0: the two hashes that lost their field expiries are ttl differences, exit 4', async () => {
    await target.cmd('FLUSHALL');
    const run = await fromFile(fixture('redis-7.4'), target, { VERIFY: 'true', SOURCE_REDIS_DB_INDEX: 0, SHOW_DIFFS: 'true' });
    const counts = parseSummary(run.stdout);
    expect(run.code, output(run)).toBe(4);
    expect(tallyOf(run.stdout, 'Verification of copied keys: ')).toEqual({ missing: 0, type: 0, value: 0, ttl: 2, checked: counts.restored, identical: counts.restored - 2, vanished: 0 });
    expect(run.stdout).toMatch(/^ttl \|hash:fieldttl\|: field .*: expires at \d+ on the source, no expiry on the target \(the target has no field expiries\)$/m);
  });
});

describe('a cluster target with a file', () => {
  let cluster: TestCluster;
  let saver: LocalServer;
  beforeAll(async () => {
    [cluster, saver] = await Promise.all([startCluster(), startRedis()]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([cluster?.stop(), saver?.stop()]);
  });
  const run = (file: string, extra: Record<string, string | number> = {}): Promise<RunResult> =>
    runMigrator({ ...cluster.settings('DESTINATION'), SOURCE_RDB_FILE: file, SLEEP_TIME: 0, ...extra }, runDir(), 30_000);

  it('a file with keys in db 0 only: copied with no SOURCE_REDIS_DB_INDEX, each key on its node; then compared and verified', async () => {
    await saver.cmd('FLUSHALL');
    await saver.cmd('MSET', ...Array.from({ length: 50 }, (_, i) => [`k:${i}`, `v${i}`]).flat());
    await saver.cmd('RPUSH', 'list', 'a', 'b');
    await saver.cmd('SAVE');
    const file = join(saver.dir, 'dump.rdb');
    const copy = await run(file, { VERIFY: 'true' });
    expect(copy.code, output(copy)).toBe(0);
    expect(parseSummary(copy.stdout).restored).toBe(51);
    expect(copy.stdout).toMatch(/^Verification of copied keys: 0 missing, 0 type, 0 value, 0 ttl \(51 keys checked, 51 identical\)$/m);
    expect((await keyspaceOf(cluster.masters)).size).toBe(51);
    expect(await (await ownerOf(cluster, 'k:7')).cmd('GET', 'k:7')).toBe('v7');
    const compare = await run(file, { MIGRATION_MODE: 'compare' });
    expect(compare.code, output(compare)).toBe(0);
    expect(tallyOf(compare.stdout)).toEqual({ missing: 0, type: 0, value: 0, ttl: 0, checked: 51, identical: 51, vanished: 0 });
  });

  it('a file with keys in databases 0 and 3: refused in one line naming SOURCE_REDIS_DB_INDEX, before any key is written', async () => {
    await Promise.all(cluster.masters.map((m) => m.cmd('FLUSHALL')));
    const refused = await run(fixture('redis-7.0'));
    expect(refused.code, output(refused)).toBe(1);
    expect(refused.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^Error reading SOURCE_RDB_FILE : .*redis-7\.0\.rdb has keys in database 3 \(and maybe others\), and DESTINATION_REDIS_CLUSTER=true takes database 0 only: set SOURCE_REDIS_DB_INDEX to the one to copy$/),
    ]);
    expect((await keyspaceOf(cluster.masters)).size, 'keys of db 0 were written before the refusal').toBe(0);
    const chosen = await run(fixture('redis-7.0'), { SOURCE_REDIS_DB_INDEX: 3 });
    expect(chosen.code, output(chosen)).toBe(0);
    expect(parseSummary(chosen.stdout).restored).toBe(2);
  });
});
